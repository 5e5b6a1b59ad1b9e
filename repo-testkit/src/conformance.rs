//! [`backend_conformance`]: the suite every [`Backend`] must pass, one check for each point of
//! the contract in repo-core's `backend` module documentation (names, whole and range reads,
//! listings, overwrite, delete, zero-length objects, concurrent writes, `create`).

use std::collections::BTreeMap;
use std::sync::Arc;

use repo_core::{Backend, ErrorKind, FileType, Id};

use crate::noise;

/// Every file type but the config, which holds one object only.
const OBJECT_TYPES: [FileType; 5] = [
    FileType::Key,
    FileType::Snapshot,
    FileType::Index,
    FileType::Pack,
    FileType::Lock,
];

/// The `i`th object name of the checks: 64 hex digits, as the repository names objects.
fn name(i: u64) -> String {
    Id::hash(&i.to_le_bytes()).to_hex()
}

/// The name of an object of type `t` in a check: `config` for the config, else [`name`].
fn name_for(t: FileType, i: u64) -> String {
    if t == FileType::Config {
        "config".to_string()
    } else {
        name(i)
    }
}

/// Runs every check on a fresh backend from `make`, each after `create`: panics, naming the
/// check, at the first failure. `make` must give a new, empty location each call.
pub fn backend_conformance(make: impl Fn() -> Arc<dyn Backend>) {
    type Check = fn(&dyn Backend);
    let checks: [(&str, Check); 12] = [
        ("create prepares an empty location", create_prepares),
        ("create refuses a repository", create_refuses_a_repository),
        (
            "create accepts what an interrupted init left",
            create_accepts_an_interrupted_init,
        ),
        ("write then read, whole", write_read_whole),
        ("types are separate namespaces", namespaces),
        ("missing objects are not found", missing_objects),
        ("range reads", range_reads),
        ("zero-length objects", zero_length_objects),
        ("overwrite replaces whole", overwrite),
        ("delete", delete),
        ("invalid names are refused", invalid_names),
        (
            "concurrent writes and large listings",
            concurrent_writes_and_listing,
        ),
    ];
    for (what, check) in checks {
        let backend = make();
        eprintln!("backend conformance on {}: {what}", backend.location());
        backend
            .create()
            .unwrap_or_else(|e| panic!("{what}: create {}: {e}", backend.location()));
        check(backend.as_ref());
        assert_eq!(
            backend.temporary_files().expect("temporary files"),
            Vec::<String>::new(),
            "{what}: completed writes leave no temporary files"
        );
    }
}

/// The listing of `t` as a map, asserting that a repeated name repeats its length.
fn listing(b: &dyn Backend, t: FileType) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (n, len) in b.list(t).unwrap_or_else(|e| panic!("list {t:?}: {e}")) {
        if let Some(before) = out.insert(n.clone(), len) {
            assert_eq!(before, len, "{t:?}/{n} listed twice with different lengths");
        }
    }
    out
}

fn assert_kind(result: repo_core::Result<impl std::fmt::Debug>, kind: ErrorKind, what: &str) {
    match result {
        Ok(v) => panic!("{what}: succeeded ({v:?}), expected {kind:?}"),
        Err(e) => assert_eq!(e.kind(), kind, "{what}: {e}"),
    }
}

fn create_prepares(b: &dyn Backend) {
    assert!(!b.location().is_empty(), "a location to name in messages");
    for t in FileType::ALL {
        assert!(listing(b, t).is_empty(), "{t:?} of a new location is empty");
    }
    b.create().expect("create again on an empty location");
    for t in FileType::ALL {
        assert!(listing(b, t).is_empty(), "{t:?} after a second create");
    }
}

fn create_refuses_a_repository(b: &dyn Backend) {
    let objects: Vec<(FileType, String, Vec<u8>)> = [FileType::Key, FileType::Pack]
        .into_iter()
        .chain([FileType::Config])
        .enumerate()
        .map(|(i, t)| (t, name_for(t, i as u64), noise(100 + i, i as u64)))
        .collect();
    for (t, n, data) in &objects {
        b.write(*t, n, data).expect("write");
    }
    assert!(b.create().is_err(), "create on a repository must fail");
    for (t, n, data) in &objects {
        assert!(
            b.read(*t, n).expect("read after the refused create") == *data,
            "{t:?}/{n}: a refused create changes nothing"
        );
    }
}

/// An init that stopped after writing its key file leaves a key and no config: `create`
/// accepts that location and leaves the key to `Repository::init`.
fn create_accepts_an_interrupted_init(b: &dyn Backend) {
    let (n, data) = (name_for(FileType::Key, 7), noise(64, 7));
    b.write(FileType::Key, &n, &data).expect("write a key");
    b.create()
        .expect("create on a location an interrupted init left");
    assert!(
        b.read(FileType::Key, &n).expect("read the key") == data,
        "create leaves the key file alone"
    );
}

fn write_read_whole(b: &dyn Backend) {
    for (i, t) in FileType::ALL.into_iter().enumerate() {
        let n = name_for(t, i as u64);
        let data = noise(1000 + 37 * i, i as u64);
        b.write(t, &n, &data)
            .unwrap_or_else(|e| panic!("write {t:?}/{n}: {e}"));
        assert!(b.read(t, &n).expect("read") == data, "{t:?}/{n}: bytes");
        assert_eq!(b.size(t, &n).expect("size"), data.len() as u64, "{t:?}/{n}");
        assert_eq!(
            listing(b, t),
            BTreeMap::from([(n.clone(), data.len() as u64)]),
            "{t:?}: listing"
        );
    }
}

fn namespaces(b: &dyn Backend) {
    let n = name(7);
    for (i, t) in OBJECT_TYPES.into_iter().enumerate() {
        b.write(t, &n, &noise(50 + i, i as u64)).expect("write");
    }
    for (i, t) in OBJECT_TYPES.into_iter().enumerate() {
        assert!(
            b.read(t, &n).expect("read") == noise(50 + i, i as u64),
            "{t:?}/{n}: its own bytes"
        );
        assert_eq!(listing(b, t).len(), 1, "{t:?}: one object");
    }
    assert!(listing(b, FileType::Config).is_empty(), "no config");
    b.delete(FileType::Pack, &n).expect("delete");
    assert!(b.read(FileType::Index, &n).is_ok(), "delete is per type");
}

fn missing_objects(b: &dyn Backend) {
    for t in FileType::ALL {
        let n = name_for(t, 1);
        let what = |op: &str| format!("{op} of a missing {t:?}/{n}");
        assert_kind(b.read(t, &n), ErrorKind::NotFound, &what("read"));
        assert_kind(
            b.read_range(t, &n, 0, 1),
            ErrorKind::NotFound,
            &what("read_range"),
        );
        assert_kind(b.size(t, &n), ErrorKind::NotFound, &what("size"));
        b.delete(t, &n)
            .unwrap_or_else(|e| panic!("{}: {e}", what("delete")));
    }
}

/// Asserts that a range read outside the object fails permanently (not retried).
fn assert_out_of_range(b: &dyn Backend, n: &str, offset: u64, len: u32) {
    match b.read_range(FileType::Pack, n, offset, len) {
        Ok(v) => panic!("range {offset}+{len}: read {} bytes past the end", v.len()),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Backend, "range {offset}+{len}: {e}");
            assert!(!e.is_transient(), "range {offset}+{len} is permanent: {e}");
        }
    }
}

fn range_reads(b: &dyn Backend) {
    let n = name(2);
    let data = noise(10_000, 2);
    b.write(FileType::Pack, &n, &data).expect("write");
    for (offset, len) in [
        (0, 0),
        (0, 10),
        (5000, 123),
        (9990, 10),
        (0, 10_000),
        (10_000, 0),
    ] {
        let got = b
            .read_range(FileType::Pack, &n, offset, len)
            .unwrap_or_else(|e| panic!("range {offset}+{len}: {e}"));
        let start = offset as usize;
        assert!(
            got == data[start..start + len as usize],
            "range {offset}+{len}: bytes"
        );
    }
    for (offset, len) in [
        (9991, 10),
        (10_000, 1),
        (0, 10_001),
        (20_000, 0),
        (u64::MAX, 1),
        (u64::MAX - 1, u32::MAX),
    ] {
        assert_out_of_range(b, &n, offset, len);
    }
}

fn zero_length_objects(b: &dyn Backend) {
    for (i, t) in FileType::ALL.into_iter().enumerate() {
        let n = name_for(t, i as u64);
        b.write(t, &n, &[]).expect("write an empty object");
        assert_eq!(b.read(t, &n).expect("read"), Vec::<u8>::new(), "{t:?}");
        assert_eq!(b.size(t, &n).expect("size"), 0, "{t:?}");
        assert_eq!(listing(b, t), BTreeMap::from([(n.clone(), 0)]), "{t:?}");
    }
    let n = name(4);
    assert_eq!(
        b.read_range(FileType::Pack, &n, 0, 0).expect("empty range"),
        Vec::<u8>::new()
    );
    assert_out_of_range(b, &n, 0, 1);
}

fn overwrite(b: &dyn Backend) {
    let n = name(3);
    let data = noise(4000, 3);
    b.write(FileType::Pack, &n, &data).expect("write");
    b.write(FileType::Pack, &n, &data)
        .expect("writing the same bytes again is harmless");
    assert!(b.read(FileType::Pack, &n).expect("read") == data);
    assert_eq!(listing(b, FileType::Pack).len(), 1, "listed once");
    // A re-upload after a short write: shorter, then longer bytes replace the object whole.
    for len in [1000, 0, 6000] {
        let new = noise(len, 30 + len as u64);
        b.write(FileType::Pack, &n, &new).expect("overwrite");
        assert!(b.read(FileType::Pack, &n).expect("read") == new, "{len}");
        assert_eq!(b.size(FileType::Pack, &n).expect("size"), len as u64);
        assert_eq!(
            listing(b, FileType::Pack),
            BTreeMap::from([(n.clone(), len as u64)])
        );
    }
    let config = noise(200, 33);
    b.write(FileType::Config, "config", &noise(100, 32))
        .expect("config");
    b.write(FileType::Config, "config", &config)
        .expect("config again");
    assert!(b.read(FileType::Config, "config").expect("read") == config);
}

fn delete(b: &dyn Backend) {
    for t in FileType::ALL {
        let count = if t == FileType::Config { 1 } else { 3 };
        for i in 0..count {
            b.write(t, &name_for(t, i), &noise(10, i)).expect("write");
        }
        let gone = name_for(t, 0);
        b.delete(t, &gone).expect("delete");
        assert_kind(b.read(t, &gone), ErrorKind::NotFound, "read after delete");
        assert_kind(b.size(t, &gone), ErrorKind::NotFound, "size after delete");
        let left = listing(b, t);
        assert!(!left.contains_key(&gone), "{t:?}: deleted object listed");
        assert_eq!(left.len(), count as usize - 1, "{t:?}: the others stay");
        for i in 1..count {
            assert!(b.read(t, &name_for(t, i)).expect("read") == noise(10, i));
        }
        b.delete(t, &gone)
            .expect("deleting a missing object is not an error");
    }
}

fn invalid_names(b: &dyn Backend) {
    let bad = [
        "",
        ".",
        "..",
        ".tmp-abcd",
        ".hidden",
        "a/b",
        "/abs",
        "../up",
        "ab/",
        "a\0b",
    ];
    for t in OBJECT_TYPES {
        for n in bad {
            let what = |op: &str| format!("{op} {t:?}/{n:?}");
            assert_kind(b.write(t, n, b"x"), ErrorKind::InvalidInput, &what("write"));
            assert_kind(b.read(t, n), ErrorKind::InvalidInput, &what("read"));
            assert_kind(
                b.read_range(t, n, 0, 1),
                ErrorKind::InvalidInput,
                &what("read_range"),
            );
            assert_kind(b.size(t, n), ErrorKind::InvalidInput, &what("size"));
            assert_kind(b.delete(t, n), ErrorKind::InvalidInput, &what("delete"));
        }
        assert!(listing(b, t).is_empty(), "{t:?}: nothing stored");
    }
    for n in ["", "other", "config/x", &name(1)] {
        assert_kind(
            b.write(FileType::Config, n, b"x"),
            ErrorKind::InvalidInput,
            &format!("write config {n:?}"),
        );
        assert_kind(
            b.read(FileType::Config, n),
            ErrorKind::InvalidInput,
            &format!("read config {n:?}"),
        );
    }
    assert!(listing(b, FileType::Config).is_empty(), "no config stored");
}

/// Eight threads write 1100 packs (more than an object store's listing page of 1000) and 40
/// objects of every other type, each reading its own back; then every listing is complete.
fn concurrent_writes_and_listing(b: &dyn Backend) {
    const THREADS: u64 = 8;
    let mut expected: Vec<(FileType, String, u64)> = (0..1100)
        .map(|i| (FileType::Pack, name(i), i % 97))
        .collect();
    for (k, t) in OBJECT_TYPES.into_iter().enumerate() {
        if t != FileType::Pack {
            let base = 10_000 * (k as u64 + 1);
            expected.extend((base..base + 40).map(|i| (t, name(i), i % 53)));
        }
    }
    std::thread::scope(|s| {
        for k in 0..THREADS {
            let expected = &expected;
            let _ = s.spawn(move || {
                for (i, (t, n, len)) in expected.iter().enumerate() {
                    if i as u64 % THREADS == k {
                        let data = noise(*len as usize, i as u64);
                        b.write(*t, n, &data)
                            .unwrap_or_else(|e| panic!("write {t:?}/{n}: {e}"));
                        assert!(b.read(*t, n).expect("read") == data, "{t:?}/{n}");
                    }
                }
            });
        }
    });
    for t in OBJECT_TYPES {
        let want: BTreeMap<String, u64> = expected
            .iter()
            .filter(|(x, _, _)| *x == t)
            .map(|(_, n, len)| (n.clone(), *len))
            .collect();
        assert!(
            want == listing(b, t),
            "{t:?}: every object listed, with its length"
        );
    }
    for (i, (t, n, len)) in expected.iter().enumerate().step_by(101) {
        assert!(b.read(*t, n).expect("read") == noise(*len as usize, i as u64));
    }
}
