//! Repository locks as operations meet them: an exclusive holder makes backup, restore and
//! check fail with `Locked` once `lock_wait` is over, shared holders coexist, a waiting backup
//! proceeds when the lock goes away, and stale locks are recognised. Shared holders really do
//! run side by side: a check whose index predates a concurrent backup's snapshot stays clean.

#[path = "support/fixture.rs"]
mod fixture;

use std::path::Path;
use std::time::{Duration, Instant};

use fixture::{ctx, write, Fixture};
use repo_core::format::lock::LockFile;
use repo_core::{BackupOptions, CheckOptions, ErrorKind, FileType, LockMode, RestoreOptions};

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn lock_names(fx: &Fixture) -> Vec<String> {
    let mut names: Vec<String> = fx
        .backend
        .list(FileType::Lock)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    names.sort();
    names
}

fn source(root: &Path) -> std::path::PathBuf {
    let src = root.join("src");
    write(&src.join("file.txt"), b"locked out");
    src
}

fn backup_waiting(fx: &mut Fixture, src: &Path, wait: Duration) -> repo_core::Result<()> {
    let mut opts = BackupOptions::default();
    opts.lock_wait = wait;
    fx.backup_with(&ctx(), &[src], &opts).map(|_| ())
}

#[test]
fn exclusive_lock_makes_operations_fail_with_locked_after_lock_wait() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let mut fx = Fixture::memory();
    let (_, snapshot) = fx.backup_dir(&src);
    let guard = fx
        .repo()
        .lock(LockMode::Exclusive, "prune", Duration::ZERO)
        .unwrap();

    let wait = Duration::from_millis(400);
    let started = Instant::now();
    let err = backup_waiting(&mut fx, &src, wait).unwrap_err();
    let waited = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    assert!(waited >= wait, "gave up after {waited:?}, before lock_wait");
    assert!(waited < wait + Duration::from_secs(5), "waited {waited:?}");
    let message = err.to_string();
    assert!(
        message.contains("exclusive") && message.contains("prune"),
        "{message}"
    );
    assert_eq!(
        fx.repo().snapshots(&ctx()).unwrap().len(),
        1,
        "no new snapshot"
    );

    let mut restore = RestoreOptions::default();
    restore.subpath = Some(src.clone());
    let err = fx
        .restore(&snapshot, &restore, &tmp.path().join("target"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    let err = fx
        .repo()
        .check(&ctx(), &CheckOptions::default())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");

    drop(guard);
    assert!(lock_names(&fx).is_empty(), "the guard removed its lock");
    backup_waiting(&mut fx, &src, Duration::ZERO).unwrap();
    assert!(lock_names(&fx).is_empty(), "the backup removed its lock");
}

#[test]
fn shared_locks_coexist_and_exclude_exclusive() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let mut fx = Fixture::memory();
    let shared = fx
        .repo()
        .lock(LockMode::Shared, "restore", Duration::ZERO)
        .unwrap();
    let held = lock_names(&fx);
    backup_waiting(&mut fx, &src, Duration::ZERO).unwrap();
    assert_eq!(lock_names(&fx), held, "only the held lock remains");
    let err = fx
        .repo()
        .lock(LockMode::Exclusive, "prune", Duration::ZERO)
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Locked);
    assert!(err.to_string().contains("restore"), "{err}");
    drop(shared);
    assert!(fx
        .repo()
        .lock(LockMode::Exclusive, "prune", Duration::ZERO)
        .is_ok());
}

#[test]
fn waiting_backup_proceeds_once_the_lock_is_released() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let mut fx = Fixture::memory();
    let guard = fx
        .repo()
        .lock(LockMode::Exclusive, "prune", Duration::ZERO)
        .unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(guard);
    });
    let started = Instant::now();
    backup_waiting(&mut fx, &src, Duration::from_secs(20)).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    release.join().unwrap();
    assert_eq!(fx.repo().snapshots(&ctx()).unwrap().len(), 1);
}

#[test]
fn check_ignores_a_snapshot_saved_after_its_index_was_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let mut fx = Fixture::memory();
    let _ = fx.backup_dir(&src);
    // A second process (the check) loads the index; then a backup running alongside saves a
    // snapshot whose trees are only in an index file written after that load.
    let checker = fx.open(&fixture::secret()).unwrap();
    write(&src.join("new.txt"), b"written meanwhile");
    let _ = fx.backup_dir(&src);

    let mut opts = CheckOptions::default();
    opts.read_data = true;
    let report = checker.check(&ctx(), &opts).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.snapshots, 1, "only the snapshot its index covers");
    assert!(
        !report.unreferenced_packs.is_empty(),
        "the newer backup's packs are not in the loaded index"
    );
    let report = fx.check(true);
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.snapshots, 2);
    assert!(report.unreferenced_packs.is_empty());
}

#[test]
fn stale_lock_of_a_dead_process_on_this_host_is_cleared() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let mut fx = Fixture::memory();
    // A process that has exited (and been reaped) on this host.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    let _ = child.wait().unwrap();
    let stale = fx.plant_lock(&LockFile {
        exclusive: true,
        hostname: repo_core::fuzzing::hostname(),
        username: "ghost".into(),
        pid: dead_pid,
        time_ns: now_ns(),
        operation: "prune".into(),
    });
    assert_eq!(lock_names(&fx), vec![stale]);
    backup_waiting(&mut fx, &src, Duration::ZERO).unwrap();
    assert!(
        lock_names(&fx).is_empty(),
        "the stale lock was removed and the backup's own released"
    );
}

#[test]
fn locks_of_other_hosts_block_until_they_are_old() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let mut fx = Fixture::memory();
    let fresh = fx.plant_lock(&LockFile {
        exclusive: true,
        hostname: "elsewhere.example".into(),
        username: "alice".into(),
        // Alive or not, a process on another host cannot be checked from here.
        pid: 1,
        time_ns: now_ns(),
        operation: "prune".into(),
    });
    let err = backup_waiting(&mut fx, &src, Duration::ZERO).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked);
    assert!(err.to_string().contains("alice@elsewhere.example"), "{err}");
    // The error carries the lock: another host's, whose process this host cannot check.
    let holder = err.lock_holder().expect("a locked error names the lock");
    assert_eq!(holder.name, fresh);
    assert!(!holder.on_this_host() && !holder.is_stale(), "{holder:?}");

    // Not refreshed for over 30 minutes: stale, ignored, but left for `unlock` to remove.
    fx.backend.delete(FileType::Lock, &fresh).unwrap();
    let old = fx.plant_lock(&LockFile {
        exclusive: true,
        hostname: "elsewhere.example".into(),
        username: "alice".into(),
        pid: 1,
        time_ns: now_ns() - 31 * 60 * 1_000_000_000,
        operation: "prune".into(),
    });
    backup_waiting(&mut fx, &src, Duration::ZERO).unwrap();
    assert_eq!(lock_names(&fx), vec![old]);
}
