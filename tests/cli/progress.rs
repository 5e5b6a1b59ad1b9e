//! Live progress and verbose listings: the JSON status stream of a backup advances while it
//! runs and ends at the totals of its pre-scan; restore's counts agree with its summary;
//! `-v`/`-vv` list what a backup stores (also with `--dry-run`), and `restore --dry-run -v`
//! what a restore would write; a backup of nothing is refused unless `--allow-empty`.

use std::fs;

use serde_json::Value;

use crate::support::{arg, json_lines, noise, one_error_line, summary, text, Env};

/// The `status` lines of one phase, in order.
fn statuses<'a>(lines: &'a [Value], phase: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["message_type"] == "status" && l["phase"] == phase)
        .collect()
}

fn u(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} of {v}"))
}

/// A source large enough that its backup takes well over a second on the test build: status
/// lines must come while it runs, not only at its start and end.
#[test]
fn backup_json_status_advances_while_it_runs_and_ends_at_the_scanned_totals() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let mut total = 0u64;
    for i in 0..24u64 {
        let data = noise(8 << 20, i + 1);
        total += data.len() as u64;
        fs::write(src.join(format!("f{i:02}.bin")), data).unwrap();
    }
    let out = env.ok(&["backup", arg(&src), "--json"]);
    let lines = json_lines(&out.stdout);
    let backup = statuses(&lines, "backup");
    assert!(
        backup.len() >= 3,
        "start, progress and end lines: {backup:?}"
    );

    let first = backup[0];
    let last = backup[backup.len() - 1];
    assert_eq!(u(first, "bytes_done"), 0, "the phase-start line: {first}");
    assert_eq!(u(last, "bytes_done"), total, "the phase-end line: {last}");
    assert_eq!(u(last, "files_done"), 24, "{last}");
    assert_eq!(
        u(last, "total_bytes"),
        total,
        "the pre-scan's totals: {last}"
    );
    assert_eq!(u(last, "total_files"), 24, "{last}");
    assert_eq!(last["percent_done"], 1.0, "{last}");

    // In between: lines taken while the backup ran, counting up.
    let middle = &backup[1..backup.len() - 1];
    assert!(
        middle
            .iter()
            .any(|l| u(l, "bytes_done") > 0 && u(l, "bytes_done") < total),
        "no status line while the backup was under way: {backup:?}"
    );
    for pair in backup.windows(2) {
        assert!(
            u(pair[1], "bytes_done") >= u(pair[0], "bytes_done")
                && u(pair[1], "files_done") >= u(pair[0], "files_done"),
            "progress went backwards: {} then {}",
            pair[0],
            pair[1]
        );
        assert!(pair[1]["seconds_elapsed"].as_f64() >= pair[0]["seconds_elapsed"].as_f64());
    }
    // The files being read are named while they are read.
    let named: Vec<&str> = middle
        .iter()
        .flat_map(|l| l["current_files"].as_array().unwrap().iter())
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        named.iter().any(|f| f.starts_with(arg(&src))),
        "no current file named in {middle:?}"
    );
    assert!(
        last["current_files"].as_array().unwrap().is_empty(),
        "{last}"
    );
    assert_eq!(summary(&out)["files_new"], 24);
}

#[test]
fn restore_json_counts_files_as_its_summary_does() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(src.join("a/b")).unwrap();
    for i in 0..5u64 {
        fs::write(src.join(format!("a/f{i}")), noise(200_000, i)).unwrap();
    }
    fs::write(src.join("a/b/small"), b"small").unwrap();
    std::os::unix::fs::symlink("a/f0", src.join("link")).unwrap();
    let _ = env.ok(&["backup", arg(&src)]);
    let target = env.path("target");
    let spec = format!("latest:{}", arg(&src));
    let out = env.ok(&["restore", &spec, "--target", arg(&target), "--json"]);
    let lines = json_lines(&out.stdout);
    let restore = statuses(&lines, "restore");
    let last = restore.last().expect("a restore status line");
    let s = summary(&out);
    assert_eq!(u(&s, "files_restored"), 6, "{s}");
    assert_eq!(u(last, "files_done"), 6, "{last}");
    assert_eq!(u(last, "total_files"), 6, "{last}");
    assert_eq!(u(last, "bytes_done"), u(&s, "bytes_written"), "{last} {s}");
    assert_eq!(restore[0]["files_done"], 0, "{}", restore[0]);
}

#[test]
fn verbose_backup_lists_new_and_changed_files_and_with_vv_unchanged_ones() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("keep"), b"kept as it is").unwrap();
    fs::write(src.join("edit"), b"first").unwrap();

    let out = env.ok(&["backup", arg(&src), "-v"]);
    let listed = text(&out.stdout);
    for name in ["keep", "edit"] {
        let line = format!("new       {}", src.join(name).display());
        assert!(listed.lines().any(|l| l.starts_with(&line)), "{listed}");
    }

    fs::write(src.join("edit"), b"second, longer").unwrap();
    fs::write(src.join("added"), b"added").unwrap();
    // A dry run lists what it would store and stores nothing.
    let out = env.ok(&["backup", arg(&src), "-v", "--dry-run"]);
    let listed = text(&out.stdout);
    assert!(listed.contains(&format!("changed   {}", src.join("edit").display())));
    assert!(listed.contains(&format!("new       {}", src.join("added").display())));
    assert!(
        !listed.contains(&src.join("keep").display().to_string()),
        "{listed}"
    );
    assert_eq!(env.snapshots().len(), 1);

    let out = env.ok(&["backup", arg(&src), "-vv", "--json"]);
    let verbose: Vec<(String, String, u64)> = json_lines(&out.stdout)
        .into_iter()
        .filter(|l| l["message_type"] == "verbose_status")
        .map(|l| {
            (
                l["item"].as_str().unwrap().to_string(),
                l["action"].as_str().unwrap().to_string(),
                u(&l, "size"),
            )
        })
        .collect();
    let mut verbose = verbose;
    verbose.sort();
    let p = |n: &str| src.join(n).display().to_string();
    assert_eq!(
        verbose,
        vec![
            (p("added"), "new".into(), 5),
            (p("edit"), "changed".into(), 14),
            (p("keep"), "unchanged".into(), 13),
        ]
    );

    // Without -v, nothing is listed.
    let out = env.ok(&["backup", arg(&src)]);
    assert!(
        !text(&out.stdout).contains(&p("keep")),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn restore_dry_run_verbose_lists_every_entry_it_would_write() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/file"), b"12345").unwrap();
    let _ = env.ok(&["backup", arg(&src)]);
    let target = env.path("target");
    let spec = format!("latest:{}", arg(&src));
    let out = env.ok(&[
        "restore",
        &spec,
        "--target",
        arg(&target),
        "--dry-run",
        "-v",
    ]);
    let listed = text(&out.stdout);
    assert!(
        listed.contains(&format!(
            "create    {} (5 B)",
            target.join("d/file").display()
        )),
        "{listed}"
    );
    assert!(
        listed.contains(&format!("create    {}\n", target.join("d").display())),
        "{listed}"
    );
    assert!(!target.exists(), "a dry run writes nothing");
    let out = env.ok(&["restore", &spec, "--target", arg(&target), "--dry-run"]);
    assert!(
        !text(&out.stdout).contains("create"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_backup_of_nothing_is_refused_unless_allow_empty() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"a").unwrap();

    for args in [
        vec!["backup", arg(&src), "--exclude", "*"],
        vec!["backup", arg(&src), "--exclude", "*", "--dry-run"],
    ] {
        let out = env.run(&args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let line = one_error_line(&out.stderr);
        assert!(line.contains("nothing to back up"), "{line}");
        assert!(line.contains("--allow-empty"), "{line}");
    }
    // A backup path that does not exist is an error of its own, before anything is read.
    let missing = env.path("missing");
    let out = env.run(&["backup", arg(&missing)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        one_error_line(&out.stderr).contains(arg(&missing)),
        "{}",
        text(&out.stderr)
    );
    assert!(env.snapshots().is_empty(), "no snapshot was saved");

    let out = env.ok(&[
        "backup",
        arg(&src),
        "--exclude",
        "*",
        "--allow-empty",
        "--json",
    ]);
    assert_eq!(summary(&out)["files_new"], 0);
    assert_eq!(env.snapshots().len(), 1);
    // A backup of an empty directory is not a backup of nothing.
    let empty = env.path("empty");
    fs::create_dir_all(&empty).unwrap();
    let _ = env.ok(&["backup", arg(&empty)]);
    assert_eq!(env.snapshots().len(), 2);
}

/// On a terminal the bar moves: it shows bytes of the scanned total, the files done of the
/// total and the file being read, and is cleared before the summary.
#[test]
fn backup_bar_on_a_terminal_counts_and_names_the_file_being_read() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..16u64 {
        fs::write(src.join(format!("f{i:02}.bin")), noise(8 << 20, i + 1)).unwrap();
    }
    let cmd = format!(
        "stty rows 24 cols 200; {} backup {}",
        env!("CARGO_BIN_EXE_cairn"),
        arg(&src)
    );
    let envs: Vec<(std::ffi::OsString, std::ffi::OsString)> = env
        .cairn()
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_os_string(), v?.to_os_string())))
        .collect();
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .envs(envs)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let screen = text(&out.stdout);
    assert!(
        screen.contains("/128.00 MiB"),
        "the scanned total: {screen:.2000}"
    );
    assert!(
        screen.contains("/16 files"),
        "files of the total: {screen:.2000}"
    );
    assert!(
        screen.contains(&format!("{}/f", arg(&src))),
        "the file being read: {screen:.2000}"
    );
    let summary_at = screen.find("Files:").expect("the summary");
    assert!(
        screen[summary_at..].lines().all(|l| !l.contains("MiB/s")),
        "{screen}"
    );
}
