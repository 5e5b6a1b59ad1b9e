//! Repository and cache files an attacker (or a broken disk) controls (issue 9, items 5 and 6):
//! lock files with names and bodies that are not locks, FIFOs and symlinks to `/dev/zero` in
//! place of repository and cache files, lock waits that overflow the clock, locks dated in the
//! future and temporary files that a killed backup leaves. Each one gets a clear error or
//! warning, never a panic or a hang.

#[path = "support/fixture.rs"]
mod fixture;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use fixture::{ctx, noise, secret, write, Fixture};
use repo_core::format::lock::LockFile;
use repo_core::{
    Backend, BackupOptions, ErrorKind, FileType, Id, IndexId, KeyId, LocalBackend, LockMode,
    OpenOptions, Repository, RestoreOptions, Unlock,
};

/// How long an operation on a hostile file may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(30);

/// Runs `f` on another thread and returns its result, failing the test when it has not
/// finished within [`HANG`] (a read blocked on a FIFO never would).
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let _ = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(HANG)
        .unwrap_or_else(|_| panic!("{what} did not finish within {HANG:?}: it hangs"))
}

/// The two things put in place of a repository file: a FIFO, and a symlink to `/dev/zero`.
#[derive(Debug, Clone, Copy)]
enum Hostile {
    Fifo,
    DevZero,
}

const HOSTILE: [Hostile; 2] = [Hostile::Fifo, Hostile::DevZero];

/// Replaces the file at `path` by `what`.
fn replace(path: &Path, what: Hostile) {
    fs::remove_file(path).unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
    match what {
        Hostile::Fifo => nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display())),
        Hostile::DevZero => std::os::unix::fs::symlink("/dev/zero", path)
            .unwrap_or_else(|e| panic!("symlink {}: {e}", path.display())),
    }
}

/// Asserts that `err` names `path` and says that it is not a regular file.
fn assert_not_regular(err: &repo_core::Error, path: &Path, what: Hostile) {
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "{what:?}: the error names {}: {msg}",
        path.display()
    );
    assert!(
        msg.contains("not a regular file"),
        "{what:?}: the error says why: {msg}"
    );
    assert!(!err.is_transient(), "{what:?}: not worth a retry: {err:?}");
}

/// A local repository with one snapshot of a few files over several data packs.
fn local_repo(root: &Path) -> (Fixture, repo_core::Snapshot) {
    let mut fx = Fixture::local(&root.join("repo"));
    write(&root.join("src/a.bin"), &noise(1_300_000, 1));
    write(&root.join("src/b.bin"), &noise(1_300_000, 2));
    write(&root.join("src/small.txt"), b"small");
    let (_, snapshot) = fx.backup_dir(&root.join("src"));
    (fx, snapshot)
}

fn pack_path(repo: &Path, name: &str) -> PathBuf {
    repo.join("data").join(&name[..2]).join(name)
}

fn only_name(repo: &Path, dir: &str) -> String {
    let mut names: Vec<String> = fs::read_dir(repo.join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(names.len(), 1, "{dir}: {names:?}");
    names.pop().unwrap()
}

#[test]
fn a_pack_replaced_by_a_fifo_or_a_symlink_to_dev_zero_is_refused_by_restore() {
    for what in HOSTILE {
        let tmp = tempfile::tempdir().unwrap();
        let (fx, snapshot) = local_repo(tmp.path());
        let repo_dir = tmp.path().join("repo");
        let loc = fx.data_blob_locations()[0];
        let path = pack_path(&repo_dir, &loc.pack.to_hex());
        replace(&path, what);

        let repo = Arc::new(fx.open(&secret()).unwrap());
        let target = tmp.path().join("target");
        let err = within("restore", move || {
            let plan = repo.plan_restore(&ctx(), &snapshot, &RestoreOptions::default())?;
            repo.restore(&ctx(), &plan, &target).map(|_| ())
        })
        .unwrap_err();
        assert_not_regular(&err, &path, what);

        // The backend refuses it whole and by range.
        let backend = LocalBackend::new(&repo_dir);
        let name = loc.pack.to_hex();
        let err = within("read", {
            let b = backend.clone();
            let n = name.clone();
            move || b.read(FileType::Pack, &n)
        })
        .unwrap_err();
        assert_not_regular(&err, &path, what);
        let err = within("read_range", move || {
            backend.read_range(FileType::Pack, &name, 0, 16)
        })
        .unwrap_err();
        assert_not_regular(&err, &path, what);
    }
}

#[test]
fn config_key_index_and_snapshot_files_that_are_not_regular_files_are_refused() {
    for what in HOSTILE {
        let tmp = tempfile::tempdir().unwrap();
        let (fx, snapshot) = local_repo(tmp.path());
        let repo_dir = tmp.path().join("repo");
        let repo = Arc::new(fx.open(&secret()).unwrap());

        // A snapshot, an index file and a key file, each read by name through the library.
        let path = repo_dir.join("snapshots").join(snapshot.id.to_hex());
        replace(&path, what);
        let err = within("load_snapshot", {
            let repo = Arc::clone(&repo);
            let id = snapshot.id;
            move || repo.load_snapshot(&id).map(|_| ())
        })
        .unwrap_err();
        assert_not_regular(&err, &path, what);

        let index = only_name(&repo_dir, "index");
        let path = repo_dir.join("index").join(&index);
        replace(&path, what);
        let err = within("load_index_file", {
            let repo = Arc::clone(&repo);
            let id = IndexId(Id::from_hex(&index).unwrap());
            move || repo.load_index_file(&id).map(|_| ())
        })
        .unwrap_err();
        assert_not_regular(&err, &path, what);

        let key = only_name(&repo_dir, "keys");
        let path = repo_dir.join("keys").join(&key);
        replace(&path, what);
        let err = within("load_key_header", {
            let repo = Arc::clone(&repo);
            let id = KeyId(Id::from_hex(&key).unwrap());
            move || repo.load_key_header(&id).map(|_| ())
        })
        .unwrap_err();
        assert_not_regular(&err, &path, what);

        // A lock file: refused when read by name; listings, and so lock checks, skip it.
        let name = "ef".repeat(32);
        let path = repo_dir.join("locks").join(&name);
        fs::write(&path, b"x").unwrap();
        replace(&path, what);
        let err = within("read lock", {
            let dir = repo_dir.clone();
            move || LocalBackend::new(dir).read(FileType::Lock, &name)
        })
        .unwrap_err();
        assert_not_regular(&err, &path, what);
        let guard = within("lock", {
            let repo = Arc::clone(&repo);
            move || {
                repo.lock(repo_core::LockMode::Exclusive, "prune", Duration::ZERO)
                    .map(|_| ())
            }
        });
        assert!(guard.is_ok(), "{what:?}: {guard:?}");

        // The config, read when the repository is opened.
        let path = repo_dir.join("config");
        replace(&path, what);
        let err = within("open", {
            let dir = repo_dir.clone();
            move || {
                Repository::open(
                    Arc::new(LocalBackend::new(dir)),
                    &secret(),
                    &OpenOptions::default(),
                )
                .map(|_| ())
            }
        })
        .unwrap_err();
        assert_not_regular(&err, &path, what);
        let backend = LocalBackend::new(&repo_dir);
        let err = backend.size(FileType::Config, "config").unwrap_err();
        assert_not_regular(&err, &path, what);
    }
}

#[test]
fn cached_files_that_are_not_regular_files_are_not_read() {
    for what in HOSTILE {
        let tmp = tempfile::tempdir().unwrap();
        let (fx, snapshot) = local_repo(tmp.path());
        let repo_dir = tmp.path().join("repo");
        let cache = tmp.path().join("cache");
        let mut opts = OpenOptions::default();
        opts.cache_dir = Some(cache.clone());
        let open = {
            let (dir, opts) = (repo_dir.clone(), opts.clone());
            move || {
                Repository::open(Arc::new(LocalBackend::new(&dir)), &secret(), &opts)
                    .and_then(|r| r.into_indexed(&ctx()))
            }
        };
        // Fill the cache: index files, the snapshot, and the tree pack (read by a listing).
        {
            let repo = open().unwrap();
            let _ = repo.load_snapshot(&snapshot.id).unwrap();
            repo.walk_tree(&snapshot.meta.tree, Path::new("/"), &mut |_| Ok(true))
                .unwrap();
        }
        drop(fx);
        let repo_cache = cache.join(hex::encode(open().unwrap().config().repo_id));
        let mut replaced = 0;
        for sub in ["index", "snapshots", "data"] {
            for entry in fs::read_dir(repo_cache.join(sub)).unwrap() {
                replace(&entry.unwrap().path(), what);
                replaced += 1;
            }
        }
        assert!(replaced >= 3, "the cache held {replaced} files");

        // Every read falls back to the repository, and works.
        let open_again = open.clone();
        let listed = within("cached read", move || {
            let open = open_again;
            let repo = open()?;
            let snap = repo.load_snapshot(&snapshot.id)?;
            let mut n = 0;
            repo.walk_tree(&snap.meta.tree, Path::new("/"), &mut |_| {
                n += 1;
                Ok(true)
            })?;
            Ok::<_, repo_core::Error>(n)
        })
        .unwrap_or_else(|e| panic!("{what:?}: {e}"));
        assert!(listed >= 3, "{listed} entries");
    }
}

/// Writes a lock file with the given name and bytes, as a broken or hostile writer would.
fn plant_raw_lock(repo_dir: &Path, name: &str, bytes: &[u8]) {
    fs::write(repo_dir.join("locks").join(name), bytes).unwrap();
}

#[test]
fn a_lock_with_a_name_or_body_that_does_not_parse_is_an_unreadable_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut fx, snapshot) = local_repo(tmp.path());
    let repo_dir = tmp.path().join("repo");
    // A name whose 8th byte is inside a character, and garbage of a hex name.
    for (name, body) in [
        ("aaaaaaaé", &b"not a lock"[..]),
        ("é", b""),
        (&"ab".repeat(32)[..], &noise(100, 9)[..]),
    ] {
        plant_raw_lock(&repo_dir, name, body);
        let shown = if name.len() == 64 { &name[..8] } else { name };

        let err = fx
            .backup_with(
                &ctx(),
                &[&tmp.path().join("src")],
                &BackupOptions::default(),
            )
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
        let msg = err.to_string();
        assert!(msg.contains("unreadable lock"), "{msg}");
        assert!(msg.contains(shown), "names the lock {name:?}: {msg}");
        // The error carries the lock, for the caller's advice: unreadable, so never stale.
        let holder = err.lock_holder().expect("a locked error names the lock");
        assert_eq!(holder.name, name);
        assert!(holder.lock.is_none() && !holder.is_stale(), "{holder:?}");

        let err = fx
            .repo()
            .check(&ctx(), &repo_core::CheckOptions::default())
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
        let err = fx
            .restore(&snapshot, &RestoreOptions::default(), &tmp.path().join("t"))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Locked, "{err}");

        let found = fx.repo().locks().unwrap();
        assert_eq!(found.len(), 1);
        assert!(found[0].lock.is_none());
        assert!(
            found[0].describe().contains(shown),
            "{}",
            found[0].describe()
        );
        // Not stale: only an explicit removal of all locks clears it, and it does.
        assert_eq!(fx.repo().unlock(Unlock::Stale).unwrap(), 0);
        assert_eq!(fx.repo().unlock(Unlock::All).unwrap(), 1);
        assert!(fx.backend.list(FileType::Lock).unwrap().is_empty());
        let _ = fx.backup_dir(&tmp.path().join("src"));
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[test]
fn a_lock_dated_in_the_future_says_so_and_far_future_ones_are_suspicious() {
    let lock = |ahead_ns: i64| LockFile {
        exclusive: true,
        hostname: "elsewhere.example".into(),
        username: "mallory".into(),
        pid: 4242,
        time_ns: now_ns().saturating_add(ahead_ns),
        operation: "prune".into(),
    };
    let mut fx = Fixture::memory();
    // A lock as the library lists and describes it, then removed again.
    let described = |fx: &Fixture, ahead_ns: i64| {
        let _ = fx.plant_lock(&lock(ahead_ns));
        let found = fx.repo().locks().unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(fx.repo().unlock(Unlock::All).unwrap(), 1);
        (found[0].describe(), found[0].is_far_future())
    };
    // 228 years ahead, as in the report.
    let (far, far_future) = described(&fx, 7_203_844_395 * 1_000_000_000);
    assert!(!far.contains('-'), "no negative age: {far}");
    assert!(far.contains("in the future"), "{far}");
    assert!(far.contains("suspicious"), "{far}");
    assert!(far.contains("years"), "{far}");
    assert!(far_future);
    // A clock a little ahead is named, without alarm.
    let (near, near_far_future) = described(&fx, 90 * 1_000_000_000);
    assert!(
        near.contains("in the future") && !near.contains("suspicious"),
        "{near}"
    );
    assert!(!near_far_future);
    // Past locks read as before.
    let (past, past_far_future) = described(&fx, -5 * 1_000_000_000);
    assert!(past.contains("refreshed 5s ago"), "{past}");
    assert!(!past_far_future);

    let _ = fx.plant_lock(&lock(i64::MAX / 2));
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("src/f"), b"x");
    let err = fx
        .backup_with(
            &ctx(),
            &[&tmp.path().join("src")],
            &BackupOptions::default(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked);
    let msg = err.to_string();
    assert!(
        msg.contains("in the future") && msg.contains("suspicious"),
        "{msg}"
    );
    // The error carries the lock: dated so far ahead that plain unlock will not remove it.
    let holder = err.lock_holder().expect("a locked error names the lock");
    assert!(holder.is_far_future() && !holder.is_stale(), "{holder:?}");
}

#[test]
fn a_lock_wait_beyond_the_clock_is_invalid_input_not_a_panic() {
    let fx = Fixture::memory();
    for wait in [Duration::MAX, Duration::from_secs(u64::MAX / 2)] {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fx.repo().lock(LockMode::Shared, "backup", wait).map(|_| ())
        }));
        let err = r
            .unwrap_or_else(|_| panic!("lock_wait {wait:?} panics"))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("lock wait"), "{err}");
    }
    // The longest wait accepted still works (nothing conflicts, so it returns at once).
    let _g = fx
        .repo()
        .lock(LockMode::Shared, "backup", repo_core::MAX_LOCK_WAIT)
        .unwrap();
}

#[test]
fn check_names_temporary_files_of_interrupted_writes_as_warnings() {
    let tmp = tempfile::tempdir().unwrap();
    let (fx, _) = local_repo(tmp.path());
    let repo_dir = tmp.path().join("repo");
    let leftovers = [
        format!("data/ab/.tmp-{}-0123456789abcdef", "ab".repeat(32)),
        format!("index/.tmp-{}-fedcba9876543210", "cd".repeat(32)),
        ".tmp-config-00112233445566778".to_string(),
    ];
    for rel in &leftovers {
        write(&repo_dir.join(rel), b"half a pack");
    }
    let report = fx.check(false);
    assert!(report.is_clean(), "not damage: {:?}", report.problems);
    let mut expected: Vec<String> = leftovers.to_vec();
    expected.sort();
    assert_eq!(report.temporary_files, expected);
}
