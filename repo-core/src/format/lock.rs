//! Implements spec/08-locks.md: lock files in `locks/`.
//!
//! An envelope of type Lock whose plaintext is `version:u8 || postcard(LockFile)`.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::format::{decode_exact, encode_versioned, split_version};

/// Who holds a lock, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockFile {
    /// Exclusive locks exclude every other lock; shared locks exclude only exclusive ones.
    pub exclusive: bool,
    /// Host name of the holder.
    pub hostname: String,
    /// User name of the holder.
    pub username: String,
    /// Process id of the holder on its host.
    pub pid: u32,
    /// Time the lock was written or last refreshed, ns since the Unix epoch.
    pub time_ns: i64,
    /// What the holder is doing ("backup", "prune", ...).
    pub operation: String,
}

impl LockFile {
    /// The plaintext.
    pub fn to_plaintext(&self) -> Result<Vec<u8>> {
        encode_versioned(self)
    }

    /// Parses a lock plaintext.
    pub fn from_plaintext(bytes: &[u8], object: &dyn std::fmt::Display) -> Result<Self> {
        decode_exact(split_version(bytes, object)?, object)
    }
}
