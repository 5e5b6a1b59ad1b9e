//! The basics users meet first: round trips, the documented exit codes, one-line errors,
//! JSON output, dry runs.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use serde_json::Value;

use crate::support::{
    arg, as_nobody, assert_same_tree, chown_tree_nobody, is_root, json_lines, one_error_line,
    open_to_others, text, write_sample_tree, Env,
};

#[test]
fn init_backup_restore_roundtrip_is_byte_exact() {
    let env = Env::new();
    let src = env.path("src");
    write_sample_tree(&src);
    env.init();
    let out = env.ok(&["backup", arg(&src)]);
    assert!(text(&out.stdout).contains("saved"), "{}", text(&out.stdout));

    let target = env.path("target");
    let spec = format!("latest:{}", src.display());
    let _ = env.ok(&["restore", &spec, "--target", arg(&target), "--verify"]);
    assert_same_tree(&src, &target);

    // A second backup finds its parent and reads nothing unchanged.
    let out = env.ok(&["backup", arg(&src), "--json"]);
    let summary = json_lines(&out.stdout).pop().unwrap();
    assert_eq!(summary["message_type"], "summary");
    assert_eq!(summary["files_new"], 0);
    assert_eq!(summary["files_changed"], 0);
    assert!(summary["parent_id"].is_string(), "{summary}");
}

#[test]
fn wrong_password_exits_12_with_one_line() {
    let env = Env::new();
    env.init();
    let out = env
        .cairn()
        .env("CAIRN_PASSWORD", "not the password")
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12));
    let line = one_error_line(&out.stderr);
    assert!(line.contains("password"), "{line}");
}

#[test]
fn missing_repository_exits_10() {
    let env = Env::new();
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(10));
    let line = one_error_line(&out.stderr);
    assert!(line.contains("cairn init"), "{line}");
    assert!(!env.repo.exists(), "a failed open must not create anything");
}

#[test]
fn init_refuses_non_empty_directory_and_changes_nothing() {
    let env = Env::new();
    fs::create_dir_all(&env.repo).unwrap();
    fs::write(env.repo.join("precious.txt"), b"keep me").unwrap();
    let out = env.run(&["init", "--insecure-kdf"]);
    assert_ne!(out.status.code(), Some(0));
    let _ = one_error_line(&out.stderr);
    let names: Vec<_> = fs::read_dir(&env.repo)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["precious.txt"]);
    assert_eq!(fs::read(env.repo.join("precious.txt")).unwrap(), b"keep me");
}

#[test]
fn backup_of_missing_path_fails_and_saves_no_snapshot() {
    let env = Env::new();
    env.init();
    let out = env.run(&["backup", arg(&env.path("does-not-exist"))]);
    let code = out.status.code();
    assert!(code != Some(0) && code != Some(3), "exit {code:?}");
    let _ = one_error_line(&out.stderr);
    assert!(env.snapshots().is_empty());
}

#[test]
fn unreadable_file_is_skipped_with_exit_3() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("ok.txt"), b"fine").unwrap();
    let secret = src.join("secret.txt");
    fs::write(&secret, b"no access").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    env.init();
    let out = if is_root() {
        // Root reads the file whatever its mode: the backup runs as nobody, who owns
        // everything here but cannot read a file of mode 000.
        open_to_others(&env.path(""));
        chown_tree_nobody(&env.path(""));
        as_nobody(&env, &["backup", arg(&src)])
    } else {
        env.run(&["backup", arg(&src)])
    };
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.lines()
            .any(|l| l.starts_with("warning: ") && l.contains("secret.txt")),
        "{err}"
    );
    assert_eq!(env.snapshots().len(), 1, "the snapshot is saved either way");
}

#[test]
fn json_outputs_parse() {
    let env = Env::new();
    let src = env.path("src");
    write_sample_tree(&src);
    let out = env.ok(&["init", "--insecure-kdf", "--json"]);
    assert_eq!(json_lines(&out.stdout)[0]["message_type"], "initialized");

    let out = env.ok(&["backup", arg(&src), "--json", "--tag", "a,b"]);
    let lines = json_lines(&out.stdout);
    let summary = lines.last().unwrap();
    assert_eq!(summary["message_type"], "summary");
    assert_eq!(summary["files_new"], 6);
    let id = summary["snapshot_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 64);
    for l in &lines[..lines.len() - 1] {
        assert_eq!(l["message_type"], "status", "{l}");
    }

    let out = env.ok(&["check", "--json", "--read-data"]);
    let report = json_lines(&out.stdout).pop().unwrap();
    assert_eq!(report["clean"], true, "{report}");

    // A second snapshot with a known difference: one file changed, one removed, one added.
    fs::write(src.join("hello.txt"), b"hello again, world\n").unwrap();
    fs::remove_file(src.join("docs/deeper/notes.md")).unwrap();
    fs::write(src.join("added.md"), b"new\n").unwrap();
    let out = env.ok(&["backup", arg(&src), "--json"]);
    let second = json_lines(&out.stdout).pop().unwrap();
    has_fields(
        &second,
        &[
            "message_type",
            "dry_run",
            "snapshot_id",
            "parent_id",
            "files_new",
            "files_changed",
            "files_unmodified",
            "dirs",
            "others",
            "bytes_read",
            "bytes_total",
            "bytes_added",
            "blobs_added",
            "errors_skipped",
            "duration_seconds",
            "skipped",
        ],
    );
    assert_eq!(second["parent_id"], id.as_str(), "{second}");
    assert_eq!(second["files_new"], 1, "{second}");
    assert_eq!(second["files_changed"], 1, "{second}");
    assert_eq!(second["files_unmodified"], 4, "{second}");
    assert_eq!(second["errors_skipped"], 0, "{second}");
    let id2 = second["snapshot_id"].as_str().unwrap().to_string();

    let diff = single(&env.ok(&["diff", &id, &id2, "--json"]));
    has_fields(
        &diff,
        &[
            "snapshot_a",
            "snapshot_b",
            "added",
            "removed",
            "modified",
            "metadata",
            "changes",
        ],
    );
    assert_eq!(diff["snapshot_a"], id.as_str());
    assert_eq!(diff["snapshot_b"], id2.as_str());
    let base = src.display().to_string();
    let changes: Vec<(String, String)> = diff["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] != "metadata")
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_string(),
                c["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            ("added".to_string(), format!("{base}/added.md")),
            (
                "removed".to_string(),
                format!("{base}/docs/deeper/notes.md")
            ),
            ("modified".to_string(), format!("{base}/hello.txt")),
        ],
        "{diff}"
    );
    assert_eq!(
        (&diff["added"], &diff["removed"], &diff["modified"]),
        (&Value::from(1), &Value::from(1), &Value::from(1)),
        "{diff}"
    );
    // Identical snapshots differ in nothing.
    let same = single(&env.ok(&["diff", &id2, "latest", "--json"]));
    assert_eq!(same["changes"], serde_json::json!([]), "{same}");

    let stats = single(&env.ok(&["stats", "--json"]));
    has_fields(
        &stats,
        &[
            "snapshots",
            "files",
            "restore_size",
            "unique_blobs",
            "raw_size",
            "stored_size",
            "repository_size",
            "dedup_ratio",
            "compression_ratio",
        ],
    );
    assert_eq!(stats["snapshots"], 2, "{stats}");

    let ls = json_lines(&env.ok(&["ls", &id2, "--json"]).stdout);
    assert_eq!(ls[0]["message_type"], "snapshot", "{}", ls[0]);
    assert_eq!(ls[0]["id"], id2.as_str());
    assert_eq!(ls[0]["parent"], id.as_str());
    has_fields(
        &ls[0],
        &[
            "id", "short_id", "time", "hostname", "username", "paths", "tags", "tree", "summary",
        ],
    );
    let nodes: Vec<&Value> = ls[1..].iter().collect();
    for n in &nodes {
        assert_eq!(n["message_type"], "node", "{n}");
        // Names that are not UTF-8 come as `*_hex` (README).
        for f in ["name", "path"] {
            assert!(
                n.get(f).is_some() || n.get(format!("{f}_hex")).is_some(),
                "no {f} in {n}"
            );
        }
        has_fields(
            n,
            &["type", "mode", "permissions", "mtime", "size", "uid", "gid"],
        );
    }
    assert!(nodes.iter().any(|n| n["name_hex"] == "636166e92e747874"));
    let paths: Vec<&str> = nodes.iter().filter_map(|n| n["path"].as_str()).collect();
    assert!(
        paths.contains(&format!("{base}/added.md").as_str()),
        "{paths:?}"
    );
    assert!(
        !paths.contains(&format!("{base}/docs/deeper/notes.md").as_str()),
        "{paths:?}"
    );

    let found = single(&env.ok(&["find", "*.md", "--json"]));
    let per_snapshot: Vec<(String, Vec<String>)> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            has_fields(s, &["snapshot", "time", "hostname", "paths", "matches"]);
            let mut names: Vec<String> = s["matches"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["name"].as_str().unwrap().to_string())
                .collect();
            names.sort();
            (s["snapshot"].as_str().unwrap().to_string(), names)
        })
        .collect();
    assert_eq!(
        per_snapshot,
        vec![
            (id.clone(), vec!["notes.md".to_string()]),
            (id2.clone(), vec!["added.md".to_string()]),
        ],
        "{found}"
    );

    let unlock = single(&env.ok(&["unlock", "--json"]));
    assert_eq!(unlock["removed"], 0, "{unlock}");
    let config = single(&env.ok(&["cat", "config"]));
    has_fields(
        &config,
        &["chunk_min", "chunk_avg", "chunk_max", "compression_level"],
    );
    let snap = single(&env.ok(&["cat", "snapshot", &id[..8]]));
    assert_eq!(snap["tags"], serde_json::json!(["a", "b"]), "{snap}");
    let out = env.ok(&["cat", "tree", &format!("{id}:{}", src.display())]);
    let tree: Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes = tree["nodes"].as_array().unwrap();
    assert!(
        nodes.iter().any(|n| n["name_hex"] == "636166e92e747874"),
        "{tree}"
    );

    let target = env.path("target");
    let spec = format!("{id}:{}", src.display());
    let out = env.ok(&["restore", &spec, "--target", arg(&target), "--json"]);
    let summary = json_lines(&out.stdout).pop().unwrap();
    assert_eq!(summary["message_type"], "summary");
    assert_eq!(summary["files_restored"], 6, "{summary}");
}

/// Asserts that the JSON object `v` has each of `fields`.
fn has_fields(v: &Value, fields: &[&str]) {
    for f in fields {
        assert!(v.get(f).is_some(), "no {f:?} in {v}");
    }
}

/// The one JSON value a command printed on stdout (pretty-printed or on one line).
fn single(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON value ({e}): {}", text(&out.stdout)))
}

#[test]
fn restore_dry_run_writes_nothing() {
    let env = Env::new();
    let src = env.path("src");
    write_sample_tree(&src);
    env.init();
    let _ = env.ok(&["backup", arg(&src)]);
    let target = env.path("target");
    let out = env.ok(&["restore", "latest", "--target", arg(&target), "--dry-run"]);
    assert!(
        text(&out.stdout).contains("dry run"),
        "{}",
        text(&out.stdout)
    );
    assert!(!target.exists());

    let out = env.ok(&[
        "restore",
        "latest",
        "--target",
        arg(&target),
        "-n",
        "--json",
    ]);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["message_type"], "restore_plan");
    assert_eq!(plan["files"], 6);
    assert!(plan["entries"].as_array().unwrap().len() >= 6);
    assert!(!target.exists());
}

#[test]
fn snapshots_json_lists_full_ids_tags_and_filters() {
    let env = Env::new();
    let src = env.path("src");
    write_sample_tree(&src);
    env.init();
    let _ = env.ok(&["backup", arg(&src), "--tag", "daily,db", "--host", "alpha"]);
    let _ = env.ok(&[
        "backup",
        arg(&src),
        "--tag",
        "weekly",
        "--host",
        "beta",
        "--time",
        "2024-01-02T03:04:05Z",
    ]);
    let all = env.snapshots();
    assert_eq!(all.len(), 2);
    // Oldest first: the imported 2024 snapshot comes before today's.
    assert_eq!(all[0]["time"], "2024-01-02T03:04:05Z");
    assert_eq!(all[0]["hostname"], "beta");
    assert_eq!(all[1]["tags"], serde_json::json!(["daily", "db"]));
    for s in &all {
        assert_eq!(s["id"].as_str().unwrap().len(), 64);
    }
    let out = env.ok(&["snapshots", "--json", "--host", "alpha"]);
    let alpha: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(alpha.len(), 1);
    assert_eq!(alpha[0]["id"], all[1]["id"]);
    let out = env.ok(&["snapshots", "--json", "--tag", "weekly"]);
    let weekly: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(weekly[0]["id"], all[0]["id"]);
}

#[test]
fn password_file_and_command_open_the_repository() {
    let env = Env::new();
    env.init();
    let file = env.path("pw");
    fs::write(&file, format!("{}\nignored\n", crate::support::PASSWORD)).unwrap();
    let out = env
        .cairn()
        .env_remove("CAIRN_PASSWORD")
        .args(["snapshots", "--password-file", arg(&file)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = env
        .cairn()
        .env_remove("CAIRN_PASSWORD")
        .args([
            "snapshots",
            "--password-command",
            &format!("cat '{}'", file.display()),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = env
        .cairn()
        .env_remove("CAIRN_PASSWORD")
        .arg("snapshots")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let line = one_error_line(&out.stderr);
    assert!(line.contains("CAIRN_PASSWORD"), "{line}");
}

#[test]
fn lock_held_by_another_process_exits_11_and_unlock_clears_it() {
    use std::sync::Arc;
    use std::time::Duration;

    let env = Env::new();
    let src = env.path("src");
    write_sample_tree(&src);
    env.init();
    let repo = repo_core::Repository::open(
        Arc::new(repo_core::LocalBackend::new(&env.repo)),
        &repo_core::Secret::password(crate::support::PASSWORD),
        &repo_core::OpenOptions::default(),
    )
    .unwrap();
    let guard = repo
        .lock(repo_core::LockMode::Exclusive, "prune", Duration::ZERO)
        .unwrap();

    let out = env.run(&["backup", arg(&src)]);
    assert_eq!(out.status.code(), Some(11), "{}", text(&out.stderr));
    let line = one_error_line(&out.stderr);
    assert!(line.contains("locked"), "{line}");
    assert!(env.snapshots().is_empty());

    // The holder is alive on this host, so the lock is not stale; only --remove-all clears it.
    let out = env.ok(&["unlock", "--json"]);
    assert_eq!(json_lines(&out.stdout)[0]["removed"], 0);
    let out = env.ok(&["unlock", "--remove-all", "--json"]);
    assert_eq!(json_lines(&out.stdout)[0]["removed"], 1);
    let _ = env.ok(&["backup", arg(&src)]);
    drop(guard);
}

#[test]
fn check_exits_1_when_a_pack_is_missing() {
    let env = Env::new();
    let src = env.path("src");
    write_sample_tree(&src);
    env.init();
    let _ = env.ok(&["backup", arg(&src)]);
    let _ = env.ok(&["check"]);
    let pack = fs::read_dir(env.repo.join("data"))
        .unwrap()
        .flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .find(|p| fs::metadata(p).unwrap().len() > 1 << 20)
        .expect("a data pack");
    fs::remove_file(&pack).unwrap();
    let out = env.run(&["check", "--no-cache"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("problem: "),
        "{}",
        text(&out.stdout)
    );
    let _ = one_error_line(&out.stderr);
    let out = env.run(&["check", "--no-cache", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = json_lines(&out.stdout).pop().unwrap();
    assert_eq!(report["clean"], false);
    assert_eq!(report["problems"][0]["problem"], "missing_pack", "{report}");
}

#[test]
fn restore_as_of_picks_the_newest_snapshot_at_or_before_the_time() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    env.init();
    fs::write(src.join("state"), b"january").unwrap();
    let _ = env.ok(&["backup", arg(&src), "--time", "2024-01-15T00:00:00Z"]);
    fs::write(src.join("state"), b"june").unwrap();
    let _ = env.ok(&["backup", arg(&src), "--time", "2024-06-15T00:00:00Z"]);

    let spec = format!("latest:{}", src.display());
    let target = env.path("march");
    let as_of = ["--as-of", "2024-03-01T00:00:00Z"];
    let _ = env.ok(&[&["restore", &spec, "--target", arg(&target)][..], &as_of].concat());
    assert_eq!(fs::read(target.join("state")).unwrap(), b"january");

    let target = env.path("now");
    let _ = env.ok(&["restore", &spec, "--target", arg(&target)]);
    assert_eq!(fs::read(target.join("state")).unwrap(), b"june");

    let out = env.run(&[
        "restore",
        &spec,
        "--target",
        arg(&target),
        "--as-of",
        "2023-12-31",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let _ = one_error_line(&out.stderr);
}

/// The type (`file`, `dir`, `symlink`, ...) of the node at `path` in the latest snapshot.
fn latest_type(env: &Env, path: &Path) -> Option<String> {
    let out = env.run(&["ls", "latest", arg(path), "--json"]);
    if out.status.code() != Some(0) {
        return None;
    }
    json_lines(&out.stdout)
        .iter()
        .find(|v| v["message_type"] == "node" && v["path"] == arg(path))
        .and_then(|v| Some(v["type"].as_str()?.to_string()))
}

/// As tar and restic do, symlinks in the directories above a backup path are resolved: with
/// `lib -> usr/lib` (merged /usr), `backup .../lib/os-release` stores
/// `.../usr/lib/os-release`. A named symlink is stored as the symlink, unless the path ends
/// with a slash (`backup .../run/`, as `ls -l /var/run/`): then its directory is backed up.
#[test]
fn backup_resolves_symlinks_in_the_directories_above_each_path() {
    let env = Env::new();
    let base = fs::canonicalize(env.path("")).unwrap();
    fs::create_dir_all(base.join("usr/lib/run")).unwrap();
    fs::write(base.join("usr/lib/os-release"), "NAME=test\n").unwrap();
    fs::write(base.join("usr/lib/run/pid"), "1\n").unwrap();
    symlink("usr/lib", base.join("lib")).unwrap();
    symlink("usr/lib/run", base.join("run")).unwrap();
    env.init();

    let _ = env.ok(&["backup", arg(&base.join("lib/os-release"))]);
    assert_eq!(
        latest_type(&env, &base.join("usr/lib/os-release")).as_deref(),
        Some("file")
    );

    let _ = env.ok(&["backup", arg(&base.join("run"))]);
    assert_eq!(
        latest_type(&env, &base.join("run")).as_deref(),
        Some("symlink")
    );

    let slashed = format!("{}/", base.join("run").display());
    let _ = env.ok(&["backup", &slashed]);
    assert_eq!(
        latest_type(&env, &base.join("usr/lib/run/pid")).as_deref(),
        Some("file")
    );
    assert_eq!(latest_type(&env, &base.join("run")), None);
}

/// `--tag` has restic's meaning everywhere a snapshot filter is taken: repeated flags are OR,
/// commas inside one value are AND.
#[test]
fn repeated_tags_mean_any_and_commas_mean_all() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_sample_tree(&src);
    for tags in ["a", "b", "a,b", "c"] {
        let _ = env.ok(&["backup", arg(&src), "--tag", tags, "--force"]);
    }
    let count = |args: &[&str]| {
        let mut all = vec!["snapshots", "--json"];
        all.extend_from_slice(args);
        let out = env.ok(&all);
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
            .unwrap()
            .len()
    };
    assert_eq!(count(&[]), 4);
    assert_eq!(count(&["--tag", "a"]), 2);
    assert_eq!(
        count(&["--tag", "a", "--tag", "b"]),
        3,
        "repeated: any of them"
    );
    assert_eq!(count(&["--tag", "a,b"]), 1, "one value: all of them");
    assert_eq!(count(&["--tag", "a,b", "--tag", "c"]), 2);
    // The same meaning where one snapshot is picked.
    let out = env.ok(&["ls", "latest", "--tag", "a", "--tag", "b", "--json"]);
    assert!(!out.stdout.is_empty());
}

/// A remote repository location is refused (exit 2) instead of becoming a local directory of
/// that name; `local:` and `./` name local paths that start with such a word.
#[test]
fn remote_repository_locations_are_refused_not_made_local_folders() {
    let env = Env::new();
    let cwd = env.path("cwd");
    fs::create_dir(&cwd).unwrap();
    for location in [
        "s3:host/bucket",
        "sftp:user@host:/srv/r",
        "rest:http://h:8000/",
    ] {
        let out = env
            .cairn()
            .current_dir(&cwd)
            .args(["-r", location, "init", "--insecure-kdf"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{location}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("not supported"),
            "{}",
            text(&out.stderr)
        );
        assert_eq!(
            fs::read_dir(&cwd).unwrap().count(),
            0,
            "{location}: nothing created"
        );
    }
    let out = env
        .cairn()
        .current_dir(&cwd)
        .args(["-r", "local:s3:here", "init", "--insecure-kdf"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(cwd.join("s3:here/config").exists());
}

/// `--as-of` works wherever a command picks snapshots (ls, diff, find, as restore), takes
/// relative times, and is refused next to a snapshot id.
#[test]
fn as_of_picks_snapshots_in_ls_diff_and_find_with_relative_times() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    env.init();
    fs::write(src.join("old.txt"), b"old").unwrap();
    // Ten days ago, then now.
    let _ = env.ok(&["backup", arg(&src), "--time", "-10d"]);
    fs::write(src.join("new.txt"), b"new").unwrap();
    let _ = env.ok(&["backup", arg(&src)]);
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 2);

    let names = |out: &std::process::Output| -> Vec<String> {
        json_lines(&out.stdout)
            .iter()
            .filter(|v| v["message_type"] == "node")
            .filter_map(|v| v["name"].as_str().map(str::to_string))
            .collect()
    };
    let base = arg(&src);
    let then = env.ok(&["ls", "latest", base, "--json", "--as-of", "1 week ago"]);
    assert!(
        names(&then).contains(&"old.txt".to_string()),
        "{:?}",
        names(&then)
    );
    assert!(
        !names(&then).contains(&"new.txt".to_string()),
        "{:?}",
        names(&then)
    );
    let now = env.ok(&["ls", "latest", base, "--json"]);
    assert!(names(&now).contains(&"new.txt".to_string()));

    // diff: SNAP1 as of a week ago, SNAP2 the newest.
    let out = env.ok(&["diff", "latest", "latest", "--as-of", "-7d", "--json"]);
    let report = text(&out.stdout);
    assert!(report.contains("new.txt"), "{report}");
    assert!(!report.contains("old.txt"), "{report}");

    // find: only the snapshots at or before the time are searched.
    let out = env.ok(&["find", "*.txt", "--json", "--as-of", "yesterday"]);
    let groups: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    let found = groups[0]["matches"].to_string();
    assert!(
        found.contains("old.txt") && !found.contains("new.txt"),
        "{found}"
    );

    // An id picks its snapshot whatever the time: the two do not go together.
    let id = snaps[0]["id"].as_str().unwrap();
    let out = env.run(&["ls", id, "--as-of", "yesterday"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(one_error_line(&out.stderr).contains("--as-of"));
    // A relative time that does not work out is one clear line.
    let out = env.run(&["ls", "latest", "--as-of", "3 parsecs ago"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("relative time"),
        "{}",
        text(&out.stderr)
    );
}

/// A relative path in `ls` and `restore SNAP:PATH` means the path below the current directory
/// when the snapshot has it there, else below the snapshot root; a path the snapshot does not
/// have is one line that names the nearest one it does.
#[test]
fn relative_snapshot_paths_resolve_against_the_current_directory_first() {
    let env = Env::new();
    env.init();
    let base = fs::canonicalize(env.path("")).unwrap().join("home");
    fs::create_dir_all(base.join("data/docs")).unwrap();
    fs::write(base.join("data/docs/notes.md"), b"notes").unwrap();
    let _ = env.ok(&["backup", arg(&base.join("data"))]);

    let in_dir = |args: &[&str]| env.cairn().args(args).current_dir(&base).output().unwrap();
    let out = in_dir(&["ls", "latest", "data/docs", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let paths: Vec<String> = json_lines(&out.stdout)
        .iter()
        .filter(|v| v["message_type"] == "node")
        .filter_map(|v| v["path"].as_str().map(str::to_string))
        .collect();
    assert!(
        paths.contains(&base.join("data/docs/notes.md").display().to_string()),
        "{paths:?}"
    );

    let target = env.path("target");
    let out = in_dir(&["restore", "latest:data/docs", "--target", arg(&target)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(fs::read(target.join("notes.md")).unwrap(), b"notes");

    // From elsewhere, the same words are a path below the snapshot root: not there.
    let out = in_dir(&["ls", "latest", "data/dosc"]);
    assert_eq!(out.status.code(), Some(1));
    let line = one_error_line(&out.stderr);
    assert!(
        line.contains(&format!(
            "the nearest stored path is {}",
            base.join("data/docs").display()
        )),
        "{line}"
    );
    // An absolute path is taken as it is.
    let out = env.run(&["ls", "latest", arg(&base.join("data/docs/notes.md"))]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// The messages restic users tripped over: each says what is wrong, with the right exit code.
#[test]
fn messages_name_what_is_wrong() {
    let env = Env::new();
    // A repository path that is a file: neither "no repository, run init" nor an init that
    // then fails with "Not a directory".
    let file = env.path("afile");
    fs::write(&file, b"not a repository").unwrap();
    for args in [vec!["snapshots"], vec!["init", "--insecure-kdf"]] {
        let out = env
            .cairn()
            .args(&args)
            .env("CAIRN_REPOSITORY", &file)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(one_error_line(&out.stderr).contains("is a file, not a repository directory"));
    }
    assert_eq!(fs::read(&file).unwrap(), b"not a repository");

    // Compression: a word, a level out of range and a number that is not one are all usage
    // errors (exit 2); restic's names work.
    for bad in ["abc", "99", "-8"] {
        let out = env.run(&["init", "--insecure-kdf", "--compression", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("off, fastest, auto, better, max"));
    }
    let _ = env.ok(&["init", "--insecure-kdf", "--compression", "max"]);
    let config = env.ok(&["cat", "config"]);
    assert!(text(&config.stdout).contains("\"compression_level\": 19"));

    // An empty repository says so, instead of blaming filters nobody gave.
    let out = env.run(&["ls", "latest"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_error_line(&out.stderr).contains("no snapshots yet"));

    // One of a kind is singular.
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..3000 {
        fs::write(src.join(format!("file-with-a-long-name-{i:05}")), b"x").unwrap();
    }
    let _ = env.ok(&["backup", arg(&src)]);
    let out = env.ok(&["check"]);
    assert!(
        text(&out.stdout).starts_with("checked 1 snapshot, "),
        "{}",
        text(&out.stdout)
    );

    // A reader that stops early (`| head`) ends the output quietly: exit 0, nothing on stderr.
    let script = format!(
        "{} ls latest {} | head -n 1 > /dev/null; echo \"${{PIPESTATUS[0]}}\"",
        env!("CARGO_BIN_EXE_cairn"),
        arg(&src)
    );
    let out = env.cairn();
    let envs: Vec<(std::ffi::OsString, std::ffi::OsString)> = out
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_os_string(), v?.to_os_string())))
        .collect();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .envs(envs)
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout).trim(), "0", "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "a closed pipe is no error");
}

/// `version`, `--version`, shell completions and man pages, all without a repository, the
/// last two from the parser's own definitions.
#[test]
fn version_completions_and_man_pages() {
    let env = Env::new();
    let version = format!("cairn {}", env!("CARGO_PKG_VERSION"));
    for args in [vec!["version"], vec!["--version"]] {
        let out = env.ok(&args);
        assert_eq!(text(&out.stdout).trim(), version, "{args:?}");
    }
    let out = env.ok(&["version", "--json"]);
    assert_eq!(
        json_lines(&out.stdout)[0]["version"],
        env!("CARGO_PKG_VERSION")
    );

    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef cairn"),
        ("fish", "complete -c cairn"),
        ("elvish", "edit:completion"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let script = text(&env.ok(&["completion", shell]).stdout);
        assert!(script.contains(marker), "{shell}: {script:.200}");
        for word in ["backup", "restore", "--exclude", "--as-of"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let out = env.run(&["completion", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));

    let man = env.path("man");
    let _ = env.ok(&["generate", "--man", arg(&man)]);
    let page = fs::read_to_string(man.join("cairn-backup.1")).unwrap();
    assert!(page.contains(".TH cairn-backup"), "{page:.300}");
    assert!(page.contains("allow\\-empty"), "{page:.300}");
    assert!(fs::read_to_string(man.join("cairn.1"))
        .unwrap()
        .contains("restore"));
    let pages = fs::read_dir(&man).unwrap().count();
    assert!(
        pages >= 14,
        "one page per command and one for cairn: {pages}"
    );
}

/// `snapshots --latest N`, `--group-by` and `--compact`, and a table that fits the terminal.
#[test]
fn snapshots_latest_group_by_compact_and_terminal_width() {
    let env = Env::new();
    env.init();
    let (one, two) = (env.path("one"), env.path("two"));
    fs::create_dir_all(&one).unwrap();
    fs::create_dir_all(&two).unwrap();
    let mut day = 1;
    let mut backup = |host: &str, path: &std::path::Path, tags: &str| {
        let time = format!("2026-01-{day:02}T00:00:00Z");
        day += 1;
        let _ = env.ok(&[
            "backup",
            arg(path),
            "--host",
            host,
            "--time",
            &time,
            "--tag",
            tags,
        ]);
    };
    backup("alpha", &one, "daily");
    backup("alpha", &one, "daily");
    backup("alpha", &one, "weekly");
    backup("alpha", &two, "daily");
    backup(
        "a-very-long-host-name-that-does-not-fit.example.com",
        &one,
        "t1,t2,t3,t4,t5,t6,t7,t8,t9",
    );
    backup(
        "a-very-long-host-name-that-does-not-fit.example.com",
        &one,
        "daily",
    );

    let list = |args: &[&str]| -> Vec<Value> {
        let out = env.ok(&[&["snapshots", "--json"][..], args].concat());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // One per host and path set, the newest of each.
    let latest = list(&["--latest", "1"]);
    assert_eq!(latest.len(), 3, "{latest:?}");
    let days: Vec<&str> = latest.iter().map(|s| s["time"].as_str().unwrap()).collect();
    assert_eq!(days.len(), 3);
    assert!(
        days.iter()
            .all(|d| ["2026-01-03", "2026-01-04", "2026-01-06"]
                .iter()
                .any(|x| d.starts_with(x))),
        "{days:?}"
    );

    let groups = list(&["--group-by", "host", "--latest", "2"]);
    assert_eq!(groups.len(), 2, "{groups:?}");
    let alpha = groups
        .iter()
        .find(|g| g["group_key"]["hostname"] == "alpha")
        .unwrap();
    assert_eq!(alpha["snapshots"].as_array().unwrap().len(), 2);
    assert!(
        alpha["group_key"].get("paths").is_none(),
        "only the fields grouped by"
    );
    let by_tags = list(&["--group-by", "host,tags"]);
    assert_eq!(by_tags.len(), 4, "{by_tags:?}");

    let compact = text(&env.ok(&["snapshots", "--compact"]).stdout);
    assert!(
        !compact.contains("Paths") && !compact.contains(arg(&one)),
        "{compact}"
    );
    assert!(compact.contains("6 snapshots"), "{compact}");

    // On a 70-column terminal the long host and tags are cut with an ellipsis.
    let cmd = format!(
        "stty rows 24 cols 70; {} snapshots",
        env!("CARGO_BIN_EXE_cairn")
    );
    let mut script = std::process::Command::new("script");
    let envs: Vec<(std::ffi::OsString, std::ffi::OsString)> = env
        .cairn()
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_os_string(), v?.to_os_string())))
        .collect();
    let out = script
        .args(["-qc", &cmd, "/dev/null"])
        .envs(envs)
        .output()
        .unwrap();
    let table = text(&out.stdout);
    assert!(table.contains("…"), "{table}");
    for line in table.lines().filter(|l| l.contains("2026-01-0")) {
        let first_path = line.trim_end_matches('\r');
        assert!(first_path.chars().count() <= 70 + arg(&one).len(), "{line}");
    }
    assert!(
        !table.contains("a-very-long-host-name-that-does-not-fit.example.com"),
        "{table}"
    );
}

/// `diff` as restic prints it: the snapshots compared, one line per change, a legend and a
/// summary of files, directories and others, and the content bytes added and removed.
#[test]
fn diff_prints_a_legend_and_a_summary() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("a"), crate::support::noise(100_000, 1)).unwrap();
    fs::write(src.join("b"), crate::support::noise(50_000, 2)).unwrap();
    let _ = env.ok(&["backup", arg(&src)]);
    fs::remove_file(src.join("b")).unwrap();
    fs::write(src.join("c"), crate::support::noise(30_000, 3)).unwrap();
    fs::create_dir_all(src.join("e")).unwrap();
    fs::write(src.join("e/f"), crate::support::noise(7_000, 4)).unwrap();
    symlink("a", src.join("link")).unwrap();
    let _ = env.ok(&["backup", arg(&src)]);
    let snaps = env.snapshots();
    let (one, two) = (
        snaps[0]["id"].as_str().unwrap(),
        snaps[1]["id"].as_str().unwrap(),
    );

    let out = text(&env.ok(&["diff", one, two]).stdout);
    let s = arg(&src);
    assert!(
        out.starts_with(&format!("comparing snapshot {} (", &one[..8])),
        "{out}"
    );
    for line in [
        format!("- {s}/b"),
        format!("+ {s}/c"),
        format!("+ {s}/e"),
        format!("+ {s}/e/f"),
        format!("+ {s}/link"),
        "+ added, - removed, M content or type changed, U metadata changed only".to_string(),
        "Files:    2 new, 1 removed, 0 changed".to_string(),
        "Dirs:     1 new, 0 removed".to_string(),
        "Others:   1 new, 0 removed, 0 changed".to_string(),
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "{line:?} missing in:\n{out}"
        );
    }
    let json = json_lines(&env.ok(&["diff", one, two, "--json"]).stdout).remove(0);
    assert_eq!(json["message_type"], "diff");
    assert_eq!(json["bytes_added"], 37_000, "{json}");
    assert_eq!(json["bytes_removed"], 50_000, "{json}");
    assert_eq!(json["files"]["new"], 2, "{json}");
    assert_eq!(json["dirs"]["new"], 1, "{json}");

    let same = text(&env.ok(&["diff", two, two]).stdout);
    assert!(same.contains("no differences"), "{same}");
}
