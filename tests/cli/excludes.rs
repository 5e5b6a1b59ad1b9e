//! Backup exclusion rules through the CLI: globs at any depth and anchored, `**`,
//! case-insensitive globs, exclude files with comments and blank lines, marker files and
//! cache directory tags. What the snapshot holds is read back with `ls --json` and a restore.

use std::fs;
use std::path::Path;

use crate::support::{arg, json_lines, one_error_line, summary, text, tree_paths, Env};

const CACHEDIR_TAG: &[u8] =
    b"Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag.\n";

/// Creates `rel` below `root` (and its parents) holding its own path.
fn put(root: &Path, rel: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, rel.as_bytes()).unwrap();
}

/// The entries of the latest snapshot below `src`, as sorted paths relative to it.
fn snapshot_paths(env: &Env, src: &Path) -> Vec<String> {
    let out = env.ok(&["ls", "latest", arg(src), "--json"]);
    let prefix = format!("{}/", src.display());
    let mut v: Vec<String> = json_lines(&out.stdout)
        .iter()
        .filter(|v| v["message_type"] == "node")
        .filter_map(|v| Some(v["path"].as_str()?.strip_prefix(&prefix)?.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn exclude_rules_leave_out_exactly_what_they_match() {
    let env = Env::new();
    let src = env.path("src");
    for rel in [
        "keep.txt",
        // --exclude '*.log', at any depth, and a directory it matches with its contents.
        "app.log",
        "sub/deep/x.log",
        "sub/deep/x.log.txt",
        "sub/deep/keep.md",
        "logs.log/inner.txt",
        // --exclude '**/node_modules'.
        "node_modules/a.js",
        "web/node_modules/pkg/index.js",
        "web/node_modules_notes.txt",
        "web/app.js",
        // --iexclude '*.TMP'.
        "TEMP.TMP",
        "sub/other.tmp",
        "sub/Mixed.Tmp",
        "tmpfile.txt",
        // --exclude-file: `secret/` and `*.bak` (case-sensitive).
        "secret/key.pem",
        "old.bak",
        "OLD.BAK",
        // An anchored pattern: only the top-level one.
        "anchored",
        "sub/anchored",
        // --exclude-if-present .nobackup
        "proj/.nobackup",
        "proj/data.txt",
        "proj/nested/more.txt",
        "other/data.txt",
        "other/.nobackup_not",
        // --exclude-caches: a valid tag excludes, an invalid one does not.
        "cache_valid/blob",
        "cache_invalid/blob",
    ] {
        put(&src, rel);
    }
    fs::write(src.join("cache_valid/CACHEDIR.TAG"), CACHEDIR_TAG).unwrap();
    fs::write(
        src.join("cache_invalid/CACHEDIR.TAG"),
        b"Signature: 00000000000000000000000000000000\n",
    )
    .unwrap();
    let exclude_file = env.path("excludes");
    fs::write(
        &exclude_file,
        "# comments and blank lines are ignored, so keep.txt stays\n# keep.txt\n\n   \n  \
         secret/  \n*.bak\n",
    )
    .unwrap();
    let anchored = format!("{}/anchored", src.display());

    env.init();
    let out = env.ok(&[
        "backup",
        arg(&src),
        "--json",
        "--exclude",
        "*.log",
        "--exclude",
        "**/node_modules",
        "--iexclude",
        "*.TMP",
        "--exclude-file",
        arg(&exclude_file),
        "--exclude",
        &anchored,
        "--exclude-if-present",
        ".nobackup",
        "--exclude-caches",
    ]);
    let kept = [
        "OLD.BAK",
        "cache_invalid",
        "cache_invalid/CACHEDIR.TAG",
        "cache_invalid/blob",
        "keep.txt",
        "other",
        "other/.nobackup_not",
        "other/data.txt",
        "sub",
        "sub/anchored",
        "sub/deep",
        "sub/deep/keep.md",
        "sub/deep/x.log.txt",
        "tmpfile.txt",
        "web",
        "web/app.js",
        "web/node_modules_notes.txt",
    ];
    let files = kept.iter().filter(|p| src.join(p).is_file()).count();
    let s = summary(&out);
    assert_eq!(s["files_new"], files, "excluded files are not counted: {s}");
    assert_eq!(snapshot_paths(&env, &src), kept);

    // A restore brings back the same entries and nothing else.
    let target = env.path("target");
    let spec = format!("latest:{}", src.display());
    let _ = env.ok(&["restore", &spec, "--target", arg(&target)]);
    assert_eq!(tree_paths(&target), kept);

    // Without the rules everything is there: the rules, not the tree, made the difference.
    let _ = env.ok(&["backup", arg(&src)]);
    let all = snapshot_paths(&env, &src);
    assert_eq!(all, tree_paths(&src));
}

#[test]
fn unreadable_exclude_file_is_an_error_and_saves_nothing() {
    let env = Env::new();
    let src = env.path("src");
    put(&src, "a.txt");
    env.init();
    let out = env.run(&[
        "backup",
        arg(&src),
        "--exclude-file",
        arg(&env.path("missing")),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = crate::support::text(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("exclude file"),
        "{err}"
    );
    assert!(env.snapshots().is_empty());
}

#[test]
fn exclude_caches_never_opens_a_fifo_named_cachedir_tag() {
    let env = Env::new();
    let src = env.path("src");
    put(&src, "dir/file.txt");
    nix::unistd::mkfifo(
        &src.join("dir/CACHEDIR.TAG"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    env.init();
    let out = env.run_within(
        &["backup", arg(&src), "--exclude-caches"],
        std::time::Duration::from_secs(60),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        crate::support::text(&out.stderr)
    );
    // Not a valid tag, so the directory is kept, the fifo with it.
    assert_eq!(
        snapshot_paths(&env, &src),
        ["dir", "dir/CACHEDIR.TAG", "dir/file.txt"]
    );
}

/// One pattern dialect on every command: `cache/` is a directory named `cache`, never the
/// file of that name, in backup --exclude, restore --include and --exclude, and find.
#[test]
fn trailing_slash_means_directories_only_in_every_command() {
    let env = Env::new();
    let src = env.path("src");
    put(&src, "a/cache");
    put(&src, "b/cache/x");
    put(&src, "c.txt");
    env.init();

    let _ = env.ok(&["backup", arg(&src), "--exclude", "cache/"]);
    assert_eq!(snapshot_paths(&env, &src), ["a", "a/cache", "b", "c.txt"]);

    let _ = env.ok(&["backup", arg(&src)]);
    let spec = format!("latest:{}", src.display());
    let target = env.path("included");
    let _ = env.ok(&[
        "restore",
        &spec,
        "--target",
        arg(&target),
        "--include",
        "cache/",
    ]);
    assert_eq!(tree_paths(&target), ["b", "b/cache", "b/cache/x"]);
    let target = env.path("excluded");
    let _ = env.ok(&[
        "restore",
        &spec,
        "--target",
        arg(&target),
        "--exclude",
        "cache/",
    ]);
    assert_eq!(tree_paths(&target), ["a", "a/cache", "b", "c.txt"]);

    let out = env.ok(&["--json", "find", "cache/", "--snapshot", "latest"]);
    let groups = &json_lines(&out.stdout)[0];
    let found: Vec<&str> = groups[0]["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    assert_eq!(found, [format!("{}/b/cache", src.display())]);
    let out = env.ok(&["--json", "find", "cache", "--snapshot", "latest"]);
    assert_eq!(
        json_lines(&out.stdout)[0][0]["matches"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // An empty pattern is refused with one line, and nothing is saved.
    let before = env.snapshots().len();
    let out = env.run(&["backup", arg(&src), "--exclude", ""]);
    assert_eq!(out.status.code(), Some(1));
    let err = crate::support::one_error_line(&out.stderr);
    assert!(err.contains("empty"), "{err}");
    assert_eq!(env.snapshots().len(), before);
}

/// `--exclude-larger-than` leaves out regular files above the size, whatever their name.
#[test]
fn exclude_larger_than_leaves_out_big_files() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("small"), vec![1u8; 1000]).unwrap();
    fs::write(src.join("d/exact"), vec![2u8; 1024]).unwrap();
    fs::write(src.join("d/big"), vec![3u8; 1025]).unwrap();
    let out = env.ok(&["backup", arg(&src), "--exclude-larger-than", "1k", "--json"]);
    assert_eq!(summary(&out)["files_new"], 2);
    let listed = text(&env.ok(&["ls", "latest", arg(&src)]).stdout);
    assert!(
        listed.contains("exact") && listed.contains("small"),
        "{listed}"
    );
    assert!(!listed.contains("big"), "{listed}");
    let out = env.run(&["backup", arg(&src), "--exclude-larger-than", "lots"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// `--files-from` (lines, comments), `--files-from-verbatim` (exact lines) and
/// `--files-from-raw` (NUL-separated, any bytes) add backup paths; `--repository-file` names
/// the repository.
#[test]
fn files_from_lists_and_repository_file() {
    use std::os::unix::ffi::OsStrExt;
    let env = Env::new();
    env.init();
    let src = env.path("src");
    for name in ["a", "b", " c", "d"] {
        fs::create_dir_all(src.join(name)).unwrap();
        fs::write(src.join(name).join("f"), name.as_bytes()).unwrap();
    }
    let odd = src.join(std::ffi::OsStr::from_bytes(b"e\nnew\xff"));
    fs::create_dir_all(&odd).unwrap();
    let list = env.path("list");
    fs::write(
        &list,
        format!("# a comment\n\n  {}  \n", src.join("a").display()),
    )
    .unwrap();
    let verbatim = env.path("verbatim");
    fs::write(&verbatim, format!("{}\n", src.join(" c").display())).unwrap();
    let raw = env.path("raw");
    let mut bytes = src.join("d").as_os_str().as_bytes().to_vec();
    bytes.push(0);
    bytes.extend_from_slice(odd.as_os_str().as_bytes());
    bytes.push(0);
    fs::write(&raw, bytes).unwrap();
    let repo_file = env.path("repo-location");
    fs::write(&repo_file, format!("{}\n", env.repo.display())).unwrap();

    let out = env
        .cairn()
        .env_remove("CAIRN_REPOSITORY")
        .args([
            "--repository-file",
            arg(&repo_file),
            "backup",
            arg(&src.join("b")),
            "--files-from",
            arg(&list),
            "--files-from-verbatim",
            arg(&verbatim),
            "--files-from-raw",
            arg(&raw),
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let snaps = env.snapshots();
    let mut paths: Vec<String> = snaps[0]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap_or("").to_string())
        .collect();
    paths.sort();
    let mut want: Vec<String> = ["a", "b", " c", "d"]
        .iter()
        .map(|n| src.join(n).display().to_string())
        .collect();
    want.sort();
    for w in &want {
        assert!(paths.contains(w), "{w} in {paths:?}");
    }
    assert_eq!(paths.len(), 5, "the odd name is the fifth: {paths:?}");

    let empty = env.path("empty-list");
    fs::write(&empty, "# nothing\n").unwrap();
    let out = env.run(&["backup", "--files-from", arg(&empty)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(one_error_line(&out.stderr).contains("no paths to back up"));
}
