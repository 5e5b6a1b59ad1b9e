//! Scale: one million empty files in one directory. Ignored by default (it creates a million
//! files and takes minutes); `scripts/long-tests.sh` runs it. It prints each step's peak RSS
//! and asserts the bounds the design promises: a directory costs its encoded tree (about 80
//! bytes per entry) plus, during a restore, a compact plan entry per file.
//!
//! Measured 2026-11-30 (ext4, release): first backup 179-181 MiB, unchanged re-backup 201-202 MiB,
//! restore 316 MiB (parallel file creation since); the bounds leave about 30 % for allocator
//! and thread-stack variation.

use std::fs;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{arg, text, Env};

const FILES: usize = 1_000_000;

/// Runs `cmd` to completion and returns (exit success, peak RSS in MiB, seconds). The peak is
/// the child's VmHWM, sampled every 20 ms until it exits (VmHWM only grows, so the last sample
/// is the peak unless the child allocated more in its final 20 ms).
fn measured(mut cmd: Command) -> (bool, u64, f64) {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cairn");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    loop {
        if let Ok(s) = fs::read_to_string(&status_file) {
            if let Some(kib) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
        }
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            if !status.success() {
                eprintln!("stderr: {}", text(&out.stderr));
            }
            return (
                status.success(),
                peak_kib / 1024,
                started.elapsed().as_secs_f64(),
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "creates one million files; run by scripts/long-tests.sh"]
fn one_million_empty_files_in_one_directory() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    for i in 0..FILES {
        fs::File::create(src.join(format!("empty-{i:07}"))).unwrap();
    }
    env.init();

    let mut steps = Vec::new();
    for (step, args, bound_mib) in [
        ("first backup", vec!["backup", "-q", arg(&src)], 256),
        ("unchanged backup", vec!["backup", "-q", arg(&src)], 288),
        (
            "restore",
            vec!["restore", "-q", "latest", "--target", arg(&env.path("out"))],
            420,
        ),
    ] {
        let mut cmd = env.cairn();
        let _ = cmd.args(&args);
        let (ok, peak, secs) = measured(cmd);
        eprintln!("{step}: peak RSS {peak} MiB, {secs:.1} s");
        assert!(ok, "{step} failed");
        steps.push((step, peak, bound_mib));
    }
    let restored = env.path("out").join(src.strip_prefix("/").unwrap());
    assert_eq!(fs::read_dir(&restored).unwrap().count(), FILES);
    for (step, peak, bound) in steps {
        assert!(
            peak < bound,
            "{step}: peak RSS {peak} MiB, bound {bound} MiB"
        );
    }
}
