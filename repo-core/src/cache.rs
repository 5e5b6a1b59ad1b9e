//! Implements spec/11-cache.md: a local cache of immutable repository files: index and
//! snapshot files, and whole tree packs.
//!
//! Every cached file is named by the hash of its content, so a cached copy is either exactly
//! right or detectably wrong: whole index and snapshot files are re-hashed each time they are
//! read, and a cached pack is hashed whole the first time a process uses it (then its tree
//! blobs are read by range, each checked by its MAC and keyed id like any blob). A copy that
//! fails is deleted and read again from the backend. The cache is never needed for
//! correctness; deleting it at any time is safe, and `check` does not read it at all
//! (spec/11-cache.md).
//!
//! The cache is optional in a second sense: when it cannot be created or written (no home
//! directory, a read-only or full file system, a cache path that is a file), the repository
//! goes on without it and says so once, through [`CacheNotice`].

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::backend::{open_regular, Backend, FileType};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::progress::{OpCtx, ProgressEvent};

/// The first reason the cache could not be used, told once to the first progress sink that
/// asks ([`CacheNotice::report`]).
#[derive(Debug, Default)]
pub(crate) struct CacheNotice {
    problem: Mutex<Option<(PathBuf, String)>>,
    reported: AtomicBool,
}

impl CacheNotice {
    /// Records a problem; only the first one is kept (later ones have the same cause).
    pub(crate) fn record(&self, path: &Path, message: String) {
        let mut p = self
            .problem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if p.is_none() {
            *p = Some((path.to_path_buf(), message));
        }
    }

    /// Emits the recorded problem as a [`ProgressEvent::Warning`], once per repository.
    pub(crate) fn report(&self, ctx: &OpCtx<'_>) {
        let p = self
            .problem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((path, message)) = p.as_ref() {
            if !self.reported.swap(true, Ordering::SeqCst) {
                ctx.progress
                    .event(&ProgressEvent::Warning { path, message });
            }
        }
    }
}

/// A cache directory for one repository.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    notice: Arc<CacheNotice>,
    /// Set after a write failed: the cache is then only read, never written again.
    write_failed: Arc<AtomicBool>,
    /// Cached packs whose whole content was hashed against their name by this process.
    verified_packs: Arc<Mutex<HashSet<String>>>,
}

impl Cache {
    /// Opens or creates the cache for the repository `repo_id` under `base`; problems with it
    /// later are recorded in `notice`.
    pub(crate) fn new(base: &Path, repo_id: &[u8; 32], notice: Arc<CacheNotice>) -> Result<Self> {
        let dir = base.join(hex::encode(repo_id));
        for sub in ["index", "snapshots", "data"] {
            let sub = dir.join(sub);
            fs::create_dir_all(&sub)
                .map_err(|e| Error::io(format!("create {}", sub.display()), e))?;
        }
        let tag = base.join("CACHEDIR.TAG");
        if !tag.exists() {
            let _ = fs::write(
                &tag,
                "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by cairn.\n",
            );
        }
        Ok(Self {
            dir,
            notice,
            write_failed: Arc::new(AtomicBool::new(false)),
            verified_packs: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    fn path(&self, file_type: FileType, name: &str) -> Option<PathBuf> {
        if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(self.dir.join(file_type.dir()).join(name))
    }

    /// A cached file, if present.
    ///
    /// Only a regular file is read ([`crate::backend::open_regular`]): a FIFO or a symlink in the
    /// cache is a miss, never a read that blocks or never ends.
    pub fn get(&self, file_type: FileType, name: &str) -> Option<Vec<u8>> {
        let mut file = open_regular(&self.path(file_type, name)?).ok()?;
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }

    /// Stores a file and says whether it did (best effort: after the first failure, recorded in
    /// the notice, the cache is no longer written).
    pub fn put(&self, file_type: FileType, name: &str, bytes: &[u8]) -> bool {
        if self.write_failed.load(Ordering::Relaxed) {
            return false;
        }
        let Some(path) = self.path(file_type, name) else {
            return false;
        };
        let tmp = path.with_extension("tmp");
        let Err(e) = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, &path)) else {
            return true;
        };
        let _ = fs::remove_file(&tmp);
        if !self.write_failed.swap(true, Ordering::SeqCst) {
            self.notice.record(
                &self.dir,
                format!(
                    "cannot write to the cache ({}: {e}); going on without caching",
                    path.display()
                ),
            );
        }
        false
    }

    /// Whether the cached pack `path` hashes to `name`: the whole file is hashed once per
    /// process; a copy that does not match is deleted.
    fn pack_matches_name(&self, path: &Path, name: &str) -> bool {
        let verified = || {
            self.verified_packs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if verified().contains(name) {
            return true;
        }
        let Ok(file) = open_regular(path) else {
            return false;
        };
        let mut hasher = blake3::Hasher::new();
        if hasher.update_reader(file).is_ok()
            && Id::from_hex(name).ok() == Some(Id(*hasher.finalize().as_bytes()))
        {
            let _ = verified().insert(name.to_string());
            return true;
        }
        self.remove(FileType::Pack, name);
        false
    }

    /// Drops a cached file.
    pub fn remove(&self, file_type: FileType, name: &str) {
        if let Some(path) = self.path(file_type, name) {
            let _ = fs::remove_file(path);
        }
    }

    /// Reads a range of a pack through the cache: the whole pack is fetched once, verified
    /// against its name, and kept. Used for tree packs, which are small and read often.
    pub fn read_pack_range(
        &self,
        backend: &dyn Backend,
        name: &str,
        offset: u32,
        len: u32,
    ) -> Result<Vec<u8>> {
        let slice = |bytes: &[u8]| -> Option<Vec<u8>> {
            let start = offset as usize;
            bytes
                .get(start..start.checked_add(len as usize)?)
                .map(<[u8]>::to_vec)
        };
        // Only the range is read from a cached pack: tree packs hold thousands of trees, and
        // reading the whole file for each of them made listing a deep tree quadratic. The whole
        // file is hashed once, the first time this process uses it.
        if let Some(path) = self
            .path(FileType::Pack, name)
            .filter(|p| p.exists() && self.pack_matches_name(p, name))
        {
            if let Ok(file) = open_regular(&path) {
                let mut buf = vec![0u8; len as usize];
                if file.read_exact_at(&mut buf, u64::from(offset)).is_ok() {
                    return Ok(buf);
                }
            }
        }
        let bytes = backend.read(FileType::Pack, name)?;
        // Marked as verified only when the copy on disk is the one just checked.
        if Id::from_hex(name).ok() == Some(Id::hash(&bytes))
            && self.put(FileType::Pack, name, &bytes)
        {
            let _ = self
                .verified_packs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(name.to_string());
        }
        slice(&bytes).ok_or_else(|| {
            Error::corrupt(
                crate::CorruptionKind::Truncated,
                format!("pack {}", crate::id::short(name)),
                "shorter than the index says",
            )
        })
    }
}
