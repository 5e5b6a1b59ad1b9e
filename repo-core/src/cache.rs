//! A local cache of immutable repository files: index and snapshot files, and whole tree packs.
//!
//! Every cached file is named by the hash of its content, so a cached copy is either exactly
//! right or detectably wrong: whole files are re-hashed when read, and a tree blob read by
//! range from a cached pack is checked by its MAC and keyed id like any blob; either falls
//! back to the backend when wrong. The cache is never needed for correctness; deleting it at
//! any time is safe.

use std::fs;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::backend::{open_regular, Backend, FileType};
use crate::error::{Error, Result};
use crate::id::Id;

/// A cache directory for one repository.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Opens or creates the cache for the repository `repo_id` under `base`.
    pub fn new(base: &Path, repo_id: &[u8; 32]) -> Result<Self> {
        let dir = base.join(hex::encode(repo_id));
        for sub in ["index", "snapshots", "data"] {
            fs::create_dir_all(dir.join(sub))
                .map_err(|e| Error::io(format!("create cache {}", dir.display()), e))?;
        }
        let tag = base.join("CACHEDIR.TAG");
        if !tag.exists() {
            let _ = fs::write(
                &tag,
                "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by cairn.\n",
            );
        }
        Ok(Self { dir })
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

    /// Stores a file (best effort: a cache that cannot be written is simply not used).
    pub fn put(&self, file_type: FileType, name: &str, bytes: &[u8]) {
        if let Some(path) = self.path(file_type, name) {
            let tmp = path.with_extension("tmp");
            if fs::write(&tmp, bytes).is_ok() && fs::rename(&tmp, &path).is_err() {
                let _ = fs::remove_file(&tmp);
            }
        }
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
        // reading the whole file for each of them made listing a deep tree quadratic.
        if let Some(path) = self.path(FileType::Pack, name) {
            if let Ok(file) = open_regular(&path) {
                let mut buf = vec![0u8; len as usize];
                if file.read_exact_at(&mut buf, u64::from(offset)).is_ok() {
                    return Ok(buf);
                }
            }
        }
        let bytes = backend.read(FileType::Pack, name)?;
        if Id::from_hex(name).ok() == Some(Id::hash(&bytes)) {
            self.put(FileType::Pack, name, &bytes);
        }
        slice(&bytes).ok_or_else(|| {
            Error::corrupt(
                crate::CorruptionKind::Truncated,
                format!("pack {}", crate::repository::short(name)),
                "shorter than the index says",
            )
        })
    }
}
