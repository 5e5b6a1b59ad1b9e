//! `cairn` against repository files it did not write and arguments at the edge (issue 9, items
//! 5 and 6): a lock file whose name is cut inside a character, a pack or config replaced by a
//! FIFO or a symlink to `/dev/zero`, a `--lock-wait` past the clock's range, a lock dated in the
//! future, temporary files that a killed backup left, and a password that no password file could
//! carry. Each gets one clear error line (or warning) and its exit code: no panic, no hang.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use repo_core::format::envelope::{self, ObjectType};
use repo_core::format::lock::LockFile;
use repo_core::{FileType, Id, LocalBackend, OpenOptions, Repository, Secret};

use crate::support::{
    arg, json_lines, one_error_line, summary, text, write_sample_tree, Env, PASSWORD,
};

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

#[test]
fn a_lock_named_with_a_cut_character_is_an_unreadable_lock_that_unlock_remove_all_clears() {
    let env = backed_up();
    fs::write(env.repo.join("locks/aaaaaaaé"), b"not a lock").unwrap();
    let target = env.path("target");
    for args in [
        vec!["backup", arg(&env.path("src"))],
        vec!["restore", "latest", "--target", arg(&target)],
        vec!["check"],
    ] {
        let line = failed(&env.run(&args), 11);
        assert!(line.contains("unreadable lock"), "{args:?}: {line}");
        assert!(
            line.contains("aaaaaaaé"),
            "{args:?}: the lock is named: {line}"
        );
        assert!(line.contains("cairn unlock --remove-all"), "{line}");
    }
    // Plain unlock removes stale locks only; an unreadable one is not stale.
    let out = env.ok(&["unlock", "--json"]);
    assert_eq!(json_lines(&out.stdout)[0]["removed"], 0);
    assert!(env.repo.join("locks/aaaaaaaé").exists());
    let out = env.ok(&["unlock", "--remove-all", "--json"]);
    assert_eq!(json_lines(&out.stdout)[0]["removed"], 1);
    assert!(!env.repo.join("locks/aaaaaaaé").exists());
    let _ = env.ok(&["backup", "-q", arg(&env.path("src"))]);
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

#[test]
fn a_lock_wait_past_the_clock_is_a_usage_error() {
    let env = backed_up();
    for wait in ["18446744073709551615s", "300000000000years"] {
        for cmd in [
            vec!["--lock-wait", wait, "backup", "-q"],
            vec!["--lock-wait", wait, "check"],
        ] {
            let mut args = cmd.clone();
            let src = env.path("src");
            if cmd[2] == "backup" {
                args.push(arg(&src));
            }
            let out = env.run(&args);
            let stderr = text(&out.stderr);
            assert!(!stderr.contains("panicked"), "{stderr}");
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(stderr.contains("--lock-wait"), "{stderr}");
        }
    }
    assert_eq!(env.snapshots().len(), 1);
}

#[test]
fn a_lock_dated_far_in_the_future_is_called_suspicious_with_the_way_out() {
    let env = backed_up();
    let repo = Repository::open(
        Arc::new(LocalBackend::new(&env.repo)),
        &Secret::password(PASSWORD),
        &OpenOptions::default(),
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let lock = LockFile {
        exclusive: true,
        hostname: "elsewhere.example".into(),
        username: "mallory".into(),
        pid: 4242,
        time_ns: now + 7_203_844_395 * 1_000_000_000,
        operation: "prune".into(),
    };
    let sealed = envelope::seal(
        repo_core::internals::master_key(&repo),
        ObjectType::Lock,
        b"",
        &lock.to_plaintext().unwrap(),
    )
    .unwrap();
    repo_core::internals::backend(&repo)
        .write(FileType::Lock, &Id::hash(&sealed).to_hex(), &sealed)
        .unwrap();
    let line = failed(&env.run(&["backup", arg(&env.path("src"))]), 11);
    assert!(!line.contains("-7203844395"), "{line}");
    assert!(line.contains("in the future"), "{line}");
    assert!(line.contains("suspicious"), "{line}");
    assert!(line.contains("cairn unlock --remove-all"), "{line}");
}

#[test]
fn check_warns_about_temporary_files_that_a_killed_backup_left() {
    let env = backed_up();
    let rel = format!("data/ab/.tmp-{}-0123456789abcdef", "ab".repeat(32));
    let leftover = env.repo.join(&rel);
    fs::write(&leftover, b"half a pack").unwrap();
    let out = env.ok(&["check"]);
    let stdout = text(&out.stdout);
    let warning = stdout
        .lines()
        .find(|l| l.starts_with("warning:"))
        .unwrap_or_else(|| panic!("no warning: {stdout}"));
    assert!(
        warning.contains(arg(&leftover)),
        "the exact path: {warning}"
    );
    assert!(warning.contains("rm "), "how to remove it: {warning}");
    assert!(stdout.contains("no problems found"), "not damage: {stdout}");
    // Quiet still warns; JSON lists it.
    let out = env.ok(&["check", "-q"]);
    assert!(text(&out.stdout).contains(arg(&leftover)));
    let out = env.ok(&["check", "--json"]);
    let s = summary(&out);
    assert_eq!(s["temporary_files"], serde_json::json!([rel]), "{s}");
    assert!(leftover.exists(), "check removes nothing");
}

#[test]
fn init_refuses_a_password_that_a_password_file_could_not_carry() {
    for password in ["first\nsecond", "trailing\n", "carriage\r"] {
        let env = Env::new();
        let out = env
            .cairn()
            .env("CAIRN_PASSWORD", password)
            .args(["init", "--insecure-kdf"])
            .output()
            .unwrap();
        let line = failed(&out, 1);
        assert!(
            line.contains("newline") || line.contains("carriage return"),
            "{line}"
        );
        assert!(line.contains("password"), "{line}");
        assert!(!env.repo.join("config").exists(), "nothing created");
    }
}
