//! Entry points for the fuzz targets in `fuzz/`, one function per target.
//!
//! They live here so that the normal test run can replay every corpus and regression input
//! through exactly the code the fuzzer runs (`repo-core/tests/fuzz_corpus.rs`). Each function
//! takes arbitrary bytes; decoders must return errors, never panic, and never allocate more
//! than a small multiple of their input. Round-trip targets assert their property and panic
//! (so the fuzzer reports) only when it does not hold.
//!
//! It also holds, hidden from the documentation like [`crate::format`], the few internals that
//! tests and golden vectors need to forge or check repository objects by hand (see "Test
//! hooks" below); nothing else outside the crate reaches them.

use crate::chunker::{Chunker, ChunkerParams};
use crate::crypto::MasterKey;
use crate::format::config::Config;
use crate::format::envelope::{self, ObjectType};
use crate::format::index::IndexFile;
use crate::format::lock::LockFile;
use crate::format::snapshot::SnapshotFile;
use crate::format::tree::{Tree, TreeCursor};
use crate::format::{keyfile, pack, BlobType};
use crate::id::BlobId;
use crate::index::MasterIndex;

// Test hooks: internals that tests and golden vectors reach through this hidden module.
pub use crate::host::{hostname, username};

/// A fuzz target body.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/Cargo.toml` lists them.
pub const TARGETS: &[(&str, Target)] = &[
    ("decode_keyfile", decode_keyfile),
    ("decode_config", decode_config),
    ("decode_envelope", decode_envelope),
    ("decode_blob", decode_blob),
    ("decode_pack_header", decode_pack_header),
    ("decode_index", decode_index),
    ("decode_tree", decode_tree),
    ("decode_snapshot", decode_snapshot),
    ("decode_lock", decode_lock),
    ("roundtrip_chunker", roundtrip_chunker),
    ("roundtrip_blob", roundtrip_blob),
    ("roundtrip_tree", roundtrip_tree),
];

/// The fixed key fuzz targets decrypt with (the same as the golden vectors' test key).
pub fn key() -> MasterKey {
    let mut bytes = [0u8; 72];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = i as u8;
    }
    MasterKey::from_bytes(&bytes)
}

fn object_type(b: u8) -> ObjectType {
    match b % 7 {
        0 => ObjectType::Config,
        1 => ObjectType::Snapshot,
        2 => ObjectType::Index,
        3 => ObjectType::PackHeader,
        4 => ObjectType::DataBlob,
        5 => ObjectType::TreeBlob,
        _ => ObjectType::Lock,
    }
}

/// Key file parsing; unwrapping is attempted only with cheap KDF costs.
pub fn decode_keyfile(data: &[u8]) {
    if let Ok(h) = keyfile::decode_header(data, &"key") {
        if h.kdf.m_cost_kib <= 64 && h.kdf.t_cost <= 2 && h.kdf.p_cost <= 2 {
            let _ = keyfile::decode(data, b"fuzz", &"key");
        }
    }
}

/// Config plaintext and envelope.
pub fn decode_config(data: &[u8]) {
    let _ = Config::from_plaintext(data);
    let _ = Config::open(&key(), data);
}

/// Envelopes of every object type, with and without a blob-id context.
pub fn decode_envelope(data: &[u8]) {
    let Some((&t, rest)) = data.split_first() else {
        return;
    };
    let _ = envelope::open(&key(), object_type(t), b"", rest, &"object");
    let _ = envelope::open(&key(), object_type(t), &[t; 32], rest, &"object");
}

/// Blob plaintexts (compression flag and payload); the first 4 bytes give the raw length.
pub fn decode_blob(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let raw_len = u32::from_le_bytes([data[0], data[1], data[2], data[3]])
        % (BlobType::Data.max_raw_len() + 1);
    let _ = envelope::decode_blob_plaintext(&data[4..], raw_len, &"blob");
    let _ = envelope::decode_blob(
        &key(),
        BlobType::Data,
        &BlobId::default(),
        &data[4..],
        raw_len,
    );
}

/// Whole packs (trailer, header envelope) and header plaintexts.
pub fn decode_pack_header(data: &[u8]) {
    let _ = pack::decode_pack(&key(), data, &"pack");
    if data.len() >= pack::TRAILER_LEN {
        let _ = pack::parse_trailer(
            &data[data.len() - pack::TRAILER_LEN..],
            data.len() as u64,
            &"pack",
        );
    }
    let _ = pack::decode_header_plaintext(data, u64::from(u32::MAX), &"pack");
}

/// Index plaintexts, loaded into a master index and looked up.
pub fn decode_index(data: &[u8]) {
    if let Ok(file) = IndexFile::from_plaintext(data, &"index") {
        let mut b = MasterIndex::builder();
        for p in &file.packs {
            if b.add_pack(p).is_err() {
                return;
            }
        }
        let idx = b.build();
        for p in &file.packs {
            for blob in &p.blobs {
                assert!(
                    idx.lookup(blob.blob_type, &blob.id).is_some(),
                    "an indexed blob must be found"
                );
            }
        }
        assert_eq!(idx.iter().count(), idx.len());
    }
}

/// Tree plaintexts.
///
/// The streaming [`TreeCursor`] (backup and listing read trees through it) must agree with the
/// whole-tree decoder: the same nodes when the bytes are a valid tree, an error (never another
/// tree) when they are not; and lenient lookups by name find every node of a valid tree.
pub fn decode_tree(data: &[u8]) {
    let tree = Tree::from_plaintext(data, &"tree");
    let streamed = TreeCursor::new(data.to_vec(), &"tree").and_then(|mut cursor| {
        let mut nodes = Vec::new();
        while let Some(node) = cursor.next_node(&"tree")? {
            nodes.push(node);
        }
        Ok(nodes)
    });
    match (&tree, &streamed) {
        (Ok(t), Ok(nodes)) => assert_eq!(&t.nodes, nodes, "cursor and decoder disagree"),
        (Ok(_), Err(e)) => panic!("cursor refuses a tree the decoder accepts: {e}"),
        (Err(e), Ok(_)) => panic!("cursor accepts a tree the decoder refuses: {e}"),
        (Err(_), Err(_)) => {}
    }
    if let Ok(t) = &tree {
        let mut cursor = TreeCursor::new(data.to_vec(), &"tree").expect("valid tree");
        for node in &t.nodes {
            assert_eq!(cursor.take(&node.name).as_ref(), Some(node));
        }
        assert_eq!(cursor.take(&[0xff; 300]), None);
    }
}

/// Snapshot plaintexts.
pub fn decode_snapshot(data: &[u8]) {
    let _ = SnapshotFile::from_plaintext(data, &"snapshot");
}

/// Lock plaintexts.
pub fn decode_lock(data: &[u8]) {
    let _ = LockFile::from_plaintext(data, &"lock");
}

/// Chunks concatenate to the input and respect the size bounds.
pub fn roundtrip_chunker(data: &[u8]) {
    let params = ChunkerParams {
        min: 64,
        avg: 256,
        max: 1024,
    };
    let mut c = Chunker::new(params, 0x5eed);
    c.reset();
    let mut reader = data;
    let mut out = Vec::with_capacity(data.len());
    let mut lens = Vec::new();
    while let Ok(Some(chunk)) = c.next_chunk(&mut reader) {
        out.extend_from_slice(chunk);
        lens.push(chunk.len());
    }
    assert_eq!(out, data, "chunks must concatenate to the input");
    for (i, l) in lens.iter().enumerate() {
        assert!(
            *l <= 1024 && (i + 1 == lens.len() || *l >= 63),
            "chunk {i} has length {l}"
        );
    }
}

/// Blobs decode to what was encoded, at any compression level; the first byte picks it.
pub fn roundtrip_blob(data: &[u8]) {
    let Some((&level, raw)) = data.split_first() else {
        return;
    };
    let level = i32::from(level % 23) - 3;
    let key = key();
    let id = key.blob_id(raw);
    let stored = envelope::encode_blob(&key, BlobType::Data, &id, raw, level).expect("encode");
    envelope::verify_blob(&key, BlobType::Data, &id, &stored, raw).expect("verify");
    let back = envelope::decode_blob(&key, BlobType::Data, &id, &stored, raw.len() as u32)
        .expect("decode");
    assert_eq!(back, raw);
}

/// A tree that decodes re-encodes to bytes that decode to the same tree.
pub fn roundtrip_tree(data: &[u8]) {
    if let Ok(tree) = Tree::from_plaintext(data, &"tree") {
        let again = tree.to_plaintext().expect("a valid tree encodes");
        assert_eq!(
            Tree::from_plaintext(&again, &"tree").expect("re-encoded tree decodes"),
            tree
        );
    }
}
