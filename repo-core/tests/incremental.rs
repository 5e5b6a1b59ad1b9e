//! Incremental backups: with a parent snapshot only new and changed files are read, `force`
//! reads everything again, and every snapshot keeps restoring its own version of a file.

#[path = "support/fixture.rs"]
mod fixture;

use std::fs;
use std::path::Path;

use fixture::{noise, write, Fixture};
use repo_core::{BackupOptions, ParentSelection};

const FILE_LEN: usize = 10_000;

fn source(root: &Path) {
    for i in 0..5u64 {
        write(&root.join(format!("f{i}.bin")), &noise(FILE_LEN, i));
    }
    write(&root.join("sub/deep.bin"), &noise(FILE_LEN, 100));
}

#[test]
fn second_backup_reads_only_new_and_changed_files() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    source(&src);
    let mut fx = Fixture::memory();

    let (first, snap1) = fx.backup_dir(&src);
    assert_eq!(first.parent, None);
    assert_eq!(
        (
            first.stats.files_new,
            first.stats.files_changed,
            first.stats.files_unmodified
        ),
        (6, 0, 0)
    );
    assert_eq!(first.stats.bytes_read, 6 * FILE_LEN as u64);

    // Change one file (new size, so even a coarse clock cannot hide the change), add another.
    let changed = noise(12_345, 1000);
    write(&src.join("f1.bin"), &changed);
    write(&src.join("sub/new.bin"), &noise(3_000, 1001));

    let (second, snap2) = fx.backup_dir(&src);
    assert_eq!(
        second.parent,
        Some(snap1.id),
        "the first snapshot is the parent"
    );
    assert_eq!(snap2.meta.parent, Some(snap1.id));
    assert_eq!(
        (
            second.stats.files_new,
            second.stats.files_changed,
            second.stats.files_unmodified
        ),
        (1, 1, 5)
    );
    assert_eq!(
        second.stats.bytes_read,
        12_345 + 3_000,
        "only changed and new bytes are read"
    );
    assert_eq!(
        second.stats.bytes_total,
        6 * FILE_LEN as u64 + 12_345 - 10_000 + 3_000
    );

    // Nothing changed: nothing is read, and no content is stored again.
    let data_before = data_blobs(&fx);
    let (third, _) = fx.backup_dir(&src);
    assert_eq!(
        (
            third.stats.files_new,
            third.stats.files_changed,
            third.stats.files_unmodified
        ),
        (0, 0, 7)
    );
    assert_eq!(third.stats.bytes_read, 0);
    assert_eq!(data_blobs(&fx), data_before);

    // `force` reads every file again, though all of them are in the parent.
    let mut force = BackupOptions::default();
    force.force = true;
    let (forced, _) = fx.backup(&[&src], &force);
    assert_eq!(
        (
            forced.stats.files_new,
            forced.stats.files_changed,
            forced.stats.files_unmodified
        ),
        (0, 7, 0)
    );
    assert_eq!(
        forced.stats.bytes_read,
        5 * FILE_LEN as u64 + 12_345 + 3_000
    );
    assert_eq!(
        data_blobs(&fx),
        data_before,
        "re-read content is already stored"
    );

    // No parent: every file is new.
    let mut orphan = BackupOptions::default();
    orphan.parent = ParentSelection::None;
    let (no_parent, _) = fx.backup(&[&src], &orphan);
    assert_eq!(no_parent.parent, None);
    assert_eq!(no_parent.stats.files_new, 7);

    // Each snapshot restores its own version.
    let old = tmp.path().join("old");
    let _ = fx.restore_dir(&snap1, &src, &old);
    assert_eq!(fs::read(old.join("f1.bin")).unwrap(), noise(FILE_LEN, 1));
    assert!(!old.join("sub/new.bin").exists());
    let new = tmp.path().join("new");
    let _ = fx.restore_dir(&snap2, &src, &new);
    assert_eq!(fs::read(new.join("f1.bin")).unwrap(), changed);
    assert_eq!(
        fs::read(new.join("sub/new.bin")).unwrap(),
        noise(3_000, 1001)
    );
    fixture::assert_same_tree(&src, &new);
    assert!(fx.check(true).is_clean());
}

#[test]
fn explicit_parent_and_changed_metadata_are_honoured() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    source(&src);
    let mut fx = Fixture::memory();
    let (_, snap1) = fx.backup_dir(&src);
    // A snapshot of other paths is never chosen automatically...
    let other = tmp.path().join("other");
    write(&other.join("x"), b"x");
    let (_, other_snap) = fx.backup_dir(&other);
    let (auto, _) = fx.backup_dir(&src);
    assert_eq!(auto.parent, Some(snap1.id));
    // ...but can be given explicitly; then no file of `src` is found in it.
    let mut opts = BackupOptions::default();
    opts.parent = ParentSelection::Id(other_snap.id);
    let (explicit, _) = fx.backup(&[&src], &opts);
    assert_eq!(explicit.parent, Some(other_snap.id));
    assert_eq!(explicit.stats.files_new, 6);

    // Same size and mtime but a new inode (replaced by rename): read again.
    let f0 = src.join("f0.bin");
    let meta = fs::metadata(&f0).unwrap();
    let replacement = src.join("f0.tmp");
    fs::copy(&f0, &replacement).unwrap();
    fs::rename(&replacement, &f0).unwrap();
    let mtime = filetime(&meta);
    fixture::set_mtime(&f0, mtime.0, mtime.1);
    let (after, _) = fx.backup_dir(&src);
    assert_eq!(after.stats.files_changed, 1);
    assert_eq!(after.stats.bytes_read, FILE_LEN as u64);
}

/// Data blobs in the index.
fn data_blobs(fx: &Fixture) -> usize {
    fx.data_blob_locations().len()
}

fn filetime(meta: &fs::Metadata) -> (i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (meta.mtime(), meta.mtime_nsec())
}
