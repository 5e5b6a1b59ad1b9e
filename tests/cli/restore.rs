//! Restore through the CLI into directories that already hold things: symlinks and hard links
//! planted in the target never lead writes outside it, `--overwrite` decides about existing
//! files, and `--include`/`--exclude` pick what is restored.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

use crate::support::{
    arg, as_nobody, assert_same_tree, chown_nobody, chown_tree_nobody, noise, open_to_others,
    summary, text, tree_paths, Env,
};

/// A small source tree.
fn write_tree(src: &Path) {
    fs::create_dir_all(src.join("docs/sub")).unwrap();
    fs::write(src.join("docs/a.txt"), b"snapshot a\n").unwrap();
    fs::write(src.join("docs/sub/b.txt"), b"snapshot b\n").unwrap();
    fs::write(src.join("top.txt"), b"snapshot top\n").unwrap();
}

/// A directory outside every restore target, with what it held and its mtime, to check that
/// nothing was written, created or removed there.
struct Outside {
    dir: PathBuf,
    mtime: (i64, i64),
}

impl Outside {
    fn new(env: &Env) -> Self {
        let dir = env.path("outside");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("sentinel.txt"), b"do not touch\n").unwrap();
        fs::write(dir.join("victim.txt"), b"victim\n").unwrap();
        fs::write(dir.join("linked.txt"), b"linked\n").unwrap();
        let m = fs::metadata(&dir).unwrap();
        Self {
            dir,
            mtime: (m.mtime(), m.mtime_nsec()),
        }
    }

    fn assert_untouched(&self) {
        assert_eq!(
            tree_paths(&self.dir),
            ["linked.txt", "sentinel.txt", "victim.txt"]
        );
        assert_eq!(
            fs::read(self.dir.join("sentinel.txt")).unwrap(),
            b"do not touch\n"
        );
        assert_eq!(fs::read(self.dir.join("victim.txt")).unwrap(), b"victim\n");
        assert_eq!(fs::read(self.dir.join("linked.txt")).unwrap(), b"linked\n");
        let m = fs::metadata(&self.dir).unwrap();
        assert_eq!(
            (m.mtime(), m.mtime_nsec()),
            self.mtime,
            "outside dir changed"
        );
    }
}

#[test]
fn symlinks_in_the_target_are_replaced_never_followed() {
    let env = Env::new();
    let src = env.path("src");
    write_tree(&src);
    env.init();
    let _ = env.ok(&["backup", arg(&src)]);
    let outside = Outside::new(&env);

    // The whole snapshot: its first directory (e.g. `tmp`) is a symlink in the target.
    let first = src
        .components()
        .find_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .unwrap();
    let t1 = env.path("t1");
    fs::create_dir(&t1).unwrap();
    symlink(&outside.dir, t1.join(&first)).unwrap();
    let _ = env.ok(&["restore", "latest", "--target", arg(&t1)]);
    outside.assert_untouched();
    assert!(fs::symlink_metadata(t1.join(&first)).unwrap().is_dir());
    assert_same_tree(&src, &t1.join(src.strip_prefix("/").unwrap()));

    // A subpath: `docs` is a symlink to the outside directory, `top.txt` a symlink to a file
    // there.
    let t2 = env.path("t2");
    fs::create_dir(&t2).unwrap();
    symlink(&outside.dir, t2.join("docs")).unwrap();
    symlink(outside.dir.join("victim.txt"), t2.join("top.txt")).unwrap();
    let spec = format!("latest:{}", src.display());
    let _ = env.ok(&["restore", &spec, "--target", arg(&t2), "--verify"]);
    outside.assert_untouched();
    assert!(fs::symlink_metadata(t2.join("docs")).unwrap().is_dir());
    assert!(fs::symlink_metadata(t2.join("top.txt")).unwrap().is_file());
    assert_same_tree(&src, &t2);

    // With --overwrite never the symlinked directory is left alone, with a warning, and
    // still nothing is written through it.
    let t3 = env.path("t3");
    fs::create_dir(&t3).unwrap();
    symlink(&outside.dir, t3.join("docs")).unwrap();
    let out = env.ok(&[
        "restore",
        &spec,
        "--target",
        arg(&t3),
        "--overwrite",
        "never",
    ]);
    outside.assert_untouched();
    assert!(fs::symlink_metadata(t3.join("docs"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(t3.join("top.txt")).unwrap(), b"snapshot top\n");
    let err = text(&out.stderr);
    assert!(
        err.lines()
            .any(|l| l.starts_with("warning: ") && l.contains("docs")),
        "{err}"
    );
}

#[test]
fn hard_links_in_the_target_are_replaced_not_written_through() {
    let env = Env::new();
    let src = env.path("src");
    write_tree(&src);
    env.init();
    let _ = env.ok(&["backup", arg(&src)]);
    let outside = Outside::new(&env);

    // `docs/a.txt` in the target is another name of a file outside it.
    let target = env.path("target");
    fs::create_dir_all(target.join("docs")).unwrap();
    fs::hard_link(outside.dir.join("linked.txt"), target.join("docs/a.txt")).unwrap();
    let spec = format!("latest:{}", src.display());
    let _ = env.ok(&["restore", &spec, "--target", arg(&target), "--verify"]);
    outside.assert_untouched();
    assert_eq!(
        fs::metadata(outside.dir.join("linked.txt"))
            .unwrap()
            .nlink(),
        1
    );
    assert_same_tree(&src, &target);
}

#[test]
fn overwrite_policies_decide_about_existing_files() {
    let env = Env::new();
    let src = env.path("src");
    write_tree(&src);
    env.init();
    let _ = env.ok(&["backup", arg(&src)]);
    let spec = format!("latest:{}", src.display());
    let target = env.path("target");
    fs::create_dir(&target).unwrap();
    let top = target.join("top.txt");
    let restore = |policy: &str| {
        let out = env.ok(&[
            "restore",
            &spec,
            "--target",
            arg(&target),
            "--overwrite",
            policy,
            "--json",
        ]);
        summary(&out)
    };

    // never: the existing file keeps its content; the rest is restored.
    fs::write(&top, b"mine").unwrap();
    let s = restore("never");
    assert_eq!(s["files_skipped"], 1, "{s}");
    assert_eq!(s["files_restored"], 2, "{s}");
    assert_eq!(fs::read(&top).unwrap(), b"mine");
    assert_eq!(
        fs::read(target.join("docs/a.txt")).unwrap(),
        b"snapshot a\n"
    );

    // if-changed: a file with the snapshot's size and mtime counts as unchanged and is kept
    // (whatever its bytes); one of another size is replaced.
    let want = fs::metadata(src.join("top.txt")).unwrap();
    fs::write(&top, b"SNAPSHOT TOP\n").unwrap();
    let t = TimeSpec::new(want.mtime(), want.mtime_nsec());
    utimensat(None, &top, &t, &t, UtimensatFlags::NoFollowSymlink).unwrap();
    let s = restore("if-changed");
    assert_eq!(s["files_skipped"], 3, "{s}");
    assert_eq!(fs::read(&top).unwrap(), b"SNAPSHOT TOP\n");
    fs::write(&top, b"other size").unwrap();
    let s = restore("if-changed");
    assert_eq!(s["files_skipped"], 2, "{s}");
    assert_eq!(s["files_restored"], 1, "{s}");
    assert_eq!(fs::read(&top).unwrap(), b"snapshot top\n");

    // always (the default): replaced.
    fs::write(&top, b"mine again").unwrap();
    let s = restore("always");
    assert_eq!(s["files_skipped"], 0, "{s}");
    assert_eq!(s["files_restored"], 3, "{s}");
    assert_same_tree(&src, &target);
}

#[test]
fn include_and_exclude_pick_what_is_restored() {
    let env = Env::new();
    let src = env.path("src");
    write_tree(&src);
    fs::write(src.join("docs/sub/c.md"), b"markdown\n").unwrap();
    fs::write(src.join("top.md"), b"top markdown\n").unwrap();
    fs::create_dir_all(src.join("other/deeper")).unwrap();
    fs::write(src.join("other/deeper/d.bin"), b"d").unwrap();
    fs::create_dir(src.join("empty_dir")).unwrap();
    env.init();
    let _ = env.ok(&["backup", arg(&src)]);
    let spec = format!("latest:{}", src.display());

    // Matching files, plus their parent directories; a matching directory brings its whole
    // subtree; directories holding nothing that matched are left out.
    let t1 = env.path("t1");
    let _ = env.ok(&[
        "restore",
        &spec,
        "--target",
        arg(&t1),
        "--include",
        "*.md",
        "--include",
        "other",
    ]);
    assert_eq!(
        tree_paths(&t1),
        [
            "docs",
            "docs/sub",
            "docs/sub/c.md",
            "other",
            "other/deeper",
            "other/deeper/d.bin",
            "top.md"
        ]
    );
    assert_eq!(fs::read(t1.join("docs/sub/c.md")).unwrap(), b"markdown\n");
    // The parent directories got their metadata too.
    for dir in ["docs", "docs/sub"] {
        let (s, t) = (
            fs::metadata(src.join(dir)).unwrap(),
            fs::metadata(t1.join(dir)).unwrap(),
        );
        assert_eq!(s.mode(), t.mode(), "{dir}");
        assert_eq!(
            (s.mtime(), s.mtime_nsec()),
            (t.mtime(), t.mtime_nsec()),
            "{dir}"
        );
    }

    // Excludes leave out matches and everything below them.
    let t2 = env.path("t2");
    let _ = env.ok(&[
        "restore",
        &spec,
        "--target",
        arg(&t2),
        "--exclude",
        "*.txt",
        "--exclude",
        "other",
    ]);
    assert_eq!(
        tree_paths(&t2),
        ["docs", "docs/sub", "docs/sub/c.md", "empty_dir", "top.md"]
    );
}

#[test]
fn overwrite_never_keeps_every_existing_entry_as_it_is() {
    let env = Env::new();
    let src = env.path("src");
    write_tree(&src);
    symlink("top.txt", src.join("link")).unwrap();
    fs::write(src.join("hard1"), b"linked content\n").unwrap();
    fs::hard_link(src.join("hard1"), src.join("hard2")).unwrap();
    nix::unistd::mkfifo(
        &src.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    env.init();
    let _ = env.ok(&["backup", arg(&src)]);

    // Existing regular files where the snapshot has a file, a symlink, the second name of a
    // hard-link pair and a fifo.
    let target = env.path("target");
    fs::create_dir(&target).unwrap();
    let mine = ["top.txt", "link", "hard2", "fifo"];
    for name in mine {
        let p = target.join(name);
        fs::write(&p, format!("my own {name}")).unwrap();
        fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let t = TimeSpec::new(1_234_567_890, 42);
        utimensat(None, &p, &t, &t, UtimensatFlags::NoFollowSymlink).unwrap();
    }
    let spec = format!("latest:{}", src.display());
    let out = env.ok(&[
        "restore",
        &spec,
        "--target",
        arg(&target),
        "--overwrite",
        "never",
        "--json",
    ]);
    let s = summary(&out);
    for name in mine {
        let p = target.join(name);
        let m = fs::symlink_metadata(&p).unwrap();
        assert!(m.is_file(), "{name} was replaced: {s}");
        assert_eq!(fs::read(&p).unwrap(), format!("my own {name}").as_bytes());
        assert_eq!(m.mode() & 0o7777, 0o600, "mode of {name} changed");
        assert_eq!(
            (m.mtime(), m.mtime_nsec()),
            (1_234_567_890, 42),
            "mtime of {name}"
        );
        assert_eq!(m.nlink(), 1, "{name}");
    }
    // What did not exist is restored.
    assert_eq!(fs::read(target.join("hard1")).unwrap(), b"linked content\n");
    assert_eq!(
        fs::read(target.join("docs/sub/b.txt")).unwrap(),
        b"snapshot b\n"
    );
}

#[test]
fn hard_link_whose_first_name_is_left_alone_gets_its_own_copy() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::create_dir(src.join("a")).unwrap();
    fs::write(src.join("a/hard1"), b"linked content\n").unwrap();
    fs::hard_link(src.join("a/hard1"), src.join("hard2")).unwrap();
    env.init();
    let _ = env.ok(&["backup", arg(&src)]);
    let spec = format!("latest:{}", src.display());
    let never = |target: &Path| {
        env.ok(&[
            "restore",
            &spec,
            "--target",
            arg(target),
            "--overwrite",
            "never",
        ])
    };

    // The first name exists and is kept: the second must not become a link to that file.
    let t1 = env.path("t1");
    fs::create_dir_all(t1.join("a")).unwrap();
    fs::write(t1.join("a/hard1"), b"mine\n").unwrap();
    let _ = never(&t1);
    assert_eq!(fs::read(t1.join("a/hard1")).unwrap(), b"mine\n");
    assert_eq!(fs::read(t1.join("hard2")).unwrap(), b"linked content\n");
    assert_eq!(fs::metadata(t1.join("hard2")).unwrap().nlink(), 1);

    // The first name lies below a symlink to outside the target, left alone: linking to it
    // would go through the symlink and give an outside file a name in the target.
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("hard1"), b"outside\n").unwrap();
    let t2 = env.path("t2");
    fs::create_dir(&t2).unwrap();
    symlink(&outside, t2.join("a")).unwrap();
    let _ = never(&t2);
    assert_eq!(fs::metadata(outside.join("hard1")).unwrap().nlink(), 1);
    assert_eq!(fs::read(outside.join("hard1")).unwrap(), b"outside\n");
    assert_eq!(tree_paths(&outside), ["hard1"]);
    assert_eq!(fs::read(t2.join("hard2")).unwrap(), b"linked content\n");
    assert!(fs::symlink_metadata(t2.join("a"))
        .unwrap()
        .file_type()
        .is_symlink());

    // And without the symlink's target file, the restore does not fail on the link.
    fs::remove_file(outside.join("hard1")).unwrap();
    let t3 = env.path("t3");
    fs::create_dir(&t3).unwrap();
    symlink(&outside, t3.join("a")).unwrap();
    let _ = never(&t3);
    assert_eq!(fs::read(t3.join("hard2")).unwrap(), b"linked content\n");
    assert!(tree_paths(&outside).is_empty());
}

/// A user without privileges restores a snapshot of read-only files and directories twice into
/// the same place: the second run replaces what the first made (it used to fail with
/// "Permission denied" and leave directories at mode 700), and both leave the snapshot's modes.
#[test]
fn a_user_restores_twice_over_read_only_files() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(src.join("ro/sub")).unwrap();
    fs::write(src.join("top.txt"), b"top\n").unwrap();
    fs::write(src.join("ro/a.txt"), b"a\n").unwrap();
    fs::write(src.join("ro/sub/b.txt"), b"b\n").unwrap();
    let modes = [
        ("top.txt", 0o444),
        ("ro/a.txt", 0o444),
        ("ro/sub/b.txt", 0o400),
        ("ro/sub", 0o500),
        ("ro", 0o555),
    ];
    for (p, m) in modes {
        fs::set_permissions(src.join(p), fs::Permissions::from_mode(m)).unwrap();
    }
    let _ = env.ok(&["backup", arg(&src)]);
    open_to_others(&env.path(""));
    chown_tree_nobody(&env.repo);
    let target = env.path("target");
    fs::create_dir(&target).unwrap();
    chown_nobody(&target);
    let spec = format!("latest:{}", src.display());
    for run in 1..=2 {
        let out = as_nobody(
            &env,
            &["--no-cache", "restore", &spec, "--target", arg(&target)],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "run {run}: {}",
            text(&out.stderr)
        );
        assert_eq!(fs::read(target.join("ro/sub/b.txt")).unwrap(), b"b\n");
        for (p, m) in modes {
            let got = fs::metadata(target.join(p)).unwrap().permissions().mode() & 0o7777;
            assert_eq!(got, m, "run {run}: mode of {p}");
        }
    }
}

/// A restore killed with SIGKILL at various moments leaves every file under its final name
/// complete (files are written under temporary names and renamed when complete); a rerun with
/// `--overwrite never --verify` keeps those, completes the rest, removes the temporary files
/// and verifies every file, kept or written.
#[test]
fn a_killed_restore_leaves_only_complete_files_and_a_rerun_completes_it() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    for i in 0..24u64 {
        fs::write(src.join(format!("d/f{i:02}")), noise(1 << 20, i)).unwrap();
    }
    fs::write(src.join("big"), noise(12 << 20, 99)).unwrap();
    let _ = env.ok(&["backup", arg(&src)]);
    let spec = format!("latest:{}", src.display());
    let mut interrupted = 0;
    for (i, delay_ms) in [30u64, 80, 150, 250, 400].into_iter().enumerate() {
        let target = env.path(&format!("target{i}"));
        let mut child = env
            .cairn()
            .args(["restore", &spec, "--target", arg(&target)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let status = child.wait().unwrap();
        let mut temps = 0;
        let mut missing = 0;
        for rel in ["big".to_string()]
            .into_iter()
            .chain((0..24).map(|i| format!("d/f{i:02}")))
        {
            match fs::read(target.join(&rel)) {
                Ok(bytes) => assert!(
                    bytes == fs::read(src.join(&rel)).unwrap(),
                    "{rel}: an incomplete file carries its final name (delay {delay_ms} ms)"
                ),
                Err(_) => missing += 1,
            }
        }
        for dir in [target.clone(), target.join("d")] {
            if let Ok(rd) = fs::read_dir(&dir) {
                for e in rd {
                    let name = e.unwrap().file_name().into_string().unwrap();
                    if name.starts_with(".cairn-restore-") {
                        temps += 1;
                    }
                }
            }
        }
        if !status.success() && (missing > 0 || temps > 0) {
            interrupted += 1;
        }
        let out = env.ok(&[
            "restore",
            &spec,
            "--target",
            arg(&target),
            "--overwrite",
            "never",
            "--verify",
        ]);
        assert!(
            text(&out.stdout).contains("verified 25 files: all match"),
            "{}",
            text(&out.stdout)
        );
        assert_same_tree(&src, &target);
    }
    assert!(interrupted > 0, "no restore was killed midway");
}

/// `--as-of` with a time copied from the `snapshots` table (to the second) picks the snapshot
/// taken in that second, not the one before (it had sub-seconds the table does not show).
#[test]
fn as_of_a_time_shown_to_the_second_picks_that_snapshot() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("v"), b"one\n").unwrap();
    let _ = env.ok(&["backup", arg(&src), "--time", "2026-11-01T10:00:00.250Z"]);
    fs::write(src.join("v"), b"two\n").unwrap();
    let _ = env.ok(&["backup", arg(&src), "--time", "2026-11-01T12:00:00.750Z"]);
    let target = env.path("t");
    let _ = env.ok(&[
        "restore",
        &format!("latest:{}", src.display()),
        "--as-of",
        "2026-11-01T12:00:00Z",
        "--target",
        arg(&target),
    ]);
    assert_eq!(fs::read(target.join("v")).unwrap(), b"two\n");
}

/// `--limit-upload` and `--limit-download` (KiB/s) hold a backup's writes and a restore's
/// reads to the rate: 1 MiB at 512 KiB/s takes well over a second each way (the bound is a
/// lower one, so a slow machine cannot fail it), and the data arrives intact.
#[test]
fn upload_and_download_limits_hold_transfers_to_the_rate() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("data"), noise(1 << 20, 5)).unwrap();
    let started = std::time::Instant::now();
    let _ = env.ok(&["--limit-upload", "512", "backup", arg(&src)]);
    let up = started.elapsed();
    assert!(
        up >= std::time::Duration::from_millis(1500),
        "backup took {up:?}"
    );

    let target = env.path("target");
    let spec = format!("latest:{}", arg(&src));
    let started = std::time::Instant::now();
    let _ = env.ok(&[
        "--limit-download",
        "512",
        "--no-cache",
        "restore",
        &spec,
        "--target",
        arg(&target),
    ]);
    let down = started.elapsed();
    assert!(
        down >= std::time::Duration::from_millis(1500),
        "restore took {down:?}"
    );
    assert_eq!(fs::read(target.join("data")).unwrap(), noise(1 << 20, 5));

    let out = env.run(&["--limit-upload", "0", "snapshots"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// `backup --pack-size` sets this backup's pack size (the repository's stays the default), and
/// `--read-concurrency` the files read at once; both are range-checked as usage errors.
#[test]
fn pack_size_and_read_concurrency_per_backup() {
    let packs_after = |args: &[&str]| -> u64 {
        let env = Env::new();
        env.init();
        let src = env.path("src");
        fs::create_dir_all(&src).unwrap();
        for i in 0..4u64 {
            fs::write(src.join(format!("f{i}")), noise(1 << 20, i)).unwrap();
        }
        let _ = env.ok(&[&["backup", arg(&src)][..], args].concat());
        let out = env.ok(&["check", "--json"]);
        let report = crate::support::json_lines(&out.stdout).pop().unwrap();
        report["packs"].as_u64().unwrap()
    };
    let default = packs_after(&[]);
    let small = packs_after(&["--pack-size", "1", "--read-concurrency", "1"]);
    assert!(
        small >= default + 2,
        "1 MiB packs: {small}, default: {default}"
    );

    let env = Env::new();
    env.init();
    for bad in [
        ["--pack-size", "0"],
        ["--pack-size", "513"],
        ["--read-concurrency", "0"],
    ] {
        let out = env.run(&[&["backup", "/tmp"][..], &bad].concat());
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
    }
}
