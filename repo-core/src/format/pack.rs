//! Implements spec/04-pack.md: pack files in `data/<2 hex>/<pack id>`.
//!
//! `pack = blob_1 || ... || blob_n || header || header_len:u32le || "CPK1"`, where each blob is an
//! envelope (spec/03-envelope.md) and `header` is an envelope of type PackHeader whose plaintext is
//! `version:u8 || postcard(Vec<PackEntry>)`. Blob offsets are implicit: blobs are laid end to end
//! from offset 0, in header order. A pack's id is the BLAKE3 hash of all its bytes.

use serde::{Deserialize, Serialize};

use crate::crypto::MasterKey;
use crate::error::{CorruptionKind, Error, Result};
use crate::format::envelope::{self, ObjectType, ENVELOPE_OVERHEAD};
use crate::format::{decode_exact, encode_versioned, split_version, BlobType, MAX_PACK_HEADER_LEN};
use crate::id::BlobId;

/// Magic at the very end of every pack.
pub const TRAILER_MAGIC: &[u8; 4] = b"CPK1";
/// Length of the trailer: header length and magic.
pub const TRAILER_LEN: usize = 8;

/// One blob in a pack header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    /// Data or tree.
    pub blob_type: BlobType,
    /// Keyed hash of the plaintext.
    pub id: BlobId,
    /// Length of the blob's envelope in the pack.
    pub stored_len: u32,
    /// Length of the plaintext after decompression.
    pub raw_len: u32,
}

/// A pack entry with its offset, as decoded from a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocatedEntry {
    /// The entry.
    pub entry: PackEntry,
    /// Byte offset of the blob in the pack.
    pub offset: u32,
}

/// Encodes the header and trailer that close a pack.
pub fn encode_header(key: &MasterKey, entries: &[PackEntry]) -> Result<Vec<u8>> {
    let plaintext = encode_versioned(entries)?;
    let mut out = envelope::seal(key, ObjectType::PackHeader, b"", &plaintext)?;
    let header_len =
        u32::try_from(out.len()).map_err(|_| Error::internal("pack header too large"))?;
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(TRAILER_MAGIC);
    Ok(out)
}

/// Reads the header length from a pack's last 8 bytes, checking it against the pack length.
pub fn parse_trailer(trailer: &[u8], pack_len: u64, object: &dyn std::fmt::Display) -> Result<u32> {
    if trailer.len() != TRAILER_LEN || pack_len < TRAILER_LEN as u64 {
        return Err(Error::corrupt(
            CorruptionKind::Truncated,
            object,
            "shorter than a pack trailer",
        ));
    }
    if &trailer[4..] != TRAILER_MAGIC {
        return Err(Error::corrupt(
            CorruptionKind::Truncated,
            object,
            "no pack trailer (truncated or not a pack)",
        ));
    }
    let mut n = [0u8; 4];
    n.copy_from_slice(&trailer[..4]);
    let header_len = u32::from_le_bytes(n);
    if header_len > MAX_PACK_HEADER_LEN
        || u64::from(header_len) + TRAILER_LEN as u64 > pack_len
        || (header_len as usize) < ENVELOPE_OVERHEAD
    {
        return Err(Error::corrupt(
            CorruptionKind::BadEncoding,
            object,
            format!("header length {header_len} out of range"),
        ));
    }
    Ok(header_len)
}

/// Decodes a pack header (the `header_len` bytes before the trailer) and checks that its blobs
/// exactly fill the pack before the header.
pub fn decode_header(
    key: &MasterKey,
    header: &[u8],
    pack_len: u64,
    object: &dyn std::fmt::Display,
) -> Result<Vec<LocatedEntry>> {
    let plaintext = envelope::open(key, ObjectType::PackHeader, b"", header, object)?;
    let blobs_end = pack_len
        .checked_sub(header.len() as u64 + TRAILER_LEN as u64)
        .ok_or_else(|| {
            Error::corrupt(CorruptionKind::Truncated, object, "shorter than its header")
        })?;
    decode_header_plaintext(&plaintext, blobs_end, object)
}

/// Decodes a decrypted pack header and checks that its blobs exactly fill `blobs_end` bytes.
pub fn decode_header_plaintext(
    plaintext: &[u8],
    blobs_end: u64,
    object: &dyn std::fmt::Display,
) -> Result<Vec<LocatedEntry>> {
    let entries: Vec<PackEntry> = decode_exact(split_version(plaintext, object)?, object)?;
    let mut offset: u64 = 0;
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        if (entry.stored_len as usize) < ENVELOPE_OVERHEAD + 1
            || entry.raw_len > entry.blob_type.max_raw_len()
        {
            return Err(Error::corrupt(
                CorruptionKind::BadEncoding,
                object,
                format!("blob {} has impossible lengths", entry.id),
            ));
        }
        let start = u32::try_from(offset).map_err(|_| {
            Error::corrupt(
                CorruptionKind::BadEncoding,
                object,
                "blob offset beyond 4 GiB",
            )
        })?;
        out.push(LocatedEntry {
            entry,
            offset: start,
        });
        offset += u64::from(entry.stored_len);
    }
    if offset != blobs_end {
        return Err(Error::corrupt(
            CorruptionKind::BadEncoding,
            object,
            format!("header lists {offset} bytes of blobs, the pack holds {blobs_end}"),
        ));
    }
    Ok(out)
}

/// Decodes the header of a whole pack held in memory.
pub fn decode_pack(
    key: &MasterKey,
    pack: &[u8],
    object: &dyn std::fmt::Display,
) -> Result<Vec<LocatedEntry>> {
    let len = pack.len() as u64;
    if pack.len() < TRAILER_LEN {
        return Err(Error::corrupt(
            CorruptionKind::Truncated,
            object,
            "shorter than a pack trailer",
        ));
    }
    let header_len = parse_trailer(&pack[pack.len() - TRAILER_LEN..], len, object)? as usize;
    let header_start = pack.len() - TRAILER_LEN - header_len;
    decode_header(
        key,
        &pack[header_start..pack.len() - TRAILER_LEN],
        len,
        object,
    )
}
