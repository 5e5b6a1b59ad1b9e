//! Property: random directory trees (depth up to 4, up to 30 entries, names of arbitrary bytes
//! other than `/` and NUL, contents built from shared segments so that chunks dedupe) come back
//! byte for byte from a backup and restore on the in-memory backend.

#[path = "support/fixture.rs"]
mod fixture;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use fixture::{noise, Fixture};
use proptest::prelude::*;

const MAX_ENTRIES: usize = 30;
const MAX_FILE_LEN: usize = 20 * 1024;

#[derive(Debug, Clone)]
enum Entry {
    File(Vec<u8>),
    Dir(BTreeMap<Vec<u8>, Entry>),
}

type Dir = BTreeMap<Vec<u8>, Entry>;

/// Names of 1 to 12 bytes, any byte but `/` and NUL, never `.` or `..`; often non-UTF-8.
fn name() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0),
        1..12,
    )
    .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

/// Contents of 0..20 KiB assembled from pieces of four fixed segments and some fresh bytes, so
/// that files share chunks with each other and with themselves.
fn content() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        3 => (0u64..4, 0usize..6000).prop_map(|(segment, len)| noise(len, segment)),
        1 => prop::collection::vec(any::<u8>(), 0..500),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|pieces| {
        let mut out = pieces.concat();
        out.truncate(MAX_FILE_LEN);
        out
    })
}

fn tree() -> impl Strategy<Value = Dir> {
    let leaf = content().prop_map(Entry::File);
    // Three levels of nesting below the top level: depth 4 at most.
    let entry = leaf.prop_recursive(3, 24, 6, |inner| {
        prop::collection::btree_map(name(), inner, 0..6).prop_map(Entry::Dir)
    });
    prop::collection::btree_map(name(), entry, 0..8).prop_map(|mut dir| {
        let mut budget = MAX_ENTRIES;
        prune(&mut dir, &mut budget);
        dir
    })
}

/// Keeps the first `budget` entries in pre-order.
fn prune(dir: &mut Dir, budget: &mut usize) {
    let names: Vec<Vec<u8>> = dir.keys().cloned().collect();
    for n in names {
        if *budget == 0 {
            let _ = dir.remove(&n);
            continue;
        }
        *budget -= 1;
        if let Some(Entry::Dir(sub)) = dir.get_mut(&n) {
            prune(sub, budget);
        }
    }
}

fn materialize(dir: &Dir, at: &Path) {
    fs::create_dir_all(at).unwrap();
    for (name, entry) in dir {
        let path = at.join(OsStr::from_bytes(name));
        match entry {
            Entry::File(bytes) => fs::write(&path, bytes).unwrap(),
            Entry::Dir(sub) => materialize(sub, &path),
        }
    }
}

/// Reads a directory back into the model.
fn read_back(at: &Path) -> Dir {
    let mut out = Dir::new();
    for e in fs::read_dir(at).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        let entry = if t.is_dir() {
            Entry::Dir(read_back(&e.path()))
        } else {
            assert!(t.is_file(), "unexpected entry kind at {:?}", e.path());
            Entry::File(fs::read(e.path()).unwrap())
        };
        let _ = out.insert(e.file_name().as_bytes().to_vec(), entry);
    }
    out
}

fn same(a: &Dir, b: &Dir) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((na, ea), (nb, eb))| {
            na == nb
                && match (ea, eb) {
                    (Entry::File(x), Entry::File(y)) => x == y,
                    (Entry::Dir(x), Entry::Dir(y)) => same(x, y),
                    _ => false,
                }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn prop_random_trees_roundtrip_byte_exact(model in tree()) {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        materialize(&model, &src);
        let mut fx = Fixture::memory();
        let (summary, snapshot) = fx.backup_dir(&src);
        prop_assert!(summary.skipped.is_empty(), "{:?}", summary.skipped);
        let target = tmp.path().join("target");
        let _ = fx.restore_dir(&snapshot, &src, &target);
        let back = read_back(&target);
        prop_assert!(same(&model, &back), "restored tree differs from the model");
        let diffs = fixture::tree_differences(&src, &target);
        prop_assert!(diffs.is_empty(), "{:?}", diffs);
    }
}
