//! Faults injected with repo-testkit's `FaultyBackend` (issue: reliability §3) and what the repository does about each
//! fault: transient failures are retried, permanent ones fail the operation cleanly, short or
//! empty uploads reported as successful are caught, corrupted reads are named, stale and paged
//! listings never lead to a snapshot that references data not durably stored. Storage that
//! runs full (reliability §6/§9) fails a backup cleanly, without retries, and the next backup
//! succeeds once there is space; a restore that fails halfway leaves no partly written file.

use std::path::Path;
use std::sync::Arc;

use repo_core::{
    Backend, BackupOptions, ErrorKind, FileType, InitOptions, KdfParams, OpCtx, OpenOptions,
    Repository, RestoreOptions, Secret, SnapshotFilter,
};
use repo_testkit::{Fault, FaultyBackend};

fn secret() -> Secret {
    Secret::password("faults")
}

fn init(backend: &FaultyBackend) -> Repository<repo_core::Indexed> {
    let mut o = InitOptions::default();
    o.kdf = KdfParams::insecure_fast();
    o.chunker = repo_core::ChunkerParams {
        min: 256,
        avg: 1024,
        max: 4096,
    };
    o.pack_size = 1 << 20;
    Repository::init(Arc::new(backend.clone()), &secret(), &o)
        .unwrap()
        .into_indexed(&OpCtx::default())
        .unwrap()
}

fn open(backend: &FaultyBackend) -> Repository<repo_core::Indexed> {
    Repository::open(
        Arc::new(backend.clone()),
        &secret(),
        &OpenOptions::default(),
    )
    .unwrap()
    .into_indexed(&OpCtx::default())
    .unwrap()
}

fn source(dir: &Path, seed: u8) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for i in 0..5u8 {
        let data: Vec<u8> = (0..40_000u32)
            .map(|j| (j.wrapping_mul(31) as u8) ^ i ^ seed)
            .collect();
        std::fs::write(dir.join("sub").join(format!("f{i}")), data).unwrap();
    }
    std::fs::write(dir.join("top.txt"), vec![seed; 3000]).unwrap();
}

/// The layout of [`source`] with incompressible content: about 3 MiB, so several packs.
fn random_source(dir: &Path, seed: u64) {
    let mut rng = repo_testkit::Xorshift::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut noise = |len: usize| rng.bytes(len);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for i in 0..5u8 {
        std::fs::write(dir.join("sub").join(format!("f{i}")), noise(600_000)).unwrap();
    }
    std::fs::write(dir.join("top.txt"), noise(3000)).unwrap();
}

fn snapshot_count(backend: &FaultyBackend) -> usize {
    backend.inner().list(FileType::Snapshot).unwrap().len()
}

/// Restores the latest snapshot and compares it with `src`.
fn assert_latest_restores(backend: &FaultyBackend, src: &Path) {
    let repo = open(backend);
    let ctx = OpCtx::default();
    let snap = repo
        .find_snapshot(&ctx, "latest", &SnapshotFilter::default())
        .unwrap();
    let mut o = RestoreOptions::default();
    o.subpath = Some(src.to_path_buf());
    let plan = repo.plan_restore(&ctx, &snap, &o).unwrap();
    let target = tempfile::tempdir().unwrap();
    let _ = repo.restore(&ctx, &plan, target.path()).unwrap();
    for f in ["top.txt", "sub/f0", "sub/f4"] {
        assert_eq!(
            std::fs::read(target.path().join(f)).unwrap(),
            std::fs::read(src.join(f)).unwrap(),
            "{f}"
        );
    }
    let report = repo
        .check(&ctx, &repo_core::CheckOptions::default())
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}

#[test]
fn transient_write_failures_are_retried_and_the_backup_completes() {
    let b = FaultyBackend::new();
    let repo = init(&b);
    let src = tempfile::tempdir().unwrap();
    source(src.path(), 1);
    b.inject(Fault::WriteTransient(FileType::Pack));
    b.inject(Fault::WriteTransient(FileType::Index));
    b.inject(Fault::WriteTransient(FileType::Snapshot));
    let s = repo
        .backup(
            &OpCtx::default(),
            &[src.path().to_path_buf()],
            &BackupOptions::default(),
        )
        .unwrap();
    assert!(s.snapshot.is_some());
    assert_eq!(b.fired().len(), 3, "every fault fired");
    assert_latest_restores(&b, src.path());
}

#[test]
fn permanent_write_failure_fails_cleanly_and_leaves_no_snapshot() {
    for t in [FileType::Pack, FileType::Index, FileType::Snapshot] {
        let b = FaultyBackend::new();
        let repo = init(&b);
        let src = tempfile::tempdir().unwrap();
        source(src.path(), 2);
        b.inject(Fault::WritePermanent(t));
        let err = repo
            .backup(
                &OpCtx::default(),
                &[src.path().to_path_buf()],
                &BackupOptions::default(),
            )
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Backend, "{t:?}: {err}");
        assert!(err.to_string().contains("403 access denied"), "{err}");
        assert_eq!(
            snapshot_count(&b),
            0,
            "{t:?}: no snapshot after a failed upload"
        );
        // The next backup succeeds, and the repository is whole.
        let repo = open(&b);
        let s = repo
            .backup(
                &OpCtx::default(),
                &[src.path().to_path_buf()],
                &BackupOptions::default(),
            )
            .unwrap();
        assert!(s.snapshot.is_some());
        assert_latest_restores(&b, src.path());
    }
}

#[test]
fn short_and_empty_uploads_reported_as_success_are_caught() {
    for fault in [
        Fault::WriteShort(FileType::Pack),
        Fault::WriteEmpty(FileType::Pack),
    ] {
        let b = FaultyBackend::new();
        let repo = init(&b);
        let src = tempfile::tempdir().unwrap();
        source(src.path(), 3);
        b.inject(fault);
        // The size check after the upload sees the short object; the retry rewrites it whole.
        let s = repo
            .backup(
                &OpCtx::default(),
                &[src.path().to_path_buf()],
                &BackupOptions::default(),
            )
            .unwrap();
        assert!(s.snapshot.is_some());
        assert_eq!(b.fired(), vec![fault]);
        assert_latest_restores(&b, src.path());
    }
    // A backend that keeps storing short objects makes the backup fail, never succeed wrongly.
    let b = FaultyBackend::new();
    let repo = init(&b);
    let src = tempfile::tempdir().unwrap();
    source(src.path(), 4);
    for _ in 0..10 {
        b.inject(Fault::WriteShort(FileType::Pack));
    }
    let err = repo
        .backup(
            &OpCtx::default(),
            &[src.path().to_path_buf()],
            &BackupOptions::default(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("bytes after the upload"), "{err}");
    assert_eq!(snapshot_count(&b), 0);
}

#[test]
fn corrupted_reads_are_reported_naming_the_object() {
    let b = FaultyBackend::new();
    let repo = init(&b);
    let src = tempfile::tempdir().unwrap();
    source(src.path(), 5);
    let _ = repo
        .backup(
            &OpCtx::default(),
            &[src.path().to_path_buf()],
            &BackupOptions::default(),
        )
        .unwrap();
    // A flipped byte in a snapshot file read: the hash no longer matches its name.
    let repo = open(&b);
    b.inject(Fault::ReadCorrupt(FileType::Snapshot));
    let err = repo.snapshots(&OpCtx::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.to_string().starts_with("snapshot "), "{err}");
    // A flipped byte in a pack range read during restore names the pack.
    let snap = repo
        .find_snapshot(&OpCtx::default(), "latest", &SnapshotFilter::default())
        .unwrap();
    let mut o = RestoreOptions::default();
    o.subpath = Some(src.path().to_path_buf());
    let plan = repo.plan_restore(&OpCtx::default(), &snap, &o).unwrap();
    b.inject(Fault::ReadCorrupt(FileType::Pack));
    let target = tempfile::tempdir().unwrap();
    let err = repo
        .restore(&OpCtx::default(), &plan, target.path())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("pack "), "{err}");
    // Read again without the fault: the data was never damaged, only the transfer.
    let target = tempfile::tempdir().unwrap();
    let _ = repo
        .restore(&OpCtx::default(), &plan, target.path())
        .unwrap();
}

#[test]
fn stale_index_listing_never_produces_a_snapshot_with_missing_data() {
    let b = FaultyBackend::new();
    let repo = init(&b);
    let src = tempfile::tempdir().unwrap();
    for seed in 0..3u8 {
        source(src.path(), 10 + seed);
        let _ = repo
            .backup(
                &OpCtx::default(),
                &[src.path().to_path_buf()],
                &BackupOptions::default(),
            )
            .unwrap();
    }
    // The next open sees only one of the index files (a stale or truncated listing). Blobs it
    // does not know are simply stored again: the new snapshot is complete regardless.
    b.inject(Fault::ListPartial(FileType::Index));
    let repo = open(&b);
    assert!(repo.index_files().len() < 3);
    source(src.path(), 11);
    let s = repo
        .backup(
            &OpCtx::default(),
            &[src.path().to_path_buf()],
            &BackupOptions::default(),
        )
        .unwrap();
    assert!(s.snapshot.is_some());
    assert_latest_restores(&b, src.path());
}

#[test]
fn empty_or_garbage_index_file_is_skipped_and_named() {
    let b = FaultyBackend::new();
    let repo = init(&b);
    let src = tempfile::tempdir().unwrap();
    source(src.path(), 20);
    let _ = repo
        .backup(
            &OpCtx::default(),
            &[src.path().to_path_buf()],
            &BackupOptions::default(),
        )
        .unwrap();
    // A newest index file that is empty (crash on a file system without ordering guarantees).
    let name = repo_core::Id::hash(b"").to_hex();
    b.inner().write(FileType::Index, &name, &[]).unwrap();
    let repo = open(&b);
    assert_eq!(repo.skipped_index_files().len(), 1);
    assert_eq!(repo.skipped_index_files()[0].0, name);
    let report = repo
        .check(&OpCtx::default(), &repo_core::CheckOptions::default())
        .unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| format!("{p:?}").contains(&name)),
        "check names the skipped file"
    );
    // Everything else still works.
    let snap = repo
        .find_snapshot(&OpCtx::default(), "latest", &SnapshotFilter::default())
        .unwrap();
    let mut o = RestoreOptions::default();
    o.subpath = Some(src.path().to_path_buf());
    let plan = repo.plan_restore(&OpCtx::default(), &snap, &o).unwrap();
    let target = tempfile::tempdir().unwrap();
    let _ = repo
        .restore(&OpCtx::default(), &plan, target.path())
        .unwrap();
}

#[test]
fn full_storage_fails_the_backup_at_once_and_the_next_backup_succeeds() {
    // Full while packs are written (1.5 MB of room for 3 MB), when the index is written, when
    // the snapshot is written.
    let cases = [
        ("data/", Some(1_500_000), None),
        ("index/", None, Some(FileType::Index)),
        ("snapshots/", None, Some(FileType::Snapshot)),
    ];
    for (object, room, full_at) in cases {
        let b = FaultyBackend::new();
        let repo = init(&b);
        let src = tempfile::tempdir().unwrap();
        random_source(src.path(), 7);
        b.set_capacity(room.map(|r: u64| b.used() + r));
        if let Some(t) = full_at {
            b.fill_at(t);
        }
        let err = repo
            .backup(
                &OpCtx::default(),
                &[src.path().to_path_buf()],
                &BackupOptions::default(),
            )
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Backend, "{object}: {err}");
        assert!(err.is_storage_full(), "{object}: {err:?}");
        assert!(
            err.to_string().contains(&format!("write {object}"))
                && err.to_string().contains("No space left on device"),
            "{object}: {err}"
        );
        let refused = b.take_refused();
        assert!(!refused.is_empty(), "{object}");
        let mut names: Vec<_> = refused.iter().map(|(_, n)| n.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), refused.len(), "{object}: retried {refused:?}");
        assert_eq!(snapshot_count(&b), 0, "{object}: no snapshot");
        assert!(
            b.inner().list(FileType::Lock).unwrap().is_empty(),
            "{object}: lock released"
        );
        if object == "data/" {
            assert!(
                b.inner().list(FileType::Index).unwrap().is_empty(),
                "no index without the packs it lists"
            );
        }

        // Space is back: the next backup succeeds, restores, and check is clean (the packs
        // stored before the disk ran full are at most unreferenced).
        b.unlimited();
        let repo = open(&b);
        let s = repo
            .backup(
                &OpCtx::default(),
                &[src.path().to_path_buf()],
                &BackupOptions::default(),
            )
            .unwrap();
        assert!(s.snapshot.is_some());
        assert_eq!(snapshot_count(&b), 1);
        assert_latest_restores(&b, src.path());
    }
}

#[test]
fn failed_restore_leaves_no_partly_written_file_and_a_rerun_completes() {
    let b = FaultyBackend::new();
    let repo = init(&b);
    let src = tempfile::tempdir().unwrap();
    random_source(src.path(), 8);
    let _ = repo
        .backup(
            &OpCtx::default(),
            &[src.path().to_path_buf()],
            &BackupOptions::default(),
        )
        .unwrap();
    let repo = open(&b);
    assert!(
        b.inner().list(FileType::Pack).unwrap().len() >= 3,
        "several packs"
    );
    let ctx = OpCtx::default();
    let snap = repo
        .find_snapshot(&ctx, "latest", &SnapshotFilter::default())
        .unwrap();
    let mut o = RestoreOptions::default();
    o.subpath = Some(src.path().to_path_buf());
    let plan = repo.plan_restore(&ctx, &snap, &o).unwrap();
    let files = ["top.txt", "sub/f0", "sub/f1", "sub/f2", "sub/f3", "sub/f4"];

    // One pack read arrives damaged: the restore stops with an error.
    b.inject(Fault::ReadCorrupt(FileType::Pack));
    let target = tempfile::tempdir().unwrap();
    let err = repo.restore(&ctx, &plan, target.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    let mut missing = 0;
    for f in files {
        match std::fs::read(target.path().join(f)) {
            Ok(bytes) => assert!(
                bytes == std::fs::read(src.path().join(f)).unwrap(),
                "{f}: a partly written file was left behind"
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing += 1,
            Err(e) => panic!("{f}: {e}"),
        }
    }
    assert!(missing > 0, "the file with the damaged blob is not there");

    // The same restore again, without the fault, completes.
    let _ = repo.restore(&ctx, &plan, target.path()).unwrap();
    for f in files {
        assert!(
            std::fs::read(target.path().join(f)).unwrap()
                == std::fs::read(src.path().join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn overlapping_paged_listings_count_everything_once() {
    let b = FaultyBackend::new();
    let repo = init(&b);
    let src = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for seed in 0..4u8 {
        source(src.path(), 30 + seed);
        let s = repo
            .backup(
                &OpCtx::default(),
                &[src.path().to_path_buf()],
                &BackupOptions::default(),
            )
            .unwrap();
        ids.push(s.snapshot.unwrap());
    }
    for t in [FileType::Snapshot, FileType::Index, FileType::Pack] {
        b.inject(Fault::ListPagedOverlap(t));
    }
    assert!(
        b.list(FileType::Snapshot).unwrap().len() > 4,
        "listings really overlap"
    );
    let repo = open(&b);
    let snaps = repo.snapshots(&OpCtx::default()).unwrap();
    let mut listed: Vec<_> = snaps.iter().map(|s| s.id).collect();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids, "each snapshot exactly once");
    let report = repo
        .check(&OpCtx::default(), &repo_core::CheckOptions::default())
        .unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(report.unreferenced_packs.is_empty(), "{report:?}");
    assert_eq!(report.snapshots, 4);
    // A backup through paged listings still writes a complete snapshot.
    source(src.path(), 40);
    let s = repo
        .backup(
            &OpCtx::default(),
            &[src.path().to_path_buf()],
            &BackupOptions::default(),
        )
        .unwrap();
    assert!(s.snapshot.is_some());
    assert_latest_restores(&b, src.path());
}
