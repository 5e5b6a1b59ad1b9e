//! The local cache through the library (issue 9, items 4 and 6): `Repository::check` judges the
//! repository even when the repository it is given reads through a filled cache, and a cache
//! that cannot be created is one warning through the progress sink, not an error.

#[path = "support/fixture.rs"]
mod fixture;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fixture::{ctx, noise, secret, write, Fixture};
use repo_core::{
    Backend, CheckOptions, FileType, Indexed, LocalBackend, OpCtx, OpenOptions, Problem, Progress,
    ProgressEvent, Repository, SnapshotFilter,
};

/// Collects warnings.
#[derive(Default)]
struct Warnings(Mutex<Vec<(PathBuf, String)>>);

impl Progress for Warnings {
    fn event(&self, event: &ProgressEvent<'_>) {
        if let ProgressEvent::Warning { path, message } = event {
            self.0
                .lock()
                .unwrap()
                .push((path.to_path_buf(), message.to_string()));
        }
    }
}

fn open_cached(root: &Path, cache: &Path, progress: &dyn Progress) -> Repository<Indexed> {
    let mut opts = OpenOptions::default();
    opts.cache_dir = Some(cache.to_path_buf());
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(root));
    let cancel = repo_core::CancelToken::new();
    Repository::open(backend, &secret(), &opts)
        .unwrap()
        .into_indexed(&OpCtx::new(progress, &cancel))
        .unwrap()
}

/// A local repository with one snapshot, opened with a cache that a listing filled.
fn cached_repository(tmp: &Path) -> (PathBuf, Repository<Indexed>) {
    let root = tmp.join("repo");
    let src = tmp.join("src");
    write(&src.join("a/f"), &noise(5000, 1));
    write(&src.join("b"), b"hello");
    let mut fx = Fixture::local(&root);
    let _ = fx.backup_dir(&src);
    let repo = open_cached(&root, &tmp.join("cache"), &repo_core::NoProgress);
    let snap = repo
        .find_snapshot(&ctx(), "latest", &SnapshotFilter::default())
        .unwrap();
    let mut nodes = 0;
    repo.walk_tree(&snap.meta.tree, Path::new("/"), &mut |_| {
        nodes += 1;
        Ok(true)
    })
    .unwrap();
    assert!(nodes > 3, "{nodes} nodes");
    (root, repo)
}

fn only_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

fn flip(path: &Path, at: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at] ^= 1;
    fs::write(path, bytes).unwrap();
}

fn check(repo: &Repository<Indexed>, read_data: bool) -> Vec<Problem> {
    let mut opts = CheckOptions::default();
    opts.read_data = read_data;
    repo.check(&ctx(), &opts).unwrap().problems
}

#[test]
fn check_of_a_cached_repository_reads_index_and_snapshot_files_from_the_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, repo) = cached_repository(tmp.path());
    let index = only_file(&root.join("index"));
    let snapshot = only_file(&root.join("snapshots"));
    flip(&index, 40);
    flip(&snapshot, 40);
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    for read_data in [false, true] {
        let problems = check(&repo, read_data);
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::IndexFile { name: n, .. } if *n == name(&index))),
            "read_data {read_data}: {problems:?}"
        );
        assert!(
            problems.iter().any(|p| matches!(p,
                Problem::Snapshot { snapshot: s, .. } if *s == name(&snapshot))),
            "read_data {read_data}: {problems:?}"
        );
    }
}

#[test]
fn plain_check_of_a_cached_repository_reads_trees_from_the_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, repo) = cached_repository(tmp.path());
    let cached = only_file(
        &tmp.path().join("cache").join(
            fs::read_dir(tmp.path().join("cache"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.is_dir())
                .unwrap()
                .join("data"),
        ),
    );
    let pack = cached.file_name().unwrap().to_string_lossy().into_owned();
    flip(&root.join("data").join(&pack[..2]).join(&pack), 30);
    let problems = check(&repo, false);
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::Tree { error, .. } if error.contains(&pack[..8]))),
        "{problems:?}"
    );
    // The cached copy is intact, and other commands may still use it.
    assert_eq!(
        repo_core::Id::hash(&fs::read(&cached).unwrap()).to_hex(),
        pack
    );
}

#[test]
fn a_cache_that_cannot_be_created_is_one_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    let src = tmp.path().join("src");
    write(&src.join("f"), b"x");
    let mut fx = Fixture::local(&root);
    let _ = fx.backup_dir(&src);
    let file = tmp.path().join("cache-is-a-file");
    fs::write(&file, b"").unwrap();
    let warnings = Warnings::default();
    let repo = open_cached(&root, &file, &warnings);
    let cancel = repo_core::CancelToken::new();
    let ctx = OpCtx::new(&warnings, &cancel);
    let _ = repo.snapshots(&ctx).unwrap();
    assert!(repo
        .check(&ctx, &CheckOptions::default())
        .unwrap()
        .is_clean());
    let seen = warnings.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, file);
    assert!(seen[0].1.contains("cannot use the cache"), "{seen:?}");
    assert!(fx.backend.list(FileType::Lock).unwrap().is_empty());
}
