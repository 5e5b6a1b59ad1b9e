//! Golden vectors: every file under `spec/vectors/` is checked against the format code.
//!
//! Implements the vector policy of spec/vectors/README.md. For each vector file:
//! - encoding its `input` with the repository's encoders (fixed keys, nonces and salts) gives
//!   exactly its `expected` values;
//! - decoding the expected bytes gives back the input value;
//! - every one-bit mutation of the stored bytes (one per byte position, or a sample of at least
//!   200 positions for large vectors), every truncation and an appended byte are rejected:
//!   `Corrupt`, or `WrongSecret` for key files.
//!
//! The files are append-only and must match `spec/vectors/MANIFEST.sha256`.
//! `UPDATE_VECTORS=1 cargo test -p repo-core --test vectors` writes the vectors of [`catalogue`]
//! whose files are missing and appends them to the manifest. It never rewrites an existing file:
//! a vector that no longer matches the code is a format change (spec/CHANGES.md).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use repo_core::format::config::Config;
use repo_core::format::envelope::{self, ObjectType};
use repo_core::format::index::{IndexBlob, IndexFile, IndexPack};
use repo_core::format::keyfile::{self, KeyFileHeader};
use repo_core::format::lock::LockFile;
use repo_core::format::pack::{self, LocatedEntry, PackEntry};
use repo_core::format::snapshot::{SnapshotFile, SnapshotSummary};
use repo_core::format::tree::{Node, NodeKind, Tree, Xattr};
use repo_core::format::BlobType;
use repo_core::internals::{Chunker, MasterKey, MASTER_KEY_LEN, NONCE_LEN};
use repo_core::{BlobId, IndexId, PackId, SnapshotId};
use repo_core::{ChunkerParams, KdfParams};
use repo_core::{CorruptionKind, Error, ErrorKind};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// Files and the manifest.
// ---------------------------------------------------------------------------------------------

const MANIFEST: &str = "MANIFEST.sha256";
const VECTOR_DIRS: [&str; 9] = [
    "chunker", "config", "envelope", "index", "keyfile", "lock", "pack", "snapshot", "tree",
];

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Every vector file on disk, as sorted paths relative to `spec/vectors/`.
fn files_on_disk() -> Vec<String> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let rel_name = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), &rel_name, out);
            } else if rel_name != "README.md" && rel_name != MANIFEST {
                out.push(rel_name);
            }
        }
    }
    let mut out = Vec::new();
    walk(&vectors_dir(), "", &mut out);
    out.sort();
    out
}

/// The manifest as (path, sha256 hex) pairs, in file order.
fn read_manifest() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(vectors_dir().join(MANIFEST)).unwrap_or_default();
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (digest, path) = line
                .split_once("  ")
                .unwrap_or_else(|| panic!("{MANIFEST}: malformed line {line:?}"));
            (path.to_string(), digest.to_string())
        })
        .collect()
}

fn write_manifest(entries: &BTreeMap<String, String>) {
    let mut text = String::new();
    for (path, digest) in entries {
        writeln!(text, "{digest}  {path}").unwrap();
    }
    std::fs::write(vectors_dir().join(MANIFEST), text).unwrap();
}

/// In `UPDATE_VECTORS=1` mode, writes the missing vectors of the catalogue (once per process).
fn ensure_generated() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if std::env::var("UPDATE_VECTORS").as_deref() != Ok("1") {
            return;
        }
        let mut added = Vec::new();
        for (rel, mut vector) in catalogue() {
            let path = vectors_dir().join(rel);
            if path.exists() {
                continue;
            }
            let kind = vector["kind"].as_str().unwrap().to_string();
            vector["expected"] = expected_of(&kind, &vector["input"]);
            let mut text = serde_json::to_string_pretty(&vector).unwrap();
            text.push('\n');
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
            added.push((rel.to_string(), sha256_hex(text.as_bytes())));
        }
        if !added.is_empty() {
            let mut entries: BTreeMap<String, String> = read_manifest().into_iter().collect();
            for (rel, digest) in added {
                eprintln!("UPDATE_VECTORS: added spec/vectors/{rel}");
                let _ = entries.insert(rel, digest);
            }
            write_manifest(&entries);
        }
    });
}

fn load(rel: &str) -> Value {
    let text = std::fs::read_to_string(vectors_dir().join(rel))
        .unwrap_or_else(|e| panic!("spec/vectors/{rel}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("spec/vectors/{rel}: {e}"))
}

/// Checks every vector file of one directory; each file's `kind` picks the checker.
fn check_dir(dir: &str) {
    ensure_generated();
    let files: Vec<String> = files_on_disk()
        .into_iter()
        .filter(|f| f.starts_with(&format!("{dir}/")))
        .collect();
    assert!(!files.is_empty(), "spec/vectors/{dir}/ has no vectors");
    for rel in files {
        assert!(
            rel.ends_with(".json"),
            "spec/vectors/{rel}: vectors are .json files"
        );
        let vector = load(&rel);
        let keys: BTreeSet<&str> = vector
            .as_object()
            .unwrap_or_else(|| panic!("{rel}: not an object"))
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["description", "expected", "input", "kind"]),
            "{rel}: top-level fields"
        );
        let kind = vector["kind"].as_str().unwrap();
        let input = &vector["input"];
        let expected = &vector["expected"];
        let computed = expected_of(kind, input);
        assert_same_json(&rel, expected, &computed);
        check_decoders(&rel, kind, input, expected);
    }
}

/// Compares expected and computed JSON field by field, so a failure names the field.
fn assert_same_json(rel: &str, expected: &Value, computed: &Value) {
    if expected == computed {
        return;
    }
    if let (Some(e), Some(c)) = (expected.as_object(), computed.as_object()) {
        for key in e.keys().chain(c.keys()) {
            assert_eq!(
                e.get(key),
                c.get(key),
                "spec/vectors/{rel}: expected.{key} differs from what the code produces \
                 (vectors are append-only: a change here is a new format version)"
            );
        }
    }
    assert_eq!(expected, computed, "spec/vectors/{rel}: expected differs");
}

#[test]
fn vector_manifest_matches_files() {
    ensure_generated();
    let manifest = read_manifest();
    let paths: Vec<&String> = manifest.iter().map(|(p, _)| p).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        paths, sorted,
        "{MANIFEST} must be sorted by path, without duplicates"
    );
    for (rel, digest) in &manifest {
        let bytes = std::fs::read(vectors_dir().join(rel)).unwrap_or_else(|_| {
            panic!("spec/vectors/{rel} is in {MANIFEST} but missing (vectors are append-only)")
        });
        assert_eq!(
            &sha256_hex(&bytes),
            digest,
            "spec/vectors/{rel} changed (vectors are append-only: add a new file instead)"
        );
    }
    let listed: BTreeSet<&str> = manifest.iter().map(|(p, _)| p.as_str()).collect();
    for rel in files_on_disk() {
        assert!(
            listed.contains(rel.as_str()),
            "spec/vectors/{rel} is not in {MANIFEST} (run with UPDATE_VECTORS=1 to add it)"
        );
    }
}

#[test]
fn vector_catalogue_is_on_disk() {
    ensure_generated();
    for (rel, mut vector) in catalogue() {
        let on_disk = std::fs::read_to_string(vectors_dir().join(rel)).unwrap_or_else(|_| {
            panic!("spec/vectors/{rel} is missing: run with UPDATE_VECTORS=1 to add it")
        });
        let mut on_disk: Value = serde_json::from_str(&on_disk).unwrap();
        assert_eq!(on_disk["kind"], vector["kind"], "spec/vectors/{rel}: kind");
        forget_zstd_payloads(&mut on_disk["input"]);
        forget_zstd_payloads(&mut vector["input"]);
        assert_eq!(
            on_disk["input"], vector["input"],
            "spec/vectors/{rel}: input"
        );
    }
}

/// Replaces zstd-compressed blob plaintexts by a marker: the catalogue makes them with the zstd
/// library at hand, whose output may change between versions without changing the format.
fn forget_zstd_payloads(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let compressed = map.contains_key("raw")
                && map
                    .get("plaintext")
                    .and_then(Value::as_str)
                    .is_some_and(|p| p.starts_with("01"));
            if compressed {
                let _ = map.insert("plaintext".to_string(), json!("zstd payload"));
            }
            map.values_mut().for_each(forget_zstd_payloads);
        }
        Value::Array(items) => items.iter_mut().for_each(forget_zstd_payloads),
        _ => {}
    }
}

#[test]
fn vector_directories_are_known() {
    for rel in files_on_disk() {
        let dir = rel.split('/').next().unwrap();
        assert!(
            rel.contains('/') && VECTOR_DIRS.contains(&dir),
            "spec/vectors/{rel}: not in a directory this test checks"
        );
    }
}

#[test]
fn keyfile_vectors() {
    check_dir("keyfile");
}

#[test]
fn envelope_vectors() {
    check_dir("envelope");
}

#[test]
fn config_vectors() {
    check_dir("config");
}

#[test]
fn pack_vectors() {
    check_dir("pack");
}

#[test]
fn index_vectors() {
    check_dir("index");
}

#[test]
fn tree_vectors() {
    check_dir("tree");
}

#[test]
fn snapshot_vectors() {
    check_dir("snapshot");
}

#[test]
fn lock_vectors() {
    check_dir("lock");
}

#[test]
fn chunker_vectors() {
    check_dir("chunker");
}

// ---------------------------------------------------------------------------------------------
// Dispatch.
// ---------------------------------------------------------------------------------------------

/// Computes the `expected` object of a vector from its `input` with the format code.
fn expected_of(kind: &str, input: &Value) -> Value {
    match kind {
        "keyfile" => keyfile_expected(input),
        "envelope" => envelope_expected(input),
        "blob" => blob_expected(input),
        "config" => sealed_expected::<Config>(input),
        "snapshot" => sealed_expected::<SnapshotFile>(input),
        "index" => sealed_expected::<IndexFile>(input),
        "lock" => sealed_expected::<LockFile>(input),
        "tree" => tree_expected(input),
        "pack" => pack_expected(input),
        "invalid-plaintext" => invalid_expected(input),
        "chunker" => chunker_expected(input),
        "chunker-tables" => chunker_tables_expected(input),
        other => panic!("unknown vector kind {other:?}"),
    }
}

/// Decodes the expected bytes and checks that mutations are rejected.
fn check_decoders(rel: &str, kind: &str, input: &Value, expected: &Value) {
    match kind {
        "keyfile" => keyfile_check(rel, input, expected),
        "envelope" => envelope_check(rel, input, expected),
        "blob" => blob_check(rel, input, expected),
        "config" => sealed_check::<Config>(rel, input, expected),
        "snapshot" => sealed_check::<SnapshotFile>(rel, input, expected),
        "index" => sealed_check::<IndexFile>(rel, input, expected),
        "lock" => sealed_check::<LockFile>(rel, input, expected),
        "tree" => tree_check(rel, input, expected),
        "pack" => pack_check(rel, input, expected),
        // Computing the expected error already ran the decoder.
        "invalid-plaintext" => {}
        "chunker" => chunker_check(rel, input, expected),
        "chunker-tables" => chunker_tables_check(rel, expected),
        other => panic!("{rel}: unknown vector kind {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON accessors. Unknown or missing fields are errors, so a typo in a vector cannot hide.
// ---------------------------------------------------------------------------------------------

fn fields<'a>(v: &'a Value, names: &[&str]) -> &'a Map<String, Value> {
    let map = v
        .as_object()
        .unwrap_or_else(|| panic!("expected an object, found {v}"));
    let have: BTreeSet<&str> = map.keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(have, want, "fields of {v}");
    map
}

fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    v.get(name)
        .unwrap_or_else(|| panic!("missing field {name:?} in {v}"))
}

fn bytes_of(v: &Value) -> Vec<u8> {
    hex::decode(
        v.as_str()
            .unwrap_or_else(|| panic!("expected hex, found {v}")),
    )
    .unwrap_or_else(|e| panic!("bad hex {v}: {e}"))
}

fn hex_field(v: &Value, name: &str) -> Vec<u8> {
    bytes_of(field(v, name))
}

fn array_of<const N: usize>(v: &Value) -> [u8; N] {
    bytes_of(v)
        .try_into()
        .unwrap_or_else(|_| panic!("expected {N} bytes of hex, found {v}"))
}

fn id_of(v: &Value) -> BlobId {
    BlobId::from(array_of::<32>(v))
}

fn u64_field(v: &Value, name: &str) -> u64 {
    field(v, name)
        .as_u64()
        .unwrap_or_else(|| panic!("{name}: not a u64"))
}

fn u32_field(v: &Value, name: &str) -> u32 {
    u32::try_from(u64_field(v, name)).unwrap()
}

fn i64_field(v: &Value, name: &str) -> i64 {
    field(v, name)
        .as_i64()
        .unwrap_or_else(|| panic!("{name}: not an i64"))
}

fn str_field(v: &Value, name: &str) -> String {
    field(v, name)
        .as_str()
        .unwrap_or_else(|| panic!("{name}: not a string"))
        .to_string()
}

fn list_field<'a>(v: &'a Value, name: &str) -> &'a Vec<Value> {
    field(v, name)
        .as_array()
        .unwrap_or_else(|| panic!("{name}: not a list"))
}

fn h(bytes: impl AsRef<[u8]>) -> String {
    hex::encode(bytes)
}

fn master_key(input: &Value) -> MasterKey {
    MasterKey::from_bytes(&array_of::<MASTER_KEY_LEN>(field(input, "master_key")))
}

/// The envelope encryption key: the first 32 bytes of the master key material.
fn enc_key(input: &Value) -> [u8; 32] {
    let material = array_of::<MASTER_KEY_LEN>(field(input, "master_key"));
    material[..32].try_into().unwrap()
}

fn nonce_field(v: &Value, name: &str) -> [u8; NONCE_LEN] {
    array_of::<NONCE_LEN>(field(v, name))
}

fn blob_type_of(v: &Value) -> BlobType {
    match v.as_str() {
        Some("data") => BlobType::Data,
        Some("tree") => BlobType::Tree,
        _ => panic!("unknown blob type {v}"),
    }
}

const OBJECT_TYPES: [(&str, ObjectType); 7] = [
    ("config", ObjectType::Config),
    ("snapshot", ObjectType::Snapshot),
    ("index", ObjectType::Index),
    ("pack_header", ObjectType::PackHeader),
    ("data_blob", ObjectType::DataBlob),
    ("tree_blob", ObjectType::TreeBlob),
    ("lock", ObjectType::Lock),
];

fn object_type_of(v: &Value) -> ObjectType {
    OBJECT_TYPES
        .iter()
        .find(|(name, _)| Some(*name) == v.as_str())
        .unwrap_or_else(|| panic!("unknown object type {v}"))
        .1
}

fn error_json(e: &Error) -> Value {
    json!({
        "error": format!("{:?}", e.kind()),
        "corruption": e.corruption().map(|c| format!("{c:?}")),
    })
}

// ---------------------------------------------------------------------------------------------
// Mutations.
// ---------------------------------------------------------------------------------------------

/// Byte positions to mutate: all of them up to 4 KiB, else the first and last 256 and 512 more
/// spread evenly in between.
fn mutation_positions(len: usize) -> Vec<usize> {
    if len <= 4096 {
        return (0..len).collect();
    }
    let mut out: BTreeSet<usize> = (0..256).chain(len - 256..len).collect();
    out.extend((0..512).map(|i| 256 + i * (len - 512) / 512));
    out.into_iter().collect()
}

/// Prefix lengths to try: all up to 256 bytes, else every length up to 64, the last 64 and 128
/// spread evenly.
fn truncation_lengths(len: usize) -> Vec<usize> {
    if len <= 256 {
        return (0..len).collect();
    }
    let mut out: BTreeSet<usize> = (0..64).chain(len - 64..len).collect();
    out.extend((0..128).map(|i| 64 + i * (len - 128) / 128));
    out.into_iter().collect()
}

/// Flips one bit per position (`mask(position)`), truncates, and appends a byte; every
/// variant must be refused with one of `allowed`.
fn assert_mutants_rejected(
    rel: &str,
    bytes: &[u8],
    mask: impl Fn(usize) -> u8,
    allowed: &[ErrorKind],
    decode: impl Fn(&[u8]) -> repo_core::Result<()>,
) {
    let refused = |what: String, variant: &[u8]| match decode(variant) {
        Ok(()) => panic!("spec/vectors/{rel}: {what} was accepted"),
        Err(e) => assert!(
            allowed.contains(&e.kind()),
            "spec/vectors/{rel}: {what} was refused as {:?} ({e}), expected one of {allowed:?}",
            e.kind()
        ),
    };
    let positions = mutation_positions(bytes.len());
    assert!(positions.len() >= bytes.len().min(200));
    for pos in positions {
        let mut variant = bytes.to_vec();
        variant[pos] ^= mask(pos);
        refused(
            format!("flipping bits {:#04x} of byte {pos}", mask(pos)),
            &variant,
        );
    }
    for len in truncation_lengths(bytes.len()) {
        refused(format!("truncation to {len} bytes"), &bytes[..len]);
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    refused("an appended byte".to_string(), &longer);
}

/// The default mutation: bit `position % 8` of each byte.
fn rotating_bit(pos: usize) -> u8 {
    1 << (pos % 8)
}

/// An envelope must refuse to open as another object type, or under another context, and its
/// type byte cannot be rewritten because the type is also authenticated.
fn assert_envelope_bound(
    rel: &str,
    key: &MasterKey,
    object_type: ObjectType,
    context: &[u8],
    stored: &[u8],
) {
    for (name, other) in OBJECT_TYPES {
        if other == object_type {
            continue;
        }
        let err = envelope::open(key, other, context, stored, &"vector").unwrap_err();
        assert_eq!(
            err.corruption(),
            Some(CorruptionKind::BadEncoding),
            "{rel}: opened as {name}"
        );
        let mut forged = stored.to_vec();
        forged[1] = other as u8;
        let err = envelope::open(key, other, context, &forged, &"vector").unwrap_err();
        assert_eq!(
            err.corruption(),
            Some(CorruptionKind::MacMismatch),
            "{rel}: type byte rewritten to {name}"
        );
    }
    let mut other_context = context.to_vec();
    match other_context.first_mut() {
        Some(b) => *b ^= 1,
        None => other_context.push(0),
    }
    let err = envelope::open(key, object_type, &other_context, stored, &"vector").unwrap_err();
    assert_eq!(
        err.corruption(),
        Some(CorruptionKind::MacMismatch),
        "{rel}: opened under another context"
    );
    let other_key = MasterKey::from_bytes(&[0x5a; MASTER_KEY_LEN]);
    let err = envelope::open(&other_key, object_type, context, stored, &"vector").unwrap_err();
    assert_eq!(
        err.corruption(),
        Some(CorruptionKind::MacMismatch),
        "{rel}: opened with another key"
    );
}

// ---------------------------------------------------------------------------------------------
// Key files (spec/02-crypto.md).
// ---------------------------------------------------------------------------------------------

fn keyfile_header(input: &Value) -> KeyFileHeader {
    let kdf = field(input, "kdf");
    let _ = fields(kdf, &["m_cost_kib", "t_cost", "p_cost"]);
    KeyFileHeader {
        kdf: KdfParams {
            m_cost_kib: u32_field(kdf, "m_cost_kib"),
            t_cost: u32_field(kdf, "t_cost"),
            p_cost: u32_field(kdf, "p_cost"),
        },
        salt: array_of::<32>(field(input, "salt")),
        created_unix: i64_field(input, "created_unix"),
    }
}

fn keyfile_expected(input: &Value) -> Value {
    let _ = fields(
        input,
        &[
            "master_key",
            "password",
            "kdf",
            "salt",
            "created_unix",
            "nonce",
        ],
    );
    let header = keyfile_header(input);
    let password = str_field(input, "password");
    let wrapping = header
        .kdf
        .derive(password.as_bytes(), &header.salt)
        .unwrap();
    let stored = keyfile::encode_with(
        &master_key(input),
        password.as_bytes(),
        &header,
        &nonce_field(input, "nonce"),
    )
    .unwrap();
    json!({
        "wrapping_key": h(&wrapping[..]),
        "stored": h(&stored),
        "file_name": h(blake3::hash(&stored).as_bytes()),
    })
}

fn keyfile_check(rel: &str, input: &Value, expected: &Value) {
    let stored = hex_field(expected, "stored");
    let password = str_field(input, "password");
    assert_eq!(stored.len(), keyfile::KEYFILE_LEN, "{rel}");
    assert_eq!(
        keyfile::decode_header(&stored, &"vector").unwrap(),
        keyfile_header(input),
        "{rel}"
    );
    let key = keyfile::decode(&stored, password.as_bytes(), &"vector").unwrap();
    assert_eq!(
        h(&key.to_bytes()[..]),
        str_field(input, "master_key"),
        "{rel}"
    );
    assert_eq!(
        keyfile::decode(&stored, b"not the password", &"vector")
            .unwrap_err()
            .kind(),
        ErrorKind::WrongSecret,
        "{rel}"
    );
    // The lowest bit only, so that no mutated memory cost makes Argon2 take more than 64 MiB.
    assert_mutants_rejected(
        rel,
        &stored,
        |_| 1,
        &[ErrorKind::Corrupt, ErrorKind::WrongSecret],
        |b| keyfile::decode(b, password.as_bytes(), &"vector").map(drop),
    );
}

// ---------------------------------------------------------------------------------------------
// Envelopes and blobs (spec/03-envelope.md).
// ---------------------------------------------------------------------------------------------

fn envelope_expected(input: &Value) -> Value {
    let _ = fields(
        input,
        &["master_key", "nonce", "object_type", "context", "plaintext"],
    );
    let stored = envelope::seal_with_nonce(
        &enc_key(input),
        &nonce_field(input, "nonce"),
        object_type_of(field(input, "object_type")),
        &hex_field(input, "context"),
        &hex_field(input, "plaintext"),
    )
    .unwrap();
    json!({ "stored": h(stored) })
}

fn envelope_check(rel: &str, input: &Value, expected: &Value) {
    let key = master_key(input);
    let object_type = object_type_of(field(input, "object_type"));
    let context = hex_field(input, "context");
    let plaintext = hex_field(input, "plaintext");
    let stored = hex_field(expected, "stored");
    assert_eq!(
        stored.len(),
        plaintext.len() + envelope::ENVELOPE_OVERHEAD,
        "{rel}"
    );
    assert_eq!(
        envelope::open(&key, object_type, &context, &stored, &"vector").unwrap(),
        plaintext,
        "{rel}"
    );
    let sealed = envelope::seal(&key, object_type, &context, &plaintext).unwrap();
    assert_eq!(
        envelope::open(&key, object_type, &context, &sealed, &"vector").unwrap(),
        plaintext,
        "{rel}: seal with a random nonce"
    );
    assert_envelope_bound(rel, &key, object_type, &context, &stored);
    assert_mutants_rejected(rel, &stored, rotating_bit, &[ErrorKind::Corrupt], |b| {
        envelope::open(&key, object_type, &context, b, &"vector").map(drop)
    });
}

fn blob_expected(input: &Value) -> Value {
    let _ = fields(
        input,
        &[
            "master_key",
            "nonce",
            "blob_type",
            "raw",
            "compression_level",
            "plaintext",
        ],
    );
    let key = master_key(input);
    let id = key.blob_id(&hex_field(input, "raw"));
    let stored = envelope::seal_with_nonce(
        &enc_key(input),
        &nonce_field(input, "nonce"),
        ObjectType::of_blob(blob_type_of(field(input, "blob_type"))),
        id.as_bytes(),
        &hex_field(input, "plaintext"),
    )
    .unwrap();
    json!({ "id": id.to_hex(), "stored": h(stored) })
}

/// Checks that the blob encoder at `level` produces `plaintext` when it is uncompressed (zstd
/// output is not pinned by the format), and that its output decodes to `raw`.
fn assert_blob_encoder(
    rel: &str,
    key: &MasterKey,
    blob_type: BlobType,
    raw: &[u8],
    level: i32,
    plaintext: &[u8],
) {
    let id = key.blob_id(raw);
    let sealed = envelope::encode_blob(key, blob_type, &id, raw, level).unwrap();
    let opened = envelope::open(
        key,
        ObjectType::of_blob(blob_type),
        id.as_bytes(),
        &sealed,
        &"vector",
    )
    .unwrap();
    if plaintext[0] == 0 {
        assert_eq!(opened, plaintext, "{rel}: encode_blob at level {level}");
    } else {
        assert_eq!(opened[0], plaintext[0], "{rel}: compression byte");
    }
    assert_eq!(
        envelope::decode_blob(
            key,
            blob_type,
            &id,
            &sealed,
            u32::try_from(raw.len()).unwrap()
        )
        .unwrap(),
        raw,
        "{rel}: encode_blob roundtrip"
    );
}

fn blob_check(rel: &str, input: &Value, expected: &Value) {
    let key = master_key(input);
    let blob_type = blob_type_of(field(input, "blob_type"));
    let raw = hex_field(input, "raw");
    let raw_len = u32::try_from(raw.len()).unwrap();
    let id = id_of(field(expected, "id"));
    let stored = hex_field(expected, "stored");
    let level = i32::try_from(i64_field(input, "compression_level")).unwrap();
    assert_blob_encoder(
        rel,
        &key,
        blob_type,
        &raw,
        level,
        &hex_field(input, "plaintext"),
    );
    assert_eq!(
        envelope::decode_blob(&key, blob_type, &id, &stored, raw_len).unwrap(),
        raw,
        "{rel}"
    );
    let other_type = match blob_type {
        BlobType::Data => BlobType::Tree,
        BlobType::Tree => BlobType::Data,
    };
    assert!(envelope::decode_blob(&key, other_type, &id, &stored, raw_len).is_err());
    assert_eq!(
        envelope::decode_blob(&key, blob_type, &id, &stored, raw_len + 1)
            .unwrap_err()
            .corruption(),
        Some(CorruptionKind::IdMismatch),
        "{rel}: wrong raw length"
    );
    assert_envelope_bound(
        rel,
        &key,
        ObjectType::of_blob(blob_type),
        id.as_bytes(),
        &stored,
    );
    assert_mutants_rejected(rel, &stored, rotating_bit, &[ErrorKind::Corrupt], |b| {
        envelope::decode_blob(&key, blob_type, &id, b, raw_len).map(drop)
    });
}

// ---------------------------------------------------------------------------------------------
// Sealed structures: config, snapshot, index, lock.
// ---------------------------------------------------------------------------------------------

trait Structure: PartialEq + std::fmt::Debug + Sized {
    const OBJECT_TYPE: ObjectType;
    /// Whether the stored file is named by the BLAKE3 hash of its bytes.
    const HASH_NAMED: bool;
    fn from_json(v: &Value) -> Self;
    fn to_plaintext(&self) -> repo_core::Result<Vec<u8>>;
    fn from_plaintext(bytes: &[u8]) -> repo_core::Result<Self>;
    fn open(key: &MasterKey, stored: &[u8]) -> repo_core::Result<Self> {
        Self::from_plaintext(&envelope::open(
            key,
            Self::OBJECT_TYPE,
            b"",
            stored,
            &"vector",
        )?)
    }
}

impl Structure for Config {
    const OBJECT_TYPE: ObjectType = ObjectType::Config;
    const HASH_NAMED: bool = false;
    fn from_json(v: &Value) -> Self {
        let _ = fields(
            v,
            &[
                "repo_id",
                "chunk_min",
                "chunk_avg",
                "chunk_max",
                "compression_level",
                "pack_size",
            ],
        );
        Config {
            repo_id: array_of::<32>(field(v, "repo_id")),
            chunk_min: u32_field(v, "chunk_min"),
            chunk_avg: u32_field(v, "chunk_avg"),
            chunk_max: u32_field(v, "chunk_max"),
            compression_level: i32::try_from(i64_field(v, "compression_level")).unwrap(),
            pack_size: u32_field(v, "pack_size"),
        }
    }
    fn to_plaintext(&self) -> repo_core::Result<Vec<u8>> {
        Config::to_plaintext(self)
    }
    fn from_plaintext(bytes: &[u8]) -> repo_core::Result<Self> {
        Config::from_plaintext(bytes)
    }
    fn open(key: &MasterKey, stored: &[u8]) -> repo_core::Result<Self> {
        Config::open(key, stored)
    }
}

impl Structure for SnapshotFile {
    const OBJECT_TYPE: ObjectType = ObjectType::Snapshot;
    const HASH_NAMED: bool = true;
    fn from_json(v: &Value) -> Self {
        let _ = fields(
            v,
            &[
                "time_ns",
                "hostname",
                "username",
                "paths",
                "tags",
                "description",
                "parent",
                "tree",
                "program_version",
                "summary",
            ],
        );
        let s = field(v, "summary");
        let _ = fields(
            s,
            &[
                "files_new",
                "files_changed",
                "files_unmodified",
                "dirs",
                "others",
                "bytes_read",
                "bytes_total",
                "bytes_added",
                "blobs_added",
                "started_ns",
                "finished_ns",
                "errors_skipped",
            ],
        );
        SnapshotFile {
            time_ns: i64_field(v, "time_ns"),
            hostname: str_field(v, "hostname"),
            username: str_field(v, "username"),
            paths: list_field(v, "paths").iter().map(bytes_of).collect(),
            tags: list_field(v, "tags")
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect(),
            description: str_field(v, "description"),
            parent: match field(v, "parent") {
                Value::Null => None,
                p => Some(SnapshotId::from(array_of::<32>(p))),
            },
            tree: id_of(field(v, "tree")),
            program_version: str_field(v, "program_version"),
            summary: SnapshotSummary {
                files_new: u64_field(s, "files_new"),
                files_changed: u64_field(s, "files_changed"),
                files_unmodified: u64_field(s, "files_unmodified"),
                dirs: u64_field(s, "dirs"),
                others: u64_field(s, "others"),
                bytes_read: u64_field(s, "bytes_read"),
                bytes_total: u64_field(s, "bytes_total"),
                bytes_added: u64_field(s, "bytes_added"),
                blobs_added: u64_field(s, "blobs_added"),
                started_ns: i64_field(s, "started_ns"),
                finished_ns: i64_field(s, "finished_ns"),
                errors_skipped: u64_field(s, "errors_skipped"),
            },
        }
    }
    fn to_plaintext(&self) -> repo_core::Result<Vec<u8>> {
        SnapshotFile::to_plaintext(self)
    }
    fn from_plaintext(bytes: &[u8]) -> repo_core::Result<Self> {
        SnapshotFile::from_plaintext(bytes, &"vector")
    }
}

impl Structure for IndexFile {
    const OBJECT_TYPE: ObjectType = ObjectType::Index;
    const HASH_NAMED: bool = true;
    fn from_json(v: &Value) -> Self {
        let _ = fields(v, &["supersedes", "packs"]);
        IndexFile {
            supersedes: list_field(v, "supersedes")
                .iter()
                .map(|i| IndexId::from(array_of::<32>(i)))
                .collect(),
            packs: list_field(v, "packs")
                .iter()
                .map(|p| {
                    let _ = fields(p, &["id", "size", "blobs"]);
                    IndexPack {
                        id: PackId::from(array_of::<32>(field(p, "id"))),
                        size: u64_field(p, "size"),
                        blobs: list_field(p, "blobs")
                            .iter()
                            .map(|b| {
                                let _ = fields(
                                    b,
                                    &["blob_type", "id", "offset", "stored_len", "raw_len"],
                                );
                                IndexBlob {
                                    blob_type: blob_type_of(field(b, "blob_type")),
                                    id: id_of(field(b, "id")),
                                    offset: u32_field(b, "offset"),
                                    stored_len: u32_field(b, "stored_len"),
                                    raw_len: u32_field(b, "raw_len"),
                                }
                            })
                            .collect(),
                    }
                })
                .collect(),
        }
    }
    fn to_plaintext(&self) -> repo_core::Result<Vec<u8>> {
        IndexFile::to_plaintext(self)
    }
    fn from_plaintext(bytes: &[u8]) -> repo_core::Result<Self> {
        IndexFile::from_plaintext(bytes, &"vector")
    }
}

impl Structure for LockFile {
    const OBJECT_TYPE: ObjectType = ObjectType::Lock;
    const HASH_NAMED: bool = true;
    fn from_json(v: &Value) -> Self {
        let _ = fields(
            v,
            &[
                "exclusive",
                "hostname",
                "username",
                "pid",
                "time_ns",
                "operation",
            ],
        );
        LockFile {
            exclusive: field(v, "exclusive").as_bool().unwrap(),
            hostname: str_field(v, "hostname"),
            username: str_field(v, "username"),
            pid: u32_field(v, "pid"),
            time_ns: i64_field(v, "time_ns"),
            operation: str_field(v, "operation"),
        }
    }
    fn to_plaintext(&self) -> repo_core::Result<Vec<u8>> {
        LockFile::to_plaintext(self)
    }
    fn from_plaintext(bytes: &[u8]) -> repo_core::Result<Self> {
        LockFile::from_plaintext(bytes, &"vector")
    }
}

fn sealed_expected<T: Structure>(input: &Value) -> Value {
    let _ = fields(input, &["master_key", "nonce", "value"]);
    let plaintext = T::from_json(field(input, "value")).to_plaintext().unwrap();
    let stored = envelope::seal_with_nonce(
        &enc_key(input),
        &nonce_field(input, "nonce"),
        T::OBJECT_TYPE,
        b"",
        &plaintext,
    )
    .unwrap();
    let mut out = json!({ "plaintext": h(&plaintext), "stored": h(&stored) });
    if T::HASH_NAMED {
        out["file_name"] = json!(h(blake3::hash(&stored).as_bytes()));
    }
    out
}

fn sealed_check<T: Structure>(rel: &str, input: &Value, expected: &Value) {
    let key = master_key(input);
    let value = T::from_json(field(input, "value"));
    let plaintext = hex_field(expected, "plaintext");
    let stored = hex_field(expected, "stored");
    assert_eq!(T::from_plaintext(&plaintext).unwrap(), value, "{rel}");
    assert_eq!(T::open(&key, &stored).unwrap(), value, "{rel}");
    let sealed = envelope::seal(&key, T::OBJECT_TYPE, b"", &value.to_plaintext().unwrap()).unwrap();
    assert_eq!(
        T::open(&key, &sealed).unwrap(),
        value,
        "{rel}: seal with a random nonce"
    );
    assert_envelope_bound(rel, &key, T::OBJECT_TYPE, b"", &stored);
    assert_mutants_rejected(rel, &stored, rotating_bit, &[ErrorKind::Corrupt], |b| {
        T::open(&key, b).map(drop)
    });
}

// ---------------------------------------------------------------------------------------------
// Trees (spec/06-tree.md).
// ---------------------------------------------------------------------------------------------

fn node_kind_of(v: &Value) -> NodeKind {
    [
        NodeKind::File,
        NodeKind::Dir,
        NodeKind::Symlink,
        NodeKind::Fifo,
        NodeKind::CharDevice,
        NodeKind::BlockDevice,
        NodeKind::Socket,
    ]
    .into_iter()
    .find(|k| Some(k.as_str()) == v.as_str())
    .unwrap_or_else(|| panic!("unknown node kind {v}"))
}

fn node_from_json(v: &Value) -> Node {
    let _ = fields(
        v,
        &[
            "name",
            "kind",
            "mode",
            "uid",
            "gid",
            "user",
            "group",
            "mtime_ns",
            "ctime_ns",
            "atime_ns",
            "size",
            "device",
            "inode",
            "links",
            "symlink_target",
            "rdev",
            "xattrs",
            "content",
            "subtree",
        ],
    );
    Node {
        name: hex_field(v, "name"),
        kind: node_kind_of(field(v, "kind")),
        mode: u32_field(v, "mode"),
        uid: u32_field(v, "uid"),
        gid: u32_field(v, "gid"),
        user: str_field(v, "user"),
        group: str_field(v, "group"),
        mtime_ns: i64_field(v, "mtime_ns"),
        ctime_ns: i64_field(v, "ctime_ns"),
        atime_ns: i64_field(v, "atime_ns"),
        size: u64_field(v, "size"),
        device: u64_field(v, "device"),
        inode: u64_field(v, "inode"),
        links: u64_field(v, "links"),
        symlink_target: hex_field(v, "symlink_target"),
        rdev: u64_field(v, "rdev"),
        xattrs: list_field(v, "xattrs")
            .iter()
            .map(|x| {
                let _ = fields(x, &["name", "value"]);
                Xattr {
                    name: hex_field(x, "name"),
                    value: hex_field(x, "value"),
                }
            })
            .collect(),
        content: list_field(v, "content").iter().map(id_of).collect(),
        subtree: match field(v, "subtree") {
            Value::Null => None,
            s => Some(id_of(s)),
        },
    }
}

fn tree_from_json(v: &Value) -> Tree {
    let _ = fields(v, &["nodes"]);
    Tree {
        nodes: list_field(v, "nodes").iter().map(node_from_json).collect(),
    }
}

fn tree_expected(input: &Value) -> Value {
    let _ = fields(input, &["master_key", "nonce", "tree"]);
    let key = master_key(input);
    let plaintext = tree_from_json(field(input, "tree")).to_plaintext().unwrap();
    let id = key.blob_id(&plaintext);
    let mut blob_plaintext = vec![0u8];
    blob_plaintext.extend_from_slice(&plaintext);
    let stored = envelope::seal_with_nonce(
        &enc_key(input),
        &nonce_field(input, "nonce"),
        ObjectType::TreeBlob,
        id.as_bytes(),
        &blob_plaintext,
    )
    .unwrap();
    json!({
        "plaintext": h(&plaintext),
        "id": id.to_hex(),
        "blob_plaintext": h(&blob_plaintext),
        "stored": h(&stored),
    })
}

fn tree_check(rel: &str, input: &Value, expected: &Value) {
    let key = master_key(input);
    let tree = tree_from_json(field(input, "tree"));
    let plaintext = hex_field(expected, "plaintext");
    let raw_len = u32::try_from(plaintext.len()).unwrap();
    let id = id_of(field(expected, "id"));
    let stored = hex_field(expected, "stored");
    assert_eq!(
        Tree::from_plaintext(&plaintext, &"vector").unwrap(),
        tree,
        "{rel}"
    );
    assert_blob_encoder(
        rel,
        &key,
        BlobType::Tree,
        &plaintext,
        0,
        &hex_field(expected, "blob_plaintext"),
    );
    let decode = |b: &[u8]| -> repo_core::Result<Tree> {
        let raw = envelope::decode_blob(&key, BlobType::Tree, &id, b, raw_len)?;
        Tree::from_plaintext(&raw, &"vector")
    };
    assert_eq!(decode(&stored).unwrap(), tree, "{rel}");
    assert_envelope_bound(rel, &key, ObjectType::TreeBlob, id.as_bytes(), &stored);
    assert_mutants_rejected(rel, &stored, rotating_bit, &[ErrorKind::Corrupt], |b| {
        decode(b).map(drop)
    });
}

// ---------------------------------------------------------------------------------------------
// Invalid plaintexts: bytes that decoders must refuse.
// ---------------------------------------------------------------------------------------------

fn invalid_expected(input: &Value) -> Value {
    let _ = fields(input, &["structure", "plaintext"]);
    let plaintext = hex_field(input, "plaintext");
    let result = match str_field(input, "structure").as_str() {
        "config" => Config::from_plaintext(&plaintext).map(drop),
        "snapshot" => SnapshotFile::from_plaintext(&plaintext, &"vector").map(drop),
        "index" => IndexFile::from_plaintext(&plaintext, &"vector").map(drop),
        "lock" => LockFile::from_plaintext(&plaintext, &"vector").map(drop),
        "tree" => Tree::from_plaintext(&plaintext, &"vector").map(drop),
        other => panic!("unknown structure {other:?}"),
    };
    match result {
        Ok(()) => json!({ "error": null, "corruption": null }),
        Err(e) => error_json(&e),
    }
}

// ---------------------------------------------------------------------------------------------
// Packs (spec/04-pack.md).
// ---------------------------------------------------------------------------------------------

fn pack_expected(input: &Value) -> Value {
    let _ = fields(input, &["master_key", "blobs", "header_nonce"]);
    let key = master_key(input);
    let mut stored = Vec::new();
    let mut entries = Vec::new();
    let mut entries_json = Vec::new();
    for blob in list_field(input, "blobs") {
        let _ = fields(blob, &["blob_type", "raw", "plaintext", "nonce"]);
        let blob_type = blob_type_of(field(blob, "blob_type"));
        let raw = hex_field(blob, "raw");
        let id = key.blob_id(&raw);
        let sealed = envelope::seal_with_nonce(
            &enc_key(input),
            &nonce_field(blob, "nonce"),
            ObjectType::of_blob(blob_type),
            id.as_bytes(),
            &hex_field(blob, "plaintext"),
        )
        .unwrap();
        let entry = PackEntry {
            blob_type,
            id,
            stored_len: u32::try_from(sealed.len()).unwrap(),
            raw_len: u32::try_from(raw.len()).unwrap(),
        };
        entries_json.push(json!({
            "blob_type": blob_type.as_str(),
            "id": id.to_hex(),
            "offset": stored.len(),
            "stored_len": entry.stored_len,
            "raw_len": entry.raw_len,
        }));
        entries.push(entry);
        stored.extend_from_slice(&sealed);
    }
    // The header plaintext comes from the real encoder, which seals with a random nonce.
    let closing = pack::encode_header(&key, &entries).unwrap();
    let header_plaintext = envelope::open(
        &key,
        ObjectType::PackHeader,
        b"",
        &closing[..closing.len() - pack::TRAILER_LEN],
        &"vector",
    )
    .unwrap();
    let header = envelope::seal_with_nonce(
        &enc_key(input),
        &nonce_field(input, "header_nonce"),
        ObjectType::PackHeader,
        b"",
        &header_plaintext,
    )
    .unwrap();
    stored.extend_from_slice(&header);
    stored.extend_from_slice(&u32::try_from(header.len()).unwrap().to_le_bytes());
    stored.extend_from_slice(pack::TRAILER_MAGIC);
    json!({
        "entries": entries_json,
        "header_plaintext": h(&header_plaintext),
        "stored": h(&stored),
        "pack_id": h(blake3::hash(&stored).as_bytes()),
    })
}

fn pack_check(rel: &str, input: &Value, expected: &Value) {
    let key = master_key(input);
    let stored = hex_field(expected, "stored");
    let want: Vec<LocatedEntry> = list_field(expected, "entries")
        .iter()
        .map(|e| LocatedEntry {
            entry: PackEntry {
                blob_type: blob_type_of(field(e, "blob_type")),
                id: id_of(field(e, "id")),
                stored_len: u32_field(e, "stored_len"),
                raw_len: u32_field(e, "raw_len"),
            },
            offset: u32_field(e, "offset"),
        })
        .collect();
    let blobs = list_field(input, "blobs");
    for (blob, located) in blobs.iter().zip(&want) {
        let raw = hex_field(blob, "raw");
        assert_blob_encoder(
            rel,
            &key,
            located.entry.blob_type,
            &raw,
            if hex_field(blob, "plaintext")[0] == 0 {
                0
            } else {
                3
            },
            &hex_field(blob, "plaintext"),
        );
    }
    // The real closing encoder: a header envelope, its length, the magic.
    let entries: Vec<PackEntry> = want.iter().map(|l| l.entry).collect();
    let closing = pack::encode_header(&key, &entries).unwrap();
    let header_len = closing.len() - pack::TRAILER_LEN;
    assert_eq!(
        &closing[header_len..header_len + 4],
        &u32::try_from(header_len).unwrap().to_le_bytes(),
        "{rel}"
    );
    assert_eq!(&closing[header_len + 4..], pack::TRAILER_MAGIC, "{rel}");
    // Full verification, as `check --read-data` does: the header, then every blob.
    let decode = |b: &[u8]| -> repo_core::Result<Vec<(LocatedEntry, Vec<u8>)>> {
        let located = pack::decode_pack(&key, b, &"vector")?;
        let mut out = Vec::new();
        for l in located {
            let start = l.offset as usize;
            let blob = &b[start..start + l.entry.stored_len as usize];
            let raw =
                envelope::decode_blob(&key, l.entry.blob_type, &l.entry.id, blob, l.entry.raw_len)?;
            out.push((l, raw));
        }
        Ok(out)
    };
    let decoded = decode(&stored).unwrap();
    assert_eq!(
        decoded.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        want,
        "{rel}"
    );
    for ((_, raw), blob) in decoded.iter().zip(blobs) {
        assert_eq!(raw, &hex_field(blob, "raw"), "{rel}");
    }
    assert_mutants_rejected(rel, &stored, rotating_bit, &[ErrorKind::Corrupt], |b| {
        decode(b).map(drop)
    });
}

// ---------------------------------------------------------------------------------------------
// Chunker (spec/02-crypto.md, chunking).
// ---------------------------------------------------------------------------------------------

fn chunker_data(v: &Value) -> Vec<u8> {
    let len = usize::try_from(u64_field(v, "len")).unwrap();
    let mut data = vec![0u8; len];
    match str_field(v, "generator").as_str() {
        "blake3-xof" => {
            let _ = fields(v, &["generator", "seed", "len"]);
            let mut hasher = blake3::Hasher::new();
            let _ = hasher.update(str_field(v, "seed").as_bytes());
            hasher.finalize_xof().fill(&mut data);
        }
        "zeros" => {
            let _ = fields(v, &["generator", "len"]);
        }
        other => panic!("unknown data generator {other:?}"),
    }
    data
}

fn chunker_params(v: &Value) -> ChunkerParams {
    let _ = fields(v, &["min", "avg", "max"]);
    ChunkerParams {
        min: u32_field(v, "min"),
        avg: u32_field(v, "avg"),
        max: u32_field(v, "max"),
    }
}

fn chunker_expected(input: &Value) -> Value {
    let _ = fields(input, &["master_key", "params", "data"]);
    let key = master_key(input);
    let params = chunker_params(field(input, "params"));
    params.validate().unwrap();
    let data = chunker_data(field(input, "data"));
    let lengths = Chunker::new(params, key.chunker_seed()).chunk_lengths(&data);
    let mut offset = 0;
    let chunks: Vec<Value> = lengths
        .iter()
        .map(|len| {
            let chunk = &data[offset..offset + len];
            offset += len;
            json!({ "len": len, "id": key.blob_id(chunk).to_hex() })
        })
        .collect();
    json!({
        "chunker_seed": format!("{:016x}", key.chunker_seed()),
        "data_blake3": h(blake3::hash(&data).as_bytes()),
        "chunks": chunks,
    })
}

fn chunker_check(rel: &str, input: &Value, expected: &Value) {
    let data = chunker_data(field(input, "data"));
    let params = chunker_params(field(input, "params"));
    let lengths: Vec<u64> = list_field(expected, "chunks")
        .iter()
        .map(|c| u64_field(c, "len"))
        .collect();
    assert_eq!(
        lengths.iter().sum::<u64>(),
        data.len() as u64,
        "{rel}: chunks cover the input"
    );
    for (i, len) in lengths.iter().enumerate() {
        assert!(*len <= u64::from(params.max), "{rel}: chunk {i} too long");
        if i + 1 < lengths.len() {
            assert!(*len >= u64::from(params.min), "{rel}: chunk {i} too short");
        }
    }
    // Chunking through a reader that returns few bytes per call gives the same cuts.
    struct Trickle<'a>(&'a [u8]);
    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(7919);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let key = master_key(input);
    let mut chunker = Chunker::new(params, key.chunker_seed());
    chunker.reset();
    let mut reader = Trickle(&data);
    let mut trickled = Vec::new();
    while let Some(chunk) = chunker.next_chunk(&mut reader).unwrap() {
        trickled.push(chunk.len() as u64);
    }
    assert_eq!(trickled, lengths, "{rel}: chunking a trickling reader");
}

fn chunker_tables_expected(input: &Value) -> Value {
    let _ = fields(input, &["gear_seed"]);
    let (gear, _) = fastcdc::v2020::get_gear_with_seed(u64_field(input, "gear_seed"));
    json!({
        "gear": gear.iter().map(|g| format!("{g:016x}")).collect::<Vec<_>>(),
        "masks": fastcdc::v2020::MASKS.iter().map(|m| format!("{m:016x}")).collect::<Vec<_>>(),
    })
}

fn chunker_tables_check(rel: &str, expected: &Value) {
    let gear: Vec<u64> = list_field(expected, "gear")
        .iter()
        .map(|g| u64::from_str_radix(g.as_str().unwrap(), 16).unwrap())
        .collect();
    assert_eq!(gear.len(), 256, "{rel}");
    // The shifted table is the gear table shifted left by one, for every seed.
    for seed in [0, 1, 0x4746_4544_4342_4140] {
        let (g, g_ls) = fastcdc::v2020::get_gear_with_seed(seed);
        for i in 0..256 {
            let seeded = if seed == 0 { gear[i] } else { gear[i] ^ seed };
            assert_eq!(g[i], seeded, "{rel}: gear[{i}] with seed {seed:#x}");
            assert_eq!(
                g_ls[i],
                seeded << 1,
                "{rel}: gear_ls[{i}] with seed {seed:#x}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The catalogue: inputs of every vector. Append new vectors; never edit existing entries.
// ---------------------------------------------------------------------------------------------

/// The test master key: bytes 0x00, 0x01, ..., 0x47 (chunker seed 0x4746454443424140).
fn test_master_key() -> String {
    h((0..MASTER_KEY_LEN as u8).collect::<Vec<u8>>())
}

/// 32 bytes derived from a label (ids and salts of vectors).
fn label32(label: &str) -> String {
    h(blake3::hash(label.as_bytes()).as_bytes())
}

/// 24 bytes derived from a label: a distinct nonce per vector.
fn label_nonce(label: &str) -> String {
    h(&blake3::hash(label.as_bytes()).as_bytes()[..NONCE_LEN])
}

fn vector(kind: &str, description: &str, input: Value) -> Value {
    json!({ "kind": kind, "description": description, "input": input })
}

fn blob_plaintext_of(raw: &[u8], level: i32, blob_type: BlobType) -> String {
    // The plaintext the real encoder chooses (with a throwaway key; only the plaintext is kept).
    let key = MasterKey::from_bytes(&[7; MASTER_KEY_LEN]);
    let id = key.blob_id(raw);
    let sealed = envelope::encode_blob(&key, blob_type, &id, raw, level).unwrap();
    h(envelope::open(
        &key,
        ObjectType::of_blob(blob_type),
        id.as_bytes(),
        &sealed,
        &"vector",
    )
    .unwrap())
}

fn xof(seed: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut hasher = blake3::Hasher::new();
    let _ = hasher.update(seed.as_bytes());
    hasher.finalize_xof().fill(&mut out);
    out
}

fn compressible_text() -> Vec<u8> {
    b"cairn keeps every version of your files; ".repeat(50)
}

fn node_json(name: &[u8], kind: &str) -> Value {
    json!({
        "name": h(name), "kind": kind, "mode": 0o644, "uid": 1000, "gid": 1000,
        "user": "alice", "group": "staff",
        "mtime_ns": 1_700_000_000_123_456_789_i64, "ctime_ns": 1_700_000_001_000_000_000_i64,
        "atime_ns": 1_700_000_002_000_000_000_i64,
        "size": 0, "device": 2049, "inode": 131_074, "links": 1,
        "symlink_target": "", "rdev": 0, "xattrs": [], "content": [], "subtree": null,
    })
}

fn all_kinds_tree() -> Value {
    let mut fifo = node_json(b"a-fifo", "fifo");
    fifo["mode"] = json!(0o600);
    let mut blk = node_json(b"blk", "blockdev");
    blk["rdev"] = json!(0x0801);
    blk["user"] = json!("root");
    blk["group"] = json!("disk");
    blk["uid"] = json!(0);
    blk["gid"] = json!(6);
    let mut chr = node_json(b"chr", "chardev");
    chr["rdev"] = json!(0x0103);
    let mut dir = node_json(b"dir", "dir");
    dir["mode"] = json!(0o1777);
    dir["links"] = json!(3);
    dir["subtree"] = json!(label32("vector subtree"));
    let mut file = node_json(b"file.txt", "file");
    file["size"] = json!(1_500_000);
    file["content"] = json!([label32("vector chunk 1"), label32("vector chunk 2")]);
    file["xattrs"] = json!([
        { "name": h(b"user.comment"), "value": h(b"hello") },
        { "name": h(b"user.empty"), "value": "" },
    ]);
    file["mtime_ns"] = json!(-1_500_000_000_i64);
    file["inode"] = json!(u64::MAX);
    file["links"] = json!(2);
    let mut link = node_json(b"link", "symlink");
    link["mode"] = json!(0o777);
    link["symlink_target"] = json!(h(b"../file.txt"));
    let mut sock = node_json(b"sock", "socket");
    sock["user"] = json!("");
    sock["group"] = json!("");
    sock["uid"] = json!(u32::MAX);
    let mut binary = node_json(&[0xff, 0xfe, b'x'], "file");
    binary["mode"] = json!(0o4755);
    binary["user"] = json!("jürgen");
    json!({ "nodes": [fifo, blk, chr, dir, file, link, sock, binary] })
}

/// A tree plaintext built by hand from nodes, bypassing the encoder's validation.
fn raw_tree_plaintext(nodes: &[Value]) -> String {
    let nodes: Vec<Node> = nodes.iter().map(node_from_json).collect();
    let mut out = vec![1u8];
    out.extend(postcard::to_stdvec(&nodes).unwrap());
    h(out)
}

fn invalid_tree(name: &[u8], kind: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut node = node_json(name, kind);
    edit(&mut node);
    json!({ "structure": "tree", "plaintext": raw_tree_plaintext(&[node]) })
}

fn config_json(min: u32, avg: u32, max: u32, level: i32, pack_size: u32) -> Value {
    json!({
        "repo_id": label32("vector repository id"),
        "chunk_min": min, "chunk_avg": avg, "chunk_max": max,
        "compression_level": level, "pack_size": pack_size,
    })
}

fn snapshot_json() -> Value {
    json!({
        "time_ns": 1_700_000_100_000_000_000_i64,
        "hostname": "web1.example.org",
        "username": "alice",
        "paths": [h(b"/home/alice"), h(b"/srv/caf\xe9")],
        "tags": ["daily", "café"],
        "description": "",
        "parent": null,
        "tree": label32("vector root tree"),
        "program_version": "cairn 0.1.0",
        "summary": {
            "files_new": 1200, "files_changed": 0, "files_unmodified": 0, "dirs": 140,
            "others": 3, "bytes_read": 734_003_200, "bytes_total": 734_003_200,
            "bytes_added": 512_000_000, "blobs_added": 700,
            "started_ns": 1_700_000_000_000_000_000_i64,
            "finished_ns": 1_700_000_100_000_000_000_i64, "errors_skipped": 2,
        },
    })
}

fn lock_json(exclusive: bool, operation: &str) -> Value {
    json!({
        "exclusive": exclusive, "hostname": "web1.example.org", "username": "alice",
        "pid": 4242, "time_ns": 1_700_000_000_000_000_000_i64, "operation": operation,
    })
}

/// Postcard bytes of a value (for hand-built invalid plaintexts).
fn pc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).unwrap()
}

#[allow(clippy::too_many_lines)]
fn catalogue() -> Vec<(&'static str, Value)> {
    let mk = test_master_key();
    let mut out: Vec<(&'static str, Value)> = Vec::new();

    // Key files.
    out.push(("keyfile/argon2id-minimal-costs.json", vector(
        "keyfile",
        "Key file wrapping the test master key under the password \"password\", with the smallest Argon2id costs (8 KiB, 1 pass, 1 lane).",
        json!({
            "master_key": mk, "password": "password",
            "kdf": { "m_cost_kib": 8, "t_cost": 1, "p_cost": 1 },
            "salt": label32("vector key file salt 1"), "created_unix": 1_700_000_000_i64,
            "nonce": label_nonce("vector key file nonce 1"),
        }),
    )));
    out.push(("keyfile/argon2id-two-lanes-utf8-password.json", vector(
        "keyfile",
        "Key file with a non-ASCII password (its UTF-8 bytes are used as they are), 64 KiB, 2 passes, 2 lanes, and a creation time past 2^32 seconds.",
        json!({
            "master_key": mk, "password": "correct horse battery staple \u{2603}",
            "kdf": { "m_cost_kib": 64, "t_cost": 2, "p_cost": 2 },
            "salt": label32("vector key file salt 2"), "created_unix": 4_102_444_800_i64,
            "nonce": label_nonce("vector key file nonce 2"),
        }),
    )));

    // Envelopes of every object type, and blobs.
    let generic: [(&'static str, &str); 7] = [
        ("envelope/object-type-config.json", "config"),
        ("envelope/object-type-snapshot.json", "snapshot"),
        ("envelope/object-type-index.json", "index"),
        ("envelope/object-type-pack-header.json", "pack_header"),
        ("envelope/object-type-data-blob.json", "data_blob"),
        ("envelope/object-type-tree-blob.json", "tree_blob"),
        ("envelope/object-type-lock.json", "lock"),
    ];
    for (path, object_type) in generic {
        let context = if object_type.ends_with("_blob") {
            label32("vector envelope context")
        } else {
            String::new()
        };
        out.push((path, vector(
            "envelope",
            &format!("An envelope of object type {object_type} around an arbitrary plaintext (the envelope layer alone; the plaintext is not a valid structure)."),
            json!({
                "master_key": mk, "nonce": label_nonce(&format!("vector envelope {object_type}")),
                "object_type": object_type, "context": context,
                "plaintext": h(b"cairn envelope vector plaintext"),
            }),
        )));
    }
    out.push((
        "envelope/empty-plaintext.json",
        vector(
            "envelope",
            "A lock-type envelope around an empty plaintext: 42 bytes, the envelope overhead.",
            json!({
                "master_key": mk, "nonce": label_nonce("vector envelope empty"),
                "object_type": "lock", "context": "", "plaintext": "",
            }),
        ),
    ));
    let small = b"hello, cairn\n".to_vec();
    out.push(("envelope/blob-data-small-uncompressed.json", vector(
        "blob",
        "A 13-byte data blob: at most 32 bytes are never compressed, so the plaintext is 00 || raw.",
        json!({
            "master_key": mk, "nonce": label_nonce("vector blob small"), "blob_type": "data",
            "raw": h(&small), "compression_level": 3,
            "plaintext": blob_plaintext_of(&small, 3, BlobType::Data),
        }),
    )));
    let random = xof("vector incompressible blob", 100);
    out.push(("envelope/blob-data-incompressible.json", vector(
        "blob",
        "100 random bytes: zstd does not make them smaller, so they are stored uncompressed (00 || raw).",
        json!({
            "master_key": mk, "nonce": label_nonce("vector blob random"), "blob_type": "data",
            "raw": h(&random), "compression_level": 3,
            "plaintext": blob_plaintext_of(&random, 3, BlobType::Data),
        }),
    )));
    let text = compressible_text();
    out.push(("envelope/blob-data-zstd.json", vector(
        "blob",
        "A compressible data blob stored as 01 || zstd frame. Encoders need not reproduce this zstd payload byte for byte; decoders must accept it.",
        json!({
            "master_key": mk, "nonce": label_nonce("vector blob zstd"), "blob_type": "data",
            "raw": h(&text), "compression_level": 3,
            "plaintext": blob_plaintext_of(&text, 3, BlobType::Data),
        }),
    )));
    let tree_raw = Tree::default().to_plaintext().unwrap();
    out.push((
        "envelope/blob-tree-empty-directory.json",
        vector(
            "blob",
            "The tree blob of an empty directory (tree plaintext 01 00), uncompressed.",
            json!({
                "master_key": mk, "nonce": label_nonce("vector blob tree"), "blob_type": "tree",
                "raw": h(&tree_raw), "compression_level": 0,
                "plaintext": blob_plaintext_of(&tree_raw, 0, BlobType::Tree),
            }),
        ),
    ));

    // Config.
    out.push(("config/default-parameters.json", vector(
        "config",
        "The config of a repository made with the default parameters: chunks 512 KiB / 1 MiB / 8 MiB, zstd level 3, 16 MiB packs.",
        json!({ "master_key": mk, "nonce": label_nonce("vector config 1"),
                "value": config_json(524_288, 1_048_576, 8_388_608, 3, 16_777_216) }),
    )));
    out.push(("config/smallest-chunks-negative-level.json", vector(
        "config",
        "The smallest accepted chunk sizes (64 B / 256 B / 1 KiB), the fastest zstd level -7 (zigzag-encoded), 1 MiB packs.",
        json!({ "master_key": mk, "nonce": label_nonce("vector config 2"),
                "value": config_json(64, 256, 1024, -7, 1_048_576) }),
    )));
    let valid_config =
        Config::from_json(&config_json(524_288, 1_048_576, 8_388_608, 3, 16_777_216))
            .to_plaintext()
            .unwrap();
    let with_config = |edit: &dyn Fn(&mut Value)| {
        let mut v = config_json(524_288, 1_048_576, 8_388_608, 3, 16_777_216);
        edit(&mut v);
        let mut bytes = vec![1u8];
        bytes.extend(pc(&Config::from_json(&v)));
        h(bytes)
    };
    out.push(("config/invalid-min-above-avg.json", vector(
        "invalid-plaintext",
        "A config whose smallest chunk is larger than its average: refused (Corrupt, BadEncoding).",
        json!({ "structure": "config", "plaintext": with_config(&|v| v["chunk_min"] = json!(1_048_577)) }),
    )));
    out.push(("config/invalid-compression-level.json", vector(
        "invalid-plaintext",
        "A config with zstd level 23, outside -7..=22: refused.",
        json!({ "structure": "config", "plaintext": with_config(&|v| v["compression_level"] = json!(23)) }),
    )));
    out.push(("config/invalid-pack-size.json", vector(
        "invalid-plaintext",
        "A config with a pack size of 1 MiB - 1: refused.",
        json!({ "structure": "config", "plaintext": with_config(&|v| v["pack_size"] = json!(1_048_575)) }),
    )));
    let mut version_zero = valid_config.clone();
    version_zero[0] = 0;
    out.push((
        "config/invalid-version-zero.json",
        vector(
            "invalid-plaintext",
            "A config plaintext whose version byte is 0: refused (Corrupt, UnknownVersion).",
            json!({ "structure": "config", "plaintext": h(&version_zero) }),
        ),
    ));
    let mut version_two = valid_config.clone();
    version_two[0] = 2;
    out.push(("config/newer-version.json", vector(
        "invalid-plaintext",
        "A config plaintext of version 2, newer than this format: refused as UnsupportedVersion, not as corruption.",
        json!({ "structure": "config", "plaintext": h(&version_two) }),
    )));
    let mut trailing = valid_config.clone();
    trailing.push(0);
    out.push((
        "config/invalid-trailing-byte.json",
        vector(
            "invalid-plaintext",
            "A valid config plaintext followed by one more byte: refused (Corrupt, BadEncoding).",
            json!({ "structure": "config", "plaintext": h(&trailing) }),
        ),
    ));
    out.push(("config/invalid-truncated.json", vector(
        "invalid-plaintext",
        "A config plaintext missing its last byte: refused (Corrupt, Truncated).",
        json!({ "structure": "config", "plaintext": h(&valid_config[..valid_config.len() - 1]) }),
    )));

    // Snapshots.
    out.push(("snapshot/first-backup.json", vector(
        "snapshot",
        "A first snapshot (no parent) of two paths, one not valid UTF-8, with a non-ASCII tag.",
        json!({ "master_key": mk, "nonce": label_nonce("vector snapshot 1"), "value": snapshot_json() }),
    )));
    let mut second = snapshot_json();
    second["time_ns"] = json!(-86_400_000_000_000_i64);
    second["hostname"] = json!("höst");
    second["paths"] = json!([h(b"/")]);
    second["tags"] = json!([]);
    second["description"] = json!("before the epoch\nsecond line");
    second["parent"] = json!(label32("vector parent snapshot"));
    second["summary"]["files_unmodified"] = json!(1200);
    second["summary"]["errors_skipped"] = json!(0);
    out.push(("snapshot/with-parent-before-epoch.json", vector(
        "snapshot",
        "A snapshot with a parent, a time before the Unix epoch (negative, zigzag-encoded) and a multi-line description.",
        json!({ "master_key": mk, "nonce": label_nonce("vector snapshot 2"), "value": second }),
    )));
    let snap = SnapshotFile::from_json(&snapshot_json());
    let before_parent = pc(&(
        snap.time_ns,
        &snap.hostname,
        &snap.username,
        &snap.paths,
        &snap.tags,
        &snap.description,
    ));
    let after_parent = pc(&(&snap.tree, &snap.program_version, &snap.summary));
    let mut bad_option = vec![1u8];
    bad_option.extend_from_slice(&before_parent);
    bad_option.push(2);
    bad_option.extend_from_slice(&after_parent);
    out.push(("snapshot/invalid-option-tag.json", vector(
        "invalid-plaintext",
        "A snapshot whose parent option tag is 02 (only 00 and 01 exist): refused (Corrupt, BadEncoding).",
        json!({ "structure": "snapshot", "plaintext": h(&bad_option) }),
    )));
    let mut bad_utf8 = vec![1u8];
    bad_utf8.extend(pc(&snap.time_ns));
    bad_utf8.extend([2, 0xff, 0xfe]);
    bad_utf8.extend(pc(&(
        &snap.username,
        &snap.paths,
        &snap.tags,
        &snap.description,
        &snap.parent,
    )));
    bad_utf8.extend_from_slice(&after_parent);
    out.push((
        "snapshot/invalid-utf8-hostname.json",
        vector(
            "invalid-plaintext",
            "A snapshot whose host name is not UTF-8: refused (Corrupt, BadEncoding).",
            json!({ "structure": "snapshot", "plaintext": h(&bad_utf8) }),
        ),
    ));

    // Index files.
    out.push((
        "index/empty.json",
        vector(
            "index",
            "An index file listing nothing.",
            json!({ "master_key": mk, "nonce": label_nonce("vector index 1"),
                "value": { "supersedes": [], "packs": [] } }),
        ),
    ));
    out.push(("index/two-packs-superseding.json", vector(
        "index",
        "An index file that supersedes two older ones and lists a data pack of two blobs and a tree pack of one.",
        json!({ "master_key": mk, "nonce": label_nonce("vector index 2"), "value": {
            "supersedes": [label32("vector old index 1"), label32("vector old index 2")],
            "packs": [
                { "id": label32("vector pack 1"), "size": 16_777_803_u64, "blobs": [
                    { "blob_type": "data", "id": label32("vector chunk 1"), "offset": 0,
                      "stored_len": 1_048_619, "raw_len": 1_048_576 },
                    { "blob_type": "data", "id": label32("vector chunk 2"), "offset": 1_048_619,
                      "stored_len": 300_043, "raw_len": 524_288 },
                ]},
                { "id": label32("vector pack 2"), "size": 1_180, "blobs": [
                    { "blob_type": "tree", "id": label32("vector root tree"), "offset": 0,
                      "stored_len": 1_043, "raw_len": 1_100 },
                ]},
            ],
        }}),
    )));

    // Locks.
    out.push(("lock/shared-backup.json", vector(
        "lock",
        "A shared lock taken by a backup.",
        json!({ "master_key": mk, "nonce": label_nonce("vector lock 1"), "value": lock_json(false, "backup") }),
    )));
    out.push(("lock/exclusive-prune.json", vector(
        "lock",
        "An exclusive lock taken by a prune.",
        json!({ "master_key": mk, "nonce": label_nonce("vector lock 2"), "value": lock_json(true, "prune") }),
    )));
    let lock = LockFile::from_json(&lock_json(true, "prune"));
    let mut bad_bool = vec![1u8, 2];
    bad_bool.extend(pc(&(
        &lock.hostname,
        &lock.username,
        lock.pid,
        lock.time_ns,
        &lock.operation,
    )));
    out.push(("lock/invalid-bool.json", vector(
        "invalid-plaintext",
        "A lock whose exclusive flag is 02 (only 00 and 01 exist): refused (Corrupt, BadEncoding).",
        json!({ "structure": "lock", "plaintext": h(&bad_bool) }),
    )));

    // Trees.
    out.push(("tree/empty-directory.json", vector(
        "tree",
        "The tree of an empty directory: plaintext 01 00.",
        json!({ "master_key": mk, "nonce": label_nonce("vector tree 1"), "tree": { "nodes": [] } }),
    )));
    out.push(("tree/every-node-kind.json", vector(
        "tree",
        "A directory with one node of every kind, sorted by name bytes (including a name that is not UTF-8), with xattrs, a pre-epoch mtime and an inode of 2^64-1 (10-byte varint).",
        json!({ "master_key": mk, "nonce": label_nonce("vector tree 2"), "tree": all_kinds_tree() }),
    )));
    let bad_names: [(&'static str, &[u8], &str); 5] = [
        ("tree/invalid-name-empty.json", b"", "an empty name"),
        ("tree/invalid-name-dot.json", b".", "the name \".\""),
        ("tree/invalid-name-dotdot.json", b"..", "the name \"..\""),
        (
            "tree/invalid-name-slash.json",
            b"a/b",
            "a name containing \"/\"",
        ),
        (
            "tree/invalid-name-nul.json",
            b"a\0b",
            "a name containing NUL",
        ),
    ];
    for (path, name, what) in bad_names {
        out.push((
            path,
            vector(
                "invalid-plaintext",
                &format!("A tree with a file node of {what}: refused (Corrupt, BadEncoding)."),
                invalid_tree(name, "file", |_| {}),
            ),
        ));
    }
    out.push(("tree/invalid-unsorted.json", vector(
        "invalid-plaintext",
        "A tree whose nodes are not sorted by name bytes (\"b\" before \"a\"): refused.",
        json!({ "structure": "tree", "plaintext": raw_tree_plaintext(&[node_json(b"b", "file"), node_json(b"a", "file")]) }),
    )));
    out.push(("tree/invalid-duplicate-name.json", vector(
        "invalid-plaintext",
        "A tree with two nodes named \"a\": refused (names are strictly increasing).",
        json!({ "structure": "tree", "plaintext": raw_tree_plaintext(&[node_json(b"a", "file"), node_json(b"a", "fifo")]) }),
    )));
    out.push((
        "tree/invalid-dir-without-subtree.json",
        vector(
            "invalid-plaintext",
            "A directory node without a subtree: refused.",
            invalid_tree(b"d", "dir", |_| {}),
        ),
    ));
    out.push((
        "tree/invalid-file-with-subtree.json",
        vector(
            "invalid-plaintext",
            "A file node with a subtree: refused (only directories have one).",
            invalid_tree(b"f", "file", |n| {
                n["subtree"] = json!(label32("vector subtree"))
            }),
        ),
    ));
    out.push((
        "tree/invalid-symlink-with-content.json",
        vector(
            "invalid-plaintext",
            "A symlink node with content blobs: refused (only files have content).",
            invalid_tree(b"l", "symlink", |n| {
                n["content"] = json!([label32("vector chunk 1")])
            }),
        ),
    ));
    let mut unknown_kind = hex::decode(raw_tree_plaintext(&[node_json(b"a", "file")])).unwrap();
    // Version, node count, name length, name, then the kind's variant index.
    assert_eq!(unknown_kind[4], 0);
    unknown_kind[4] = 7;
    out.push(("tree/invalid-node-kind.json", vector(
        "invalid-plaintext",
        "A node whose kind has variant index 7 (kinds are 0..=6): refused (Corrupt, BadEncoding).",
        json!({ "structure": "tree", "plaintext": h(&unknown_kind) }),
    )));

    // Packs.
    let tree_blob = tree_from_json(&all_kinds_tree()).to_plaintext().unwrap();
    out.push(("pack/data-two-blobs.json", vector(
        "pack",
        "A data pack of two blobs, one stored uncompressed and one zstd-compressed, then the header and trailer.",
        json!({
            "master_key": mk,
            "blobs": [
                { "blob_type": "data", "raw": h(&small), "nonce": label_nonce("vector pack blob 1"),
                  "plaintext": blob_plaintext_of(&small, 3, BlobType::Data) },
                { "blob_type": "data", "raw": h(&text), "nonce": label_nonce("vector pack blob 2"),
                  "plaintext": blob_plaintext_of(&text, 3, BlobType::Data) },
            ],
            "header_nonce": label_nonce("vector pack header 1"),
        }),
    )));
    out.push(("pack/tree-one-blob.json", vector(
        "pack",
        "A tree pack holding the tree blob of tree/every-node-kind.json, uncompressed.",
        json!({
            "master_key": mk,
            "blobs": [
                { "blob_type": "tree", "raw": h(&tree_blob), "nonce": label_nonce("vector pack blob 3"),
                  "plaintext": blob_plaintext_of(&tree_blob, 0, BlobType::Tree) },
            ],
            "header_nonce": label_nonce("vector pack header 2"),
        }),
    )));

    // Chunker.
    out.push(("chunker/tables.json", vector(
        "chunker-tables",
        "The unseeded FastCDC 2020 gear table (GEAR[i] = the first 8 bytes, big-endian, of MD5 of 64 bytes of value i) and the mask table MASKS[0..26], as 16 hex digits each.",
        json!({ "gear_seed": 0 }),
    )));
    let chunk_vector = |description: &str, key: &str, params: (u32, u32, u32), data: Value| {
        vector(
            "chunker",
            description,
            json!({
                "master_key": key,
                "params": { "min": params.0, "avg": params.1, "max": params.2 },
                "data": data,
            }),
        )
    };
    out.push(("chunker/small-params.json", chunk_vector(
        "64 KiB of BLAKE3 XOF output chunked with min 256 B, avg 1 KiB, max 4 KiB and the test key's seed.",
        &mk, (256, 1024, 4096),
        json!({ "generator": "blake3-xof", "seed": "cairn chunker vector small", "len": 65_536 }),
    )));
    out.push(("chunker/smallest-params.json", chunk_vector(
        "16 KiB chunked with the smallest accepted sizes: min 64 B, avg 256 B, max 1 KiB.",
        &mk, (64, 256, 1024),
        json!({ "generator": "blake3-xof", "seed": "cairn chunker vector smallest", "len": 16_384 }),
    )));
    out.push(("chunker/default-params.json", chunk_vector(
        "16 MiB chunked with the default sizes: min 512 KiB, avg 1 MiB, max 8 MiB.",
        &mk, (524_288, 1_048_576, 8_388_608),
        json!({ "generator": "blake3-xof", "seed": "cairn chunker vector default", "len": 16_777_216 }),
    )));
    out.push(("chunker/zeros-cut-at-max.json", chunk_vector(
        "10000 zero bytes: no cut point is found, so chunks are max-sized, and the rest is the last chunk.",
        &mk, (256, 1024, 4096),
        json!({ "generator": "zeros", "len": 10_000 }),
    )));
    out.push((
        "chunker/input-of-min-length.json",
        chunk_vector(
            "An input exactly min bytes long is a single chunk.",
            &mk,
            (256, 1024, 4096),
            json!({ "generator": "blake3-xof", "seed": "cairn chunker vector short", "len": 256 }),
        ),
    ));
    let mut zero_seed_key = hex::decode(&mk).unwrap();
    zero_seed_key[64..].fill(0);
    out.push(("chunker/zero-seed-key.json", chunk_vector(
        "A master key whose chunker seed bytes are all zero: the seed used is 1.",
        &h(&zero_seed_key), (256, 1024, 4096),
        json!({ "generator": "blake3-xof", "seed": "cairn chunker vector small", "len": 65_536 }),
    )));
    out
}
