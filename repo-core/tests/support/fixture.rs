//! Shared fixtures of repo-core's integration tests: repositories with cheap parameters on the
//! memory and local backends, snapshot helpers and source-tree builders. The tmpfs, `is_root`
//! and the tree comparison come from repo-testkit.
//!
//! Each harness includes this file with `#[path = "support/fixture.rs"] mod fixture;`, so a
//! helper that one harness does not use is not dead code for the others.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use repo_core::format::envelope::{self, ObjectType};
use repo_core::format::lock::LockFile;
use repo_core::{
    Backend, BackupOptions, BackupSummary, BlobLocation, BlobType, CheckOptions, CheckReport,
    ChunkerParams, FileType, Id, Indexed, InitOptions, KdfParams, LocalBackend, MemoryBackend,
    NodeKind, OpCtx, OpenOptions, PackId, Progress, ProgressEvent, Repository, RestoreOptions,
    RestoreSummary, Secret, Snapshot, SnapshotId,
};
// Each harness includes this file; not every one uses each of these.
#[allow(unused_imports)]
pub use repo_testkit::{
    assert_same_tree, entries, first_difference, is_root, noise, rerun_as_nobody, tree_differences,
};

/// The password of every test repository.
pub const PASSWORD: &str = "correct horse battery staple";

/// Small chunks, so a few KiB of content already spans several chunks.
pub fn small_chunks() -> ChunkerParams {
    ChunkerParams {
        min: 256,
        avg: 1024,
        max: 4096,
    }
}

/// Init options for tests: a fast KDF, small chunks and the smallest pack size.
pub fn init_options() -> InitOptions {
    let mut opts = InitOptions::default();
    opts.kdf = KdfParams::insecure_fast();
    opts.chunker = small_chunks();
    opts.pack_size = 1024 * 1024;
    opts
}

/// The secret of every test repository.
pub fn secret() -> Secret {
    Secret::password(PASSWORD)
}

/// A silent, never-cancelled context.
pub fn ctx() -> OpCtx<'static> {
    OpCtx::default()
}

/// A repository with its backend, kept indexed: every backup through [`Fixture::backup`]
/// reloads the index, so the next operation sees what it wrote.
pub struct Fixture {
    /// The backend the repository lives on.
    pub backend: Arc<dyn Backend>,
    /// The same storage when it is in memory (for tests that alter stored bytes).
    pub memory: Option<MemoryBackend>,
    repo: Option<Repository<Indexed>>,
}

impl Fixture {
    /// A new repository in memory with [`init_options`].
    pub fn memory() -> Self {
        Self::memory_with(&init_options())
    }

    /// A new repository in memory.
    pub fn memory_with(opts: &InitOptions) -> Self {
        let memory = MemoryBackend::new();
        let backend: Arc<dyn Backend> = Arc::new(memory.clone());
        Self::init(backend, Some(memory), opts)
    }

    /// A new repository in the local directory `root` (created) with [`init_options`].
    pub fn local(root: &Path) -> Self {
        let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(root));
        Self::init(backend, None, &init_options())
    }

    fn init(backend: Arc<dyn Backend>, memory: Option<MemoryBackend>, opts: &InitOptions) -> Self {
        let repo = Repository::init(Arc::clone(&backend), &secret(), opts)
            .expect("init repository")
            .into_indexed(&ctx())
            .expect("load empty index");
        Self {
            backend,
            memory,
            repo: Some(repo),
        }
    }

    /// The repository.
    pub fn repo(&self) -> &Repository<Indexed> {
        self.repo.as_ref().expect("repository present")
    }

    /// Reloads the index (after objects were added or removed behind the repository's back).
    pub fn reload(&mut self) {
        let repo = self.repo.take().expect("repository present");
        self.repo = Some(repo.reload_index(&ctx()).expect("reload index"));
    }

    /// Opens the repository afresh from its backend.
    pub fn open(&self, secret: &Secret) -> repo_core::Result<Repository<Indexed>> {
        Repository::open(Arc::clone(&self.backend), secret, &OpenOptions::default())?
            .into_indexed(&ctx())
    }

    /// Backs up `paths`, then reloads the index whatever the outcome.
    pub fn backup_with(
        &mut self,
        ctx: &OpCtx<'_>,
        paths: &[&Path],
        opts: &BackupOptions,
    ) -> repo_core::Result<BackupSummary> {
        let paths: Vec<PathBuf> = paths.iter().map(|p| p.to_path_buf()).collect();
        let result = self.repo().backup(ctx, &paths, opts);
        self.reload();
        result
    }

    /// Backs up `paths` with `opts`; panics on failure. Returns the summary and the snapshot.
    pub fn backup(&mut self, paths: &[&Path], opts: &BackupOptions) -> (BackupSummary, Snapshot) {
        let summary = self
            .backup_with(&ctx(), paths, opts)
            .unwrap_or_else(|e| panic!("backup of {paths:?} failed: {e}"));
        let id = summary.snapshot.expect("a snapshot was written");
        (summary, self.snapshot(&id))
    }

    /// Backs up one directory with default options.
    pub fn backup_dir(&mut self, src: &Path) -> (BackupSummary, Snapshot) {
        self.backup(&[src], &BackupOptions::default())
    }

    /// Loads a snapshot.
    pub fn snapshot(&self, id: &SnapshotId) -> Snapshot {
        self.repo().load_snapshot(id).expect("load snapshot")
    }

    /// Plans and runs a restore.
    pub fn restore(
        &self,
        snapshot: &Snapshot,
        opts: &RestoreOptions,
        target: &Path,
    ) -> repo_core::Result<RestoreSummary> {
        let plan = self.repo().plan_restore(&ctx(), snapshot, opts)?;
        self.repo().restore(&ctx(), &plan, target)
    }

    /// Restores the directory `subpath` of a snapshot into `target`; panics on failure.
    pub fn restore_dir(
        &self,
        snapshot: &Snapshot,
        subpath: &Path,
        target: &Path,
    ) -> RestoreSummary {
        let mut opts = RestoreOptions::default();
        opts.subpath = Some(subpath.to_path_buf());
        self.restore(snapshot, &opts, target)
            .unwrap_or_else(|e| panic!("restore of {} failed: {e}", subpath.display()))
    }

    /// Runs `check`; panics when it cannot run.
    pub fn check(&self, read_data: bool) -> CheckReport {
        let mut opts = CheckOptions::default();
        opts.read_data = read_data;
        self.repo().check(&ctx(), &opts).expect("check runs")
    }

    /// Every path in a snapshot below `base` (relative to it), with its node kind.
    pub fn listing(&self, snapshot: &Snapshot, base: &Path) -> BTreeMap<PathBuf, NodeKind> {
        let mut out = BTreeMap::new();
        self.repo()
            .walk_tree(&snapshot.meta.tree, Path::new("/"), &mut |e| {
                if let Ok(rel) = e.path.strip_prefix(base) {
                    if !rel.as_os_str().is_empty() {
                        let _ = out.insert(rel.to_path_buf(), e.node.kind);
                    }
                }
                Ok(true)
            })
            .expect("walk snapshot");
        out
    }

    /// The paths of [`Fixture::listing`] as a set.
    pub fn paths(&self, snapshot: &Snapshot, base: &Path) -> BTreeSet<PathBuf> {
        self.listing(snapshot, base).into_keys().collect()
    }
}

/// A temporary directory in memory (`/dev/shm`) when there is one: creating and deleting tens
/// of thousands of inodes there costs a fraction of what it costs on a disk file system.
pub fn memory_tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("create a temporary directory")
}

/// Writes a file, creating its parent directories.
pub fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent directories");
    }
    fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Sets access and modification time of `path` (not following symlinks), to the nanosecond.
pub fn set_mtime(path: &Path, secs: i64, nanos: i64) {
    let ts = nix::sys::time::TimeSpec::new(secs, nanos);
    nix::sys::stat::utimensat(
        None,
        path,
        &ts,
        &ts,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap_or_else(|e| panic!("set times of {}: {e}", path.display()));
}

/// Sets a mode with `chmod`.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

impl Fixture {
    /// Writes a lock file as another process would, and returns its name.
    pub fn plant_lock(&self, lock: &LockFile) -> String {
        let key = repo_core::internals::master_key(self.repo());
        let plain = lock.to_plaintext().unwrap();
        let sealed = envelope::seal(key, ObjectType::Lock, b"", &plain).unwrap();
        let name = Id::hash(&sealed).to_hex();
        self.backend.write(FileType::Lock, &name, &sealed).unwrap();
        name
    }

    /// Where the index says the data blobs are, in the index's order.
    pub fn data_blob_locations(&self) -> Vec<BlobLocation> {
        self.repo()
            .index()
            .iter()
            .filter(|(t, _, _)| *t == BlobType::Data)
            .map(|(_, _, loc)| loc)
            .collect()
    }

    /// The packs that hold data blobs, sorted, each once.
    pub fn data_packs(&self) -> Vec<PackId> {
        let mut packs: Vec<PackId> = self
            .data_blob_locations()
            .into_iter()
            .map(|loc| loc.pack)
            .collect();
        packs.sort();
        packs.dedup();
        packs
    }
}

/// A [`Progress`] that collects warnings and skipped entries as (path, message).
#[derive(Default)]
pub struct Notes(pub Mutex<Vec<(PathBuf, String)>>);

impl Progress for Notes {
    fn event(&self, event: &ProgressEvent<'_>) {
        let note = match event {
            ProgressEvent::Warning { path, message } => {
                (path.to_path_buf(), (*message).to_string())
            }
            ProgressEvent::Skipped { path, error } => (path.to_path_buf(), error.to_string()),
            _ => return,
        };
        self.0.lock().unwrap().push(note);
    }
}

impl Notes {
    /// The notes so far, leaving none.
    pub fn take(&self) -> Vec<(PathBuf, String)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}
