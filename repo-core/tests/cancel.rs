//! Cancellation: a backup cancelled through its `CancelToken` returns `Cancelled`, writes no
//! snapshot and no index, releases its lock, and leaves a repository in which the next backup
//! succeeds and `check` is clean (unreferenced packs allowed). Restore stops likewise, removes
//! the files it had not finished, and the same restore run again completes.

#[path = "support/fixture.rs"]
mod fixture;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use fixture::{ctx, noise, write, Fixture};
use repo_core::{
    BackupOptions, CancelToken, ErrorKind, FileType, OpCtx, Phase, Progress, ProgressEvent,
    RestoreOptions,
};

/// Cancels its token on the first `Advanced` event of `phase`.
struct CancelOnFirstAdvance {
    token: CancelToken,
    phase: Phase,
    advanced: AtomicU64,
}

impl CancelOnFirstAdvance {
    fn new(phase: Phase) -> Self {
        Self {
            token: CancelToken::new(),
            phase,
            advanced: AtomicU64::new(0),
        }
    }
}

impl Progress for CancelOnFirstAdvance {
    fn event(&self, event: &ProgressEvent<'_>) {
        if let ProgressEvent::Advanced { phase, .. } = event {
            if *phase == self.phase {
                let _ = self.advanced.fetch_add(1, Ordering::SeqCst);
                self.token.cancel();
            }
        }
    }
}

/// 300 files of 20 KiB: far more work than one progress event.
fn source(root: &Path) -> PathBuf {
    let src = root.join("src");
    for i in 0..300u64 {
        write(
            &src.join(format!("d{}/f{i:03}", i % 7)),
            &noise(20 * 1024, i),
        );
    }
    src
}

#[test]
fn cancelled_backup_writes_no_snapshot_and_the_next_one_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let mut fx = Fixture::memory();

    let sink = CancelOnFirstAdvance::new(Phase::Backup);
    let err = fx
        .backup_with(
            &OpCtx::new(&sink, &sink.token),
            &[&src],
            &BackupOptions::default(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert!(sink.advanced.load(Ordering::SeqCst) >= 1);
    assert!(
        fx.repo().snapshots(&ctx()).unwrap().is_empty(),
        "no snapshot"
    );
    assert!(
        fx.backend.list(FileType::Index).unwrap().is_empty(),
        "no index file"
    );
    assert!(
        fx.backend.list(FileType::Lock).unwrap().is_empty(),
        "lock released"
    );
    let report = fx.check(true);
    assert!(report.is_clean(), "{:?}", report.problems);

    // The next backup succeeds and everything checks out; leftovers are only unreferenced.
    let (summary, snapshot) = fx.backup_dir(&src);
    assert_eq!(summary.stats.files_new, 300);
    let report = fx.check(true);
    assert!(report.is_clean(), "{:?}", report.problems);
    let target = tmp.path().join("target");
    let _ = fx.restore_dir(&snapshot, &src, &target);
    fixture::assert_same_tree(&src, &target);
}

#[test]
fn backup_with_a_cancelled_token_does_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let mut fx = Fixture::memory();
    let token = CancelToken::new();
    token.cancel();
    let err = fx
        .backup_with(
            &OpCtx::new(&repo_core::NoProgress, &token),
            &[&src],
            &BackupOptions::default(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert!(fx.repo().snapshots(&ctx()).unwrap().is_empty());
    assert!(fx.backend.list(FileType::Lock).unwrap().is_empty());
}

#[test]
fn cancelled_restore_stops_with_cancelled() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let mut fx = Fixture::memory();
    let (_, snapshot) = fx.backup_dir(&src);
    let mut opts = RestoreOptions::default();
    opts.subpath = Some(src.clone());
    let plan = fx.repo().plan_restore(&ctx(), &snapshot, &opts).unwrap();
    let sink = CancelOnFirstAdvance::new(Phase::Restore);
    let target = tmp.path().join("target");
    let err = fx
        .repo()
        .restore(&OpCtx::new(&sink, &sink.token), &plan, &target)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert!(fx.backend.list(FileType::Lock).unwrap().is_empty());
    // No file is left partly written: each one there is whole, the rest are absent.
    let (mut whole, mut absent) = (0, 0);
    for i in 0..300u64 {
        let rel = format!("d{}/f{i:03}", i % 7);
        match std::fs::read(target.join(&rel)) {
            Ok(bytes) => {
                assert!(bytes == noise(20 * 1024, i), "{rel}: partly written");
                whole += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => absent += 1,
            Err(e) => panic!("{rel}: {e}"),
        }
    }
    assert!(absent > 0, "cancelled before the end ({whole} whole)");
    // The same restore again completes it.
    let _ = fx.repo().restore(&ctx(), &plan, &target).unwrap();
    fixture::assert_same_tree(&src, &target);
}
