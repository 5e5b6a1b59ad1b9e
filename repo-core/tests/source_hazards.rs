//! Hazards at the source: files deleted, truncated or rewritten while a backup reads them,
//! directories replaced by files mid-walk, symlink loops, and FIFOs (unreadable entries: roundtrip.rs). Each
//! backup must finish with a snapshot, report what it skipped, and that snapshot must check
//! clean and restore to a state the source really passed through.

#[path = "support/fixture.rs"]
mod fixture;

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use fixture::Fixture;
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

/// A restored `fNN` holds what the backup read: a whole version, or a prefix of one when
/// the file was truncated or rewritten while it was read (the size always matches).
fn plausible(i: usize, got: &[u8]) -> bool {
    got.is_empty()
        || [0u8, 1].iter().any(|&v| {
            content(i, v).starts_with(got) || got.len() == FILE_LEN && got == content(i, v)
        })
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
    let mut snapshots = Vec::new();
    for _ in 0..6 {
        let (summary, snap) = fx.backup(&[src.as_path()], &BackupOptions::default());
        assert_eq!(summary.stats.errors_skipped as usize, summary.skipped.len());
        snapshots.push(snap);
    }
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
        let summary = fx
            .restore(snap, &opts, &target)
            .unwrap_or_else(|e| panic!("restore of snapshot {n} failed: {e}"));
        assert!(summary.verify_failures.is_empty());
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
        // `dir` was either a directory (restored with its file) or a file at that moment.
        if let Ok(m) = fs::symlink_metadata(target.join("dir")) {
            if m.is_dir() {
                if let Ok(inner) = fs::read(target.join("dir/inner/file")) {
                    assert_eq!(inner, b"inside\n");
                }
            } else {
                assert_eq!(fs::read(target.join("dir")).unwrap(), b"now a file\n");
            }
        }
    }
}
