//! Crash consistency of every command that writes: `cairn backup` and `cairn init` are killed
//! with SIGKILL at random moments (the backup test goes on until at least one kill landed
//! while the backup ran in the repository, before its snapshot), and then:
//! - the repository opens;
//! - `check` is clean apart from unreferenced packs (what an interrupted backup leaves);
//! - every listed snapshot restores byte-identical to the source state it captured;
//! - a new backup succeeds.
//!
//! The default run does a few iterations; `CAIRN_CRASH_ITERATIONS=50` (see
//! scripts/long-tests.sh) runs the long variant. `CAIRN_CRASH_SEED` replays a run.
//! The harness is generic over the command: new writing commands (prune, key changes) add a
//! `crash_<command>` test that reuses [`kill_at_random`] and [`assert_repository_healthy`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The kit's generator, seeded from the clock or `CAIRN_CRASH_SEED`.
struct Rng(repo_testkit::Xorshift);

impl Rng {
    fn new() -> Self {
        let seed = std::env::var("CAIRN_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
                    | 1
            });
        eprintln!("crash test seed: CAIRN_CRASH_SEED={seed}");
        Self(repo_testkit::Xorshift::new(seed))
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            // Half compressible text, half noise, so packs fill at a realistic pace.
            let x = self.0.next_u64();
            if x.is_multiple_of(2) {
                out.extend_from_slice(&x.to_le_bytes());
            } else {
                out.extend_from_slice(b"fn crash() { }\n");
            }
        }
        out.truncate(len);
        out
    }
}

fn iterations() -> usize {
    std::env::var("CAIRN_CRASH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4)
}

fn cairn(repo: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.env("CAIRN_PASSWORD", "crash-test")
        .env("CAIRN_REPOSITORY", repo)
        .arg("--no-cache")
        .arg("-q");
    c.env_remove("CAIRN_PASSWORD_FILE")
        .env_remove("CAIRN_PASSWORD_COMMAND");
    c
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().expect("run cairn");
    out
}

fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed with {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Starts `cmd`, kills it with SIGKILL after a random delay in `0..max`, and reports whether it
/// had already finished on its own.
fn kill_at_random(cmd: &mut Command, rng: &mut Rng, max: Duration) -> bool {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let delay = Duration::from_micros(rng.below(max.as_micros() as u64 + 1));
    let start = Instant::now();
    while start.elapsed() < delay {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1).min(delay));
    }
    let finished = matches!(child.try_wait(), Ok(Some(_)));
    let _ = child.kill();
    let _ = child.wait();
    finished
}

/// The number of files below `dir` (recursively).
fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .map(|e| {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    count_files(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

/// Source contents: relative path → bytes.
type Manifest = BTreeMap<PathBuf, Vec<u8>>;

fn read_tree(root: &Path) -> Manifest {
    let mut out = Manifest::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                let _ = out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// Makes generation `generation` of the source: rewrites some files, adds others.
fn mutate_source(src: &Path, rng: &mut Rng, generation: usize) {
    for i in 0..12 {
        let dir = src.join(format!("d{}", rng.below(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let len = if i == 0 {
            3 << 20
        } else {
            rng.below(300_000) as usize
        };
        std::fs::write(dir.join(format!("f{}.bin", rng.below(40))), rng.bytes(len)).unwrap();
    }
    std::fs::write(src.join("generation.txt"), format!("{generation}\n")).unwrap();
}

fn snapshots(repo: &Path) -> Vec<serde_json::Value> {
    let out = ok(cairn(repo).args(["--json", "snapshots"]));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("snapshots --json is JSON");
    v.as_array().cloned().expect("snapshots --json is an array")
}

/// The repository opens, check is clean (unreferenced packs allowed), and every snapshot
/// restores exactly the generation it is tagged with.
fn assert_repository_healthy(
    repo: &Path,
    src: &Path,
    generations: &BTreeMap<String, Manifest>,
    scratch: &Path,
) {
    let out = run(cairn(repo).args(["--json", "check"]));
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    assert!(
        out.status.success(),
        "check failed after a crash: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report
            .get("problems")
            .and_then(|p| p.as_array())
            .is_none_or(Vec::is_empty),
        "{report}"
    );
    for snap in snapshots(repo) {
        let id = snap["id"].as_str().expect("snapshot id").to_string();
        let tag = snap["tags"]
            .as_array()
            .and_then(|t| {
                t.iter()
                    .filter_map(|t| t.as_str())
                    .find(|t| t.starts_with("gen-"))
            })
            .expect("every test snapshot has a gen- tag")
            .to_string();
        let target = scratch.join(format!("restore-{id}"));
        ok(cairn(repo)
            .arg("restore")
            .arg(format!("{id}:{}", src.display()))
            .arg("--target")
            .arg(&target));
        let restored = read_tree(&target);
        let expected = &generations[&tag];
        assert!(
            restored == *expected,
            "snapshot {id} ({tag}) does not restore the source state it captured"
        );
        std::fs::remove_dir_all(&target).unwrap();
    }
}

#[test]
fn crash_backup_at_random_moments_keeps_every_snapshot_restorable() {
    let mut rng = Rng::new();
    let tmp = tempfile::tempdir().unwrap();
    let (repo, src, scratch) = (
        tmp.path().join("repo"),
        tmp.path().join("src"),
        tmp.path().join("scratch"),
    );
    std::fs::create_dir_all(&scratch).unwrap();
    ok(cairn(&repo).args(["init", "--insecure-kdf"]));
    let mut generations = BTreeMap::new();

    // A first, complete backup measures how long one takes.
    mutate_source(&src, &mut rng, 0);
    let _ = generations.insert("gen-0".to_string(), read_tree(&src));
    let start = Instant::now();
    ok(cairn(&repo).args(["backup", "--tag", "gen-0"]).arg(&src));
    let duration = start.elapsed().max(Duration::from_millis(50));

    // `iterations()` backups, and more (up to 20 extra) until a kill landed mid-backup: the
    // process was killed before it exited, after it had taken its lock in the repository (the
    // lock file stays behind), and before it saved its snapshot. Without one, the test would
    // not have tested a crash. Kills after packs were stored are counted too.
    let n = iterations();
    let (mut killed, mut mid_backup, mut after_packs) = (0, 0, 0);
    let mut duration = duration;
    let mut generation = 0;
    while generation < n || (mid_backup == 0 && generation < n + 20) {
        generation += 1;
        mutate_source(&src, &mut rng, generation);
        let tag = format!("gen-{generation}");
        let _ = generations.insert(tag.clone(), read_tree(&src));
        let mut cmd = cairn(&repo);
        let _ = cmd.args(["backup", "--tag", &tag]).arg(&src);
        if generation % 4 == 0 {
            // Every fourth backup runs to the end: the source grows, so this keeps the kill
            // window covering the whole run, the final index and snapshot writes included.
            let start = Instant::now();
            ok(&mut cmd);
            duration = start.elapsed();
        } else {
            let (locks_before, packs_before) = (
                count_files(&repo.join("locks")),
                count_files(&repo.join("data")),
            );
            let finished = kill_at_random(&mut cmd, &mut rng, duration * 13 / 10);
            killed += usize::from(!finished);
            let saved = snapshots(&repo).iter().any(|s| {
                s["tags"]
                    .as_array()
                    .is_some_and(|t| t.contains(&tag.as_str().into()))
            });
            assert!(!finished || saved, "{tag} finished but saved no snapshot");
            // A lock left behind: the backup was running in the repository when it died.
            if !finished && !saved && count_files(&repo.join("locks")) > locks_before {
                mid_backup += 1;
                if count_files(&repo.join("data")) > packs_before {
                    after_packs += 1;
                }
            }
        }
        // Check thoroughly every few iterations; the long run checks often.
        if generation % 3 == 0 {
            assert_repository_healthy(&repo, &src, &generations, &scratch);
        }
    }
    eprintln!(
        "{killed} of {generation} backups were killed before they finished, \
         {mid_backup} in the repository before saving a snapshot ({after_packs} after storing \
         packs)"
    );
    assert!(
        mid_backup > 0,
        "no kill landed mid-backup in {generation} backups"
    );
    assert_repository_healthy(&repo, &src, &generations, &scratch);
    // A new backup after all the crashes succeeds and restores.
    let last = format!("gen-{}", generation + 1);
    mutate_source(&src, &mut rng, generation + 1);
    let _ = generations.insert(last.clone(), read_tree(&src));
    ok(cairn(&repo).args(["backup", "--tag", &last]).arg(&src));
    assert_repository_healthy(&repo, &src, &generations, &scratch);
}

#[test]
fn crash_init_at_random_moments_leaves_a_usable_directory() {
    let mut rng = Rng::new();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    mutate_source(&src, &mut rng, 0);
    let manifest = read_tree(&src);
    // Real KDF costs, so init takes long enough to be interrupted at interesting points.
    let probe = tmp.path().join("probe");
    let start = Instant::now();
    ok(cairn(&probe).arg("init"));
    let duration = start.elapsed();
    for i in 0..iterations().div_ceil(2).max(2) {
        let repo = tmp.path().join(format!("repo{i}"));
        let _ = kill_at_random(cairn(&repo).arg("init"), &mut rng, duration * 6 / 5);
        // Either the repository is complete and opens, or init can simply be run again.
        if !repo.join("config").exists() {
            ok(cairn(&repo).arg("init"));
        }
        ok(cairn(&repo).args(["backup", "--tag", "gen-0"]).arg(&src));
        let generations = BTreeMap::from([("gen-0".to_string(), manifest.clone())]);
        let scratch = tmp.path().join(format!("scratch{i}"));
        std::fs::create_dir_all(&scratch).unwrap();
        assert_repository_healthy(&repo, &src, &generations, &scratch);
    }
}
