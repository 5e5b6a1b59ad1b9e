//! Restore against a target that changes while it runs, and against what is in its way
//! (issue 9, items 1, 2 and 6): nothing outside the target is ever created, changed or
//! removed, a mount point or a user's directory is never deleted without being asked, and
//! verification covers the files a restore kept.

#[path = "support/fixture.rs"]
mod fixture;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use fixture::{ctx, write, Fixture};
use repo_core::{Overwrite, RestoreOptions};
use repo_testkit::{chown_nobody, copy_for_nobody, nobody_command};

/// In a child process of this test binary, run as `nobody`: the racer of
/// [`racing_directory_swap_never_reaches_outside_the_target`].
const RACER_ENV: &str = "CAIRN_TEST_RACER_TARGET";

/// The racer: exchanges `d` and `s` (a symlink to the victim directory) in its working
/// directory as fast as it can until `stop` exists, then prints how many exchanges happened.
fn racer(stop: &Path) -> ! {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    std::os::unix::fs::symlink(std::env::var("CAIRN_TEST_VICTIM").unwrap(), "s").unwrap();
    // The test harness may print its own text before ours on the same line: markers are
    // searched for, not matched whole.
    println!("RACER-READY");
    let mut swaps = 0u64;
    let mut tries = 0u64;
    loop {
        tries += 1;
        if tries.is_multiple_of(64) && stop.exists() {
            break;
        }
        if renameat_with(CWD, "d", CWD, "s", RenameFlags::EXCHANGE).is_ok() {
            swaps += 1;
            // Leave the restore some time between swaps, on a machine of two cores.
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
    println!("RACER-SWAPS {swaps}");
    std::process::exit(0)
}

/// Mode, owner, size and mtime of everything below `root` (and `root` itself), not following
/// symlinks, with the content of regular files.
fn state(root: &Path) -> BTreeMap<PathBuf, (u32, u32, u64, i64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        let content = if m.is_file() {
            fs::read(&p).unwrap()
        } else {
            Vec::new()
        };
        if m.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
        }
        let _ = out.insert(p, (m.mode(), m.uid(), m.size(), m.mtime(), content));
    }
    out
}

/// Root restores a snapshot with a directory `d` of 3,000 files into a target owned by
/// `nobody`, who exchanges `target/d` with a symlink to a root-only directory (renameat2
/// RENAME_EXCHANGE) while the restore runs. Whatever the interleaving, the victim directory
/// and the file in it are untouched: nothing created there, nothing chmodded, chowned,
/// overwritten or removed, also when the restore fails and cleans up.
#[test]
fn racing_directory_swap_never_reaches_outside_the_target() {
    if let Ok(stop) = std::env::var(RACER_ENV) {
        racer(Path::new(&stop));
    }
    assert!(fixture::is_root(), "this test runs as root (as CI does)");
    let iterations: usize = std::env::var("CAIRN_RACE_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // The snapshot: d/ with 3,000 small files, one named like the victim's file.
    let src = tmp.path().join("src");
    for i in 0..3000 {
        write(
            &src.join(format!("d/f{i:04}")),
            format!("file {i}\n").as_bytes(),
        );
    }
    write(&src.join("d/existing"), b"from the snapshot\n");
    let mut fx = Fixture::memory();
    let (_, snapshot) = fx.backup_dir(&src);
    // The victim: root-only, with a file in it.
    let victim = tmp.path().join("victim");
    fs::create_dir(&victim).unwrap();
    write(&victim.join("existing"), b"precious\n");
    fs::set_permissions(victim.join("existing"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o700)).unwrap();
    let before = state(&victim);
    // The racer runs this test binary as nobody; the binary is copied where nobody can run it.
    let racer_exe = copy_for_nobody(&std::env::current_exe().unwrap(), &tmp.path().join("racer"));
    let stop = tmp.path().join("stop");

    // A race is won about every other round: the rounds go on past `iterations` until one
    // is (a fixed count of rounds failed in CI one time in thirty, with none won), bounded.
    let most = iterations.max(60);
    let (mut won, mut swaps_total, mut failed) = (0, 0u64, 0);
    let mut i = 0;
    while i < iterations || (won == 0 && i < most) {
        let target = tmp.path().join(format!("target{i}"));
        fs::create_dir(&target).unwrap();
        chown_nobody(&target);
        let _ = fs::remove_file(&stop);
        let mut child = nobody_command(&racer_exe)
            .args([
                "--exact",
                "racing_directory_swap_never_reaches_outside_the_target",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(RACER_ENV, &stop)
            .env("CAIRN_TEST_VICTIM", &victim)
            .current_dir(&target)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("setpriv runs the racer");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "the racer started");
            if line.contains("RACER-READY") {
                break;
            }
        }
        let mut opts = RestoreOptions::default();
        opts.subpath = Some(src.clone());
        let result = fx.restore(&snapshot, &opts, &target);
        fs::write(&stop, b"").unwrap();
        let mut swaps = None;
        loop {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if let Some(n) = line.split("RACER-SWAPS ").nth(1) {
                swaps = n.trim().parse::<u64>().ok();
            }
        }
        assert!(child.wait().unwrap().success());
        let swaps = swaps.expect("the racer reports its count");
        swaps_total += swaps;

        assert_eq!(
            state(&victim),
            before,
            "iteration {i}: the victim directory was changed (restore: {result:?})"
        );
        // Where the real `d` ended up (either name), its files are the snapshot's.
        let mut seen_in_s = false;
        for name in ["d", "s"] {
            let p = target.join(name);
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                seen_in_s |= name == "s";
                for e in fs::read_dir(&p).unwrap() {
                    let e = e.unwrap();
                    let n = e.file_name().into_string().unwrap();
                    assert!(n == "existing" || n.starts_with('f'), "{n}");
                }
            }
        }
        // A race is won when the swap hit the restore: it failed on it, or the directory it
        // was filling moved away from `d` while it ran.
        if result.is_err() {
            failed += 1;
        }
        if swaps > 0 && (result.is_err() || seen_in_s) {
            won += 1;
        }
        // Only `d`, `s` and nothing else in the target.
        let mut names: Vec<_> = fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert!(
            names.iter().all(|n| n == "d" || n == "s"),
            "iteration {i}: {names:?}"
        );
        fs::remove_dir_all(&target).unwrap();
        assert_eq!(state(&victim), before);
        i += 1;
    }
    eprintln!("{i} iterations: {swaps_total} swaps, {won} races won, {failed} restores failed");
    assert!(swaps_total > 0, "the racer never swapped");
    assert!(won > 0, "no race was won in {i} iterations");
}

/// Unmounts on drop.
struct Mount(PathBuf);

impl Mount {
    fn bind(from: &Path, at: &Path) -> Self {
        let ok = Command::new("mount")
            .arg("--bind")
            .arg(from)
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount --bind (this test runs as root)");
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A snapshot of `f` (a file), `g` (a symlink) and `keep.txt`.
fn small_snapshot(tmp: &Path) -> (PathBuf, Fixture, repo_core::Snapshot) {
    let src = tmp.join("src");
    write(&src.join("f"), b"the snapshot's f\n");
    write(&src.join("keep.txt"), b"kept\n");
    std::os::unix::fs::symlink("f", src.join("g")).unwrap();
    let mut fx = Fixture::memory();
    let (_, snapshot) = fx.backup_dir(&src);
    (src, fx, snapshot)
}

fn opts(src: &Path, overwrite: Overwrite, delete: bool) -> RestoreOptions {
    let mut o = RestoreOptions::default();
    o.subpath = Some(src.to_path_buf());
    o.overwrite = overwrite;
    o.delete_conflicting = delete;
    o
}

/// A bind mount where the snapshot has a file is never emptied, with any policy and even
/// with `delete_conflicting`: the entry is reported and everything else restored.
#[test]
fn mount_point_in_the_way_is_never_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, fx, snapshot) = small_snapshot(tmp.path());
    let mounted = tmp.path().join("mounted");
    write(&mounted.join("data/precious.txt"), b"on another mount\n");
    for (i, (policy, delete)) in [
        (Overwrite::Always, false),
        (Overwrite::Always, true),
        (Overwrite::IfChanged, true),
    ]
    .into_iter()
    .enumerate()
    {
        let target = tmp.path().join(format!("target{i}"));
        fs::create_dir_all(target.join("f")).unwrap();
        let _m = Mount::bind(&mounted, &target.join("f"));
        let summary = fx
            .restore(&snapshot, &opts(&src, policy, delete), &target)
            .unwrap();
        assert_eq!(
            fs::read(mounted.join("data/precious.txt")).unwrap(),
            b"on another mount\n",
            "{policy:?} delete={delete}"
        );
        assert_eq!(summary.not_restored.len(), 1, "{summary:?}");
        assert!(summary.not_restored[0].contains("/f"), "{summary:?}");
        if delete {
            assert!(
                summary.not_restored[0].contains("mount point"),
                "{summary:?}"
            );
        }
        assert_eq!(fs::read(target.join("keep.txt")).unwrap(), b"kept\n");
    }
}

/// Below a directory that `delete_conflicting` removes, a mount point stops the removal: what
/// is on the mounted file system stays.
#[test]
fn deleting_a_conflicting_directory_stops_at_a_mount_point_below_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, fx, snapshot) = small_snapshot(tmp.path());
    let mounted = tmp.path().join("mounted");
    write(&mounted.join("precious.txt"), b"on another mount\n");
    let target = tmp.path().join("target");
    write(&target.join("f/a/b/file.txt"), b"user data\n");
    fs::create_dir_all(target.join("f/a/mnt")).unwrap();
    let _m = Mount::bind(&mounted, &target.join("f/a/mnt"));
    let summary = fx
        .restore(&snapshot, &opts(&src, Overwrite::Always, true), &target)
        .unwrap();
    assert_eq!(
        fs::read(mounted.join("precious.txt")).unwrap(),
        b"on another mount\n"
    );
    assert!(target.join("f/a/mnt/precious.txt").exists());
    assert_eq!(summary.not_restored.len(), 1, "{summary:?}");
    assert!(
        summary.not_restored[0].contains("mount point"),
        "{summary:?}"
    );
}

/// What a dry run of `plan` into `target` says it would do, by path.
fn dry_run_actions(
    fx: &Fixture,
    plan: &repo_core::RestorePlan,
    target: &Path,
) -> BTreeMap<PathBuf, &'static str> {
    let mut actions = BTreeMap::new();
    fx.repo()
        .dry_run_restore(&ctx(), plan, target, &mut |e| {
            let _ = actions.insert(e.path.clone(), e.action);
            Ok(())
        })
        .unwrap();
    actions
}

/// A user's directory tree where the snapshot has a file (or symlink) is left alone and
/// reported, with `always` and `if-changed`; a dry run lists it as a conflict; with
/// `delete_conflicting` it is replaced.
#[test]
fn non_empty_directory_in_the_way_is_kept_unless_deletion_is_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, fx, snapshot) = small_snapshot(tmp.path());
    for (i, policy) in [Overwrite::Always, Overwrite::IfChanged]
        .into_iter()
        .enumerate()
    {
        let target = tmp.path().join(format!("target{i}"));
        write(
            &target.join("f/thesis/chapter1.tex"),
            b"two years of work\n",
        );
        write(&target.join("g/notes.txt"), b"notes\n");
        fs::create_dir_all(target.join("empty-in-the-way")).unwrap();

        // The dry run says what would happen, and changes nothing.
        let o = opts(&src, policy, false);
        let plan = fx.repo().plan_restore(&ctx(), &snapshot, &o).unwrap();
        let actions = dry_run_actions(&fx, &plan, &target);
        assert_eq!(actions[Path::new("f")], "conflict");
        assert_eq!(actions[Path::new("g")], "conflict");
        assert_eq!(actions[Path::new("keep.txt")], "create");
        assert!(
            !target.join("keep.txt").exists(),
            "a dry run writes nothing"
        );

        let summary = fx.repo().restore(&ctx(), &plan, &target).unwrap();
        assert_eq!(
            fs::read(target.join("f/thesis/chapter1.tex")).unwrap(),
            b"two years of work\n",
            "{policy:?}"
        );
        assert_eq!(fs::read(target.join("g/notes.txt")).unwrap(), b"notes\n");
        assert_eq!(summary.not_restored.len(), 2, "{summary:?}");
        assert!(
            summary
                .not_restored
                .iter()
                .all(|m| m.contains("--delete-conflicting")),
            "{summary:?}"
        );
        assert_eq!(fs::read(target.join("keep.txt")).unwrap(), b"kept\n");

        // Asked for: replaced.
        let o = opts(&src, policy, true);
        let plan = fx.repo().plan_restore(&ctx(), &snapshot, &o).unwrap();
        let actions = dry_run_actions(&fx, &plan, &target);
        assert_eq!(actions[Path::new("f")], "delete-conflicting");
        let summary = fx.repo().restore(&ctx(), &plan, &target).unwrap();
        assert!(summary.not_restored.is_empty(), "{summary:?}");
        assert_eq!(fs::read(target.join("f")).unwrap(), b"the snapshot's f\n");
        assert_eq!(fs::read_link(target.join("g")).unwrap(), Path::new("f"));
    }
}

/// `--verify` checks the files a restore kept as well as those it wrote: a file kept by
/// `never` that differs from the snapshot is reported.
#[test]
fn verify_covers_kept_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, fx, snapshot) = small_snapshot(tmp.path());
    let target = tmp.path().join("target");
    write(&target.join("f"), b"half-writ");
    let mut o = opts(&src, Overwrite::Never, false);
    o.verify = true;
    let summary = fx.restore(&snapshot, &o, &target).unwrap();
    assert_eq!(summary.files_skipped, 1);
    assert_eq!(summary.files_verified, 2, "{summary:?}");
    assert_eq!(summary.verify_failures.len(), 1, "{summary:?}");
    assert!(summary.verify_failures[0].contains("/f"), "{summary:?}");
    assert!(summary.verify_failures[0].contains("kept"), "{summary:?}");
}

/// No file appears under its final name before it is complete, and no temporary file
/// remains after a restore: what a kill at any moment leaves is complete files and
/// temporary names (tests/cli/restore.rs kills a real restore).
#[test]
fn files_are_renamed_into_place_only_when_complete() {
    use repo_core::{CancelToken, OpCtx, Progress, ProgressEvent};
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for i in 0..10 {
        write(&src.join(format!("big{i}")), &fixture::noise(1 << 20, i));
    }
    let mut fx = Fixture::memory();
    let (_, snapshot) = fx.backup_dir(&src);
    let target = tmp.path().join("target");

    /// At every progress event, every file under a final name must be complete.
    struct Watch {
        src: PathBuf,
        target: PathBuf,
        partial_seen: std::sync::atomic::AtomicUsize,
        temps_seen: std::sync::atomic::AtomicUsize,
    }
    impl Progress for Watch {
        fn event(&self, event: &ProgressEvent<'_>) {
            if !matches!(event, ProgressEvent::Advanced { .. }) {
                return;
            }
            let Ok(dir) = fs::read_dir(&self.target) else {
                return;
            };
            for e in dir {
                let e = e.unwrap();
                let name = e.file_name().into_string().unwrap();
                if name.starts_with(".cairn-restore-") {
                    let _ = self
                        .temps_seen
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    continue;
                }
                if fs::read(e.path()).unwrap() != fs::read(self.src.join(&name)).unwrap() {
                    let _ = self
                        .partial_seen
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }
    let watch = Watch {
        src: src.clone(),
        target: target.clone(),
        partial_seen: Default::default(),
        temps_seen: Default::default(),
    };
    let mut o = RestoreOptions::default();
    o.subpath = Some(src.clone());
    let plan = fx.repo().plan_restore(&ctx(), &snapshot, &o).unwrap();
    let cancel = CancelToken::new();
    let _ = fx
        .repo()
        .restore(&OpCtx::new(&watch, &cancel), &plan, &target)
        .unwrap();
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(
        watch.partial_seen.load(Relaxed),
        0,
        "a partly written file had its final name"
    );
    assert!(
        watch.temps_seen.load(Relaxed) > 0,
        "files are written under temporary names"
    );
    fixture::assert_same_tree(&src, &target);
}
