//! Several `cairn` processes meeting in one repository: backups running in parallel (with
//! checks alongside) all succeed and restore exactly; the locks of a process killed on this
//! host are cleared by the next command; a lock from another host blocks until `cairn unlock`.
//!
//! Locks another process would have written are planted through `repo_core`, opened with the
//! test password, as spec/08-locks.md lays them out.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use repo_core::format::envelope::{self, ObjectType};
use repo_core::format::lock::LockFile;
use repo_core::fuzzing::{hostname, username};
use repo_core::{FileType, Id, LocalBackend, LockHolder, OpenOptions, Opened, Repository, Secret};

use crate::support::{
    arg, assert_same_tree, json_lines, noise, summary, text, write_sample_tree, Env, PASSWORD,
};

/// The repository opened through the library, as another process would.
fn open(env: &Env) -> Repository<Opened> {
    Repository::open(
        Arc::new(LocalBackend::new(&env.repo)),
        &Secret::password(PASSWORD),
        &OpenOptions::default(),
    )
    .expect("open the repository")
}

/// Writes a lock file as its holder would, and returns its name.
fn plant_lock(env: &Env, lock: &LockFile) -> String {
    let repo = open(env);
    let plaintext = lock.to_plaintext().unwrap();
    let sealed = envelope::seal(
        repo_core::internals::master_key(&repo),
        ObjectType::Lock,
        b"",
        &plaintext,
    )
    .unwrap();
    let name = Id::hash(&sealed).to_hex();
    repo_core::internals::backend(&repo)
        .write(FileType::Lock, &name, &sealed)
        .unwrap();
    name
}

/// The locks in the repository, decrypted.
fn locks(env: &Env) -> Vec<LockHolder> {
    open(env).locks().unwrap()
}

/// The names of the lock files, sorted.
fn lock_names(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = locks(env).into_iter().map(|l| l.name).collect();
    names.sort();
    names
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Asserts that stderr is exactly one `error: ...` line and returns it.
fn one_error_line(stderr: &[u8]) -> String {
    let err = text(stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line, got {err:?}");
    assert!(lines[0].starts_with("error: "), "{err:?}");
    lines[0].to_string()
}

/// A child process that is killed when dropped, so a failing test leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn parallel_backups_and_checks_share_one_repository() {
    let env = Env::new();
    env.init();
    let sources: Vec<PathBuf> = (0..3u64)
        .map(|i| {
            let src = env.path(&format!("src{i}"));
            write_sample_tree(&src);
            // Every tree shares the sample's files, so the backups race to store the same
            // blobs, and has a file of its own that keeps its backup busy for a while.
            fs::write(src.join("own.bin"), noise(8 << 20, 100 + i)).unwrap();
            src
        })
        .collect();
    // Two processes back up the same tree.
    let jobs: Vec<&Path> = vec![&sources[0], &sources[1], &sources[2], &sources[1]];

    let env = &env;
    let (backups, checks) = std::thread::scope(|s| {
        let running: Vec<_> = jobs
            .iter()
            .map(|&src| s.spawn(move || env.run(&["backup", "--json", "-q", arg(src)])))
            .collect();
        // `check` takes a shared lock like `backup`: it runs alongside them, again and again
        // until the last backup is done, and must never see a half-written state as damage.
        let mut checks = Vec::new();
        loop {
            let out = env.run(&["check", "--read-data", "--json"]);
            let still_running = running.iter().filter(|h| !h.is_finished()).count();
            checks.push((out, still_running));
            if still_running == 0 {
                break;
            }
        }
        let backups: Vec<_> = running.into_iter().map(|h| h.join().unwrap()).collect();
        (backups, checks)
    });

    for (out, _) in &checks {
        assert_eq!(
            out.status.code(),
            Some(0),
            "a concurrent check failed\nstdout: {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert_eq!(summary(out)["clean"], true, "{}", text(&out.stdout));
    }
    assert!(
        checks.iter().any(|(_, running)| *running > 0),
        "no check finished while a backup was still running"
    );

    let mut expected: Vec<(String, &Path)> = Vec::new();
    for (out, &src) in backups.iter().zip(&jobs) {
        assert_eq!(
            out.status.code(),
            Some(0),
            "backup of {} failed\nstderr: {}",
            src.display(),
            text(&out.stderr)
        );
        let id = summary(out)["snapshot_id"]
            .as_str()
            .expect("snapshot id")
            .to_string();
        expected.push((id, src));
    }
    expected.sort();

    let out = env.ok(&["check", "--read-data", "--json"]);
    let report = summary(&out);
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["snapshots"], 4, "{report}");
    assert!(report["packs_read"].as_u64().unwrap() > 0, "{report}");
    // Every pack a finished backup wrote is in an index: none was lost in the race.
    assert_eq!(
        report["unreferenced_packs"],
        serde_json::json!([]),
        "{report}"
    );

    let mut listed: Vec<(String, Vec<String>)> = env
        .snapshots()
        .iter()
        .map(|s| {
            let paths = s["paths"].as_array().unwrap();
            let paths = paths.iter().map(|p| p.as_str().unwrap().to_string());
            (s["id"].as_str().unwrap().to_string(), paths.collect())
        })
        .collect();
    listed.sort();
    let want: Vec<(String, Vec<String>)> = expected
        .iter()
        .map(|(id, src)| (id.clone(), vec![src.display().to_string()]))
        .collect();
    assert_eq!(listed, want);

    for (i, (id, src)) in expected.iter().enumerate() {
        let target = env.path(&format!("restored{i}"));
        let spec = format!("{id}:{}", src.display());
        let _ = env.ok(&["restore", &spec, "--target", arg(&target)]);
        assert_same_tree(src, &target);
    }
    assert!(
        lock_names(env).is_empty(),
        "every process released its lock"
    );
}

/// Waits until `child` holds a lock in the repository, and returns the locks.
fn wait_for_lock(env: &Env, child: &mut Child) -> Vec<LockHolder> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = locks(env);
        if !found.is_empty() {
            return found;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("cairn exited ({status}) before it was seen holding a lock");
        }
        assert!(Instant::now() < deadline, "cairn took no lock within 60s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn locks_of_a_killed_process_are_cleared_by_the_next_backup() {
    let env = Env::new();
    env.init();
    // A 64 GiB sparse file takes no disk space but minutes to chunk: the backup is certainly
    // still running, and holding its lock, when it is killed.
    let huge = env.path("huge");
    fs::create_dir(&huge).unwrap();
    fs::File::create(huge.join("sparse.img"))
        .unwrap()
        .set_len(64 << 30)
        .unwrap();
    let mut backup = Running(
        env.cairn()
            .args(["backup", arg(&huge)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn cairn"),
    );
    let pid = backup.0.id();
    let held = wait_for_lock(&env, &mut backup.0);
    assert_eq!(held.len(), 1, "{held:?}");
    let lock = held[0].lock.clone().expect("a readable lock");
    assert_eq!(
        (lock.exclusive, lock.hostname.as_str(), lock.pid),
        (false, hostname().as_str(), pid),
        "{lock:?}"
    );
    assert_eq!(lock.operation, "backup");

    backup.0.kill().unwrap();
    let status = backup.0.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(nix::sys::signal::Signal::SIGKILL as i32),
        "killed, not finished: {status}"
    );
    let shared = held[0].name.clone();
    assert_eq!(
        lock_names(&env),
        vec![shared.clone()],
        "SIGKILL left the lock"
    );

    // Had the killed process been an exclusive operation (a prune), its lock would name the
    // same dead process and block every command until cleared.
    let exclusive = plant_lock(
        &env,
        &LockFile {
            exclusive: true,
            hostname: hostname(),
            username: username(),
            pid,
            time_ns: now_ns(),
            operation: "prune".into(),
        },
    );
    let mut both = vec![shared, exclusive];
    both.sort();
    assert_eq!(lock_names(&env), both);

    // The next backup, with the default --lock-wait of 0s, sees that the holder is gone on
    // this host, removes both of its locks and proceeds.
    let src = env.path("src");
    write_sample_tree(&src);
    let out = env.ok(&["backup", "--json", "-q", arg(&src)]);
    let id = summary(&out)["snapshot_id"].as_str().unwrap().to_string();
    assert!(
        lock_names(&env).is_empty(),
        "the dead process's locks remain"
    );
    let snapshots = env.snapshots();
    assert_eq!(snapshots.len(), 1, "the killed backup saved nothing");
    assert_eq!(snapshots[0]["id"], id.as_str());
    let report = summary(&env.ok(&["check", "--json"]));
    assert_eq!(report["clean"], true, "{report}");
}

#[test]
fn lock_of_another_host_blocks_backup_until_unlock_remove_all() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_sample_tree(&src);
    // Fresh: its holder on the other host may well be running. Whatever this host's pids,
    // a process there cannot be checked from here.
    let foreign = plant_lock(
        &env,
        &LockFile {
            exclusive: true,
            hostname: "nas.example".into(),
            username: "alice".into(),
            pid: 4242,
            time_ns: now_ns(),
            operation: "prune".into(),
        },
    );

    let started = Instant::now();
    let out = env.run(&["backup", "--lock-wait", "1s", arg(&src)]);
    let waited = started.elapsed();
    assert_eq!(out.status.code(), Some(11), "{}", text(&out.stderr));
    assert!(waited >= Duration::from_secs(1), "gave up after {waited:?}");
    let line = one_error_line(&out.stderr);
    for part in ["locked", "alice@nas.example", "pid 4242", "prune"] {
        assert!(line.contains(part), "{part:?} missing: {line}");
    }
    assert!(line.contains("`cairn unlock --remove-all`"), "{line}");
    assert!(env.snapshots().is_empty());
    assert_eq!(
        lock_names(&env),
        vec![foreign],
        "another host's lock is kept"
    );

    // Plain `unlock` removes stale locks only, and this one is not stale: it stays, and so
    // does the failure. That is why the message names --remove-all.
    let out = env.ok(&["unlock", "--json"]);
    assert_eq!(json_lines(&out.stdout)[0]["removed"], 0);
    assert_eq!(env.run(&["backup", arg(&src)]).status.code(), Some(11));

    let out = env.ok(&["unlock", "--remove-all", "--json"]);
    assert_eq!(json_lines(&out.stdout)[0]["removed"], 1);
    assert!(lock_names(&env).is_empty());
    let _ = env.ok(&["backup", arg(&src)]);
    assert_eq!(env.snapshots().len(), 1);
    assert!(lock_names(&env).is_empty());
}

#[test]
fn unreadable_lock_blocks_backup_and_the_message_says_how_to_remove_it() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_sample_tree(&src);
    // Damaged, or written with another key: it counts as exclusive and never goes stale.
    let junk = b"not a lock file";
    let name = Id::hash(junk).to_hex();
    repo_core::internals::backend(&open(&env))
        .write(FileType::Lock, &name, junk)
        .unwrap();

    let out = env.run(&["backup", arg(&src)]);
    assert_eq!(out.status.code(), Some(11), "{}", text(&out.stderr));
    let line = one_error_line(&out.stderr);
    assert!(line.contains("unreadable"), "{line}");
    assert!(line.contains("`cairn unlock --remove-all`"), "{line}");

    let out = env.ok(&["unlock", "--json"]);
    assert_eq!(json_lines(&out.stdout)[0]["removed"], 0);
    let out = env.ok(&["unlock", "--remove-all", "--json"]);
    assert_eq!(json_lines(&out.stdout)[0]["removed"], 1);
    let _ = env.ok(&["backup", arg(&src)]);
    assert_eq!(env.snapshots().len(), 1);
}
