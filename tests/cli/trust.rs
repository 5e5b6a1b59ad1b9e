//! What commands trust (issue 9, items 4 and 6): `check` judges the repository and never the
//! local cache; other commands verify every cached copy against its name; a cache that cannot
//! be created or written is a warning, not a failure; and a read-only repository can be read
//! with `--no-lock`, while a lock that cannot be written says why and suggests that flag.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{
    arg, as_nobody, assert_same_tree, chown_nobody, open_to_others, text, write_sample_tree, Env,
    TreeCompare,
};

/// A repository with one snapshot of a sample tree, whose cache was filled by `ls` (index,
/// snapshot and tree-pack files). Returns the source directory.
fn backed_up_and_cached(env: &Env) -> PathBuf {
    env.init();
    let src = env.path("src");
    write_sample_tree(&src);
    let _ = env.ok(&["backup", arg(&src)]);
    let _ = env.ok(&["ls", "latest", "--recursive"]);
    src
}

/// The one repository cache directory below the test's cache home.
fn cache_dir(env: &Env) -> PathBuf {
    let base = env.path("cache/cairn");
    let dirs: Vec<PathBuf> = fs::read_dir(&base)
        .unwrap_or_else(|e| panic!("read {}: {e}", base.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "one repository cache in {}", base.display());
    dirs.into_iter().next().unwrap()
}

/// The files of one directory (not recursive), sorted.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// The single file in `dir`, which must also be in the cache's `sub` directory.
fn only_cached_file(env: &Env, dir: &str, sub: &str) -> (PathBuf, PathBuf) {
    let in_repo = files_in(&env.repo.join(dir));
    assert_eq!(in_repo.len(), 1, "{dir}: {in_repo:?}");
    let repo_file = in_repo[0].clone();
    let cached = cache_dir(env).join(sub).join(name_of(&repo_file));
    assert!(cached.is_file(), "{} is cached", repo_file.display());
    (repo_file, cached)
}

/// The repository path of pack `name`.
fn pack_path(env: &Env, name: &str) -> PathBuf {
    env.repo.join("data").join(&name[..2]).join(name)
}

fn flip(path: &Path, at: usize) {
    let mut bytes = fs::read(path).unwrap();
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 0x20;
    fs::write(path, bytes).unwrap();
}

fn hashes_to_its_name(path: &Path) -> bool {
    repo_core::Id::hash(&fs::read(path).unwrap()).to_hex() == name_of(path)
}

/// Asserts that `check ARGS` exits 1 and that its output names `object`; returns stdout.
fn check_fails_naming(env: &Env, args: &[&str], object: &str) -> String {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    let out = env.run(&all);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "cairn {all:?} must fail\nstdout: {stdout}\nstderr: {}",
        text(&out.stderr)
    );
    assert!(
        !stdout.contains("no problems found"),
        "cairn {all:?}: {stdout}"
    );
    let named = stdout
        .lines()
        .any(|l| l.starts_with("problem: ") && l.contains(object));
    assert!(named, "cairn {all:?} names {object}: {stdout}");
    stdout
}

#[test]
fn check_finds_a_damaged_index_file_that_is_cached() {
    let env = Env::new();
    let _ = backed_up_and_cached(&env);
    let (index, _) = only_cached_file(&env, "index", "index");
    flip(&index, 100);
    let _ = check_fails_naming(&env, &["--read-data"], &name_of(&index));
    let _ = check_fails_naming(&env, &[], &name_of(&index));
}

#[test]
fn check_finds_an_index_file_truncated_to_nothing_that_is_cached() {
    let env = Env::new();
    let _ = backed_up_and_cached(&env);
    let (index, _) = only_cached_file(&env, "index", "index");
    fs::write(&index, b"").unwrap();
    let _ = check_fails_naming(&env, &["--read-data"], &name_of(&index));
}

#[test]
fn check_finds_a_damaged_snapshot_file_that_is_cached() {
    let env = Env::new();
    let _ = backed_up_and_cached(&env);
    let (snapshot, _) = only_cached_file(&env, "snapshots", "snapshots");
    flip(&snapshot, 60);
    let _ = check_fails_naming(&env, &["--read-data"], &name_of(&snapshot));
    let _ = check_fails_naming(&env, &[], &name_of(&snapshot));
    // The cache held a good copy all along; a machine without it cannot restore.
    let target = env.path("target");
    let out = env.run(&["--no-cache", "restore", "latest", "--target", arg(&target)]);
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn plain_check_finds_a_damaged_tree_pack_that_is_cached() {
    let env = Env::new();
    let _ = backed_up_and_cached(&env);
    let cached_packs = files_in(&cache_dir(&env).join("data"));
    assert_eq!(cached_packs.len(), 1, "one tree pack: {cached_packs:?}");
    let name = name_of(&cached_packs[0]);
    // Byte 30 lies in the first tree blob's envelope (packs start with their blobs).
    flip(&pack_path(&env, &name), 30);
    let stdout = check_fails_naming(&env, &[], &name[..8]);
    assert!(stdout.contains("problem: snapshot "), "{stdout}");
}

#[test]
fn tampered_cache_copies_are_not_trusted_by_ls_and_restore() {
    let env = Env::new();
    let src = backed_up_and_cached(&env);
    let cache = cache_dir(&env);
    let (_, index) = only_cached_file(&env, "index", "index");
    let (_, snapshot) = only_cached_file(&env, "snapshots", "snapshots");
    let packs = files_in(&cache.join("data"));
    assert_eq!(packs.len(), 1, "{packs:?}");
    let pack = packs[0].clone();
    let expected_ls = text(&env.ok(&["ls", "latest", "--recursive"]).stdout);

    // A tree blob's bytes, then the pack header (no blob read covers it), then index and
    // snapshot copies: each must be found out and replaced by the repository's bytes.
    for (what, path, at) in [
        ("tree blob", &pack, 30usize),
        ("pack header", &pack, usize::MAX),
        ("index", &index, 100),
        ("snapshot", &snapshot, 60),
    ] {
        let tamper = || {
            let _ = env.ok(&["ls", "latest"]);
            assert!(path.is_file(), "{what} is cached again");
            flip(path, at);
            assert!(!hashes_to_its_name(path));
        };
        tamper();
        let out = env.ok(&["ls", "latest", "--recursive"]);
        assert_eq!(text(&out.stdout), expected_ls, "ls with a tampered {what}");
        assert!(
            !path.exists() || hashes_to_its_name(path),
            "ls kept the tampered cached {what} {}",
            path.display()
        );
        tamper();
        let target = env.path(&format!("target-{}", what.replace(' ', "-")));
        let spec = format!("latest:{}", src.display());
        let _ = env.ok(&["restore", &spec, "--target", arg(&target)]);
        assert_same_tree(&src, &target);
        assert!(
            !path.exists() || hashes_to_its_name(path),
            "restore kept the tampered cached {what}"
        );
    }
}

/// Stderr lines that are warnings.
fn warnings(out: &Output) -> Vec<String> {
    text(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_cache_path_that_is_a_file_is_one_warning_not_a_failure() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_sample_tree(&src);
    let file = env.path("not-a-dir");
    fs::write(&file, b"x").unwrap();
    let cache = ["--cache-dir", arg(&file)];
    let target = env.path("target");
    let spec = format!("latest:{}", src.display());
    // Check uses no cache at all, so it has nothing to warn about.
    let commands: [(&[&str], usize); 5] = [
        (&["backup", arg(&src)], 1),
        (&["snapshots"], 1),
        (&["ls", "latest", "--recursive"], 1),
        (&["restore", &spec, "--target", arg(&target)], 1),
        (&["check", "--read-data"], 0),
    ];
    for (command, expected) in commands {
        let mut args = cache.to_vec();
        args.extend_from_slice(command);
        let out = env.ok(&args);
        let w = warnings(&out);
        assert_eq!(w.len(), expected, "cairn {args:?}: {w:?}");
        for w in w {
            assert!(
                w.contains("cannot use the cache") && w.contains("going on without"),
                "{w}"
            );
        }
    }
    assert_same_tree(&src, &target);
    assert_eq!(fs::read(&file).unwrap(), b"x");
}

#[test]
fn no_home_means_no_cache_with_one_warning() {
    let env = Env::new();
    env.init();
    let out = env
        .cairn()
        .env_remove("HOME")
        .env_remove("XDG_CACHE_HOME")
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("HOME"), "{w:?}");
}

#[test]
fn a_cache_that_cannot_be_written_is_one_warning_not_a_failure() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_sample_tree(&src);
    let _ = env.ok(&["backup", arg(&src)]);
    open_to_others(&env.path(""));
    // A cache home of root's: nobody cannot create a cache there...
    let roots = env.path("roots-cache");
    fs::create_dir(&roots).unwrap();
    let out = as_nobody(&env, &["--cache-dir", arg(&roots), "ls", "latest"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("hello.txt"));
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("cannot use the cache"), "{w:?}");
    assert_eq!(fs::read_dir(&roots).unwrap().count(), 0);
    // ...nor write into one that root made (and filled with snapshots only).
    let _ = env.ok(&["snapshots"]);
    let out = as_nobody(&env, &["ls", "latest", "--recursive"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("hello.txt"));
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("cannot write to the cache"), "{w:?}");
}

/// Asserts that the reading commands work with `--no-lock` through `run`, and that restore and
/// check without it fail with one line that says the repository is read-only and suggests
/// `--no-lock`.
fn reads_with_no_lock(
    src: &Path,
    target: &Path,
    compare: TreeCompare,
    run: &dyn Fn(&[&str]) -> Output,
) {
    let t = arg(target);
    let spec = format!("latest:{}", src.display());
    for args in [&["restore", &spec, "--target", t][..], &["check"][..]] {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let line = crate::support::one_error_line(&out.stderr);
        assert!(line.contains("read-only"), "{line}");
        assert!(line.contains("--no-lock"), "{line}");
    }
    let ok = |args: &[&str]| {
        let mut all = vec!["--no-lock"];
        all.extend_from_slice(args);
        let out = run(&all);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{all:?}\nstdout: {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    let _ = ok(&["restore", &spec, "--target", t]);
    compare.assert_same(src, target);
    assert!(ok(&["check", "--read-data"]).contains("no problems found"));
    assert!(ok(&["ls", "latest", "--recursive"]).contains("hello.txt"));
    assert_eq!(ok(&["snapshots", "--json"]).matches("\"id\"").count(), 1);
    let cat = ok(&["cat", "snapshot", "latest"]);
    assert!(cat.contains("\"tree\""), "{cat}");
    let out = run(&["--no-lock", "backup", arg(src)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn a_repository_nobody_may_write_is_read_with_no_lock() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_sample_tree(&src);
    let _ = env.ok(&["backup", arg(&src)]);
    open_to_others(&env.path(""));
    // Repository files stay root's and not writable by others; the cache and target are
    // nobody's.
    let cache = env.path("nobodys-cache");
    let target = env.path("target");
    for dir in [&cache, &target] {
        fs::create_dir(dir).unwrap();
        chown_nobody(dir);
    }
    // Restored by nobody, the files are nobody's.
    let compare = TreeCompare { owners: false };
    reads_with_no_lock(&src, &target, compare, &|args| {
        let mut all = vec!["--cache-dir", arg(&cache)];
        all.extend_from_slice(args);
        as_nobody(&env, &all)
    });
    assert!(
        files_in(&env.repo.join("locks")).is_empty(),
        "no lock was written"
    );
}

/// A read-only bind mount of `dir` onto itself, undone on drop.
struct ReadOnlyMount(PathBuf);

impl ReadOnlyMount {
    fn new(dir: &Path) -> Self {
        let status = |args: &[&str]| {
            Command::new("mount")
                .args(args)
                .status()
                .expect("run mount")
                .success()
        };
        assert!(status(&["--bind", arg(dir), arg(dir)]), "bind mount");
        let guard = Self(dir.to_path_buf());
        assert!(
            status(&["-o", "remount,ro,bind", arg(dir)]),
            "remount read-only"
        );
        guard
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_mount_is_read_with_no_lock() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_sample_tree(&src);
    let _ = env.ok(&["backup", arg(&src)]);
    let mount = ReadOnlyMount::new(&env.repo);
    assert!(
        fs::write(env.repo.join("probe"), b"x").is_err(),
        "mounted read-only"
    );
    let target = env.path("target");
    reads_with_no_lock(&src, &target, TreeCompare::default(), &|args| env.run(args));
    drop(mount);
    assert!(files_in(&env.repo.join("locks")).is_empty());
}
