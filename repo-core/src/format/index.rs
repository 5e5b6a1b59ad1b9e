//! Implements spec/05-index.md: index files in `index/`.
//!
//! An envelope of type Index whose plaintext is `version:u8 || postcard(IndexFile)`. Each index
//! file lists packs with their size and the blobs they contain. An index file may name older
//! index files it supersedes (written by repair and prune); readers then ignore those.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::format::{decode_exact, encode_versioned, split_version, BlobType};
use crate::id::{BlobId, IndexId, PackId};

/// One blob of a pack, as listed in an index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexBlob {
    /// Data or tree.
    pub blob_type: BlobType,
    /// Keyed hash of the plaintext.
    pub id: BlobId,
    /// Byte offset of the blob in its pack.
    pub offset: u32,
    /// Length of the blob's envelope.
    pub stored_len: u32,
    /// Length of the plaintext.
    pub raw_len: u32,
}

/// One pack, as listed in an index file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    /// The pack's id (hash of its bytes).
    pub id: PackId,
    /// The pack's length in bytes.
    pub size: u64,
    /// The blobs in it, in pack order.
    pub blobs: Vec<IndexBlob>,
}

/// The contents of one index file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFile {
    /// Index files whose content this one replaces.
    pub supersedes: Vec<IndexId>,
    /// Packs described.
    pub packs: Vec<IndexPack>,
}

impl IndexFile {
    /// The plaintext.
    pub fn to_plaintext(&self) -> Result<Vec<u8>> {
        encode_versioned(self)
    }

    /// Parses an index plaintext.
    pub fn from_plaintext(bytes: &[u8], object: &dyn std::fmt::Display) -> Result<Self> {
        decode_exact(split_version(bytes, object)?, object)
    }

    /// Number of blobs described.
    pub fn blob_count(&self) -> usize {
        self.packs.iter().map(|p| p.blobs.len()).sum()
    }
}
