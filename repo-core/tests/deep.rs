//! Very deep trees: 10,000 nested directories make paths of 20,000 bytes, five times what one
//! system call accepts (`PATH_MAX`). Backup, restore, check and listing must all get through
//! them without a stack overflow and without losing the bottom of the tree.

#[path = "support/fixture.rs"]
mod fixture;

use std::fs;
use std::os::fd::RawFd;
use std::path::Path;

use fixture::Fixture;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{mkdirat, Mode};
use nix::unistd::close;
use repo_core::NodeKind;

const LEVELS: usize = 10_000;
/// Every this many levels a file records its depth.
const MARK_EVERY: usize = 1_000;

fn open_dir(at: RawFd, name: &str) -> RawFd {
    openat(
        Some(at),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .unwrap_or_else(|e| panic!("open {name}: {e}"))
}

/// Writes `name` in the directory open as `at` (named through procfs: its path is too long).
fn write_file(at: RawFd, name: &str, content: &[u8]) {
    fs::write(format!("/proc/self/fd/{at}/{name}"), content).unwrap();
}

/// `root/d/d/.../d` with `LEVELS` directories, a `mark` file every `MARK_EVERY` levels and a
/// `bottom` file in the deepest one. Built with descriptors: the paths are too long to name.
fn build_deep(root: &Path) {
    fs::create_dir_all(root).unwrap();
    let mut fd = open_dir(nix::libc::AT_FDCWD, root.to_str().unwrap());
    for level in 1..=LEVELS {
        mkdirat(Some(fd), "d", Mode::from_bits_truncate(0o755)).unwrap();
        let next = open_dir(fd, "d");
        close(fd).unwrap();
        fd = next;
        if level % MARK_EVERY == 0 {
            write_file(fd, "mark", format!("level {level}\n").as_bytes());
        }
    }
    write_file(fd, "bottom", b"the bottom of the tree\n");
    close(fd).unwrap();
}

/// Walks `root/d/d/...` down with descriptors and returns the depth reached and what the
/// `mark` and `bottom` files hold.
fn read_deep(root: &Path) -> (usize, Vec<String>) {
    let mut fd = open_dir(nix::libc::AT_FDCWD, root.to_str().unwrap());
    let mut depth = 0;
    let mut found = Vec::new();
    loop {
        for name in ["mark", "bottom"] {
            if let Ok(text) = fs::read_to_string(format!("/proc/self/fd/{fd}/{name}")) {
                found.push(text);
            }
        }
        match openat(
            Some(fd),
            "d",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(next) => {
                close(fd).unwrap();
                fd = next;
                depth += 1;
            }
            Err(_) => break,
        }
    }
    close(fd).unwrap();
    (depth, found)
}

#[test]
fn ten_thousand_levels_back_up_restore_and_check() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_deep(&src);
    let (depth, expected) = read_deep(&src);
    assert_eq!(depth, LEVELS);
    assert_eq!(expected.len(), LEVELS / MARK_EVERY + 1);

    let mut fx = Fixture::memory();
    let (summary, snap) = fx.backup_dir(&src);
    assert!(
        summary.skipped.is_empty(),
        "nothing may be skipped: {:?}",
        summary.skipped.first()
    );
    // The levels plus the directories above `src` (the root itself is not counted).
    assert_eq!(
        summary.stats.dirs as usize,
        LEVELS + src.components().count() - 1
    );
    assert_eq!(summary.stats.files_new as usize, expected.len());

    // The listing reaches the bottom.
    let listing = fx.listing(&snap, &src);
    let deepest = listing
        .iter()
        .filter(|(_, k)| **k == NodeKind::Dir)
        .map(|(p, _)| p.components().count())
        .max()
        .unwrap();
    assert_eq!(deepest, LEVELS);

    let report = fx.check(true);
    assert!(report.is_clean(), "{report:?}");

    let target = tmp.path().join("restored");
    let restored = fx.restore_dir(&snap, &src, &target);
    assert_eq!(restored.dirs as usize, LEVELS);
    assert_eq!(restored.files_restored as usize, expected.len());
    assert!(
        restored.warnings.is_empty(),
        "{:?}",
        restored.warnings.first()
    );
    let (depth, found) = read_deep(&target);
    assert_eq!(depth, LEVELS);
    assert_eq!(found, expected);

    // An unchanged re-backup of the deep tree reads nothing again.
    let (again, _) = fx.backup_dir(&src);
    assert_eq!(again.stats.files_unmodified as usize, expected.len());
    assert_eq!(again.stats.bytes_read, 0);
}

/// A directory large enough that its tree is walked node by node (over 1 MiB encoded), not
/// decoded whole: listing, restore and an unchanged re-backup see every entry.
#[test]
fn a_directory_of_twenty_thousand_files_walks_restores_and_rebacks_up() {
    const N: usize = 20_000;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("big");
    fs::create_dir(&src).unwrap();
    for i in 0..N {
        fs::write(
            src.join(format!("entry-{i:06}")),
            if i % 1000 == 0 { &b"x"[..] } else { b"" },
        )
        .unwrap();
    }
    let mut fx = Fixture::memory();
    let (first, snap) = fx.backup_dir(&src);
    assert_eq!(first.stats.files_new as usize, N);
    let listing = fx.listing(&snap, &src);
    assert_eq!(listing.len(), N);
    assert!(listing
        .keys()
        .zip(listing.keys().skip(1))
        .all(|(a, b)| a < b));

    let target = tmp.path().join("out");
    let restored = fx.restore_dir(&snap, &src, &target);
    assert_eq!(restored.files_restored as usize, N);
    assert_eq!(fs::read_dir(&target).unwrap().count(), N);
    assert_eq!(fs::read(target.join("entry-001000")).unwrap(), b"x");

    let (again, _) = fx.backup_dir(&src);
    assert_eq!(again.stats.files_unmodified as usize, N);
    assert_eq!(again.stats.bytes_read, 0);
}
