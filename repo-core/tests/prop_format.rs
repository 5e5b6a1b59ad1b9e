//! Property tests: every on-disk structure survives encode → decode unchanged, and any
//! single-byte change of an encrypted object is rejected.

use proptest::collection::vec;
use proptest::prelude::*;
use repo_core::format::config::Config;
use repo_core::format::envelope::{self, ObjectType};
use repo_core::format::index::{IndexBlob, IndexFile, IndexPack};
use repo_core::format::lock::LockFile;
use repo_core::format::pack::{self, PackEntry};
use repo_core::format::snapshot::{SnapshotFile, SnapshotSummary};
use repo_core::format::tree::{Node, NodeKind, Tree, Xattr};
use repo_core::internals::MasterKey;
use repo_core::{BlobId, BlobType, IndexId, PackId, SnapshotId};

fn id() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    vec(
        any::<u8>().prop_filter("no slash or NUL", |b| *b != b'/' && *b != 0),
        1..12,
    )
    .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

fn kind() -> impl Strategy<Value = NodeKind> {
    prop_oneof![
        Just(NodeKind::File),
        Just(NodeKind::Dir),
        Just(NodeKind::Symlink),
        Just(NodeKind::Fifo),
        Just(NodeKind::CharDevice),
        Just(NodeKind::BlockDevice),
        Just(NodeKind::Socket),
    ]
}

fn node() -> impl Strategy<Value = Node> {
    (
        name(),
        kind(),
        (any::<u32>(), any::<u32>(), any::<u32>(), ".{0,8}", ".{0,8}"),
        (any::<i64>(), any::<i64>(), any::<i64>()),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        ),
        vec(any::<u8>(), 0..20),
        vec((vec(any::<u8>(), 1..8), vec(any::<u8>(), 0..16)), 0..3),
        vec(id(), 0..4),
        id(),
    )
        .prop_map(
            |(
                name,
                kind,
                (mode, uid, gid, user, group),
                (m, c, a),
                (size, dev, ino, links, rdev),
                target,
                xattrs,
                content,
                sub,
            )| {
                let mut n = Node::new(name, kind);
                n.mode = mode;
                n.uid = uid;
                n.gid = gid;
                n.user = user;
                n.group = group;
                n.mtime_ns = m;
                n.ctime_ns = c;
                n.atime_ns = a;
                n.size = size;
                n.device = dev;
                n.inode = ino;
                n.links = links;
                n.rdev = rdev;
                n.symlink_target = target;
                n.xattrs = xattrs
                    .into_iter()
                    .map(|(name, value)| Xattr { name, value })
                    .collect();
                if kind == NodeKind::File {
                    n.content = content.into_iter().map(BlobId::from).collect();
                }
                if kind == NodeKind::Dir {
                    n.subtree = Some(BlobId::from(sub));
                }
                n
            },
        )
}

fn tree() -> impl Strategy<Value = Tree> {
    vec(node(), 0..12).prop_map(|mut nodes| {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        nodes.dedup_by(|a, b| a.name == b.name);
        Tree { nodes }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_tree_roundtrip(t in tree()) {
        let bytes = t.to_plaintext().unwrap();
        prop_assert_eq!(Tree::from_plaintext(&bytes, &"tree").unwrap(), t);
    }

    #[test]
    fn prop_snapshot_roundtrip(
        time in any::<i64>(), host in ".{0,16}", paths in vec(vec(any::<u8>(), 1..20), 0..3),
        tags in vec("[a-z]{1,6}", 0..3), parent in proptest::option::of(id()), tree in id(),
        counters in any::<[u64; 10]>(),
    ) {
        let s = SnapshotFile {
            time_ns: time, hostname: host, username: "u".into(), paths, tags, description: "d".into(),
            parent: parent.map(SnapshotId::from), tree: BlobId::from(tree), program_version: "cairn".into(),
            summary: SnapshotSummary {
                files_new: counters[0], files_changed: counters[1], files_unmodified: counters[2], dirs: counters[3],
                others: counters[4], bytes_read: counters[5], bytes_total: counters[6], bytes_added: counters[7],
                blobs_added: counters[8], started_ns: counters[9] as i64, finished_ns: -1, errors_skipped: 3,
            },
        };
        let bytes = s.to_plaintext().unwrap();
        prop_assert_eq!(SnapshotFile::from_plaintext(&bytes, &"snapshot").unwrap(), s);
    }

    #[test]
    fn prop_index_roundtrip(packs in vec((id(), any::<u64>(), vec((any::<bool>(), id(), any::<u32>(), any::<u32>(), any::<u32>()), 0..6)), 0..4), sup in vec(id(), 0..2)) {
        let f = IndexFile {
            supersedes: sup.into_iter().map(IndexId::from).collect(),
            packs: packs.into_iter().map(|(p, size, blobs)| IndexPack {
                id: PackId::from(p), size,
                blobs: blobs.into_iter().map(|(t, id, offset, stored_len, raw_len)| IndexBlob {
                    blob_type: if t { BlobType::Tree } else { BlobType::Data }, id: BlobId::from(id), offset, stored_len, raw_len,
                }).collect(),
            }).collect(),
        };
        let bytes = f.to_plaintext().unwrap();
        prop_assert_eq!(IndexFile::from_plaintext(&bytes, &"index").unwrap(), f);
    }

    #[test]
    fn prop_lock_and_config_roundtrip(pid in any::<u32>(), t in any::<i64>(), excl in any::<bool>(), level in 1i32..19, repo_id in id()) {
        let l = LockFile { exclusive: excl, hostname: "h".into(), username: "u".into(), pid, time_ns: t, operation: "backup".into() };
        prop_assert_eq!(LockFile::from_plaintext(&l.to_plaintext().unwrap(), &"lock").unwrap(), l);
        let c = Config { repo_id, chunk_min: 512 * 1024, chunk_avg: 1 << 20, chunk_max: 8 << 20, compression_level: level, pack_size: 16 << 20 };
        prop_assert_eq!(Config::from_plaintext(&c.to_plaintext().unwrap()).unwrap(), c);
    }

    #[test]
    fn prop_pack_roundtrip_and_single_byte_changes_rejected(blobs in vec(vec(any::<u8>(), 1..3000), 1..5), flip in any::<prop::sample::Index>()) {
        let key = MasterKey::generate().unwrap();
        let mut bytes = Vec::new();
        let mut entries = Vec::new();
        for raw in &blobs {
            let id = key.blob_id(raw);
            let stored = envelope::encode_blob(&key, BlobType::Data, &id, raw, 3).unwrap();
            entries.push(PackEntry { blob_type: BlobType::Data, id, stored_len: stored.len() as u32, raw_len: raw.len() as u32 });
            bytes.extend_from_slice(&stored);
        }
        bytes.extend_from_slice(&pack::encode_header(&key, &entries).unwrap());
        let decoded = pack::decode_pack(&key, &bytes, &"pack").unwrap();
        prop_assert_eq!(decoded.iter().map(|l| l.entry).collect::<Vec<_>>(), entries.clone());
        for (l, raw) in decoded.iter().zip(&blobs) {
            let s = l.offset as usize;
            let got = envelope::decode_blob(&key, BlobType::Data, &l.entry.id, &bytes[s..s + l.entry.stored_len as usize], l.entry.raw_len).unwrap();
            prop_assert_eq!(&got, raw);
        }
        // Any one flipped byte: either the header or the blob it falls in no longer decodes.
        let at = flip.index(bytes.len());
        let mut bad = bytes.clone();
        bad[at] ^= 0x01;
        let rejected = match pack::decode_pack(&key, &bad, &"pack") {
            Err(_) => true,
            Ok(hdr) => hdr.iter().any(|l| {
                let s = l.offset as usize;
                let e = s + l.entry.stored_len as usize;
                (s..e).contains(&at) && envelope::decode_blob(&key, BlobType::Data, &l.entry.id, &bad[s..e], l.entry.raw_len).is_err()
            }),
        };
        prop_assert!(rejected, "flipping byte {} went unnoticed", at);
    }

    #[test]
    fn prop_envelope_rejects_any_flip(plain in vec(any::<u8>(), 0..200), flip in any::<prop::sample::Index>()) {
        let key = MasterKey::generate().unwrap();
        let sealed = envelope::seal(&key, ObjectType::Snapshot, b"", &plain).unwrap();
        prop_assert_eq!(envelope::open(&key, ObjectType::Snapshot, b"", &sealed, &"s").unwrap(), plain);
        let mut bad = sealed.clone();
        let at = flip.index(bad.len());
        bad[at] ^= 0x80;
        let err = envelope::open(&key, ObjectType::Snapshot, b"", &bad, &"s").unwrap_err();
        prop_assert_eq!(err.kind(), repo_core::ErrorKind::Corrupt);
    }
}
