//! Pure encoders and decoders of every on-disk structure, one file per spec chapter.
//!
//! Nothing here does I/O or starts threads; everything here is fuzzed. Decoders never panic on
//! hostile bytes and check every length against a limit before allocating.
//! Structured plaintexts are encoded with postcard (spec/README.md describes its wire rules).

pub mod config;
pub mod envelope;
pub mod index;
pub mod keyfile;
pub mod lock;
pub mod pack;
pub mod snapshot;
pub mod tree;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{CorruptionKind, Error, Result};

/// The repository format version this program writes and the newest it reads.
pub const FORMAT_VERSION: u8 = 1;

/// Largest raw (uncompressed) data blob: the chunker's largest allowed maximum.
pub const MAX_DATA_BLOB_LEN: u32 = 16 * 1024 * 1024;
/// Largest raw tree blob (a directory of about five million entries).
pub const MAX_TREE_BLOB_LEN: u32 = 1024 * 1024 * 1024;
/// Largest encoded pack header.
pub const MAX_PACK_HEADER_LEN: u32 = 16 * 1024 * 1024;
/// Largest number of blobs the packer puts in one pack (keeps headers under the limit).
pub const MAX_PACK_BLOBS: usize = 100_000;
/// Largest index file.
pub const MAX_INDEX_FILE_LEN: u64 = 128 * 1024 * 1024;
/// Largest snapshot file.
pub const MAX_SNAPSHOT_FILE_LEN: u64 = 16 * 1024 * 1024;
/// Largest config or lock file.
pub const MAX_SMALL_FILE_LEN: u64 = 64 * 1024;
/// Largest pack file accepted (the configurable target is at most 512 MiB; tree blobs may overrun it).
pub const MAX_PACK_LEN: u64 = 2 * 1024 * 1024 * 1024;

/// The two kinds of blob. Packs hold blobs of one kind only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum BlobType {
    /// A chunk of file content.
    Data,
    /// An encoded directory listing.
    Tree,
}

impl BlobType {
    /// Lowercase name, as used in messages and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Tree => "tree",
        }
    }

    /// Largest raw length a blob of this type may have.
    pub fn max_raw_len(self) -> u32 {
        match self {
            Self::Data => MAX_DATA_BLOB_LEN,
            Self::Tree => MAX_TREE_BLOB_LEN,
        }
    }
}

/// Decodes a postcard value that must span all of `bytes`; errors are `Corrupt` naming `object`.
pub(crate) fn decode_exact<T: DeserializeOwned>(
    bytes: &[u8],
    object: &dyn std::fmt::Display,
) -> Result<T> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(Error::corrupt(
            CorruptionKind::BadEncoding,
            object,
            format!("{} unexpected trailing bytes", rest.len()),
        )),
        Err(postcard::Error::DeserializeUnexpectedEnd) => Err(Error::corrupt(
            CorruptionKind::Truncated,
            object,
            "structure ends early",
        )),
        Err(e) => Err(Error::corrupt(
            CorruptionKind::BadEncoding,
            object,
            format!("cannot decode: {e}"),
        )),
    }
}

/// Encodes a value with postcard.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| Error::internal(format!("encoding failed: {e}")))
}

/// Splits off the leading version byte of a structure and checks that this program reads it.
pub(crate) fn split_version<'a>(
    bytes: &'a [u8],
    object: &dyn std::fmt::Display,
) -> Result<&'a [u8]> {
    match bytes.split_first() {
        None => Err(Error::corrupt(CorruptionKind::Truncated, object, "empty")),
        Some((&v, rest)) if v == FORMAT_VERSION => Ok(rest),
        Some((&v, _)) if v > FORMAT_VERSION => Err(Error::new(
            crate::ErrorKind::UnsupportedVersion,
            format!("{object}: written by format version {v}, this program reads up to {FORMAT_VERSION}; upgrade cairn"),
        )),
        Some((&v, _)) => Err(Error::corrupt(CorruptionKind::UnknownVersion, object, format!("unknown version {v}"))),
    }
}

/// Prefixes the encoded value with the current format version byte.
pub(crate) fn encode_versioned<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = vec![FORMAT_VERSION];
    out.extend(encode(value)?);
    Ok(out)
}

/// Checks that a name is a single, non-special path component.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}
