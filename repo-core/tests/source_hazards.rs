//! Hazards at the source: files deleted, truncated or rewritten while a backup reads them,
//! directories replaced by files mid-walk, symlink loops, and FIFOs (unreadable entries: roundtrip.rs). Each
//! backup must finish with a snapshot, report what it skipped, and that snapshot must check
//! clean and restore to a state the source really passed through. A directory swapped for a
//! symlink mid-walk is never followed. Also: how backup paths with symlinked prefixes (and `/`)
//! are resolved, times a snapshot cannot hold, and the ETA scan.

#[path = "support/fixture.rs"]
mod fixture;

use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use fixture::{Fixture, Notes};
use repo_core::{BackupOptions, RestoreOptions};

const FILES: usize = 24;
/// Big enough that reading one takes a while (several chunks at the test chunk size).
const FILE_LEN: usize = 1024 * 1024;

/// Version `v` of file `i`: every byte identifies both, so any mix of versions is detectable.
fn content(i: usize, v: u8) -> Vec<u8> {
    (0..FILE_LEN)
        .map(|k| (i as u8).wrapping_mul(31) ^ v.wrapping_mul(7) ^ ((k / 4096) as u8))
        .collect()
}

fn build(src: &Path) {
    fs::create_dir_all(src.join("dir/inner")).unwrap();
    for i in 0..FILES {
        fs::write(src.join(format!("f{i:02}")), content(i, 0)).unwrap();
    }
    fs::write(src.join("dir/inner/file"), b"inside\n").unwrap();
    // Symlink loops are stored as symlinks, never followed.
    std::os::unix::fs::symlink("loop", src.join("loop")).unwrap();
    std::os::unix::fs::symlink("b", src.join("a")).unwrap();
    std::os::unix::fs::symlink("a", src.join("b")).unwrap();
    std::os::unix::fs::symlink(".", src.join("self")).unwrap();
    // A FIFO with no writer: opening it for reading would block the backup forever.
    nix::unistd::mkfifo(
        &src.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
}

/// Keeps changing the source until `stop`: truncates, rewrites, deletes and recreates files,
/// and swaps the directory `dir` for a file and back.
fn churn(src: PathBuf, stop: Arc<AtomicBool>) {
    let mut round = 0usize;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let i = round % FILES;
        let f = src.join(format!("f{i:02}"));
        match round % 4 {
            0 => {
                let _ = fs::OpenOptions::new()
                    .write(true)
                    .open(&f)
                    .map(|h| h.set_len(0));
            }
            1 => {
                let _ = fs::write(&f, content(i, 1));
            }
            2 => {
                let _ = fs::remove_file(&f);
            }
            _ => {
                let _ = fs::write(&f, content(i, 0));
            }
        }
        if round.is_multiple_of(7) {
            let d = src.join("dir");
            if d.is_dir() {
                let _ = fs::remove_dir_all(&d);
                let _ = fs::write(&d, b"now a file\n");
            } else {
                let _ = fs::remove_file(&d);
                let _ = fs::create_dir_all(d.join("inner"));
                let _ = fs::write(d.join("inner/file"), b"inside\n");
            }
        }
        thread::sleep(Duration::from_micros(200));
    }
}

/// A restored `fNN` holds what the backup read: a whole version, a prefix of one when the file
/// was truncated while it was read, or, when it was rewritten in place while it was read, the
/// first version up to where the reader was and the second after it. Every byte is the byte of
/// one version at that offset: nothing from elsewhere, nothing misplaced.
fn plausible(i: usize, got: &[u8]) -> bool {
    let (v0, v1) = (content(i, 0), content(i, 1));
    got.len() <= FILE_LEN
        && got
            .iter()
            .enumerate()
            .all(|(j, b)| *b == v0[j] || *b == v1[j])
}

#[test]
fn backups_of_a_changing_tree_finish_and_restore_what_they_read() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build(&src);
    let mut fx = Fixture::memory();

    let stop = Arc::new(AtomicBool::new(false));
    let mutator = {
        let (src, stop) = (src.clone(), Arc::clone(&stop));
        thread::spawn(move || churn(src, stop))
    };
    // A watchdog: a backup that opened the FIFO would hang forever instead of failing.
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let started = Instant::now();
            while !done.load(Ordering::Relaxed) {
                if started.elapsed() > Duration::from_secs(300) {
                    eprintln!("backups hung for 5 minutes: was the FIFO opened?");
                    std::process::exit(1);
                }
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // Six backups at least, and more until one of them saw a file change while it read it
    // (the reader's warning): the test proves that the source changed under a backup.
    let mut snapshots = Vec::new();
    let mut changed_while_read = 0;
    while snapshots.len() < 6 || (changed_while_read == 0 && snapshots.len() < 60) {
        let notes = Notes::default();
        let cancel = repo_core::CancelToken::new();
        let summary = fx
            .backup_with(
                &repo_core::OpCtx::new(&notes, &cancel),
                &[src.as_path()],
                &BackupOptions::default(),
            )
            .unwrap_or_else(|e| panic!("backup of a changing tree failed: {e}"));
        assert_eq!(summary.stats.errors_skipped as usize, summary.skipped.len());
        changed_while_read += notes
            .take()
            .iter()
            .filter(|(_, m)| m.contains("changed while it was read"))
            .count();
        snapshots.push(fx.snapshot(&summary.snapshot.unwrap()));
    }
    assert!(
        changed_while_read > 0,
        "no file changed while a backup read it in {} backups",
        snapshots.len()
    );
    done.store(true, Ordering::Relaxed);
    watchdog.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    mutator.join().unwrap();

    let report = fx.check(true);
    assert!(report.is_clean(), "{report:?}");
    for (n, snap) in snapshots.iter().enumerate() {
        let target = tmp.path().join(format!("restore-{n}"));
        let mut opts = RestoreOptions::default();
        opts.subpath = Some(src.clone());
        // Verification reads the restored files back against the snapshot.
        opts.verify = true;
        let summary = fx
            .restore(snap, &opts, &target)
            .unwrap_or_else(|e| panic!("restore of snapshot {n} failed: {e}"));
        assert!(
            summary.verify_failures.is_empty(),
            "snapshot {n}: {:?}",
            summary.verify_failures
        );
        assert!(summary.files_verified > 0, "snapshot {n}: nothing verified");
        for i in 0..FILES {
            let p = target.join(format!("f{i:02}"));
            if let Ok(got) = fs::read(&p) {
                assert!(
                    plausible(i, &got),
                    "snapshot {n}: f{i:02} holds {} bytes mixed from versions",
                    got.len()
                );
            }
        }
        let kind = |name: &str| fs::symlink_metadata(target.join(name)).unwrap().file_type();
        assert!(kind("loop").is_symlink());
        assert_eq!(fs::read_link(target.join("a")).unwrap(), Path::new("b"));
        assert_eq!(fs::read_link(target.join("self")).unwrap(), Path::new("."));
        assert!(kind("fifo").is_fifo());
        // `dir` was either a directory (restored with its file) or a file at that moment. The
        // mutator writes each with `fs::write` (create, then write), so a backup may have read
        // one between the two calls: what it holds is a prefix of the text, never other bytes.
        if let Ok(m) = fs::symlink_metadata(target.join("dir")) {
            if m.is_dir() {
                if let Ok(inner) = fs::read(target.join("dir/inner/file")) {
                    assert!(b"inside\n".starts_with(&inner), "dir/inner/file: {inner:?}");
                }
            } else {
                let got = fs::read(target.join("dir")).unwrap();
                assert!(b"now a file\n".starts_with(&got), "dir: {got:?}");
            }
        }
    }
}

/// Backs up `paths` with `opts`, collecting warnings. Panics when the backup fails.
fn noted_backup(
    fx: &mut Fixture,
    paths: &[&Path],
    opts: &BackupOptions,
) -> (repo_core::Snapshot, Vec<(PathBuf, String)>) {
    let notes = Notes::default();
    let cancel = repo_core::CancelToken::new();
    let summary = fx
        .backup_with(&repo_core::OpCtx::new(&notes, &cancel), paths, opts)
        .unwrap_or_else(|e| panic!("backup of {paths:?} failed: {e}"));
    (fx.snapshot(&summary.snapshot.unwrap()), notes.take())
}

/// Every node of a snapshot with its path.
fn nodes(fx: &Fixture, snap: &repo_core::Snapshot) -> Vec<(PathBuf, repo_core::Node)> {
    let mut out = Vec::new();
    fx.repo()
        .walk_tree(&snap.meta.tree, Path::new("/"), &mut |e| {
            out.push((e.path.clone(), e.node.clone()));
            Ok(true)
        })
        .unwrap();
    out
}

const SWAPPED_FILES: usize = 24;

/// `dir/fNN` and `dir/sub/fNN`, each holding `tag` and its name, 8 KiB.
fn swap_side(dir: &Path, tag: &str) {
    for i in 0..SWAPPED_FILES {
        for sub in ["", "sub/"] {
            let line = format!("{tag} {sub}f{i:02}\n");
            fixture::write(
                &dir.join(format!("{sub}f{i:02}")),
                line.repeat(8192 / line.len()).as_bytes(),
            );
        }
    }
}

/// A loop atomically exchanges `src/dd` (a directory) with a symlink to another directory of
/// the same names while backups run. Whatever the timing, no snapshot may hold the other
/// directory's content anywhere: the backup reads only inside the directories it walked.
#[test]
fn a_directory_swapped_for_a_symlink_is_never_followed() {
    use nix::fcntl::{renameat2, RenameFlags};
    let tmp = fixture::memory_tempdir();
    let src = tmp.path().join("src");
    let dd = src.join("dd");
    swap_side(&dd, "real");
    fixture::write(&src.join("before"), b"a file beside dd\n");
    let other = tmp.path().join("other");
    swap_side(&other, "OTHER");
    let swap = tmp.path().join("swap");
    std::os::unix::fs::symlink(&other, &swap).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let racer = {
        let (dd, swap, stop, swaps) = (
            dd.clone(),
            swap.clone(),
            Arc::clone(&stop),
            Arc::clone(&swaps),
        );
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                renameat2(None, &dd, None, &swap, RenameFlags::RENAME_EXCHANGE).unwrap();
                let _ = swaps.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_micros(50));
            }
            // Leave the real directory in place.
            if fs::symlink_metadata(&dd).unwrap().file_type().is_symlink() {
                renameat2(None, &dd, None, &swap, RenameFlags::RENAME_EXCHANGE).unwrap();
            }
        })
    };

    let mut fx = Fixture::memory();
    let mut opts = BackupOptions::default();
    opts.force = true;
    opts.parent = repo_core::ParentSelection::None;
    let started = Instant::now();
    let (mut backups, mut won, mut real_files) = (0, 0, 0);
    let mut foreign = Vec::new();
    while backups < 30 || (won == 0 && started.elapsed() < Duration::from_secs(20)) {
        backups += 1;
        let (snap, notes) = noted_backup(&mut fx, &[src.as_path()], &opts);
        let mut saw_swap = notes.iter().any(|(p, _)| p.starts_with(&dd));
        for (path, node) in nodes(&fx, &snap) {
            if path == dd && node.kind == repo_core::NodeKind::Symlink {
                saw_swap = true;
            }
            if node.kind != repo_core::NodeKind::File {
                continue;
            }
            let content = fx
                .repo()
                .read_file_at(&node, 0, node.size as usize)
                .unwrap();
            if content.starts_with(b"OTHER") {
                foreign.push(format!("backup {backups}: {}", path.display()));
            } else if path.starts_with(&dd) {
                real_files += 1;
            }
        }
        if saw_swap {
            won += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    racer.join().unwrap();
    assert!(
        foreign.is_empty(),
        "{} files hold the other directory's content: {:?}",
        foreign.len(),
        &foreign[..foreign.len().min(10)]
    );
    eprintln!(
        "{backups} backups, {} swaps, {won} saw the swap, {real_files} files of dd stored",
        swaps.load(Ordering::Relaxed)
    );
    assert!(won > 0, "no backup saw the swap: the race was never run");
    assert!(real_files > 0, "no backup stored dd's own files");
    let report = fx.check(false);
    assert!(report.is_clean(), "{report:?}");
}

/// Symlinks in the directories above a backup path are resolved, as restic and tar do; the
/// last component is kept as named: a symlink is stored as a symlink, unless the path ends
/// with a slash (then it is followed, as `ls -l link/` does).
#[test]
fn symlinks_in_backup_path_prefixes_are_resolved() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fs::canonicalize(tmp.path()).unwrap();
    let real = base.join("usr/lib");
    fixture::write(&real.join("os-release"), b"NAME=test\n");
    fixture::write(&real.join("inner/file"), b"inner\n");
    // base/lib -> usr/lib, as /lib on merged-/usr systems.
    std::os::unix::fs::symlink("usr/lib", base.join("lib")).unwrap();
    // base/run-link -> usr/lib/inner, as /var/run -> /run.
    std::os::unix::fs::symlink("usr/lib/inner", base.join("run-link")).unwrap();

    let mut fx = Fixture::memory();
    // A file below a symlinked directory: stored under the resolved directory.
    let (snap, notes) = noted_backup(
        &mut fx,
        &[&base.join("lib/os-release")],
        &BackupOptions::default(),
    );
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(
        snap.meta.paths,
        vec![real.join("os-release").into_os_string().into_vec()]
    );
    let node = fx
        .repo()
        .node_at(&snap.meta.tree, &real.join("os-release"))
        .unwrap();
    assert_eq!(node.kind, repo_core::NodeKind::File);
    assert_eq!(
        fx.repo().read_file_at(&node, 0, 100).unwrap(),
        b"NAME=test\n"
    );

    // A symlink named without a trailing slash is stored as the symlink.
    let (snap, _) = noted_backup(
        &mut fx,
        &[&base.join("run-link")],
        &BackupOptions::default(),
    );
    let node = fx
        .repo()
        .node_at(&snap.meta.tree, &base.join("run-link"))
        .unwrap();
    assert_eq!(node.kind, repo_core::NodeKind::Symlink);
    assert_eq!(node.symlink_target, b"usr/lib/inner");

    // With a trailing slash it is followed: the directory it points to is backed up.
    let mut slashed = base.join("run-link").into_os_string();
    slashed.push("/");
    let (snap, notes) = noted_backup(&mut fx, &[Path::new(&slashed)], &BackupOptions::default());
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(
        snap.meta.paths,
        vec![real.join("inner").into_os_string().into_vec()]
    );
    let node = fx
        .repo()
        .node_at(&snap.meta.tree, &real.join("inner/file"))
        .unwrap();
    assert_eq!(fx.repo().read_file_at(&node, 0, 100).unwrap(), b"inner\n");

    // A symlink in the middle of a path, and `..` after a symlink (resolved physically, as the
    // kernel does: usr/lib/inner/.. is usr/lib).
    let (snap, _) = noted_backup(
        &mut fx,
        &[&base.join("run-link/../os-release")],
        &BackupOptions::default(),
    );
    assert_eq!(
        snap.meta.paths,
        vec![real.join("os-release").into_os_string().into_vec()]
    );
}

/// Seconds since the epoch of 2300-01-01T00:00:00Z: past what i64 nanoseconds hold.
const YEAR_2300: i64 = 10_413_792_000;

/// A time a snapshot cannot hold (64-bit nanoseconds end in April 2262) is stored as the
/// nearest one it can, and the backup says so, naming the file, the time and which time.
#[test]
fn times_beyond_the_nanosecond_range_are_stored_clamped_with_a_warning() {
    // tmpfs holds any 64-bit seconds; ext4 stops at 1901.
    let tmp = fixture::memory_tempdir();
    let src = tmp.path().join("src");
    let future = src.join("future");
    let past = src.join("past");
    let fine = src.join("fine");
    for f in [&future, &past, &fine] {
        fixture::write(f, b"x");
    }
    fixture::set_mtime(&future, YEAR_2300, 5);
    // Access time in 1600, modification time in range.
    let old = nix::sys::time::TimeSpec::new(-11_676_096_000, 0);
    let ok = nix::sys::time::TimeSpec::new(1_000_000_000, 0);
    nix::sys::stat::utimensat(
        None,
        &past,
        &old,
        &ok,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();

    let mut fx = Fixture::memory();
    let (snap, notes) = noted_backup(&mut fx, &[src.as_path()], &BackupOptions::default());
    let about = |p: &Path| -> Vec<String> {
        notes
            .iter()
            .filter(|(n, _)| n == p)
            .map(|(_, m)| m.clone())
            .collect()
    };
    let f = about(&future);
    assert!(
        f.iter().any(|m| m.contains("modification time")
            && m.contains("2300-01-01T00:00:00")
            && m.contains("2262-04-11")),
        "{notes:?}"
    );
    let p = about(&past);
    assert!(
        p.iter()
            .any(|m| m.contains("access time") && m.contains("1600-01-01")),
        "{notes:?}"
    );
    assert!(
        !p.iter().any(|m| m.contains("modification time")),
        "{notes:?}"
    );
    // `set_mtime` set the access time to 2300 as well.
    assert!(f.iter().any(|m| m.contains("access time")), "{notes:?}");
    assert!(about(&fine).is_empty(), "{notes:?}");
    assert_eq!(notes.len(), 3, "{notes:?}");

    let node = fx.repo().node_at(&snap.meta.tree, &future).unwrap();
    assert_eq!(node.mtime_ns, i64::MAX);
    let node = fx.repo().node_at(&snap.meta.tree, &past).unwrap();
    assert_eq!(node.atime_ns, i64::MIN);
    assert_eq!(node.mtime_ns, 1_000_000_000 * 1_000_000_000);
}

/// Records the scan phase's last totals.
#[derive(Default)]
struct ScanTotals(std::sync::Mutex<Option<(u64, u64)>>);

impl repo_core::Progress for ScanTotals {
    fn event(&self, event: &repo_core::ProgressEvent<'_>) {
        if let repo_core::ProgressEvent::Totals {
            phase: repo_core::Phase::Scan,
            items,
            bytes,
        } = event
        {
            *self.0.lock().unwrap() = Some((*items, *bytes));
        }
    }
}

/// The pre-scan that gives progress its totals counts what the backup will read: regular
/// files below the backup paths, deep ones included, not what a symlinked directory or an
/// excluded path holds.
#[test]
fn the_scan_counts_the_files_the_backup_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let outside = tmp.path().join("outside");
    fixture::write(&outside.join("big"), &[7u8; 5000]);
    fixture::write(&src.join("a"), b"12345");
    let mut deep = src.join("d");
    for _ in 0..100 {
        deep.push("d");
    }
    fixture::write(&deep.join("bottom"), b"123");
    fixture::write(&src.join("skip.tmp"), &[0u8; 1000]);
    std::os::unix::fs::symlink(&outside, src.join("link")).unwrap();
    let mut fx = Fixture::memory();
    let totals = ScanTotals::default();
    let cancel = repo_core::CancelToken::new();
    let mut opts = BackupOptions::default();
    opts.scan = true;
    opts.excludes = vec!["*.tmp".into()];
    let summary = fx
        .backup_with(&repo_core::OpCtx::new(&totals, &cancel), &[&src], &opts)
        .unwrap();
    assert_eq!(summary.stats.files_new, 2);
    assert_eq!(*totals.0.lock().unwrap(), Some((2, 8)));
}

/// `/` as a backup path backs up the entries of `/` (it used to give an empty snapshot, and a
/// path that resolves to `/`, such as `/tmp/..`, too). Everything but `/etc` is excluded to
/// keep the test small.
#[test]
fn the_root_directory_as_a_backup_path_backs_up_its_entries() {
    let excludes: Vec<String> = fs::read_dir("/")
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "etc")
        .map(|n| format!("/{}", n.to_string_lossy()))
        .collect();
    let mut fx = Fixture::memory();
    let mut opts = BackupOptions::default();
    opts.excludes = excludes;
    for path in [Path::new("/"), Path::new("/tmp/..")] {
        let (snap, _) = noted_backup(&mut fx, &[path], &opts);
        assert_eq!(snap.meta.paths, vec![b"/".to_vec()]);
        let node = fx
            .repo()
            .node_at(&snap.meta.tree, Path::new("/etc"))
            .unwrap();
        assert_eq!(node.kind, repo_core::NodeKind::Dir);
        let passwd = fx
            .repo()
            .node_at(&snap.meta.tree, Path::new("/etc/passwd"))
            .unwrap();
        assert_eq!(
            fx.repo()
                .read_file_at(&passwd, 0, passwd.size as usize)
                .unwrap(),
            fs::read("/etc/passwd").unwrap()
        );
    }
}
