//! Hostile and broken repositories (issue 4, section 5): trees with names that would escape
//! the restore target or with absurd sizes, blobs of one type passed off as the other, damaged,
//! renamed and missing packs, wrong secrets, broken key files, unreadable index and snapshot
//! files. Each gets a clear error naming the object, and nothing is written outside the target.

#[path = "support/fixture.rs"]
mod fixture;

use std::fs;
use std::path::Path;

use fixture::{ctx, noise, write, Fixture};
use repo_core::format::envelope::{self, ObjectType};
use repo_core::format::index::{IndexBlob, IndexFile, IndexPack};
use repo_core::format::pack::{self, PackEntry};
use repo_core::format::snapshot::SnapshotFile;
use repo_core::{
    BlobId, BlobType, CorruptionKind, ErrorKind, FileType, Id, Node, NodeKind, PackId, Problem,
    RestoreOptions, Secret, Snapshot, SnapshotId, SnapshotSummary, Tree,
};

/// One blob ready to be put in a forged pack.
struct ForgedBlob {
    blob_type: BlobType,
    id: BlobId,
    stored: Vec<u8>,
    raw_len: u32,
}

/// Encodes `raw` as a blob of `blob_type` under its true id.
fn blob(fx: &Fixture, blob_type: BlobType, raw: &[u8]) -> ForgedBlob {
    let key = repo_core::internals::master_key(fx.repo());
    let id = key.blob_id(raw);
    ForgedBlob {
        blob_type,
        id,
        stored: envelope::encode_blob(key, blob_type, &id, raw, 3).unwrap(),
        raw_len: raw.len() as u32,
    }
}

/// A tree blob from nodes as given: unsorted, duplicated or badly named nodes are kept, as a
/// hostile writer would (`Tree::to_plaintext` refuses them).
fn raw_tree(fx: &Fixture, nodes: &[Node]) -> ForgedBlob {
    let mut plain = vec![repo_core::format::FORMAT_VERSION];
    plain.extend(postcard::to_stdvec(nodes).unwrap());
    blob(fx, BlobType::Tree, &plain)
}

/// Writes the blobs as one pack, listed by a new index file, and reloads the index.
fn forge_pack(fx: &mut Fixture, blobs: &[ForgedBlob]) -> PackId {
    let key = repo_core::internals::master_key(fx.repo()).clone();
    let mut bytes = Vec::new();
    let mut entries = Vec::new();
    let mut listed = Vec::new();
    for b in blobs {
        listed.push(IndexBlob {
            blob_type: b.blob_type,
            id: b.id,
            offset: bytes.len() as u32,
            stored_len: b.stored.len() as u32,
            raw_len: b.raw_len,
        });
        entries.push(PackEntry {
            blob_type: b.blob_type,
            id: b.id,
            stored_len: b.stored.len() as u32,
            raw_len: b.raw_len,
        });
        bytes.extend_from_slice(&b.stored);
    }
    bytes.extend(pack::encode_header(&key, &entries).unwrap());
    let id = PackId(Id::hash(&bytes));
    fx.backend
        .write(FileType::Pack, &id.to_hex(), &bytes)
        .unwrap();
    let index = IndexFile {
        supersedes: Vec::new(),
        packs: vec![IndexPack {
            id,
            size: bytes.len() as u64,
            blobs: listed,
        }],
    };
    let sealed =
        envelope::seal(&key, ObjectType::Index, b"", &index.to_plaintext().unwrap()).unwrap();
    fx.backend
        .write(FileType::Index, &Id::hash(&sealed).to_hex(), &sealed)
        .unwrap();
    fx.reload();
    id
}

/// Writes a snapshot of the root tree `tree`, reloads (so that `check` covers it, as in a new
/// process) and returns it.
fn forge_snapshot(fx: &mut Fixture, tree: BlobId) -> Snapshot {
    let key = repo_core::internals::master_key(fx.repo());
    let file = SnapshotFile {
        time_ns: 1_700_000_000_000_000_000,
        hostname: "evil.example".into(),
        username: "mallory".into(),
        paths: vec![b"/".to_vec()],
        tags: Vec::new(),
        description: String::new(),
        parent: None,
        tree,
        program_version: "forged".into(),
        summary: SnapshotSummary::default(),
    };
    let sealed = envelope::seal(
        key,
        ObjectType::Snapshot,
        b"",
        &file.to_plaintext().unwrap(),
    )
    .unwrap();
    let id = SnapshotId(Id::hash(&sealed));
    fx.backend
        .write(FileType::Snapshot, &id.to_hex(), &sealed)
        .unwrap();
    fx.reload();
    fx.repo().load_snapshot(&id).unwrap()
}

fn file_node(name: &[u8]) -> Node {
    let mut n = Node::new(name.to_vec(), NodeKind::File);
    n.mode = 0o644;
    n
}

fn dir_node(name: &[u8], subtree: BlobId) -> Node {
    let mut n = Node::new(name.to_vec(), NodeKind::Dir);
    n.mode = 0o755;
    n.subtree = Some(subtree);
    n
}

/// Restores a whole (forged) snapshot into `target`.
fn restore_all(fx: &Fixture, snapshot: &Snapshot, target: &Path) -> repo_core::Result<()> {
    fx.restore(snapshot, &RestoreOptions::default(), target)
        .map(|_| ())
}

#[test]
fn tree_names_that_escape_are_refused() {
    let hostile: [&[u8]; 7] = [
        b"..",
        b".",
        b"",
        b"a/b",
        b"../../etc",
        b"/etc",
        b"nul\0byte",
    ];
    for name in hostile {
        let mut fx = Fixture::memory();
        let evil = raw_tree(&fx, &[file_node(name)]);
        let evil_id = evil.id;
        // The hostile tree sits one level down, under an innocent directory.
        let root = raw_tree(&fx, &[dir_node(b"innocent", evil_id)]);
        let root_id = root.id;
        let _ = forge_pack(&mut fx, &[evil, root]);
        let snapshot = forge_snapshot(&mut fx, root_id);

        let err = fx.repo().read_tree(&evil_id).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{name:?}: {err}");
        assert_eq!(err.corruption(), Some(CorruptionKind::BadEncoding));
        assert!(
            err.to_string().contains(&format!("tree {evil_id}")),
            "the error names the tree: {err}"
        );

        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        let err = restore_all(&fx, &snapshot, &target).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{name:?}: {err}");
        assert!(err.to_string().contains(&evil_id.to_string()), "{err}");
        assert!(!target.exists(), "{name:?}: nothing may be written");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);

        let report = fx.check(false);
        assert!(
            report.problems.iter().any(|p| matches!(p,
                Problem::Tree { tree, path, .. } if *tree == evil_id.to_hex() && path == "/innocent")),
            "{name:?}: {:?}",
            report.problems
        );
    }
}

#[test]
fn unsorted_duplicate_and_malformed_trees_are_refused() {
    let mut fx = Fixture::memory();
    let data = blob(&fx, BlobType::Data, b"content");
    let mut dir_without_subtree = Node::new(b"d".to_vec(), NodeKind::Dir);
    dir_without_subtree.mode = 0o755;
    let mut symlink_with_content = Node::new(b"l".to_vec(), NodeKind::Symlink);
    symlink_with_content.content = vec![data.id];
    let mut file_with_subtree = file_node(b"f");
    file_with_subtree.subtree = Some(data.id);
    let cases: Vec<(&str, ForgedBlob)> = vec![
        (
            "unsorted",
            raw_tree(&fx, &[file_node(b"b"), file_node(b"a")]),
        ),
        (
            "duplicate",
            raw_tree(&fx, &[file_node(b"a"), file_node(b"a")]),
        ),
        ("dir without subtree", raw_tree(&fx, &[dir_without_subtree])),
        (
            "symlink with content",
            raw_tree(&fx, &[symlink_with_content]),
        ),
        ("file with subtree", raw_tree(&fx, &[file_with_subtree])),
        // A node count of 2^62 with no nodes behind it: refused without allocating.
        ("absurd count", {
            let mut plain = vec![repo_core::format::FORMAT_VERSION];
            plain.extend(postcard::to_stdvec(&(1u64 << 62)).unwrap());
            blob(&fx, BlobType::Tree, &plain)
        }),
        ("trailing bytes", {
            let mut plain = vec![repo_core::format::FORMAT_VERSION];
            plain.extend(postcard::to_stdvec(&vec![file_node(b"a")]).unwrap());
            plain.push(0);
            blob(&fx, BlobType::Tree, &plain)
        }),
        ("newer version", {
            let mut plain = vec![repo_core::format::FORMAT_VERSION + 1];
            plain.extend(postcard::to_stdvec(&Vec::<Node>::new()).unwrap());
            blob(&fx, BlobType::Tree, &plain)
        }),
    ];
    let ids: Vec<(&str, BlobId)> = cases.iter().map(|(what, b)| (*what, b.id)).collect();
    let _ = forge_pack(
        &mut fx,
        &cases.into_iter().map(|(_, b)| b).collect::<Vec<_>>(),
    );
    for (what, id) in ids {
        let err = fx.repo().read_tree(&id).unwrap_err();
        let expected = if what == "newer version" {
            ErrorKind::UnsupportedVersion
        } else {
            ErrorKind::Corrupt
        };
        assert_eq!(err.kind(), expected, "{what}: {err}");
        assert!(err.to_string().contains(&id.to_string()), "{what}: {err}");
    }
}

#[test]
fn file_sizes_that_disagree_with_their_content_are_reported_and_the_rest_restored() {
    let mut fx = Fixture::memory();
    let data_id = blob(&fx, BlobType::Data, b"five!").id;
    // A terabyte file with no content would become a huge sparse file; a file whose content
    // holds more than its size would be written past its end. Neither is written; every other
    // file is, and the restore names the damaged one (spec/10: what a reader does with it).
    let mut huge = file_node(b"huge");
    huge.size = 1 << 40;
    let mut short = file_node(b"short");
    short.size = 2;
    short.content = vec![data_id];
    let mut honest = file_node(b"honest");
    honest.size = 5;
    honest.content = vec![data_id];
    for (name, node) in [("huge", huge), ("short", short)] {
        let tree = raw_tree(&fx, &[honest.clone(), node]);
        let tree_id = tree.id;
        let data = blob(&fx, BlobType::Data, b"five!");
        let _ = forge_pack(&mut fx, &[data, tree]);
        let snapshot = forge_snapshot(&mut fx, tree_id);
        let plan = fx
            .repo()
            .plan_restore(&ctx(), &snapshot, &RestoreOptions::default())
            .unwrap();
        assert_eq!(plan.damaged, 1, "{name}: the plan counts the damaged file");
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        let summary = fx
            .repo()
            .restore(&ctx(), &plan, &target)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(summary.not_restored.len(), 1, "{name}: {summary:?}");
        assert!(
            summary.not_restored[0].contains(name)
                && summary.not_restored[0].contains("cairn check"),
            "the report names the file and what to do: {:?}",
            summary.not_restored
        );
        assert_eq!(fs::read(target.join("honest")).unwrap(), b"five!");
        assert!(
            !target.join(name).exists(),
            "{name}: the damaged file is not written"
        );
        let left: Vec<_> = fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left.len(),
            1,
            "{name}: nothing else in the target: {left:?}"
        );
    }
}

#[test]
fn tree_blob_presented_as_data_blob_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("src/file"), b"some content");
    let mut fx = Fixture::memory();
    let (_, snapshot) = fx.backup_dir(&tmp.path().join("src"));
    // Copy the stored bytes of a real tree blob into a pack that lists them as a data blob.
    let root = snapshot.meta.tree;
    let loc = fx.repo().index().lookup(BlobType::Tree, &root).unwrap();
    let stored = fx
        .backend
        .read_range(
            FileType::Pack,
            &loc.pack.to_hex(),
            u64::from(loc.offset),
            loc.stored_len,
        )
        .unwrap();
    let disguised = ForgedBlob {
        blob_type: BlobType::Data,
        id: root,
        stored,
        raw_len: loc.raw_len,
    };
    let disguise_pack = forge_pack(&mut fx, &[disguised]);

    let err = fx.repo().read_blob(BlobType::Data, &root).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("holds a tree blob"), "{err}");
    assert!(
        err.to_string().contains(&format!("pack {disguise_pack}")),
        "{err}"
    );

    // A file whose content is that "data" blob fails to restore, naming the pack.
    let mut file = file_node(b"f");
    file.size = u64::from(loc.raw_len);
    file.content = vec![root];
    let tree = raw_tree(&fx, &[file]);
    let tree_id = tree.id;
    let _ = forge_pack(&mut fx, &[tree]);
    let forged = forge_snapshot(&mut fx, tree_id);
    let err = restore_all(&fx, &forged, &tmp.path().join("target")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(
        err.to_string().contains(&format!("pack {disguise_pack}")),
        "{err}"
    );

    let report = fx.check(true);
    assert!(
        report.problems.iter().any(|p| matches!(p,
            Problem::PackData { pack, error } if *pack == disguise_pack.to_hex() && error.contains("tree blob"))),
        "{:?}",
        report.problems
    );
}

/// A backed-up tree of several data packs (1 MiB packs, 2.5 MiB of incompressible data).
fn backed_up(fx: &mut Fixture, root: &Path) -> Snapshot {
    write(&root.join("src/a.bin"), &noise(1_300_000, 1));
    write(&root.join("src/b.bin"), &noise(1_300_000, 2));
    write(&root.join("src/small.txt"), b"small");
    fx.backup_dir(&root.join("src")).1
}

#[test]
fn flipped_byte_in_a_pack_is_found_by_check_and_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fx = Fixture::memory();
    let snapshot = backed_up(&mut fx, tmp.path());
    let loc = fx.data_blob_locations()[0];
    let name = loc.pack.to_hex();
    let mut bytes = fx.backend.read(FileType::Pack, &name).unwrap();
    bytes[(loc.offset + loc.stored_len / 2) as usize] ^= 0x40;
    fx.memory
        .as_ref()
        .unwrap()
        .put_raw(FileType::Pack, &name, bytes);

    // The structure (sizes, trees, index) is intact; only reading the data finds the damage.
    assert!(fx.check(false).is_clean());
    let report = fx.check(true);
    assert_eq!(
        report.problems.len(),
        1,
        "exactly the damaged pack: {:?}",
        report.problems
    );
    assert!(
        matches!(&report.problems[0], Problem::PackData { pack, error }
            if *pack == name && error.contains("does not match its name")),
        "{:?}",
        report.problems
    );

    let err = restore_all(&fx, &snapshot, &tmp.path().join("target")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert_eq!(err.corruption(), Some(CorruptionKind::MacMismatch), "{err}");
    assert!(
        err.to_string().contains(&format!("pack {}", loc.pack)),
        "{err}"
    );
}

#[test]
fn pack_renamed_over_another_is_detected_by_read_data() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let mut fx = Fixture::local(&repo_dir);
    let snapshot = backed_up(&mut fx, tmp.path());
    let packs = fx.data_packs();
    assert!(
        packs.len() >= 2,
        "need two data packs, have {}",
        packs.len()
    );
    let (moved, overwritten) = (packs[0].to_hex(), packs[1].to_hex());
    let path = |name: &str| repo_dir.join("data").join(&name[..2]).join(name);
    fs::rename(path(&moved), path(&overwritten)).unwrap();

    let report = fx.check(true);
    assert!(
        report.problems.contains(&Problem::MissingPack {
            pack: moved.clone()
        }),
        "{:?}",
        report.problems
    );
    assert!(
        report.problems.iter().any(|p| matches!(p,
            Problem::PackData { pack, error } if *pack == overwritten && error.contains("does not match its name"))),
        "{:?}",
        report.problems
    );
    let err = restore_all(&fx, &snapshot, &tmp.path().join("target")).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Corrupt | ErrorKind::NotFound | ErrorKind::Backend
        ),
        "{err}"
    );
}

#[test]
fn deleted_pack_is_reported_and_restore_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fx = Fixture::memory();
    let snapshot = backed_up(&mut fx, tmp.path());
    let gone = fx.data_packs()[0];
    fx.backend.delete(FileType::Pack, &gone.to_hex()).unwrap();

    let report = fx.check(false);
    assert_eq!(
        report.problems,
        vec![Problem::MissingPack {
            pack: gone.to_hex()
        }]
    );
    let err = restore_all(&fx, &snapshot, &tmp.path().join("target")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.to_string().starts_with(&format!("pack {gone}: ")),
        "the error names the pack: {err}"
    );
}

#[test]
fn wrong_password_or_key_is_wrong_secret() {
    let fx = Fixture::memory();
    let err = fx
        .open(&Secret::password("not the password"))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::WrongSecret, "{err}");
    let err = fx.open(&Secret::MasterKey(vec![7u8; 72])).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::WrongSecret, "{err}");
    let err = fx.open(&Secret::MasterKey(vec![7u8; 3])).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    // The right ones still work.
    assert!(fx.open(&fixture::secret()).is_ok());
    let raw = repo_core::internals::master_key(fx.repo())
        .to_bytes()
        .to_vec();
    assert!(fx.open(&Secret::MasterKey(raw)).is_ok());
}

#[test]
fn truncated_or_garbage_key_files_give_clean_errors() {
    let fx = Fixture::memory();
    let mem = fx.memory.clone().unwrap();
    let keys = fx.backend.list(FileType::Key).unwrap();
    assert_eq!(keys.len(), 1);
    let (name, _) = &keys[0];
    let good = fx.backend.read(FileType::Key, name).unwrap();

    let mut wrong_magic = good.clone();
    wrong_magic[0] ^= 1;
    let mut absurd_kdf = good.clone();
    absurd_kdf[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut flipped_wrapped = good.clone();
    *flipped_wrapped.last_mut().unwrap() ^= 1;
    let cases: [(&str, Vec<u8>); 7] = [
        ("empty", Vec::new()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("one byte short", good[..good.len() - 1].to_vec()),
        ("garbage", noise(good.len(), 9)),
        ("wrong magic", wrong_magic),
        ("absurd KDF cost", absurd_kdf),
        ("flipped tag", flipped_wrapped),
    ];
    for (what, bytes) in cases {
        mem.put_raw(FileType::Key, name, bytes);
        let err = fx.open(&fixture::secret()).err().unwrap();
        assert!(
            matches!(err.kind(), ErrorKind::WrongSecret | ErrorKind::Corrupt),
            "{what}: {err:?}"
        );
        assert!(err.to_string().contains("key"), "{what}: {err}");
    }
    // A broken key file next to a good one does not get in the way.
    mem.put_raw(FileType::Key, name, good);
    mem.put_raw(FileType::Key, &"0".repeat(64), noise(50, 3));
    assert!(fx.open(&fixture::secret()).is_ok());
    let report = fx.check(false);
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::KeyFile { name, .. } if *name == "0".repeat(64))),
        "{:?}",
        report.problems
    );
}

#[test]
fn garbage_config_is_corrupt() {
    let fx = Fixture::memory();
    let mem = fx.memory.clone().unwrap();
    mem.put_raw(FileType::Config, "config", noise(120, 4));
    let err = fx.open(&fixture::secret()).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("config"), "{err}");
}

#[test]
fn unreadable_index_files_are_skipped_and_the_rest_works() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fx = Fixture::memory();
    let snapshot = backed_up(&mut fx, tmp.path());
    let mem = fx.memory.clone().unwrap();
    // Named after their content, as the layout demands, but not index files.
    let empty = Id::hash(b"").to_hex();
    let garbage_bytes = noise(300, 5);
    let garbage = Id::hash(&garbage_bytes).to_hex();
    mem.put_raw(FileType::Index, &empty, Vec::new());
    mem.put_raw(FileType::Index, &garbage, garbage_bytes);
    // And one whose name does not match its content.
    let misnamed = "ab".repeat(32);
    mem.put_raw(FileType::Index, &misnamed, noise(300, 6));

    let repo = fx.open(&fixture::secret()).unwrap();
    let mut skipped: Vec<&str> = repo
        .skipped_index_files()
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    skipped.sort_unstable();
    let mut expected = vec![empty.as_str(), garbage.as_str(), misnamed.as_str()];
    expected.sort_unstable();
    assert_eq!(skipped, expected);
    assert!(!repo.index().is_empty(), "the good index file is loaded");

    fx.reload();
    let target = tmp.path().join("target");
    let _ = fx.restore_dir(&snapshot, &tmp.path().join("src"), &target);
    fixture::assert_same_tree(&tmp.path().join("src"), &target);
    let report = fx.check(false);
    assert_eq!(
        report
            .problems
            .iter()
            .filter(|p| matches!(p, Problem::IndexFile { .. }))
            .count(),
        3,
        "{:?}",
        report.problems
    );
}

#[test]
fn garbage_snapshot_file_is_corrupt_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fx = Fixture::memory();
    let _ = backed_up(&mut fx, tmp.path());
    let bytes = noise(200, 8);
    let name = Id::hash(&bytes).to_hex();
    fx.memory
        .as_ref()
        .unwrap()
        .put_raw(FileType::Snapshot, &name, bytes);
    let err = fx.repo().snapshots(&ctx()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains(&name[..8]), "{err}");
    // `check` covers the snapshots listed when the index was loaded.
    fx.reload();
    let report = fx.check(false);
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::Snapshot { snapshot, .. } if *snapshot == name)),
        "{:?}",
        report.problems
    );
}

/// `Tree` itself refuses to encode what the forged trees above contain.
#[test]
fn tree_encoder_refuses_hostile_names() {
    for name in [&b".."[..], b"a/b", b""] {
        let tree = Tree {
            nodes: vec![file_node(name)],
        };
        assert!(tree.to_plaintext().is_err(), "{name:?}");
    }
}

#[test]
fn empty_location_is_no_repository_and_init_refuses_a_used_one() {
    let empty: std::sync::Arc<dyn repo_core::Backend> =
        std::sync::Arc::new(repo_core::MemoryBackend::new());
    let err = repo_core::Repository::open(
        std::sync::Arc::clone(&empty),
        &fixture::secret(),
        &repo_core::OpenOptions::default(),
    )
    .err()
    .unwrap();
    assert_eq!(err.kind(), ErrorKind::NoRepository, "{err}");

    let fx = Fixture::memory();
    let err = repo_core::Repository::init(
        std::sync::Arc::clone(&fx.backend),
        &fixture::secret(),
        &fixture::init_options(),
    )
    .err()
    .unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(
        fx.open(&fixture::secret()).is_ok(),
        "the repository is untouched"
    );

    let err = repo_core::Repository::init(
        empty,
        &Secret::MasterKey(vec![0; 72]),
        &fixture::init_options(),
    )
    .err()
    .unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[test]
fn config_of_a_newer_format_version_is_unsupported() {
    let fx = Fixture::memory();
    let key = repo_core::internals::master_key(fx.repo());
    let mut plain = fx.repo().config().to_plaintext().unwrap();
    plain[0] = repo_core::format::FORMAT_VERSION + 1;
    let sealed = envelope::seal(key, ObjectType::Config, b"", &plain).unwrap();
    fx.memory
        .as_ref()
        .unwrap()
        .put_raw(FileType::Config, "config", sealed);
    let err = fx.open(&fixture::secret()).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::UnsupportedVersion, "{err}");
    assert!(err.to_string().contains("upgrade"), "{err}");
}

#[test]
fn an_index_file_listed_twice_is_harmless() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fx = Fixture::memory();
    let snapshot = backed_up(&mut fx, tmp.path());
    let blobs = fx.repo().index().len();
    // The same content sealed again (a new nonce, so a new name): a replayed upload.
    let key = repo_core::internals::master_key(fx.repo()).clone();
    for (name, _) in fx.backend.list(FileType::Index).unwrap() {
        let bytes = fx.backend.read(FileType::Index, &name).unwrap();
        let plain = envelope::open(&key, ObjectType::Index, b"", &bytes, &"index").unwrap();
        let again = envelope::seal(&key, ObjectType::Index, b"", &plain).unwrap();
        assert_ne!(again, bytes);
        fx.backend
            .write(FileType::Index, &Id::hash(&again).to_hex(), &again)
            .unwrap();
    }
    fx.reload();
    assert_eq!(
        fx.repo().index().len(),
        blobs,
        "blobs are not counted twice"
    );
    assert!(fx.repo().skipped_index_files().is_empty());
    let report = fx.check(true);
    assert!(report.is_clean(), "{:?}", report.problems);
    let target = tmp.path().join("target");
    let _ = fx.restore_dir(&snapshot, &tmp.path().join("src"), &target);
    fixture::assert_same_tree(&tmp.path().join("src"), &target);
}

/// Set in the child process of [`hostile_tree_shapes_restore_in_bounded_memory`]: the shape
/// to restore there.
const SHAPE_ENV: &str = "CAIRN_TEST_HOSTILE_SHAPE";

/// Peak resident memory of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The child's part: forge the shape, restore it (for at most a few seconds), print what it
/// restored and its peak memory, exit.
fn restore_shape(shape: &str) -> ! {
    use repo_core::{CancelToken, OpCtx, Phase, Progress, ProgressEvent};
    use std::sync::atomic::{AtomicU64, Ordering};
    let mut fx = Fixture::memory();
    let bottom_data = blob(&fx, BlobType::Data, b"x");
    let mut f = file_node(b"f");
    f.size = 1;
    f.content = vec![bottom_data.id];
    let mut blobs = vec![bottom_data];
    let mut tree = raw_tree(&fx, &[f]);
    let levels = if shape == "shared" { 40 } else { 50_000 };
    for _ in 0..levels {
        let id = tree.id;
        blobs.push(tree);
        tree = if shape == "shared" {
            // `a` and `b` are the same subtree: 2^40 paths in 41 small trees.
            raw_tree(&fx, &[dir_node(b"a", id), dir_node(b"b", id)])
        } else {
            raw_tree(&fx, &[dir_node(b"d", id)])
        };
    }
    let root = tree.id;
    blobs.push(tree);
    let _ = forge_pack(&mut fx, &blobs);
    drop(blobs);
    let snapshot = forge_snapshot(&mut fx, root);

    struct Count(AtomicU64);
    impl Progress for Count {
        fn event(&self, e: &ProgressEvent<'_>) {
            if let ProgressEvent::Advanced {
                phase: Phase::Restore,
                items,
                ..
            } = e
            {
                let _ = self.0.fetch_add(*items, Ordering::Relaxed);
            }
        }
    }
    let count = Count(AtomicU64::new(0));
    let cancel = CancelToken::new();
    let stopper = cancel.clone();
    // The shared shape would take years: it is stopped after a few seconds of writing. The
    // chain is restored whole (the limit only guards against a hang).
    let limit = if shape == "shared" { 4 } else { 300 };
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(limit));
        stopper.cancel();
    });
    let target = std::path::PathBuf::from(std::env::var("CAIRN_TEST_TARGET").unwrap());
    let ctx = OpCtx::new(&count, &cancel);
    let result = fx
        .repo()
        .plan_restore(&ctx, &snapshot, &RestoreOptions::default())
        .and_then(|plan| {
            println!("planned files {}", plan.files);
            fx.repo().restore(&ctx, &plan, &target)
        });
    match &result {
        Ok(s) => println!("done dirs {} files {}", s.dirs, s.files_restored),
        Err(e) => println!("stopped {:?}: {e}", e.kind()),
    }
    println!("items {}", count.0.load(Ordering::Relaxed));
    println!("peak_kib {}", peak_rss_kib());
    std::process::exit(0)
}

/// A snapshot whose tree shares one subtree at 40 levels (2^40 paths in a few kB) and a valid
/// chain of 50,000 nested directories: restore memory stays bounded whatever the expanded
/// size or depth (each runs in a child process, so its peak is its own). The shared shape
/// plans at once and writes steadily until stopped; the chain restores completely.
#[test]
fn hostile_tree_shapes_restore_in_bounded_memory() {
    if let Ok(shape) = std::env::var(SHAPE_ENV) {
        restore_shape(&shape);
    }
    for shape in ["shared", "chain"] {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "hostile_tree_shapes_restore_in_bounded_memory",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SHAPE_ENV, shape)
            .env("CAIRN_TEST_TARGET", &target)
            .output()
            .unwrap();
        // Deep trees are beyond what recursive removal handles (the temporary directory's, after
        // a failed assertion): rm copes with any depth, so it goes first.
        let _ = std::process::Command::new("rm")
            .arg("-rf")
            .arg(&target)
            .status();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{shape}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let value = |key: &str| -> u64 {
            // The harness may print its own text before ours on the same line.
            text.lines()
                .find_map(|l| l.find(key).map(|at| &l[at + key.len()..]))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{shape}: no {key} in {text}"))
        };
        let peak_mib = value("peak_kib ") / 1024;
        let items = value("items ");
        eprintln!("{shape}: {items} entries restored, peak {peak_mib} MiB");
        assert!(peak_mib < 200, "{shape}: peak {peak_mib} MiB\n{text}");
        if shape == "shared" {
            assert_eq!(value("planned files "), 1 << 40, "{text}");
            assert!(items > 1000, "{shape}: restore made no progress: {text}");
        } else {
            assert_eq!(value("done dirs "), 50_000, "{text}");
            assert_eq!(value("done dirs 50000 files "), 1, "{text}");
        }
    }
}

#[test]
fn check_reports_a_file_whose_size_disagrees_with_its_content() {
    let mut fx = Fixture::memory();
    let data_id = blob(&fx, BlobType::Data, b"five!").id;
    let mut honest = file_node(b"honest");
    honest.size = 5;
    honest.content = vec![data_id];
    let mut short = file_node(b"short");
    short.size = 2;
    short.content = vec![data_id];
    let mut huge = file_node(b"huge");
    huge.size = 1 << 40;
    let sub = raw_tree(&fx, &[honest.clone(), short]);
    let root = raw_tree(&fx, &[dir_node(b"d", sub.id), honest, huge]);
    let root_id = root.id;
    let data = blob(&fx, BlobType::Data, b"five!");
    let _ = forge_pack(&mut fx, &[data, sub, root]);
    let snapshot = forge_snapshot(&mut fx, root_id);
    for read_data in [false, true] {
        let report = fx.check(read_data);
        let mut found: Vec<serde_json::Value> = report
            .problems
            .iter()
            .map(|p| serde_json::to_value(p).unwrap())
            .collect();
        found.sort_by_key(|p| p["path"].as_str().map(str::to_string));
        let expected = [("/d/short", 2u64, 5u64), ("/huge", 1 << 40, 0)];
        assert_eq!(
            found.len(),
            expected.len(),
            "read_data {read_data}: {found:?}"
        );
        for (p, (path, size, content)) in found.iter().zip(expected) {
            assert_eq!(p["problem"], "file_size", "{p}");
            assert_eq!(p["snapshot"], snapshot.id.to_hex(), "{p}");
            assert_eq!(p["path"], path, "{p}");
            assert_eq!(p["size"], size, "{p}");
            assert_eq!(p["content"], content, "{p}");
        }
    }
}
