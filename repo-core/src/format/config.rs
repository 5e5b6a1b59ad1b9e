//! Implements spec/01-layout.md (config): the repository parameters fixed at init.
//!
//! Stored at `config` as an envelope of type Config whose plaintext is
//! `version:u8 || postcard(ConfigV1)`.

use serde::{Deserialize, Serialize};

use crate::crypto::MasterKey;
use crate::error::{CorruptionKind, Error, Result};
use crate::format::envelope::{self, ObjectType};
use crate::format::{decode_exact, encode_versioned, split_version};

/// Repository parameters chosen at init.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Random id of the repository.
    pub repo_id: [u8; 32],
    /// Smallest chunk, bytes.
    pub chunk_min: u32,
    /// Average chunk, bytes.
    pub chunk_avg: u32,
    /// Largest chunk, bytes.
    pub chunk_max: u32,
    /// Default zstd level (0 stores uncompressed).
    pub compression_level: i32,
    /// Target pack size, bytes.
    pub pack_size: u32,
}

impl Config {
    /// Checks that the parameters are usable by the chunker and packer.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let c = crate::chunker::ChunkerParams {
            min: self.chunk_min,
            avg: self.chunk_avg,
            max: self.chunk_max,
        };
        c.validate()?;
        if !(-7..=22).contains(&self.compression_level) {
            return Err(format!(
                "compression level {} is outside -7..=22",
                self.compression_level
            ));
        }
        if !(1024 * 1024..=512 * 1024 * 1024).contains(&self.pack_size) {
            return Err(format!(
                "pack size {} is outside 1 MiB..=512 MiB",
                self.pack_size
            ));
        }
        Ok(())
    }

    /// The config's plaintext.
    pub fn to_plaintext(&self) -> Result<Vec<u8>> {
        encode_versioned(self)
    }

    /// Parses a config plaintext and validates it.
    pub fn from_plaintext(bytes: &[u8]) -> Result<Self> {
        let object = "config";
        let cfg: Self = decode_exact(split_version(bytes, &object)?, &object)?;
        cfg.validate()
            .map_err(|e| Error::corrupt(CorruptionKind::BadEncoding, object, e))?;
        Ok(cfg)
    }

    /// Encrypts the config for storage.
    pub fn seal(&self, key: &MasterKey) -> Result<Vec<u8>> {
        envelope::seal(key, ObjectType::Config, b"", &self.to_plaintext()?)
    }

    /// Decrypts and parses a stored config.
    pub fn open(key: &MasterKey, bytes: &[u8]) -> Result<Self> {
        Self::from_plaintext(&envelope::open(
            key,
            ObjectType::Config,
            b"",
            bytes,
            &"config",
        )?)
    }
}
