//! Every kind of file system entry round-trips through backup and restore: contents, modes,
//! owners (as root), nanosecond mtimes, symlinks, hard links, fifos, device nodes (as root),
//! extended attributes, sparse files, files over 4 GiB, non-UTF-8 names and many files.

#[path = "support/fixture.rs"]
mod fixture;

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use fixture::{
    assert_same_tree, first_difference, init_options, is_root, noise, rerun_as_nobody, set_mode,
    set_mtime, write, Fixture, Notes,
};
use repo_core::{ChunkerParams, NodeKind};

/// What [`build_every_kind`] could create on this file system.
struct Built {
    xattrs: bool,
}

/// Builds a source tree holding every kind of entry an unprivileged user can make.
fn build_every_kind(src: &Path, outside: &Path) -> Built {
    fs::create_dir_all(src).unwrap();
    write(&src.join("empty"), b"");
    write(&src.join("small.txt"), b"hello, cairn\n");
    set_mode(&src.join("small.txt"), 0o640);
    let multi = noise(300 * 1024, 1);
    write(&src.join("multi.bin"), &multi);
    set_mode(&src.join("multi.bin"), 0o755);
    // The same content again under another name: stored once, restored twice.
    write(&src.join("multi-copy.bin"), &multi);
    write(&src.join("dir/nested/deeper/file.txt"), b"deep\n");
    fs::create_dir_all(src.join("dir/nested/empty-dir")).unwrap();
    fs::create_dir(src.join("empty-dir")).unwrap();
    write(&src.join("setgid-dir/inside.txt"), b"inherits the group\n");
    set_mode(&src.join("setgid-dir"), 0o2755);
    write(&src.join("read-only.txt"), b"read only\n");
    set_mode(&src.join("read-only.txt"), 0o444);

    let symlink =
        |target: &Path, name: &str| std::os::unix::fs::symlink(target, src.join(name)).unwrap();
    symlink(Path::new("small.txt"), "link-rel");
    symlink(Path::new("dir/nested"), "link-dir-rel");
    symlink(&src.join("small.txt"), "link-abs");
    symlink(Path::new("does/not/exist"), "link-dangling");
    symlink(
        Path::new("../../../../../../../../etc/passwd"),
        "link-up-and-out",
    );
    symlink(outside, "link-outside");

    write(&src.join("hard-a"), b"one inode, three names\n");
    fs::hard_link(src.join("hard-a"), src.join("dir/hard-b")).unwrap();
    fs::hard_link(src.join("hard-a"), src.join("dir/nested/hard-c")).unwrap();

    nix::unistd::mkfifo(
        &src.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();

    // Non-UTF-8 names: Latin-1 "café" and a directory of two invalid bytes.
    write(&src.join(OsStr::from_bytes(b"caf\xe9")), b"latin-1 name\n");
    write(
        &src.join(OsStr::from_bytes(b"\xff\xfe"))
            .join(OsStr::from_bytes(b"x\x80y")),
        b"inside a non-UTF-8 directory\n",
    );

    write(&src.join("xattr-file"), b"has extended attributes\n");
    let xattrs = xattr::set(src.join("xattr-file"), "user.cairn.test", b"value").is_ok();
    if xattrs {
        xattr::set(src.join("xattr-file"), "user.cairn.empty", b"").unwrap();
        xattr::set(src.join("dir"), "user.cairn.dir", b"on a directory").unwrap();
        xattr::set(
            src.join("multi.bin"),
            "user.cairn.binary",
            &[0, 255, 10, 13],
        )
        .unwrap();
    } else {
        eprintln!("note: user.* extended attributes unsupported here; not checked");
    }

    set_times_post_order(src);
    Built { xattrs }
}

/// Gives every entry below `root` a distinct mtime with nanoseconds, children before parents
/// (so creating entries no longer moves a directory's mtime).
fn set_times_post_order(root: &Path) {
    let mut all: Vec<PathBuf> = fixture::entries(root).into_keys().collect();
    // Deepest first: a path sorts after its parent, so reverse order visits children first.
    all.sort();
    for (i, rel) in all.iter().rev().enumerate() {
        set_mtime(
            &root.join(rel),
            1_600_000_000 + i as i64,
            123_456_789 - i as i64,
        );
    }
}

/// Runs `f` on a thread and fails (instead of hanging) if it does not finish in time.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let _ = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("did not finish within {limit:?} (a fifo opened for reading?)")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            panic!("the thread panicked (see its message above)")
        }
    }
}

#[test]
fn every_file_kind_roundtrips_with_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let built = build_every_kind(&src, &outside);

    // The fifo has no writer: a backup that opened it for reading would block forever.
    let fx = Fixture::local(&tmp.path().join("repo"));
    let (fx, summary, snapshot) = within(Duration::from_secs(60), {
        let src = src.clone();
        move || {
            let mut fx = fx;
            let (summary, snapshot) = fx.backup_dir(&src);
            (fx, summary, snapshot)
        }
    });
    assert!(summary.skipped.is_empty(), "skipped: {:?}", summary.skipped);
    // Files: empty, small, multi, multi-copy, deep file, setgid inside, read-only, 3 hard
    // links, two non-UTF-8 files, xattr-file.
    assert_eq!(summary.stats.files_new, 13);
    assert_eq!(summary.stats.others, 7, "six symlinks and a fifo");

    let listing = fx.listing(&snapshot, &src);
    assert_eq!(listing[Path::new("fifo")], NodeKind::Fifo);
    assert_eq!(listing[Path::new("link-dangling")], NodeKind::Symlink);
    assert_eq!(
        listing[&PathBuf::from(OsStr::from_bytes(b"caf\xe9"))],
        NodeKind::File
    );

    let target = tmp.path().join("target");
    let restored = fx.restore_dir(&snapshot, &src, &target);
    assert!(
        restored.warnings.is_empty(),
        "warnings: {:?}",
        restored.warnings
    );
    assert_same_tree(&src, &target);

    // Spelled out, beyond the generic comparison:
    let meta = |p: &str| fs::symlink_metadata(target.join(p)).unwrap();
    assert_eq!(
        meta("hard-a").ino(),
        meta("dir/hard-b").ino(),
        "hard links share an inode"
    );
    assert_eq!(meta("hard-a").ino(), meta("dir/nested/hard-c").ino());
    assert_eq!(meta("hard-a").nlink(), 3);
    assert!(meta("fifo").file_type().is_fifo());
    assert_eq!(meta("fifo").mode() & 0o7777, 0o640);
    assert_eq!(meta("setgid-dir").mode() & 0o7777, 0o2755);
    assert_eq!(meta("small.txt").mode() & 0o7777, 0o640);
    assert_eq!(meta("multi.bin").mode() & 0o7777, 0o755);
    assert_eq!(
        (meta("small.txt").mtime(), meta("small.txt").mtime_nsec()),
        (
            fs::symlink_metadata(src.join("small.txt")).unwrap().mtime(),
            fs::symlink_metadata(src.join("small.txt"))
                .unwrap()
                .mtime_nsec()
        )
    );
    assert_ne!(
        meta("small.txt").mtime_nsec(),
        0,
        "nanoseconds are restored"
    );
    assert_eq!(fs::read_link(target.join("link-outside")).unwrap(), outside);
    assert_eq!(
        fs::read_link(target.join("link-dangling")).unwrap(),
        Path::new("does/not/exist")
    );
    assert_eq!(
        fs::read(target.join(OsStr::from_bytes(b"caf\xe9"))).unwrap(),
        b"latin-1 name\n"
    );
    if built.xattrs {
        assert_eq!(
            xattr::get(target.join("xattr-file"), "user.cairn.test").unwrap(),
            Some(b"value".to_vec())
        );
        assert_eq!(
            xattr::get(target.join("dir"), "user.cairn.dir").unwrap(),
            Some(b"on a directory".to_vec())
        );
    }
    // Symlinks were restored as links, never followed: the outside directory is untouched.
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    let report = fx.check(true);
    assert!(report.is_clean(), "{:?}", report.problems);
}

#[test]
fn sparse_file_restores_with_holes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let size: u64 = 100 << 20;
    let path = src.join("sparse.img");
    let f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    f.set_len(size).unwrap();
    f.write_all_at(b"head", 0).unwrap();
    f.write_all_at(b"middle", (50 << 20) + 3).unwrap();
    f.write_all_at(b"tail", size - 4).unwrap();
    drop(f);
    let src_blocks = fs::metadata(&path).unwrap().blocks();
    assert!(
        src_blocks * 512 < 1 << 20,
        "the source itself is sparse ({src_blocks} blocks)"
    );

    let mut fx = Fixture::memory();
    let (summary, snapshot) = fx.backup_dir(&src);
    assert_eq!(summary.stats.bytes_read, size);
    // About 25,600 chunks of zeros dedupe to one blob.
    assert!(
        summary.stats.blobs_added < 32,
        "holes dedupe: {} blobs added",
        summary.stats.blobs_added
    );

    let target = tmp.path().join("target");
    let _ = fx.restore_dir(&snapshot, &src, &target);
    let restored = target.join("sparse.img");
    let meta = fs::metadata(&restored).unwrap();
    assert_eq!(meta.len(), size);
    assert_eq!(first_difference(&path, &restored), None, "content differs");
    assert!(
        meta.blocks() * 512 < 1 << 20,
        "restored file is not sparse: {} blocks for {size} bytes",
        meta.blocks()
    );
    assert_same_tree(&src, &target);
}

#[test]
fn file_over_4_gib_roundtrips_as_sparse() {
    // In memory when possible: a disk file system zero-fills a page-cache page for every hole
    // page read (seconds for 4 GiB), tmpfs maps its shared zero page.
    let tmp = fixture::memory_tempdir();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let size: u64 = (4 << 30) + (4 << 20);
    let path = src.join("huge.img");
    let f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    f.set_len(size).unwrap();
    // Data just past the 4 GiB boundary (offsets that no longer fit in a u32) and near the end.
    f.write_all_at(b"beyond u32", (4 << 30) + 7).unwrap();
    f.write_all_at(&noise(256 * 1024, 7), size - (3 << 20))
        .unwrap();
    drop(f);

    // Default chunk sizes: 4 GiB of mostly holes is about 520 chunks, nearly all one zero blob.
    let mut init = init_options();
    init.chunker = ChunkerParams::default();
    let mut fx = Fixture::memory_with(&init);
    let (summary, snapshot) = fx.backup_dir(&src);
    assert_eq!(summary.stats.bytes_read, size);
    assert_eq!(summary.stats.bytes_total, size);

    let target = tmp.path().join("target");
    let _ = fx.restore_dir(&snapshot, &src, &target);
    let restored = target.join("huge.img");
    let meta = fs::metadata(&restored).unwrap();
    assert_eq!(meta.len(), size);
    assert!(
        meta.blocks() * 512 < 64 << 20,
        "restored huge file is not sparse"
    );
    assert_eq!(first_difference(&path, &restored), None, "content differs");
}

#[test]
fn devices_and_ownership_roundtrip_as_root() {
    if !is_root() {
        eprintln!("skipped: device nodes and ownership need root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("owned.txt"), b"belongs to someone else\n");
    write(&src.join("owned-dir/inner.txt"), b"x");
    std::os::unix::fs::symlink("owned.txt", src.join("owned-link")).unwrap();
    let chown = |p: &str, uid: u32, gid: u32| {
        nix::unistd::fchownat(
            None,
            &src.join(p),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
    };
    chown("owned.txt", 4321, 8765);
    chown("owned-dir", 4322, 8766);
    chown("owned-link", 4323, 8767);
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o620);
    let devices = [
        (
            "null-like",
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::makedev(1, 3),
        ),
        (
            "loop-like",
            nix::sys::stat::SFlag::S_IFBLK,
            nix::sys::stat::makedev(7, 200),
        ),
    ];
    let mut made_devices = true;
    for (name, kind, dev) in devices {
        if let Err(e) = nix::sys::stat::mknod(&src.join(name), kind, mode, dev) {
            eprintln!("note: mknod {name} failed ({e}); device nodes not checked");
            made_devices = false;
            break;
        }
    }
    set_times_post_order(&src);

    let mut fx = Fixture::memory();
    let (summary, snapshot) = fx.backup_dir(&src);
    assert!(summary.skipped.is_empty(), "{:?}", summary.skipped);
    if made_devices {
        let listing = fx.listing(&snapshot, &src);
        assert_eq!(listing[Path::new("null-like")], NodeKind::CharDevice);
        assert_eq!(listing[Path::new("loop-like")], NodeKind::BlockDevice);
    }
    let target = tmp.path().join("target");
    let restored = fx.restore_dir(&snapshot, &src, &target);
    assert!(restored.warnings.is_empty(), "{:?}", restored.warnings);
    assert_same_tree(&src, &target);
    let meta = |p: &str| fs::symlink_metadata(target.join(p)).unwrap();
    assert_eq!(
        (meta("owned.txt").uid(), meta("owned.txt").gid()),
        (4321, 8765)
    );
    assert_eq!(
        (meta("owned-dir").uid(), meta("owned-dir").gid()),
        (4322, 8766)
    );
    assert_eq!(
        (meta("owned-link").uid(), meta("owned-link").gid()),
        (4323, 8767)
    );
    if made_devices {
        assert!(meta("null-like").file_type().is_char_device());
        assert_eq!(meta("null-like").rdev(), nix::sys::stat::makedev(1, 3));
        assert!(meta("loop-like").file_type().is_block_device());
        assert_eq!(meta("loop-like").rdev(), nix::sys::stat::makedev(7, 200));
    }
}

#[test]
fn twenty_thousand_empty_files_in_one_directory_roundtrip() {
    const N: usize = 20_000;
    let tmp = fixture::memory_tempdir();
    let src = tmp.path().join("src");
    let many = src.join("many");
    fs::create_dir_all(&many).unwrap();
    for i in 0..N {
        let _ = fs::File::create(many.join(format!("f{i:05}"))).unwrap();
    }
    let mut fx = Fixture::memory();
    let (summary, snapshot) = fx.backup_dir(&src);
    assert_eq!(summary.stats.files_new, N as u64);
    assert_eq!(summary.stats.bytes_read, 0);
    let target = tmp.path().join("target");
    let restored = fx.restore_dir(&snapshot, &src, &target);
    assert_eq!(restored.files_restored, N as u64);
    let names: Vec<_> = fs::read_dir(target.join("many")).unwrap().collect();
    assert_eq!(names.len(), N);
    assert_same_tree(&src, &target);
}

#[test]
fn several_paths_share_one_snapshot_and_restore_under_their_absolute_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("a/x"), b"x");
    write(&src.join("a/inner/deep"), b"deep");
    write(&src.join("b/y"), b"y");
    write(&src.join("c/z"), b"not backed up");
    write(&src.join("single.txt"), b"a file as a backup path");
    let mut fx = Fixture::memory();
    // A path inside another backup path is covered by it and not recorded twice.
    let (summary, snapshot) = fx.backup(
        &[
            &src.join("b"),
            &src.join("single.txt"),
            &src.join("a"),
            &src.join("a/inner"),
        ],
        &repo_core::BackupOptions::default(),
    );
    assert_eq!(summary.stats.files_new, 4);
    let recorded: Vec<PathBuf> = snapshot
        .meta
        .paths
        .iter()
        .map(|p| PathBuf::from(OsStr::from_bytes(p)))
        .collect();
    assert_eq!(
        recorded,
        vec![src.join("a"), src.join("b"), src.join("single.txt")]
    );

    let target = tmp.path().join("target");
    let _ = fx
        .restore(&snapshot, &repo_core::RestoreOptions::default(), &target)
        .unwrap();
    let restored_src = target.join(src.strip_prefix("/").unwrap());
    assert_same_tree(&src.join("a"), &restored_src.join("a"));
    assert_same_tree(&src.join("b"), &restored_src.join("b"));
    assert_eq!(
        fs::read(restored_src.join("single.txt")).unwrap(),
        b"a file as a backup path"
    );
    assert!(!restored_src.join("c").exists());

    // A file path as the restore subpath restores that one file.
    let one = tmp.path().join("one");
    let _ = fx.restore_dir(&snapshot, &src.join("single.txt"), &one);
    assert_eq!(
        fs::read(one.join("single.txt")).unwrap(),
        b"a file as a backup path"
    );
}

#[test]
fn sockets_are_left_out_with_a_note() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("file"), b"x");
    let _listener = std::os::unix::net::UnixListener::bind(src.join("socket")).unwrap();
    let mut fx = Fixture::memory();
    let notes = Notes::default();
    let cancel = repo_core::CancelToken::new();
    let summary = fx
        .backup_with(
            &repo_core::OpCtx::new(&notes, &cancel),
            &[&src],
            &repo_core::BackupOptions::default(),
        )
        .unwrap();
    let snapshot = fx.snapshot(&summary.snapshot.unwrap());
    assert_eq!(
        fx.paths(&snapshot, &src),
        [PathBuf::from("file")].into_iter().collect()
    );
    let notes = notes.0.lock().unwrap();
    assert!(
        notes
            .iter()
            .any(|(p, m)| *p == src.join("socket") && m.contains("socket")),
        "{notes:?}"
    );
}

#[test]
fn unreadable_entries_are_skipped_and_counted() {
    // Root reads everything: as root, the test runs again as nobody.
    if rerun_as_nobody("unreadable_entries_are_skipped_and_counted") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("readable"), b"x");
    write(&src.join("secret"), b"y");
    write(&src.join("closed/inside"), b"z");
    set_mode(&src.join("secret"), 0o000);
    set_mode(&src.join("closed"), 0o000);
    let mut fx = Fixture::memory();
    let (summary, snapshot) = fx.backup_dir(&src);
    set_mode(&src.join("closed"), 0o755);
    let skipped: Vec<&Path> = summary.skipped.iter().map(|(p, _)| p.as_path()).collect();
    assert_eq!(
        skipped,
        vec![src.join("closed").as_path(), src.join("secret").as_path()]
    );
    assert_eq!(summary.stats.errors_skipped, 2);
    assert_eq!(snapshot.meta.summary.errors_skipped, 2);
    assert!(fx.paths(&snapshot, &src).contains(Path::new("readable")));
}
