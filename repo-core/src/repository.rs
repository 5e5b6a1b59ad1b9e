//! `Repository`: the owner of the backend, the master key and the config.
//!
//! Two states: [`Opened`] (key and config loaded) and [`Indexed`] (the master index loaded too).
//! The operations (archiver, restorer, checker, reports) are `impl Repository` blocks and reach
//! storage only through it; whole files (index, snapshot, lock) go into and out of envelopes
//! here (`seal_file`, `open_file`), blobs through the pack writer and reader. Reads verify
//! everything: file names against the hash of their bytes, envelopes against their MAC, blobs
//! against their keyed id.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rayon::prelude::*;

use crate::backend::{Backend, FileType};
use crate::chunker::ChunkerParams;
use crate::crypto::{KdfParams, MasterKey, Secret, MASTER_KEY_LEN};
use crate::error::{CorruptionKind, Error, ErrorKind, Result};
use crate::format::config::Config;
use crate::format::envelope::{self, ObjectType};
use crate::format::index::IndexFile;
use crate::format::snapshot::SnapshotFile;
use crate::format::tree::Tree;
use crate::format::{
    keyfile, BlobType, MAX_INDEX_FILE_LEN, MAX_SMALL_FILE_LEN, MAX_SNAPSHOT_FILE_LEN,
};
use crate::host::now_ns;
use crate::id::{short, BlobId, Id, IndexId, SnapshotId};
use crate::index::MasterIndex;
use crate::pack::reader::{BlobSpan, PackReader};
use crate::progress::{OpCtx, Phase, ProgressEvent};
use crate::snapshot::Snapshot;

/// Parameters fixed when a repository is created.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Argon2id costs of the first key file.
    pub kdf: KdfParams,
    /// Chunk size bounds.
    pub chunker: ChunkerParams,
    /// Default zstd level (0 = store uncompressed).
    pub compression_level: i32,
    /// Target pack size in bytes (1 MiB..=512 MiB).
    pub pack_size: u32,
}

/// Default target pack size: 16 MiB, measured as the knee between object count and the memory
/// and latency of assembling packs (see benches/RESULTS.md); object stores may prefer more.
pub const DEFAULT_PACK_SIZE: u32 = 16 * 1024 * 1024;

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            kdf: KdfParams::default(),
            chunker: ChunkerParams::default(),
            compression_level: 3,
            pack_size: DEFAULT_PACK_SIZE,
        }
    }
}

/// How to open a repository.
#[non_exhaustive]
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// A local directory caching index, snapshot and tree-pack files; `None` disables caching.
    /// A cache that cannot be created or written is not an error: the repository goes on
    /// without it and reports why, once, as a [`ProgressEvent::Warning`] (see
    /// [`Repository::report_cache_problem`]).
    pub cache_dir: Option<PathBuf>,
    /// Take no lock at all for operations that only read (restore, check, listings), as
    /// restic's `--no-lock` does: what lets them work on read-only media, mounts or
    /// permissions. Nothing then keeps a concurrent exclusive operation from deleting what they
    /// read. Backups still need a lock and refuse to run.
    pub no_lock: bool,
    /// At most this many bytes per second written to the backend (all threads together).
    pub limit_upload: Option<u64>,
    /// At most this many bytes per second read from the backend.
    pub limit_download: Option<u64>,
}

/// State marker: key and config loaded.
#[derive(Debug)]
pub struct Opened;

/// State marker holding the master index.
pub struct Indexed {
    index: MasterIndex,
    index_files: Vec<IndexId>,
    skipped_index_files: Vec<(String, String)>,
    /// Snapshot file names listed just before the index was read: the snapshots the index is
    /// known to cover.
    snapshots_covered: Vec<String>,
}

/// An open repository.
pub struct Repository<S = Opened> {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) key: MasterKey,
    pub(crate) config: Config,
    pub(crate) cache: Option<crate::cache::Cache>,
    cache_notice: Arc<crate::cache::CacheNotice>,
    no_lock: bool,
    tree_cache: Mutex<TreeCache>,
    /// The key file the password opened (None when opened with the raw master key).
    pub(crate) key_file: Option<String>,
    pub(crate) state: S,
}

/// Decoded trees kept for reuse, bounded by their encoded size (a walk of a snapshot touches
/// each tree once, a backup reads the parent's trees once; the cache serves repeats such as
/// `node_at` lookups and FUSE without holding a whole snapshot's metadata).
#[derive(Default)]
struct TreeCache {
    trees: HashMap<BlobId, Arc<Tree>>,
    bytes: usize,
}

const TREE_CACHE_BYTES: usize = 16 << 20;

impl Repository<Opened> {
    /// Creates a new repository in an empty location and returns it opened.
    pub fn init(backend: Arc<dyn Backend>, secret: &Secret, opts: &InitOptions) -> Result<Self> {
        let Secret::Password(password) = secret else {
            return Err(Error::invalid(
                "a new repository needs a password, not a raw key",
            ));
        };
        let mut repo_id = [0u8; 32];
        crate::crypto::random_bytes(&mut repo_id)?;
        let config = Config {
            repo_id,
            chunk_min: opts.chunker.min,
            chunk_avg: opts.chunker.avg,
            chunk_max: opts.chunker.max,
            compression_level: opts.compression_level,
            pack_size: opts.pack_size,
        };
        config.validate().map_err(Error::invalid)?;
        let backend: Arc<dyn Backend> = Arc::new(crate::backend::RetryBackend::new(backend));
        opts.kdf.derive(b"", &[0u8; 16])?;
        backend.create()?;
        // A location without a config holds no repository: key files there are what an
        // interrupted init left, wrapping a master key that nothing uses. Removed, so the
        // new repository has exactly its own key.
        for (name, _) in backend.list(FileType::Key)? {
            backend.delete(FileType::Key, &name)?;
        }
        let key = MasterKey::generate()?;
        // Key first, config last: a location with a config is a complete repository.
        let keyfile = keyfile::encode(&key, password, opts.kdf, now_ns() / 1_000_000_000)?;
        let key_name = Id::hash(&keyfile).to_hex();
        backend.write(FileType::Key, &key_name, &keyfile)?;
        backend.write(FileType::Config, "config", &config.seal(&key)?)?;
        let mut repo = Self::assemble(backend, key, config, None, Arc::default(), false);
        repo.key_file = Some(key_name);
        Ok(repo)
    }

    /// Opens an existing repository with a password or raw master key.
    pub fn open(backend: Arc<dyn Backend>, secret: &Secret, opts: &OpenOptions) -> Result<Self> {
        // The limits apply below the retries: a retried transfer counts again, as it costs
        // the link again.
        let backend: Arc<dyn Backend> =
            if opts.limit_upload.is_some() || opts.limit_download.is_some() {
                Arc::new(crate::backend::RateLimitedBackend::new(
                    backend,
                    opts.limit_upload,
                    opts.limit_download,
                ))
            } else {
                backend
            };
        let backend: Arc<dyn Backend> = Arc::new(crate::backend::RetryBackend::new(backend));
        let config_bytes = match backend.read(FileType::Config, "config") {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::new(
                    ErrorKind::NoRepository,
                    format!("no repository at {}", backend.location()),
                ))
            }
            Err(e) => return Err(e),
        };
        if config_bytes.len() as u64 > MAX_SMALL_FILE_LEN {
            return Err(Error::corrupt(
                CorruptionKind::BadEncoding,
                "config",
                "larger than any config",
            ));
        }
        let (key, key_file) = match secret {
            Secret::MasterKey(raw) => {
                let raw: &[u8; MASTER_KEY_LEN] = raw.as_slice().try_into().map_err(|_| {
                    Error::invalid(format!("a raw master key is {MASTER_KEY_LEN} bytes"))
                })?;
                (MasterKey::from_bytes(raw), None)
            }
            Secret::Password(password) => {
                let (key, name) = Self::unwrap_key(backend.as_ref(), password)?;
                (key, Some(name))
            }
        };
        let config =
            Config::open(&key, &config_bytes).map_err(|e| match (secret, e.corruption()) {
                (Secret::MasterKey(_), Some(CorruptionKind::MacMismatch)) => Error::new(
                    ErrorKind::WrongSecret,
                    "the master key does not open this repository",
                ),
                _ => e,
            })?;
        let notice = Arc::new(crate::cache::CacheNotice::default());
        // The cache is optional: one that cannot be made is a warning, not a failed command.
        let cache = opts.cache_dir.as_ref().and_then(|dir| {
            crate::cache::Cache::new(dir, &config.repo_id, Arc::clone(&notice))
                .map_err(|e| {
                    notice.record(
                        dir,
                        format!("cannot use the cache ({e}); going on without it"),
                    );
                })
                .ok()
        });
        let mut repo = Self::assemble(backend, key, config, cache, notice, opts.no_lock);
        repo.key_file = key_file;
        Ok(repo)
    }

    fn unwrap_key(backend: &dyn Backend, password: &[u8]) -> Result<(MasterKey, String)> {
        let mut names = backend.list(FileType::Key)?;
        names.sort();
        if names.is_empty() {
            return Err(Error::corrupt(
                CorruptionKind::Truncated,
                "keys/",
                "the repository has no key files",
            ));
        }
        let mut last_corrupt = None;
        for (name, size) in names {
            if size != keyfile::KEYFILE_LEN as u64 {
                last_corrupt = Some(Error::corrupt(
                    CorruptionKind::BadEncoding,
                    format!("key {name}"),
                    format!("{size} bytes, not a key file"),
                ));
                continue;
            }
            let bytes = backend.read(FileType::Key, &name)?;
            match keyfile::decode(&bytes, password, &format_args!("key {name}")) {
                Ok(key) => return Ok((key, name)),
                Err(e) if e.kind() == ErrorKind::WrongSecret => {}
                Err(e) => last_corrupt = Some(e),
            }
        }
        Err(match last_corrupt {
            Some(e) => Error::new(
                ErrorKind::WrongSecret,
                format!("no key file opens with this password ({e})"),
            ),
            None => Error::new(
                ErrorKind::WrongSecret,
                "wrong password: no key file opens with it",
            ),
        })
    }

    fn assemble(
        backend: Arc<dyn Backend>,
        key: MasterKey,
        config: Config,
        cache: Option<crate::cache::Cache>,
        cache_notice: Arc<crate::cache::CacheNotice>,
        no_lock: bool,
    ) -> Self {
        Self {
            backend,
            key,
            config,
            cache,
            cache_notice,
            no_lock,
            tree_cache: Mutex::new(TreeCache::default()),
            key_file: None,
            state: Opened,
        }
    }

    /// Loads every index file into the master index.
    ///
    /// An index file that cannot be read or decoded is skipped and reported through
    /// [`ProgressEvent::Warning`] and [`Repository::skipped_index_files`]; its packs still exist and
    /// `check` names them as unindexed.
    ///
    /// Snapshots are listed first (spec/09-invariants.md, R1): writers store packs, then index
    /// files, then the snapshot, so every snapshot listed before the index is read has its blobs
    /// in the index. One that a concurrent backup saves later may not (see
    /// [`Repository::check`]).
    pub fn into_indexed(self, ctx: &OpCtx<'_>) -> Result<Repository<Indexed>> {
        ctx.progress.event(&ProgressEvent::PhaseStarted {
            phase: Phase::LoadIndex,
            total_items: None,
            total_bytes: None,
        });
        let mut snapshots_covered: Vec<String> = self
            .backend
            .list(FileType::Snapshot)?
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        snapshots_covered.sort();
        let listed = self.backend.list(FileType::Index)?;
        let loaded: Vec<(String, Result<IndexFile>)> = listed
            .par_iter()
            .map(|(name, _)| {
                let r = ctx.cancel.check().and_then(|()| self.read_index_file(name));
                (name.clone(), r)
            })
            .collect();
        ctx.cancel.check()?;
        let mut superseded = HashSet::new();
        for (_, r) in &loaded {
            if let Ok(f) = r {
                superseded.extend(f.supersedes.iter().copied());
            }
        }
        let mut builder = MasterIndex::builder();
        let mut index_files = Vec::new();
        let mut skipped = Vec::new();
        for (name, r) in loaded {
            match r {
                Ok(file) => {
                    let id = IndexId::from_hex(&name)?;
                    if superseded.contains(&id) {
                        continue;
                    }
                    for pack in &file.packs {
                        builder.add_pack(pack).map_err(|e| {
                            Error::corrupt(CorruptionKind::BadEncoding, format!("index {id}"), e)
                        })?;
                    }
                    index_files.push(id);
                }
                Err(e) => {
                    let path = std::path::PathBuf::from(format!("index/{name}"));
                    let message = format!("skipped unreadable index file: {e}");
                    ctx.progress.event(&ProgressEvent::Warning {
                        path: &path,
                        message: &message,
                    });
                    skipped.push((name, e.to_string()));
                }
            }
        }
        ctx.progress.event(&ProgressEvent::PhaseFinished {
            phase: Phase::LoadIndex,
        });
        self.report_cache_problem(ctx);
        let Self {
            backend,
            key,
            config,
            cache,
            cache_notice,
            no_lock,
            tree_cache,
            key_file,
            ..
        } = self;
        Ok(Repository {
            backend,
            key,
            config,
            cache,
            cache_notice,
            no_lock,
            tree_cache,
            key_file,
            state: Indexed {
                index: builder.build(),
                index_files,
                skipped_index_files: skipped,
                snapshots_covered,
            },
        })
    }
}

impl<S: Send + Sync> Repository<S> {
    /// The repository parameters.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The storage backend.
    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The master key.
    pub(crate) fn master_key(&self) -> &MasterKey {
        &self.key
    }

    /// The master key as bytes, for `cairn cat masterkey`: whoever holds them opens the
    /// repository without any password ([`Secret::MasterKey`]), so the caller shows them only
    /// on an explicit request.
    pub fn export_master_key(&self) -> zeroize::Zeroizing<Vec<u8>> {
        zeroize::Zeroizing::new(self.key.to_bytes().to_vec())
    }

    /// Reports, once per opened repository, why the local cache could not be created or
    /// written (as a [`ProgressEvent::Warning`] naming the cache directory). Loading the index,
    /// listing snapshots and `check` call it; a caller that does other work with the cache
    /// calls it when done.
    pub fn report_cache_problem(&self, ctx: &OpCtx<'_>) {
        self.cache_notice.report(ctx);
    }

    /// Whether the repository was opened with [`OpenOptions::no_lock`].
    pub fn is_no_lock(&self) -> bool {
        self.no_lock
    }

    /// Reads a hash-named file (index, snapshot, key, pack) and checks its name against its hash.
    pub(crate) fn read_named(
        &self,
        file_type: FileType,
        name: &str,
        limit: u64,
    ) -> Result<Vec<u8>> {
        let object = || format!("{} {}", type_word(file_type), short(name));
        let expected = Id::from_hex(name).map_err(|_| {
            Error::corrupt(
                CorruptionKind::BadEncoding,
                object(),
                "name is not a 64-digit hex id",
            )
        })?;
        if let Some(cache) = &self.cache {
            if let Some(bytes) = cache.get(file_type, name) {
                if bytes.len() as u64 <= limit && Id::hash(&bytes) == expected {
                    return Ok(bytes);
                }
                // Not what its name says: never trusted, and fetched again below.
                cache.remove(file_type, name);
            }
        }
        let bytes = self.backend.read(file_type, name)?;
        if bytes.len() as u64 > limit {
            return Err(Error::corrupt(
                CorruptionKind::BadEncoding,
                object(),
                format!("{} bytes is over the limit", bytes.len()),
            ));
        }
        if Id::hash(&bytes) != expected {
            return Err(Error::corrupt(
                CorruptionKind::IdMismatch,
                object(),
                "content does not match its name",
            ));
        }
        if let Some(cache) = &self.cache {
            if matches!(file_type, FileType::Index | FileType::Snapshot) {
                let _ = cache.put(file_type, name, &bytes);
            }
        }
        Ok(bytes)
    }

    /// Writes a hash-named file and returns its id.
    pub(crate) fn write_named(&self, file_type: FileType, bytes: &[u8]) -> Result<Id> {
        let id = Id::hash(bytes);
        self.backend.write(file_type, &id.to_hex(), bytes)?;
        Ok(id)
    }

    pub(crate) fn read_index_file(&self, name: &str) -> Result<IndexFile> {
        let object = format!("index {}", short(name));
        let bytes = self.read_named(FileType::Index, name, MAX_INDEX_FILE_LEN)?;
        let plain = open_file(&self.key, ObjectType::Index, &bytes, &object)?;
        IndexFile::from_plaintext(&plain, &object)
    }

    /// Reads and decrypts one snapshot.
    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        let name = id.to_hex();
        let object = format!("snapshot {id}");
        let bytes = self.read_named(FileType::Snapshot, &name, MAX_SNAPSHOT_FILE_LEN)?;
        let plain = open_file(&self.key, ObjectType::Snapshot, &bytes, &object)?;
        Ok(Snapshot {
            id: *id,
            meta: SnapshotFile::from_plaintext(&plain, &object)?,
        })
    }

    /// Every snapshot, oldest first. Unreadable snapshot files are errors.
    pub fn snapshots(&self, ctx: &OpCtx<'_>) -> Result<Vec<Snapshot>> {
        let names = self.backend.list(FileType::Snapshot)?;
        let mut out = names
            .par_iter()
            .map(|(name, _)| {
                ctx.cancel.check()?;
                self.load_snapshot(&SnapshotId::from_hex(name).map_err(|_| {
                    Error::corrupt(
                        CorruptionKind::BadEncoding,
                        format!("snapshot {name}"),
                        "name is not a 64-digit hex id",
                    )
                })?)
            })
            .collect::<Result<Vec<_>>>()?;
        self.report_cache_problem(ctx);
        out.sort_by(|a, b| a.meta.time_ns.cmp(&b.meta.time_ns).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Resolves a snapshot id, unique id prefix, or `latest` among the snapshots `filter` accepts.
    pub fn find_snapshot(
        &self,
        ctx: &OpCtx<'_>,
        spec: &str,
        filter: &crate::snapshot::SnapshotFilter,
    ) -> Result<Snapshot> {
        let all = self.snapshots(ctx)?;
        crate::snapshot::select(&all, spec, filter).cloned()
    }

    /// Saves a snapshot file and returns its id.
    pub(crate) fn save_snapshot(&self, snap: &SnapshotFile) -> Result<SnapshotId> {
        let sealed = seal_file(&self.key, ObjectType::Snapshot, &snap.to_plaintext()?)?;
        Ok(SnapshotId(self.write_named(FileType::Snapshot, &sealed)?))
    }

    /// Saves an index file and returns its id.
    pub(crate) fn save_index(&self, index: &IndexFile) -> Result<IndexId> {
        let plain = index.to_plaintext()?;
        let sealed = seal_file(&self.key, ObjectType::Index, &plain)?;
        // Verify before upload: the stored bytes must decode back to what we meant to write.
        let back = open_file(&self.key, ObjectType::Index, &sealed, &"new index")?;
        if back != plain {
            return Err(Error::internal(
                "index file failed verification before upload",
            ));
        }
        Ok(IndexId(self.write_named(FileType::Index, &sealed)?))
    }

    /// Every lock in the repository, read and described; a lock file removed meanwhile is
    /// left out.
    pub fn locks(&self) -> Result<Vec<crate::error::LockHolder>> {
        crate::lock::list_locks(self.backend.as_ref(), &self.key)
    }

    /// Removes locks, as [`Unlock`] says, and returns how many were removed. Takes no lock
    /// itself.
    ///
    /// [`Unlock`]: crate::lock::Unlock
    pub fn unlock(&self, which: crate::lock::Unlock) -> Result<usize> {
        crate::lock::remove_locks(self.backend.as_ref(), &self.key, which)
    }

    /// Takes a lock for an operation that only reads (spec/08-locks.md).
    ///
    /// Returns `None`, holding no lock, when the repository was opened with
    /// [`OpenOptions::no_lock`] and `mode` is shared; an exclusive lock is never skipped. A
    /// lock that cannot be written because the repository is read-only (read-only media or
    /// mount, no write permission) is an [`ErrorKind::ReadOnly`] error.
    pub fn lock(
        &self,
        mode: crate::lock::LockMode,
        operation: &str,
        wait: Duration,
    ) -> Result<Option<crate::lock::LockGuard>> {
        if self.no_lock {
            if mode == crate::lock::LockMode::Exclusive {
                return Err(Error::invalid(format!(
                    "{operation} needs an exclusive lock, and the repository was opened without locking"
                )));
            }
            return Ok(None);
        }
        self.take_lock(mode, operation, wait).map(Some)
    }

    /// Takes a lock for an operation that writes to the repository: a repository opened with
    /// [`OpenOptions::no_lock`] refuses it.
    pub(crate) fn lock_for_writing(
        &self,
        mode: crate::lock::LockMode,
        operation: &str,
        wait: Duration,
    ) -> Result<crate::lock::LockGuard> {
        if self.no_lock {
            return Err(Error::invalid(format!(
                "{operation} writes to the repository and always takes a lock; open it without no-lock"
            )));
        }
        self.take_lock(mode, operation, wait)
    }

    fn take_lock(
        &self,
        mode: crate::lock::LockMode,
        operation: &str,
        wait: Duration,
    ) -> Result<crate::lock::LockGuard> {
        crate::lock::LockGuard::acquire(
            Arc::clone(&self.backend),
            self.key.clone(),
            mode,
            operation,
            wait,
        )
        .map_err(|e| match read_only_cause(&e) {
            Some(cause) => Error::new(
                ErrorKind::ReadOnly,
                format!(
                    "cannot write a lock file in {}: the repository is read-only for this process ({cause})",
                    self.backend.location()
                ),
            )
            .with_source(e),
            None => e,
        })
    }
}

impl Repository<Indexed> {
    /// The master index.
    pub fn index(&self) -> &MasterIndex {
        &self.state.index
    }

    /// Index files that were loaded.
    pub fn index_files(&self) -> &[IndexId] {
        &self.state.index_files
    }

    /// Index files skipped at load, with the reason.
    pub fn skipped_index_files(&self) -> &[(String, String)] {
        &self.state.skipped_index_files
    }

    /// Names of the snapshot files that existed when the index was loaded, sorted.
    pub(crate) fn snapshots_covered(&self) -> &[String] {
        &self.state.snapshots_covered
    }

    /// Replaces the master index by a fresh load (after a backup added packs).
    pub fn reload_index(self, ctx: &OpCtx<'_>) -> Result<Self> {
        let Self {
            backend,
            key,
            config,
            cache,
            cache_notice,
            no_lock,
            ..
        } = self;
        Repository::<Opened>::assemble(backend, key, config, cache, cache_notice, no_lock)
            .into_indexed(ctx)
    }

    /// This repository opened again without its cache, with a freshly loaded index: what
    /// `check` judges, so that a valid cached copy never hides a damaged repository file.
    pub(crate) fn uncached(&self, ctx: &OpCtx<'_>) -> Result<Self> {
        Repository::<Opened>::assemble(
            Arc::clone(&self.backend),
            self.key.clone(),
            self.config.clone(),
            None,
            Arc::clone(&self.cache_notice),
            self.no_lock,
        )
        .into_indexed(ctx)
    }

    /// Whether the repository reads through a local cache.
    pub(crate) fn has_cache(&self) -> bool {
        self.cache.is_some()
    }

    /// The pack reader of this repository: tree blobs through its cache, if it has one.
    pub(crate) fn pack_reader(&self) -> PackReader<'_> {
        PackReader::new(self.backend.as_ref(), &self.key, self.cache.as_ref())
    }

    /// Reads, decrypts and verifies one blob.
    pub fn read_blob(&self, blob_type: BlobType, id: &BlobId) -> Result<Vec<u8>> {
        let loc = self.index().lookup(blob_type, id).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("{} blob {id} is not in the index", blob_type.as_str()),
            )
        })?;
        let span = BlobSpan {
            blob_type,
            id: *id,
            offset: loc.offset,
            stored_len: loc.stored_len,
            raw_len: loc.raw_len,
        };
        self.pack_reader().read_blob(&loc.pack, &span)
    }

    /// Reads a tree blob (cached).
    pub fn read_tree(&self, id: &BlobId) -> Result<Arc<Tree>> {
        if let Some(t) = self
            .tree_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .trees
            .get(id)
        {
            return Ok(Arc::clone(t));
        }
        let raw = self.read_blob(BlobType::Tree, id)?;
        let tree = Arc::new(Tree::from_plaintext(&raw, &format_args!("tree {id}"))?);
        // A huge directory (a million entries decode to hundreds of MiB) is not kept: it would
        // evict everything else and stay in memory after its caller is done with it.
        if raw.len() > TREE_CACHE_BYTES / 4 {
            return Ok(tree);
        }
        let mut cache = self
            .tree_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.bytes + raw.len() > TREE_CACHE_BYTES {
            cache.trees.clear();
            cache.bytes = 0;
        }
        cache.bytes += raw.len();
        let _ = cache.trees.insert(*id, Arc::clone(&tree));
        Ok(tree)
    }
}

/// The OS error behind a failed write, when it says the repository cannot be written at all:
/// a read-only file system, or no permission.
fn read_only_cause(e: &Error) -> Option<String> {
    if e.kind() != ErrorKind::Backend {
        return None;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return matches!(
                io.raw_os_error(),
                Some(nix::libc::EROFS | nix::libc::EACCES | nix::libc::EPERM)
            )
            .then(|| io.to_string());
        }
        cause = c.source();
    }
    None
}

pub(crate) fn type_word(file_type: FileType) -> &'static str {
    match file_type {
        FileType::Config => "config",
        FileType::Key => "key",
        FileType::Snapshot => "snapshot",
        FileType::Index => "index",
        FileType::Pack => "pack",
        FileType::Lock => "lock",
    }
}

/// Seals the plaintext of a file stored on its own (index, snapshot, lock: spec/02-envelope.md,
/// no associated data). With [`open_file`] and the pack writer and reader, the only code that
/// puts objects into envelopes or takes them out.
pub(crate) fn seal_file(key: &MasterKey, object_type: ObjectType, plain: &[u8]) -> Result<Vec<u8>> {
    envelope::seal(key, object_type, b"", plain)
}

/// Opens a file sealed by [`seal_file`]; `object` names it in errors.
pub(crate) fn open_file(
    key: &MasterKey,
    object_type: ObjectType,
    bytes: &[u8],
    object: &dyn std::fmt::Display,
) -> Result<Vec<u8>> {
    envelope::open(key, object_type, b"", bytes, object)
}
