//! Implements spec/03-envelope.md: the authenticated-encryption envelope around every stored
//! object except key files, and the blob encoding inside it (compression flag and payload).
//!
//! `envelope = version:u8 || object_type:u8 || nonce:24 || ciphertext || tag:16`, with associated
//! data `"cairn-envelope" || version || object_type || context`, where context is the blob id for
//! blobs and empty otherwise. A blob's plaintext is `compression:u8 || payload`.

use crate::crypto::{MasterKey, NONCE_LEN, TAG_LEN};
use crate::error::{CorruptionKind, Error, Result};
use crate::format::BlobType;
use crate::id::BlobId;

/// Version of the envelope layout.
pub const ENVELOPE_VERSION: u8 = 1;
/// Bytes an envelope adds to its plaintext.
pub const ENVELOPE_OVERHEAD: usize = 2 + NONCE_LEN + TAG_LEN;
const AAD_DOMAIN: &[u8] = b"cairn-envelope";

/// What an envelope holds; bound into its associated data so one object cannot pass for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectType {
    /// The repository config.
    Config = 1,
    /// A snapshot file.
    Snapshot = 2,
    /// An index file.
    Index = 3,
    /// A pack header.
    PackHeader = 4,
    /// A data blob inside a pack.
    DataBlob = 5,
    /// A tree blob inside a pack.
    TreeBlob = 6,
    /// A lock file.
    Lock = 7,
}

impl ObjectType {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Config,
            2 => Self::Snapshot,
            3 => Self::Index,
            4 => Self::PackHeader,
            5 => Self::DataBlob,
            6 => Self::TreeBlob,
            7 => Self::Lock,
            _ => return None,
        })
    }

    /// The object type of a blob type.
    pub fn of_blob(t: BlobType) -> Self {
        match t {
            BlobType::Data => Self::DataBlob,
            BlobType::Tree => Self::TreeBlob,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Snapshot => "snapshot",
            Self::Index => "index",
            Self::PackHeader => "pack header",
            Self::DataBlob => "data blob",
            Self::TreeBlob => "tree blob",
            Self::Lock => "lock",
        }
    }
}

fn aad(object_type: ObjectType, context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + 2 + context.len());
    aad.extend_from_slice(AAD_DOMAIN);
    aad.push(ENVELOPE_VERSION);
    aad.push(object_type as u8);
    aad.extend_from_slice(context);
    aad
}

/// Seals `plaintext` as an object of `object_type`, with a fresh random nonce.
pub fn seal(
    key: &MasterKey,
    object_type: ObjectType,
    context: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let sealed = key.seal(&aad(object_type, context), plaintext)?;
    let mut out = Vec::with_capacity(2 + sealed.len());
    out.push(ENVELOPE_VERSION);
    out.push(object_type as u8);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Seals with a given nonce. Only for golden vectors: real objects always use random nonces.
#[doc(hidden)]
pub fn seal_with_nonce(
    key_bytes: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    object_type: ObjectType,
    context: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let sealed = crate::crypto::seal_with(key_bytes, nonce, &aad(object_type, context), plaintext)?;
    let mut out = vec![ENVELOPE_VERSION, object_type as u8];
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens an envelope that must hold `object_type`; `object` names it in errors.
pub fn open(
    key: &MasterKey,
    object_type: ObjectType,
    context: &[u8],
    bytes: &[u8],
    object: &dyn std::fmt::Display,
) -> Result<Vec<u8>> {
    if bytes.len() < ENVELOPE_OVERHEAD {
        return Err(Error::corrupt(
            CorruptionKind::Truncated,
            object,
            format!("only {} bytes", bytes.len()),
        ));
    }
    // A newer format announces itself through the config version, which open checks first;
    // inside a repository this program understands, another envelope version is damage.
    if bytes[0] != ENVELOPE_VERSION {
        return Err(Error::corrupt(
            CorruptionKind::UnknownVersion,
            object,
            format!("unknown envelope version {}", bytes[0]),
        ));
    }
    if bytes[1] != object_type as u8 {
        let found = ObjectType::from_u8(bytes[1]).map_or("an unknown object", ObjectType::name);
        return Err(Error::corrupt(
            CorruptionKind::BadEncoding,
            object,
            format!("holds a {found}, expected a {}", object_type.name()),
        ));
    }
    key.open(&aad(object_type, context), &bytes[2..])
        .ok_or_else(|| Error::corrupt(CorruptionKind::MacMismatch, object, "authentication failed"))
}

/// Compression of a blob payload.
const COMPRESSION_NONE: u8 = 0;
const COMPRESSION_ZSTD: u8 = 1;

/// Encodes a blob: compresses `raw` with zstd at `level` (kept raw when that is not smaller),
/// then seals it bound to its type and id. `level` 0 means "store uncompressed".
pub fn encode_blob(
    key: &MasterKey,
    blob_type: BlobType,
    id: &BlobId,
    raw: &[u8],
    level: i32,
) -> Result<Vec<u8>> {
    let plaintext = blob_plaintext(raw, level)?;
    seal(
        key,
        ObjectType::of_blob(blob_type),
        id.as_bytes(),
        &plaintext,
    )
}

/// The blob plaintext (`compression || payload`) for `raw` at `level`.
pub(crate) fn blob_plaintext(raw: &[u8], level: i32) -> Result<Vec<u8>> {
    if level != 0 && raw.len() > 32 {
        // zstd writes into the reserved capacity after the flag byte: no zero-filling of a
        // buffer larger than the blob, and only the pages the compressed bytes use are touched.
        let bound = zstd::zstd_safe::compress_bound(raw.len());
        let mut out = Vec::with_capacity(bound + 1);
        out.push(COMPRESSION_ZSTD);
        let mut cursor = std::io::Cursor::new(out);
        cursor.set_position(1);
        let n =
            with_compressor(level, |c| c.compress_to_buffer(raw, &mut cursor)).map_err(|e| {
                Error::internal(format!("zstd compression at level {level} failed: {e}"))
            })?;
        if n < raw.len() {
            let out = cursor.into_inner();
            if out.len() != n + 1 {
                return Err(Error::internal("zstd reported a length it did not write"));
            }
            return Ok(out);
        }
    }
    let mut out = Vec::with_capacity(raw.len() + 1);
    out.push(COMPRESSION_NONE);
    out.extend_from_slice(raw);
    Ok(out)
}

thread_local! {
    // Compression contexts are costly to set up; each worker thread keeps one per level.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

fn with_compressor<T>(
    level: i32,
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if !matches!(&*slot, Some((l, _)) if *l == level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        match slot.as_mut() {
            Some((_, compressor)) => f(compressor),
            None => Err(std::io::Error::other("no compressor")),
        }
    })
}

thread_local! {
    // Decompression contexts are costly to set up too; one per thread.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn with_decompressor<T>(
    f: impl FnOnce(&mut zstd::bulk::Decompressor<'static>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        match slot.as_mut() {
            Some(d) => f(d),
            None => Err(std::io::Error::other("no decompressor")),
        }
    })
}

/// Decompresses `payload`, which must expand to at most `capacity` bytes.
fn decompress(payload: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    with_decompressor(|d| d.decompress(payload, capacity))
}

thread_local! {
    // Verification decompresses every new blob only to compare it: one buffer per thread,
    // reused, instead of a fresh allocation (and fresh pages to fault in) per blob.
    static VERIFY_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether `payload` decompresses to exactly `raw`.
fn decompresses_to(payload: &[u8], raw: &[u8]) -> bool {
    /// A buffer grown beyond this (by an unusually large chunk) is not kept for the next blob.
    const KEEP: usize = 16 << 20;
    VERIFY_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        buf.clear();
        buf.reserve(raw.len());
        let same = with_decompressor(|d| d.decompress_to_buffer(payload, &mut *buf)).is_ok()
            && buf.as_slice() == raw;
        if buf.capacity() > KEEP {
            *buf = Vec::new();
        }
        same
    })
}

/// Checks that a freshly encoded blob opens and decompresses to exactly `raw`: the
/// verify-before-upload step that catches a faulty compressor or memory error before the bad
/// bytes become the only copy (spec/09-invariants.md).
pub fn verify_blob(
    key: &MasterKey,
    blob_type: BlobType,
    id: &BlobId,
    stored: &[u8],
    raw: &[u8],
) -> Result<()> {
    let object = format_args!("new {} blob {id}", blob_type.as_str());
    let plaintext = open(
        key,
        ObjectType::of_blob(blob_type),
        id.as_bytes(),
        stored,
        &object,
    )?;
    let same = match plaintext.split_first() {
        Some((&COMPRESSION_NONE, payload)) => payload == raw,
        Some((&COMPRESSION_ZSTD, payload)) => decompresses_to(payload, raw),
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(Error::internal(format!(
            "{object}: failed verification before upload (compressor or memory fault)"
        )))
    }
}

/// Decodes a decrypted blob plaintext (`compression || payload`) into at most `raw_len` bytes.
pub fn decode_blob_plaintext(
    plaintext: &[u8],
    raw_len: u32,
    object: &dyn std::fmt::Display,
) -> Result<Vec<u8>> {
    let raw = match plaintext.split_first() {
        Some((&COMPRESSION_NONE, payload)) => payload.to_vec(),
        Some((&COMPRESSION_ZSTD, payload)) => {
            decompress(payload, raw_len as usize).map_err(|e| {
                Error::corrupt(
                    CorruptionKind::BadEncoding,
                    object,
                    format!("cannot decompress: {e}"),
                )
            })?
        }
        Some((&c, _)) => {
            return Err(Error::corrupt(
                CorruptionKind::UnknownVersion,
                object,
                format!("unknown compression {c}"),
            ))
        }
        None => {
            return Err(Error::corrupt(
                CorruptionKind::Truncated,
                object,
                "empty plaintext",
            ))
        }
    };
    Ok(raw)
}

/// Decodes a blob stored as `bytes`: opens it, decompresses to exactly `raw_len` bytes and checks
/// that its keyed hash is `id`.
pub fn decode_blob(
    key: &MasterKey,
    blob_type: BlobType,
    id: &BlobId,
    bytes: &[u8],
    raw_len: u32,
) -> Result<Vec<u8>> {
    let object = format_args!("{} blob {id}", blob_type.as_str());
    if raw_len > blob_type.max_raw_len() {
        return Err(Error::corrupt(
            CorruptionKind::BadEncoding,
            object,
            format!("raw length {raw_len} exceeds the limit"),
        ));
    }
    let plaintext = open(
        key,
        ObjectType::of_blob(blob_type),
        id.as_bytes(),
        bytes,
        &object,
    )?;
    let raw = decode_blob_plaintext(&plaintext, raw_len, &object)?;
    if raw.len() != raw_len as usize {
        return Err(Error::corrupt(
            CorruptionKind::IdMismatch,
            object,
            format!("decodes to {} bytes, the index says {raw_len}", raw.len()),
        ));
    }
    if key.blob_id(&raw) != *id {
        return Err(Error::corrupt(
            CorruptionKind::IdMismatch,
            object,
            "content does not hash to its id",
        ));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_accepts_only_the_exact_plaintext() {
        let key = MasterKey::generate().unwrap();
        let compressible: Vec<u8> = b"the same words again ".repeat(50_000);
        let mut other = compressible.clone();
        other[777_777] ^= 1;
        for (raw, level) in [(&compressible, 3), (&compressible, 0), (&other, 19)] {
            let id = key.blob_id(raw);
            let stored = encode_blob(&key, BlobType::Data, &id, raw, level).unwrap();
            verify_blob(&key, BlobType::Data, &id, &stored, raw).unwrap();
            let wrong = if raw == &compressible {
                &other
            } else {
                &compressible
            };
            assert!(verify_blob(&key, BlobType::Data, &id, &stored, wrong).is_err());
            assert!(verify_blob(&key, BlobType::Data, &id, &stored, &raw[1..]).is_err());
            let mut longer = raw.clone();
            longer.push(0);
            assert!(verify_blob(&key, BlobType::Data, &id, &stored, &longer).is_err());
            assert_eq!(
                decode_blob(&key, BlobType::Data, &id, &stored, raw.len() as u32).unwrap(),
                *raw
            );
        }
        // A large buffer is not kept, and verification still works after it.
        let id = key.blob_id(b"any");
        let big = vec![7u8; 20 << 20];
        let stored = encode_blob(&key, BlobType::Data, &id, &big, 1).unwrap();
        verify_blob(&key, BlobType::Data, &id, &stored, &big).unwrap();
        let small = b"small but longer than thirty-two bytes, compressible compressible".to_vec();
        let stored = encode_blob(&key, BlobType::Data, &id, &small, 3).unwrap();
        verify_blob(&key, BlobType::Data, &id, &stored, &small).unwrap();
    }

    #[test]
    fn envelope_rejects_other_object_type() {
        let key = MasterKey::generate().unwrap();
        let sealed = seal(&key, ObjectType::Snapshot, b"", b"x").unwrap();
        let err = open(&key, ObjectType::Index, b"", &sealed, &"index ab").unwrap_err();
        assert_eq!(err.corruption(), Some(CorruptionKind::BadEncoding));
        assert!(err.to_string().contains("holds a snapshot"));
        // Rewriting the type byte does not help: the type is also authenticated.
        let mut forged = sealed.clone();
        forged[1] = ObjectType::Index as u8;
        let err = open(&key, ObjectType::Index, b"", &forged, &"index ab").unwrap_err();
        assert_eq!(err.corruption(), Some(CorruptionKind::MacMismatch));
    }

    #[test]
    fn blob_roundtrip_compressed_and_raw() {
        let key = MasterKey::generate().unwrap();
        let compressible = vec![7u8; 100_000];
        let id = key.blob_id(&compressible);
        let stored = encode_blob(&key, BlobType::Data, &id, &compressible, 3).unwrap();
        assert!(stored.len() < 1000);
        assert_eq!(
            decode_blob(&key, BlobType::Data, &id, &stored, 100_000).unwrap(),
            compressible
        );
        // A tree blob cannot be passed off as a data blob, nor under another id.
        assert!(decode_blob(&key, BlobType::Tree, &id, &stored, 100_000).is_err());
        let other = key.blob_id(b"other");
        assert_eq!(
            decode_blob(&key, BlobType::Data, &other, &stored, 100_000)
                .unwrap_err()
                .corruption(),
            Some(CorruptionKind::MacMismatch)
        );
        let mut random = vec![0u8; 5000];
        blake3::Hasher::new().finalize_xof().fill(&mut random);
        let id = key.blob_id(&random);
        let stored = encode_blob(&key, BlobType::Data, &id, &random, 3).unwrap();
        assert_eq!(stored.len(), random.len() + 1 + ENVELOPE_OVERHEAD);
        assert_eq!(
            decode_blob(&key, BlobType::Data, &id, &stored, 5000).unwrap(),
            random
        );
        // A wrong raw length is refused.
        assert!(decode_blob(&key, BlobType::Data, &id, &stored, 4999).is_err());
    }
}
