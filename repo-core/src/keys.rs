//! Key management: several passwords for one repository, each a key file wrapping the same
//! master key (spec/02-crypto.md). Adding writes a new key file; changing a password writes
//! the new key file before removing the old one, so a crash in between leaves two working
//! keys, never none. The last key and the key in use are never removed.

use crate::backend::FileType;
use crate::crypto::KdfParams;
use crate::error::{Error, ErrorKind, Result};
use crate::format::keyfile;
use crate::format::MAX_SMALL_FILE_LEN;
use crate::host::now_ns;
use crate::id::KeyId;
use crate::lock::LockMode;
use crate::repository::Repository;

/// One key file, as `key list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key file's id.
    pub id: KeyId,
    /// When it was made, seconds since the Unix epoch.
    pub created_unix: i64,
    /// Its key-derivation costs.
    pub kdf: KdfParams,
    /// Whether this repository was opened with it.
    pub current: bool,
}

impl<S: Send + Sync> Repository<S> {
    /// Every key file, oldest first. A key file whose header cannot be read is an error.
    pub fn keys(&self) -> Result<Vec<KeyInfo>> {
        let mut out = Vec::new();
        for (name, _) in self.backend().list(FileType::Key)? {
            let id = KeyId::from_hex(&name).map_err(|_| {
                Error::corrupt(
                    crate::error::CorruptionKind::BadEncoding,
                    format!("key {name}"),
                    "name is not a 64-digit hex id",
                )
            })?;
            let bytes = self.read_named(FileType::Key, &name, MAX_SMALL_FILE_LEN)?;
            let header = keyfile::decode_header(&bytes, &format_args!("key {id}"))?;
            out.push(KeyInfo {
                id,
                created_unix: header.created_unix,
                kdf: header.kdf,
                current: self.key_file.as_deref() == Some(name.as_str()),
            });
        }
        out.sort_by(|a, b| a.created_unix.cmp(&b.created_unix).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Adds a key file that opens the repository with `password`. Returns its id.
    pub fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<KeyId> {
        if password.is_empty() {
            return Err(Error::invalid("an empty password is not allowed"));
        }
        let bytes = keyfile::encode(self.master_key(), password, kdf, now_ns() / 1_000_000_000)?;
        // Verify before upload: the new key must open with the password it was made for.
        keyfile::decode(&bytes, password, &"new key")?;
        Ok(KeyId(self.write_named(FileType::Key, &bytes)?))
    }

    /// Removes the key file `id`, under the exclusive lock. Refuses the key this repository
    /// was opened with and the last key.
    pub fn remove_key(&self, id: &KeyId, lock_wait: std::time::Duration) -> Result<()> {
        let _lock = self.lock(LockMode::Exclusive, "key remove", lock_wait)?;
        let keys = self.keys()?;
        let Some(found) = keys.iter().find(|k| k.id == *id) else {
            return Err(Error::new(ErrorKind::NotFound, format!("no key {id}")));
        };
        if found.current {
            return Err(Error::invalid(format!(
                "key {id} is the one this repository was opened with; open it with another key to remove this one"
            )));
        }
        if keys.len() == 1 {
            return Err(Error::invalid(format!(
                "key {id} is the last key: without it nothing opens the repository"
            )));
        }
        self.backend().delete(FileType::Key, &id.to_hex())
    }

    /// Changes the password of the key in use: writes the new key file, then removes the old
    /// one (a crash in between leaves both working). Returns the new key's id.
    pub fn change_password(
        &self,
        password: &[u8],
        kdf: KdfParams,
        lock_wait: std::time::Duration,
    ) -> Result<KeyId> {
        let Some(old) = self.key_file.clone() else {
            return Err(Error::invalid(
                "the repository was opened with the master key, not a password: add a key instead",
            ));
        };
        let _lock = self.lock(LockMode::Exclusive, "key passwd", lock_wait)?;
        let new = self.add_key(password, kdf)?;
        if new.to_hex() != old {
            self.backend().delete(FileType::Key, &old)?;
        }
        Ok(new)
    }
}
