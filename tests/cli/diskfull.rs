//! A file system that runs full (reliability §6): a backup into a local repository on a full
//! tmpfs, and a restore onto one, fail with one clear line, leave nothing half-written behind,
//! and succeed when run again once there is space.
//!
//! Mounting a tmpfs needs root (CI runs as root); elsewhere these tests print "skipped: needs
//! root to mount tmpfs" and return. `repo-core/tests/faults.rs` covers the same behaviour of the
//! library on every machine.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::support::{
    arg, assert_same_tree, noise, one_error_line, text, tree_paths, write_sample_tree, Env, Tmpfs,
};

/// Snapshot ids as `snapshots --json` lists them.
fn snapshot_ids(env: &Env) -> Vec<String> {
    env.snapshots()
        .iter()
        .map(|s| s["id"].as_str().expect("snapshot id").to_string())
        .collect()
}

/// Asserts that the repository holds no temporary files (the local backend writes objects as
/// `.tmp-<name>-<random>` and renames them; no other name in the layout starts with a dot)
/// and no lock.
fn assert_nothing_half_written(repo: &Path) {
    let hidden: Vec<String> = tree_paths(repo)
        .into_iter()
        .filter(|p| {
            Path::new(p)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    assert!(hidden.is_empty(), "temporary files left: {hidden:?}");
    assert_eq!(
        fs::read_dir(repo.join("locks")).unwrap().count(),
        0,
        "lock left"
    );
}

/// Every entry below `root` as relative paths (byte-exact, unlike [`tree_paths`]).
fn entries(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().to_path_buf());
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn backup_into_a_full_repository_fails_cleanly_and_the_next_one_succeeds() {
    let mut env = Env::new();
    let Some(disk) = Tmpfs::mount(&env.path("disk"), "8m") else {
        return;
    };
    env.repo = disk.path().join("repo");
    // Small packs, so the failing backup stores several before the disk is full.
    let _ = env.ok(&["init", "--insecure-kdf", "--pack-size", "1"]);
    let small = env.path("small");
    fs::create_dir(&small).unwrap();
    fs::write(small.join("a.txt"), b"first\n").unwrap();
    let _ = env.ok(&["backup", arg(&small)]);
    let before = snapshot_ids(&env);
    assert_eq!(before.len(), 1);

    // About 12 MiB that compression cannot shrink, for an 8 MiB file system.
    let src = env.path("src");
    write_sample_tree(&src);
    for i in 0..3u64 {
        fs::write(src.join(format!("noise{i}.bin")), noise(3 << 20, 100 + i)).unwrap();
    }
    let out = env.run(&["backup", arg(&src)]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a full disk is a fatal error (exit 1)\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let line = one_error_line(&out.stderr);
    assert!(line.contains("No space left on device"), "{line}");
    assert!(
        line.contains(&format!("{}/data/", env.repo.display())),
        "names the pack being written: {line}"
    );
    assert!(
        line.ends_with(
            "no snapshot was saved; free space on the repository's file system \
             (or raise its quota) and run `cairn backup` again"
        ),
        "{line}"
    );
    assert_nothing_half_written(&env.repo);
    assert_eq!(snapshot_ids(&env), before, "snapshot list changed");

    // Consistent: the packs stored before the disk ran full are listed by no index, which
    // `check` notes without counting them as problems (exit 0).
    let out = env.run(&["check"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("no problems found"), "{stdout}");
    assert!(
        stdout.contains("is not referenced by any index"),
        "{stdout}"
    );

    // Space is back: the same backup succeeds and restores byte for byte.
    disk.resize("64m");
    let _ = env.ok(&["backup", arg(&src)]);
    let after = snapshot_ids(&env);
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.contains(&before[0]));
    assert_nothing_half_written(&env.repo);
    let target = env.path("target");
    let spec = format!("latest:{}", src.display());
    let _ = env.ok(&["restore", &spec, "--target", arg(&target)]);
    assert_same_tree(&src, &target);
    let out = env.ok(&["check", "--read-data"]);
    assert!(text(&out.stdout).contains("no problems found"));
}

#[test]
fn restore_onto_a_full_file_system_leaves_no_partial_file_and_a_rerun_completes() {
    // The rerun a user would type: the same command (default `--overwrite always`), or
    // `--overwrite if-changed` to skip what is already there.
    for rerun in [None, Some("if-changed")] {
        let env = Env::new();
        let Some(disk) = Tmpfs::mount(&env.path("disk"), "4m") else {
            return;
        };
        // About 7 MiB, incompressible, for a 4 MiB file system; many small files and a hard
        // link too.
        let src = env.path("src");
        write_sample_tree(&src);
        for i in 0..4u64 {
            fs::write(src.join(format!("noise{i}.bin")), noise(1 << 20, 200 + i)).unwrap();
        }
        fs::hard_link(src.join("noise0.bin"), src.join("noise0.link")).unwrap();
        fs::create_dir(src.join("small")).unwrap();
        for i in 0..50 {
            fs::write(
                src.join(format!("small/{i}.txt")),
                format!("small file {i}\n"),
            )
            .unwrap();
        }
        env.init();
        let _ = env.ok(&["backup", arg(&src)]);

        let target = disk.path().join("restored");
        let spec = format!("latest:{}", src.display());
        let out = env.run(&["restore", &spec, "--target", arg(&target)]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "stdout: {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let line = one_error_line(&out.stderr);
        assert!(line.contains("No space left on device"), "{line}");
        assert!(
            line.ends_with(
                "files that were not completely written were removed; free space on the \
                 restore target's file system (or raise its quota) and run `cairn restore` again"
            ),
            "{line}"
        );
        // Every file present is complete; what could not be finished is absent.
        let mut missing = 0;
        for rel in entries(&src) {
            let (s, t) = (src.join(&rel), target.join(&rel));
            if !fs::symlink_metadata(&s).unwrap().is_file() {
                continue;
            }
            match fs::symlink_metadata(&t) {
                Ok(m) => {
                    assert!(m.is_file(), "{}", t.display());
                    assert!(
                        fs::read(&t).unwrap() == fs::read(&s).unwrap(),
                        "{}: a partly written file was left behind",
                        t.display()
                    );
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing += 1,
                Err(e) => panic!("{}: {e}", t.display()),
            }
        }
        assert!(missing > 0, "the restore failed, so something is missing");
        for rel in entries(&target) {
            assert!(
                fs::symlink_metadata(src.join(&rel)).is_ok(),
                "{}: not in the snapshot",
                rel.display()
            );
        }

        disk.resize("64m");
        let mut args = vec!["restore", &spec, "--target", arg(&target)];
        if let Some(mode) = rerun {
            args.extend(["--overwrite", mode]);
        }
        let _ = env.ok(&args);
        assert_same_tree(&src, &target);
        assert_eq!(
            fs::metadata(target.join("noise0.link")).unwrap().ino(),
            fs::metadata(target.join("noise0.bin")).unwrap().ino(),
            "hard link restored"
        );
    }
}
