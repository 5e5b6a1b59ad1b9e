//! Read access to single repository files for inspection tools (`cairn cat`): resolving an id
//! prefix to a stored file, and decrypting one index file or one key file header.
//!
//! Everything here is read-only and verifies what it reads like every other read path (names
//! against the hash of their bytes, envelopes against their MAC).

use crate::backend::FileType;
use crate::error::{Error, ErrorKind, Result};
use crate::format::index::IndexFile;
use crate::format::keyfile::{self, KeyFileHeader};
use crate::format::MAX_SMALL_FILE_LEN;
use crate::id::{Id, IndexId, KeyId};
use crate::repository::{type_word, Repository};

impl<S: Send + Sync> Repository<S> {
    /// Resolves a full id or a unique prefix (4+ hex digits) among the stored files of
    /// `file_type` (keys, snapshots, index files, packs).
    pub fn find_file(&self, file_type: FileType, prefix: &str) -> Result<Id> {
        let what = type_word(file_type);
        if prefix.len() < 4 || prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(format!(
                "{prefix:?} is not a {what} id or id prefix (4+ hex digits)"
            )));
        }
        let prefix = prefix.to_ascii_lowercase();
        let mut found = self
            .backend()
            .list(file_type)?
            .into_iter()
            .filter(|(name, _)| name.starts_with(&prefix));
        match (found.next(), found.next()) {
            (Some((name, _)), None) => Id::from_hex(&name),
            (None, _) => Err(Error::new(
                ErrorKind::NotFound,
                format!("no {what} with id {prefix}"),
            )),
            (Some(_), Some(_)) => Err(Error::invalid(format!(
                "{what} id prefix {prefix} is ambiguous; give more digits"
            ))),
        }
    }

    /// Reads and decrypts one index file, for inspection (`cairn cat index`). Its type is the
    /// format's own (`format::index::IndexFile`), which follows the format version.
    pub fn load_index_file(&self, id: &IndexId) -> Result<IndexFile> {
        self.read_index_file(&id.to_hex())
    }

    /// Reads the cleartext header (KDF parameters, salt, creation time) of one key file, for
    /// inspection (`cairn cat key`); its type is the format's own, like `load_index_file`'s.
    pub fn load_key_header(&self, id: &KeyId) -> Result<KeyFileHeader> {
        let bytes = self.read_named(FileType::Key, &id.to_hex(), MAX_SMALL_FILE_LEN)?;
        keyfile::decode_header(&bytes, &format_args!("key {id}"))
    }
}
