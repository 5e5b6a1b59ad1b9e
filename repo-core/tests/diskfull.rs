//! A real file system that runs full (reliability §6, core §9): a tmpfs of a few MiB holds a
//! local repository, or a restore target. The operation fails with an error marked
//! `is_storage_full`, leaves no temporary or partly written file, and succeeds when run again
//! once there is space.
//!
//! Mounting needs root (CI runs as root); elsewhere these tests print "skipped: needs root to
//! mount tmpfs" and return. `faults.rs` covers the same behaviour with a simulated full backend
//! and an interrupted restore on every machine.

#[path = "support/fixture.rs"]
mod fixture;

use std::fs;
use std::path::{Path, PathBuf};

use fixture::{ctx, noise, write, Fixture};
use repo_core::{BackupOptions, ErrorKind, Overwrite, RestoreOptions};
use repo_testkit::Tmpfs;

/// About 6 MiB that compression cannot shrink: six 1 MiB files and 100 small ones.
fn source(root: &Path) -> PathBuf {
    let src = root.join("src");
    for i in 0..6u64 {
        write(&src.join(format!("big/{i}.bin")), &noise(1 << 20, i));
    }
    for i in 0..100u64 {
        write(
            &src.join(format!("small/{i:03}.txt")),
            &noise(2000, 1000 + i),
        );
    }
    src
}

#[test]
fn backup_into_a_full_local_repository_fails_cleanly_and_succeeds_later() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&tmp.path().join("disk"), "4m") else {
        return;
    };
    let src = source(tmp.path());
    let root = disk.path().join("repo");
    let mut fx = Fixture::local(&root);

    let err = fx
        .backup_with(&ctx(), &[&src], &BackupOptions::default())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(err.is_storage_full() && !err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("No space left on device"), "{err}");
    // No temporary file (`.tmp-*`; nothing else in the layout starts with a dot), no lock,
    // no snapshot.
    let hidden: Vec<_> = fixture::entries(&root)
        .into_keys()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
    assert_eq!(fs::read_dir(root.join("locks")).unwrap().count(), 0);
    assert!(fx.repo().snapshots(&ctx()).unwrap().is_empty());
    let report = fx.check(false);
    assert!(report.is_clean(), "{:?}", report.problems);

    disk.resize("64m");
    let (_, snapshot) = fx.backup_dir(&src);
    let report = fx.check(true);
    assert!(report.is_clean(), "{:?}", report.problems);
    let target = tmp.path().join("target");
    let _ = fx.restore_dir(&snapshot, &src, &target);
    fixture::assert_same_tree(&src, &target);
}

#[test]
fn restore_onto_a_full_file_system_removes_partial_files_and_a_rerun_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&tmp.path().join("disk"), "2m") else {
        return;
    };
    let src = source(tmp.path());
    let mut fx = Fixture::memory();
    let (_, snapshot) = fx.backup_dir(&src);
    let target = disk.path().join("target");
    let mut opts = RestoreOptions::default();
    opts.subpath = Some(src.clone());

    let err = fx.restore(&snapshot, &opts, &target).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.is_storage_full(), "{err:?}");
    assert!(
        err.to_string().contains(&target.display().to_string()),
        "names the file: {err}"
    );
    let mut absent = 0;
    for (rel, meta) in fixture::entries(&src) {
        if !meta.is_file() {
            continue;
        }
        match fs::read(target.join(&rel)) {
            Ok(bytes) => assert!(
                bytes == fs::read(src.join(&rel)).unwrap(),
                "{}: partly written file left behind",
                rel.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => absent += 1,
            Err(e) => panic!("{}: {e}", rel.display()),
        }
    }
    assert!(absent > 0);

    // Space is back; `if-changed` keeps nothing unfinished (complete files still have the
    // restore's times), and the result is the snapshot exactly.
    disk.resize("64m");
    opts.overwrite = Overwrite::IfChanged;
    let _ = fx.restore(&snapshot, &opts, &target).unwrap();
    fixture::assert_same_tree(&src, &target);
}

#[test]
fn restore_that_runs_out_of_inodes_leaves_no_empty_shells() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&tmp.path().join("disk"), "64m,nr_inodes=40") else {
        return;
    };
    let src = source(tmp.path());
    let mut fx = Fixture::memory();
    let (_, snapshot) = fx.backup_dir(&src);
    let target = disk.path().join("target");
    let mut opts = RestoreOptions::default();
    opts.subpath = Some(src.clone());

    // Creating the 40th inode fails, before any content is written: every file made so far
    // would be a full-length file of zeros.
    let err = fx.restore(&snapshot, &opts, &target).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.is_storage_full(), "{err:?}");
    assert!(
        err.to_string().starts_with("create "),
        "fails making a file: {err}"
    );
    let files: Vec<_> = fixture::entries(&target)
        .into_iter()
        .filter(|(_, m)| !m.is_dir())
        .map(|(p, _)| p)
        .collect();
    assert!(files.is_empty(), "left behind: {files:?}");

    disk.resize("64m,nr_inodes=1000");
    let _ = fx.restore(&snapshot, &opts, &target).unwrap();
    fixture::assert_same_tree(&src, &target);
}
