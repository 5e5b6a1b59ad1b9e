//! Every kind of entry the archiver knows, backed up and restored through the CLI and compared
//! byte for byte and by metadata: regular files (empty, small, multi-chunk, sparse), nested and
//! empty directories, relative, absolute and dangling symlinks, a hard-link pair, a fifo, a
//! socket (skipped with a warning), extended attributes, non-UTF-8 names, special mode bits,
//! nanosecond mtimes, and as root foreign owners and device nodes.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use nix::sys::stat::{makedev, mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use serde_json::Value;

use crate::support::{arg, is_root, json_lines, noise, summary, text, Env};

/// Apparent size of the sparse file.
const SPARSE_LEN: u64 = 64 << 20;
/// Long enough for a slow, shared machine; a backup that opens the fifo never finishes.
const LIMIT: Duration = Duration::from_secs(120);

/// What the source tree could be given on this machine.
struct Built {
    /// User extended attributes could be set (the file system supports them).
    xattrs: bool,
    /// Device nodes and foreign owners were made (needs root, and `mknod` allowed).
    devices: bool,
}

/// Sets an extended attribute; false when the file system does not support them.
fn try_xattr(path: &Path, name: &str, value: &[u8]) -> bool {
    match xattr::set(path, name, value) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTSUP) => false,
        Err(e) => panic!("set xattr {name} on {}: {e}", path.display()),
    }
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Writes the source tree. Modes are set explicitly, so the umask does not matter.
fn build_tree(root: &Path) -> Built {
    fs::create_dir_all(root.join("a/b/c")).unwrap();
    fs::create_dir_all(root.join("a/b/empty_inner")).unwrap();
    fs::create_dir(root.join("emptydir")).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("small.txt"), b"a small file\n").unwrap();
    // 3 MiB with 64 KiB maximum chunks: at least 48 chunks.
    fs::write(root.join("big.bin"), noise(3 << 20, 11)).unwrap();
    fs::write(root.join("a/b/c/deep.txt"), b"deep down\n").unwrap();

    // Symlinks: relative, absolute, dangling, to a directory, to a non-UTF-8 name.
    symlink("small.txt", root.join("rel_link")).unwrap();
    symlink(root.join("small.txt"), root.join("abs_link")).unwrap();
    symlink("does/not/exist", root.join("dangling")).unwrap();
    symlink("a", root.join("dir_link")).unwrap();
    symlink(OsStr::from_bytes(b"caf\xe9.txt"), root.join("odd_link")).unwrap();

    // Non-UTF-8 names, for a file and a directory.
    fs::write(
        root.join(OsStr::from_bytes(b"caf\xe9.txt")),
        b"latin-1 name\n",
    )
    .unwrap();
    let odd_dir = root.join(OsStr::from_bytes(b"dir\xff"));
    fs::create_dir(&odd_dir).unwrap();
    fs::write(odd_dir.join("inner.txt"), b"inside an odd directory\n").unwrap();

    // A hard-link pair in two directories.
    fs::write(root.join("hard1"), noise(20_000, 5)).unwrap();
    fs::hard_link(root.join("hard1"), root.join("a/hard2")).unwrap();

    // A fifo (never to be opened by the backup) and a socket (skipped).
    nix::unistd::mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o640)).unwrap();
    drop(UnixListener::bind(root.join("sock")).unwrap());

    // A sparse file: a few bytes at the start, the middle and the end of 64 MiB.
    let sparse = File::create(root.join("sparse.img")).unwrap();
    sparse.set_len(SPARSE_LEN).unwrap();
    sparse.write_all_at(b"head", 0).unwrap();
    sparse.write_all_at(b"middle", SPARSE_LEN / 2).unwrap();
    sparse.write_all_at(b"tail", SPARSE_LEN - 4).unwrap();
    drop(sparse);

    // Modes.
    fs::create_dir(root.join("modes")).unwrap();
    for (name, mode) in [
        ("mode640", 0o640),
        ("exec755", 0o755),
        ("setuid", 0o4755),
        ("readonly", 0o444),
    ] {
        let p = root.join("modes").join(name);
        fs::write(&p, name.as_bytes()).unwrap();
        set_mode(&p, mode);
    }
    let sticky = root.join("modes/sticky_dir");
    fs::create_dir(&sticky).unwrap();
    set_mode(&sticky, 0o1777);
    let setgid = root.join("setgid_dir");
    fs::create_dir(&setgid).unwrap();
    set_mode(&setgid, 0o2775);
    fs::write(setgid.join("inside.txt"), b"in a setgid directory\n").unwrap();
    set_mode(&setgid.join("inside.txt"), 0o664);

    // Extended attributes: text, binary and empty values, on files and a directory; one on a
    // read-only file (restore must set it before it makes the file read-only).
    let mut xattrs = try_xattr(&root.join("small.txt"), "user.comment", b"hello");
    if xattrs {
        assert!(try_xattr(
            &root.join("small.txt"),
            "user.binary",
            b"\0\xff\x01"
        ));
        assert!(try_xattr(&root.join("small.txt"), "user.empty", b""));
        assert!(try_xattr(&root.join("a"), "user.dir", b"a directory"));
        assert!(try_xattr(&root.join("modes/readonly"), "user.ro", b"ro"));
    } else {
        eprintln!("note: user xattrs are not supported here; not checking them");
        xattrs = false;
    }

    // As root: foreign owners and device nodes.
    let mut devices = false;
    if is_root() {
        let owned = root.join("owned");
        fs::write(&owned, b"owned by someone else\n").unwrap();
        std::os::unix::fs::lchown(&owned, Some(1234), Some(5678)).unwrap();
        set_mode(&owned, 0o640);
        symlink("owned", root.join("owned_link")).unwrap();
        std::os::unix::fs::lchown(root.join("owned_link"), Some(1234), Some(5678)).unwrap();
        let perm = Mode::from_bits_truncate(0o640);
        match mknod(&root.join("null_dev"), SFlag::S_IFCHR, perm, makedev(1, 3)) {
            Ok(()) => {
                mknod(&root.join("loop_dev"), SFlag::S_IFBLK, perm, makedev(7, 42)).unwrap();
                std::os::unix::fs::lchown(root.join("null_dev"), Some(1234), Some(5678)).unwrap();
                devices = true;
            }
            Err(e) => eprintln!("note: mknod is not allowed here ({e}); not checking devices"),
        }
    }

    // Distinct nanosecond mtimes on everything (symlinks too), children before parents so
    // that later changes do not move a directory's time.
    let mut n = 0i64;
    set_times(root, &mut n);
    Built { xattrs, devices }
}

/// Gives every entry below `dir` its own mtime with a non-zero nanosecond part.
fn set_times(dir: &Path, n: &mut i64) {
    let mut names: Vec<OsString> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let p = dir.join(&name);
        let meta = fs::symlink_metadata(&p).unwrap();
        if meta.file_type().is_socket() {
            continue;
        }
        if meta.is_dir() {
            set_times(&p, n);
        }
        *n += 1;
        let t = TimeSpec::new(1_500_000_000 + *n * 86_400, 123_456_789 + *n * 1_009);
        utimensat(None, &p, &t, &t, UtimensatFlags::NoFollowSymlink).unwrap();
    }
}

/// Fills `buf` from `r` as far as the data goes; returns how much was read.
fn read_full(r: &mut File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    n
}

/// Whether two files hold the same bytes (compared a MiB at a time).
fn same_bytes(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let (na, nb) = (read_full(&mut fa, &mut ba), read_full(&mut fb, &mut bb));
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}

/// The `user.*` extended attributes of `path`, sorted.
fn user_xattrs(path: &Path) -> Vec<(OsString, Vec<u8>)> {
    let mut v: Vec<(OsString, Vec<u8>)> = xattr::list(path)
        .unwrap()
        .filter(|n| n.as_bytes().starts_with(b"user."))
        .map(|n| {
            let value = xattr::get(path, &n).unwrap().unwrap_or_default();
            (n, value)
        })
        .collect();
    v.sort();
    v
}

/// What the comparison checks, and what it saw.
struct Comparison {
    xattrs: bool,
    owners: bool,
    /// Source (dev, inode) of hard-linked files → target (dev, inode).
    inodes: HashMap<(u64, u64), (u64, u64)>,
    /// Entries compared, by kind.
    kinds: BTreeMap<&'static str, usize>,
    /// Entries with user xattrs compared.
    with_xattrs: usize,
}

fn kind_name(ft: fs::FileType) -> &'static str {
    if ft.is_file() {
        "file"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_char_device() {
        "chardev"
    } else if ft.is_block_device() {
        "blockdev"
    } else {
        "socket"
    }
}

impl Comparison {
    /// Compares the entries below `src` and `dst` recursively (not `src` and `dst` themselves).
    /// Sockets are expected to be missing from `dst`.
    fn compare(&mut self, src: &Path, dst: &Path) {
        let names = |dir: &Path, skip_sockets: bool| {
            let mut v: Vec<OsString> = fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
                .map(|e| e.unwrap())
                .filter(|e| !(skip_sockets && e.file_type().unwrap().is_socket()))
                .map(|e| e.file_name())
                .collect();
            v.sort();
            v
        };
        let want = names(src, true);
        assert_eq!(want, names(dst, false), "entries of {}", dst.display());
        for name in want {
            let (s, d) = (src.join(&name), dst.join(&name));
            let (ms, md) = (
                fs::symlink_metadata(&s).unwrap(),
                fs::symlink_metadata(&d).unwrap(),
            );
            let kind = kind_name(ms.file_type());
            assert_eq!(kind, kind_name(md.file_type()), "kind of {}", d.display());
            *self.kinds.entry(kind).or_default() += 1;
            let shown = d.display();
            assert_eq!(
                (ms.mtime(), ms.mtime_nsec()),
                (md.mtime(), md.mtime_nsec()),
                "mtime of {shown}"
            );
            if self.owners {
                assert_eq!(
                    (ms.uid(), ms.gid()),
                    (md.uid(), md.gid()),
                    "owner of {shown}"
                );
            }
            if kind != "symlink" {
                assert_eq!(ms.mode() & 0o7777, md.mode() & 0o7777, "mode of {shown}");
            }
            if self.xattrs && kind != "symlink" {
                let xs = user_xattrs(&s);
                assert_eq!(xs, user_xattrs(&d), "xattrs of {shown}");
                self.with_xattrs += usize::from(!xs.is_empty());
            }
            match kind {
                "file" => {
                    assert_eq!(ms.len(), md.len(), "size of {shown}");
                    assert!(same_bytes(&s, &d), "bytes of {shown}");
                    assert_eq!(ms.nlink(), md.nlink(), "link count of {shown}");
                    if ms.nlink() > 1 {
                        let (si, di) = ((ms.dev(), ms.ino()), (md.dev(), md.ino()));
                        let seen = *self.inodes.entry(si).or_insert(di);
                        assert_eq!(seen, di, "{shown} is not linked to its partner");
                    }
                }
                "symlink" => assert_eq!(
                    fs::read_link(&s).unwrap(),
                    fs::read_link(&d).unwrap(),
                    "target of {shown}"
                ),
                "chardev" | "blockdev" => assert_eq!(ms.rdev(), md.rdev(), "rdev of {shown}"),
                "dir" => self.compare(&s, &d),
                _ => {}
            }
        }
    }
}

/// The `ls --json` nodes of the latest snapshot below `src`, by path relative to `src`.
fn listed_nodes(env: &Env, src: &Path) -> BTreeMap<String, Value> {
    let out = env.ok(&["ls", "latest", arg(src), "--json"]);
    let prefix = format!("{}/", src.display());
    json_lines(&out.stdout)
        .into_iter()
        .filter(|v| v["message_type"] == "node")
        .filter_map(|v| {
            let path = v["path"].as_str()?.strip_prefix(&prefix)?.to_string();
            Some((path, v))
        })
        .collect()
}

#[test]
fn every_file_kind_round_trips_with_its_metadata() {
    let env = Env::new();
    let src = env.path("src");
    let built = build_tree(&src);
    let _ = env.ok(&[
        "init",
        "--insecure-kdf",
        "--chunk-min",
        "4096",
        "--chunk-avg",
        "16384",
        "--chunk-max",
        "65536",
    ]);

    // The backup never opens the fifo (it would block), and skips the socket with a warning
    // but still succeeds.
    let out = env.run_within(&["backup", arg(&src), "--json"], LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let warnings = json_lines(&out.stderr);
    let sock = src.join("sock");
    assert_eq!(
        warnings.len(),
        1,
        "expected only the socket warning: {warnings:?}"
    );
    assert_eq!(warnings[0]["message_type"], "error");
    assert_eq!(warnings[0]["item"], arg(&sock));
    assert_eq!(warnings[0]["skipped"], false);
    assert!(
        warnings[0]["error"].as_str().unwrap().contains("socket"),
        "{}",
        warnings[0]
    );
    let backup = summary(&out);
    assert_eq!(backup["errors_skipped"], 0, "{backup}");
    assert_eq!(backup["skipped"], serde_json::json!([]));

    // Regular files in the source (hard links counted once per name, and once per inode).
    let mut files = Vec::new();
    collect_files(&src, &mut files);
    let mut inodes: Vec<u64> = files.iter().map(|(_, ino)| *ino).collect();
    inodes.sort_unstable();
    inodes.dedup();
    assert_eq!(backup["files_new"], files.len(), "{backup}");

    // The snapshot as `ls` shows it.
    let nodes = listed_nodes(&env, &src);
    assert!(!nodes.contains_key("sock"), "sockets are not stored");
    assert_eq!(nodes["fifo"]["type"], "fifo");
    assert_eq!(nodes["dangling"]["type"], "symlink");
    assert_eq!(nodes["dangling"]["symlink_target"], "does/not/exist");
    assert_eq!(nodes["odd_link"]["symlink_target_hex"], "636166e92e747874");
    assert!(nodes.contains_key("emptydir") && nodes.contains_key("a/b/empty_inner"));
    let chunks = nodes["big.bin"]["content"].as_array().unwrap().len();
    assert!(
        chunks >= 48,
        "3 MiB in chunks of at most 64 KiB: {chunks} chunks"
    );
    assert_eq!(nodes["hard1"]["links"], 2);
    assert_eq!(nodes["hard1"]["inode"], nodes["a/hard2"]["inode"]);
    if built.devices {
        assert_eq!(nodes["null_dev"]["type"], "chardev");
        assert_eq!(nodes["null_dev"]["rdev"], makedev(1, 3));
        assert_eq!(nodes["loop_dev"]["type"], "blockdev");
        assert_eq!(nodes["owned"]["uid"], 1234);
        assert_eq!(nodes["owned"]["gid"], 5678);
    }

    // Restore with verification.
    let target = env.path("target");
    let spec = format!("latest:{}", src.display());
    let out = env.run_within(
        &[
            "restore",
            &spec,
            "--target",
            arg(&target),
            "--verify",
            "--json",
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let restore = summary(&out);
    assert_eq!(
        restore["verify_failures"],
        serde_json::json!([]),
        "{restore}"
    );
    assert_eq!(restore["warnings"], serde_json::json!([]), "{restore}");
    assert_eq!(restore["files_restored"], files.len(), "{restore}");
    assert_eq!(restore["files_verified"], inodes.len(), "{restore}");

    let mut cmp = Comparison {
        xattrs: built.xattrs,
        owners: is_root(),
        inodes: HashMap::new(),
        kinds: BTreeMap::new(),
        with_xattrs: 0,
    };
    cmp.compare(&src, &target);

    // The comparison saw every kind it was meant to.
    assert_eq!(
        cmp.kinds["symlink"],
        5 + usize::from(is_root()),
        "{:?}",
        cmp.kinds
    );
    assert_eq!(cmp.kinds["fifo"], 1, "{:?}", cmp.kinds);
    assert_eq!(cmp.kinds["dir"], 9, "{:?}", cmp.kinds);
    if built.devices {
        assert_eq!(cmp.kinds["chardev"], 1, "{:?}", cmp.kinds);
        assert_eq!(cmp.kinds["blockdev"], 1, "{:?}", cmp.kinds);
    }
    if built.xattrs {
        assert_eq!(cmp.with_xattrs, 3, "entries with xattrs");
    }
    // The hard-link pair is one inode with two names in the target.
    assert_eq!(cmp.inodes.len(), 1);
    let (h1, h2) = (
        fs::metadata(target.join("hard1")).unwrap(),
        fs::metadata(target.join("a/hard2")).unwrap(),
    );
    assert_eq!((h1.dev(), h1.ino()), (h2.dev(), h2.ino()));
    assert_eq!(h1.nlink(), 2);

    // Holes stay holes: the source is sparse (where the file system allows it), and so is the
    // restored copy.
    let used = |p: &Path| fs::metadata(p).unwrap().blocks() * 512;
    let (src_used, dst_used) = (
        used(&src.join("sparse.img")),
        used(&target.join("sparse.img")),
    );
    assert_eq!(
        fs::metadata(target.join("sparse.img")).unwrap().len(),
        SPARSE_LEN
    );
    if src_used < 1 << 20 {
        assert!(
            dst_used < 1 << 20,
            "restored sparse file uses {dst_used} bytes on disk (source {src_used})"
        );
    } else {
        eprintln!("note: the source file system does not keep holes; not checking sparseness");
    }
}

/// Every regular file below `dir` with its inode.
fn collect_files(dir: &Path, out: &mut Vec<(std::path::PathBuf, u64)>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = fs::symlink_metadata(e.path()).unwrap();
        if meta.is_dir() {
            collect_files(&e.path(), out);
        } else if meta.is_file() {
            out.push((e.path(), meta.ino()));
        }
    }
}
