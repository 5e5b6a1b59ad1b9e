//! `cairn` against repository files it did not write and arguments at the edge (issue 9, items
//! 5 and 6): a lock file whose name is cut inside a character, a pack or config replaced by a
//! FIFO or a symlink to `/dev/zero`, a `--lock-wait` past the clock's range, a lock dated in the
//! future, temporary files that a killed backup left, and a password that no password file could
//! carry. Each gets one clear error line (or warning) and its exit code: no panic, no hang.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{arg, one_error_line, text, write_sample_tree, Env};

/// A command that would hang on a bug is killed (and the test failed) after this.
const LIMIT: Duration = Duration::from_secs(30);

/// An initialised repository with one backup of the sample tree.
fn backed_up() -> Env {
    let env = Env::new();
    write_sample_tree(&env.path("src"));
    env.init();
    let _ = env.ok(&["backup", "-q", arg(&env.path("src"))]);
    env
}

/// Asserts that cairn failed with `code` and one error line, without panicking; returns it.
fn failed(out: &std::process::Output, code: i32) -> String {
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    one_error_line(&out.stderr)
}

/// The largest pack in the repository (a data pack).
fn largest_pack(repo: &Path) -> PathBuf {
    fs::read_dir(repo.join("data"))
        .unwrap()
        .flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .max_by_key(|p| fs::symlink_metadata(p).unwrap().len())
        .expect("a pack")
}

fn make_fifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

#[test]
fn restore_refuses_a_pack_that_is_a_fifo_or_a_symlink_to_dev_zero_at_once() {
    for fifo in [true, false] {
        let env = backed_up();
        let pack = largest_pack(&env.repo);
        fs::remove_file(&pack).unwrap();
        if fifo {
            make_fifo(&pack);
        } else {
            std::os::unix::fs::symlink("/dev/zero", &pack).unwrap();
        }
        let target = env.path("target");
        let out = env.run_within(&["restore", "latest", "--target", arg(&target)], LIMIT);
        let line = failed(&out, 1);
        assert!(line.contains(arg(&pack)), "names the file: {line}");
        assert!(line.contains("not a regular file"), "{line}");
        let out = env.run_within(&["check", "--read-data"], LIMIT);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    }
}

#[test]
fn a_config_that_is_a_fifo_or_a_symlink_to_dev_zero_is_named_not_read() {
    for fifo in [true, false] {
        let env = backed_up();
        let config = env.repo.join("config");
        fs::remove_file(&config).unwrap();
        if fifo {
            make_fifo(&config);
        } else {
            std::os::unix::fs::symlink("/dev/zero", &config).unwrap();
        }
        let line = failed(&env.run_within(&["snapshots"], LIMIT), 1);
        assert!(line.contains(arg(&config)), "names the file: {line}");
        assert!(line.contains("not a regular file"), "{line}");
    }
}
