//! Shared fixtures of repo-core's integration tests: repositories with cheap parameters on the
//! memory and local backends, snapshot helpers, source-tree builders, and a comparison of two
//! directory trees by content and metadata. The tmpfs and `is_root` come from repo-testkit.
//!
//! Each harness includes this file with `#[path = "support/fixture.rs"] mod fixture;`, so a
//! helper that one harness does not use is not dead code for the others.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::{self, File};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use repo_core::{
    Backend, BackupOptions, BackupSummary, CheckOptions, CheckReport, ChunkerParams, Indexed,
    InitOptions, KdfParams, LocalBackend, MemoryBackend, NodeKind, OpCtx, OpenOptions, Repository,
    RestoreOptions, RestoreSummary, Secret, Snapshot, SnapshotId,
};
// Each harness includes this file; not every one uses `is_root`.
#[allow(unused_imports)]
pub use repo_testkit::is_root;

/// The password of every test repository.
pub const PASSWORD: &str = "correct horse battery staple";

/// Small chunks, so a few KiB of content already spans several chunks.
pub fn small_chunks() -> ChunkerParams {
    ChunkerParams {
        min: 256,
        avg: 1024,
        max: 4096,
    }
}

/// Init options for tests: a fast KDF, small chunks and the smallest pack size.
pub fn init_options() -> InitOptions {
    let mut opts = InitOptions::default();
    opts.kdf = KdfParams::insecure_fast();
    opts.chunker = small_chunks();
    opts.pack_size = 1024 * 1024;
    opts
}

/// The secret of every test repository.
pub fn secret() -> Secret {
    Secret::password(PASSWORD)
}

/// A silent, never-cancelled context.
pub fn ctx() -> OpCtx<'static> {
    OpCtx::default()
}

/// The environment variable that marks a test process re-run by [`rerun_as_nobody`].
const AS_NOBODY_ENV: &str = "CAIRN_TEST_AS_NOBODY";

/// Makes a test about permissions work as root (who reads every file whatever its mode). As
/// root, runs the test `name` of this harness again in a child process as the unprivileged
/// user nobody (uid and gid 65534, no groups, through `setpriv`), asserts that exactly that
/// one test ran there and passed, and returns `true`: the caller then returns. In that child,
/// or when not root, returns `false`: the caller runs its body. The harness binary is copied
/// to a directory nobody can reach first (the build directory may be out of reach).
pub fn rerun_as_nobody(name: &str) -> bool {
    if !is_root() || std::env::var_os(AS_NOBODY_ENV).is_some() {
        return false;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("harness");
    fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        .args(["--exact", name, "--test-threads=1", "--nocapture"])
        .env(AS_NOBODY_ENV, "1")
        .env("TMPDIR", "/tmp")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run setpriv");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name} as nobody: {}\n{stdout}\n{stderr}",
        out.status
    );
    true
}

/// A repository with its backend, kept indexed: every backup through [`Fixture::backup`]
/// reloads the index, so the next operation sees what it wrote.
pub struct Fixture {
    /// The backend the repository lives on.
    pub backend: Arc<dyn Backend>,
    /// The same storage when it is in memory (for tests that alter stored bytes).
    pub memory: Option<MemoryBackend>,
    repo: Option<Repository<Indexed>>,
}

impl Fixture {
    /// A new repository in memory with [`init_options`].
    pub fn memory() -> Self {
        Self::memory_with(&init_options())
    }

    /// A new repository in memory.
    pub fn memory_with(opts: &InitOptions) -> Self {
        let memory = MemoryBackend::new();
        let backend: Arc<dyn Backend> = Arc::new(memory.clone());
        Self::init(backend, Some(memory), opts)
    }

    /// A new repository in the local directory `root` (created) with [`init_options`].
    pub fn local(root: &Path) -> Self {
        let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(root));
        Self::init(backend, None, &init_options())
    }

    fn init(backend: Arc<dyn Backend>, memory: Option<MemoryBackend>, opts: &InitOptions) -> Self {
        let repo = Repository::init(Arc::clone(&backend), &secret(), opts)
            .expect("init repository")
            .into_indexed(&ctx())
            .expect("load empty index");
        Self {
            backend,
            memory,
            repo: Some(repo),
        }
    }

    /// The repository.
    pub fn repo(&self) -> &Repository<Indexed> {
        self.repo.as_ref().expect("repository present")
    }

    /// Reloads the index (after objects were added or removed behind the repository's back).
    pub fn reload(&mut self) {
        let repo = self.repo.take().expect("repository present");
        self.repo = Some(repo.reload_index(&ctx()).expect("reload index"));
    }

    /// Opens the repository afresh from its backend.
    pub fn open(&self, secret: &Secret) -> repo_core::Result<Repository<Indexed>> {
        Repository::open(Arc::clone(&self.backend), secret, &OpenOptions::default())?
            .into_indexed(&ctx())
    }

    /// Backs up `paths`, then reloads the index whatever the outcome.
    pub fn backup_with(
        &mut self,
        ctx: &OpCtx<'_>,
        paths: &[&Path],
        opts: &BackupOptions,
    ) -> repo_core::Result<BackupSummary> {
        let paths: Vec<PathBuf> = paths.iter().map(|p| p.to_path_buf()).collect();
        let result = self.repo().backup(ctx, &paths, opts);
        self.reload();
        result
    }

    /// Backs up `paths` with `opts`; panics on failure. Returns the summary and the snapshot.
    pub fn backup(&mut self, paths: &[&Path], opts: &BackupOptions) -> (BackupSummary, Snapshot) {
        let summary = self
            .backup_with(&ctx(), paths, opts)
            .unwrap_or_else(|e| panic!("backup of {paths:?} failed: {e}"));
        let id = summary.snapshot.expect("a snapshot was written");
        (summary, self.snapshot(&id))
    }

    /// Backs up one directory with default options.
    pub fn backup_dir(&mut self, src: &Path) -> (BackupSummary, Snapshot) {
        self.backup(&[src], &BackupOptions::default())
    }

    /// Loads a snapshot.
    pub fn snapshot(&self, id: &SnapshotId) -> Snapshot {
        self.repo().load_snapshot(id).expect("load snapshot")
    }

    /// Plans and runs a restore.
    pub fn restore(
        &self,
        snapshot: &Snapshot,
        opts: &RestoreOptions,
        target: &Path,
    ) -> repo_core::Result<RestoreSummary> {
        let plan = self.repo().plan_restore(&ctx(), snapshot, opts)?;
        self.repo().restore(&ctx(), &plan, target)
    }

    /// Restores the directory `subpath` of a snapshot into `target`; panics on failure.
    pub fn restore_dir(
        &self,
        snapshot: &Snapshot,
        subpath: &Path,
        target: &Path,
    ) -> RestoreSummary {
        let mut opts = RestoreOptions::default();
        opts.subpath = Some(subpath.to_path_buf());
        self.restore(snapshot, &opts, target)
            .unwrap_or_else(|e| panic!("restore of {} failed: {e}", subpath.display()))
    }

    /// Runs `check`; panics when it cannot run.
    pub fn check(&self, read_data: bool) -> CheckReport {
        let mut opts = CheckOptions::default();
        opts.read_data = read_data;
        self.repo().check(&ctx(), &opts).expect("check runs")
    }

    /// Every path in a snapshot below `base` (relative to it), with its node kind.
    pub fn listing(&self, snapshot: &Snapshot, base: &Path) -> BTreeMap<PathBuf, NodeKind> {
        let mut out = BTreeMap::new();
        self.repo()
            .walk_tree(&snapshot.meta.tree, Path::new("/"), &mut |e| {
                if let Ok(rel) = e.path.strip_prefix(base) {
                    if !rel.as_os_str().is_empty() {
                        let _ = out.insert(rel.to_path_buf(), e.node.kind);
                    }
                }
                Ok(true)
            })
            .expect("walk snapshot");
        out
    }

    /// The paths of [`Fixture::listing`] as a set.
    pub fn paths(&self, snapshot: &Snapshot, base: &Path) -> BTreeSet<PathBuf> {
        self.listing(snapshot, base).into_keys().collect()
    }
}

/// A temporary directory in memory (`/dev/shm`) when there is one: creating and deleting tens
/// of thousands of inodes there costs a fraction of what it costs on a disk file system.
pub fn memory_tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("create a temporary directory")
}

/// Deterministic pseudo-random bytes (BLAKE3 in XOF mode), different for each seed.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Writes a file, creating its parent directories.
pub fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent directories");
    }
    fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Sets access and modification time of `path` (not following symlinks), to the nanosecond.
pub fn set_mtime(path: &Path, secs: i64, nanos: i64) {
    let ts = nix::sys::time::TimeSpec::new(secs, nanos);
    nix::sys::stat::utimensat(
        None,
        path,
        &ts,
        &ts,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap_or_else(|e| panic!("set times of {}: {e}", path.display()));
}

/// Sets a mode with `chmod`.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Every entry below `root` (relative paths), depth first, not following symlinks.
pub fn entries(root: &Path) -> BTreeMap<PathBuf, fs::Metadata> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let rd = fs::read_dir(&dir).unwrap_or_else(|e| panic!("list {}: {e}", dir.display()));
        for entry in rd {
            let entry = entry.expect("directory entry");
            let child = rel.join(entry.file_name());
            let meta = fs::symlink_metadata(root.join(&child)).expect("lstat");
            if meta.is_dir() {
                stack.push(child.clone());
            }
            let _ = out.insert(child, meta);
        }
    }
    out
}

fn kind(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_file() {
        "file"
    } else if t.is_dir() {
        "dir"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_char_device() {
        "chardev"
    } else if t.is_block_device() {
        "blockdev"
    } else {
        "socket"
    }
}

fn xattrs(path: &Path) -> BTreeMap<OsString, Vec<u8>> {
    let Ok(names) = xattr::list(path) else {
        return BTreeMap::new();
    };
    names
        .filter_map(|n| {
            let value = xattr::get(path, &n).ok().flatten()?;
            Some((n, value))
        })
        .collect()
}

/// Byte ranges of a file that may hold data; the rest are holes, which read as zeros.
fn data_extents(f: &File, len: u64) -> Vec<(u64, u64)> {
    use nix::unistd::{lseek, Whence};
    use std::os::fd::AsRawFd;
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        let start = match lseek(f.as_raw_fd(), pos as i64, Whence::SeekData) {
            Ok(s) => s as u64,
            Err(nix::errno::Errno::ENXIO) => break,
            // No SEEK_DATA support: treat everything as data.
            Err(_) => return vec![(0, len)],
        };
        let end = lseek(f.as_raw_fd(), start as i64, Whence::SeekHole).map_or(len, |e| e as u64);
        out.push((start, end.min(len)));
        pos = end.max(start + 1);
    }
    out
}

/// Sorted, merged union of two sets of ranges.
fn union(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The offset of the first differing byte of two files, or `None` when they are equal.
///
/// Only ranges where either file holds data are read: holes in both read as zeros in both, so
/// a sparse file of gigabytes compares in milliseconds.
pub fn first_difference(a: &Path, b: &Path) -> Option<u64> {
    let fa = File::open(a).unwrap_or_else(|e| panic!("open {}: {e}", a.display()));
    let fb = File::open(b).unwrap_or_else(|e| panic!("open {}: {e}", b.display()));
    let la = fa.metadata().expect("stat").len();
    let lb = fb.metadata().expect("stat").len();
    let common = la.min(lb);
    let mut ranges = data_extents(&fa, common);
    ranges.extend(data_extents(&fb, common));
    const BLOCK: u64 = 1 << 20;
    let mut ba = vec![0u8; BLOCK.min(common) as usize];
    let mut bb = ba.clone();
    for (start, end) in union(ranges) {
        let mut pos = start;
        while pos < end.min(common) {
            let n = (end.min(common) - pos).min(BLOCK) as usize;
            fa.read_exact_at(&mut ba[..n], pos).expect("read");
            fb.read_exact_at(&mut bb[..n], pos).expect("read");
            if ba[..n] != bb[..n] {
                let at = ba[..n].iter().zip(&bb[..n]).position(|(x, y)| x != y);
                return Some(pos + at.unwrap_or(0) as u64);
            }
            pos += n as u64;
        }
    }
    (la != lb).then_some(common)
}

/// Hard-link groups below a root: sets of relative paths sharing an inode (only groups of 2+).
fn link_groups(all: &BTreeMap<PathBuf, fs::Metadata>) -> BTreeSet<BTreeSet<PathBuf>> {
    let mut by_inode: BTreeMap<(u64, u64), BTreeSet<PathBuf>> = BTreeMap::new();
    for (path, meta) in all {
        if meta.is_file() && meta.nlink() > 1 {
            let _ = by_inode
                .entry((meta.dev(), meta.ino()))
                .or_default()
                .insert(path.clone());
        }
    }
    by_inode.into_values().filter(|g| g.len() > 1).collect()
}

/// Every difference between the trees below `src` and `dst` (the roots themselves are not
/// compared): entry sets, kinds, modes, owners (as root), mtimes to the nanosecond, sizes and
/// contents, symlink targets, device numbers, extended attributes and hard-link groups.
pub fn tree_differences(src: &Path, dst: &Path) -> Vec<String> {
    let a = entries(src);
    let b = entries(dst);
    let mut out = Vec::new();
    for p in a.keys().filter(|p| !b.contains_key(*p)) {
        out.push(format!("{}: missing from the restore", p.display()));
    }
    for p in b.keys().filter(|p| !a.contains_key(*p)) {
        out.push(format!("{}: not in the source", p.display()));
    }
    for (rel, ma) in &a {
        let Some(mb) = b.get(rel) else { continue };
        let (pa, pb) = (src.join(rel), dst.join(rel));
        let mut diff = |what: &str, x: String, y: String| {
            if x != y {
                out.push(format!("{}: {what} {x} != {y}", rel.display()));
            }
        };
        diff("kind", kind(ma).into(), kind(mb).into());
        if kind(ma) != kind(mb) {
            continue;
        }
        if !ma.file_type().is_symlink() {
            diff(
                "mode",
                format!("{:o}", ma.mode() & 0o7777),
                format!("{:o}", mb.mode() & 0o7777),
            );
        }
        if is_root() {
            diff(
                "owner",
                format!("{}:{}", ma.uid(), ma.gid()),
                format!("{}:{}", mb.uid(), mb.gid()),
            );
        }
        diff(
            "mtime",
            format!("{}.{:09}", ma.mtime(), ma.mtime_nsec()),
            format!("{}.{:09}", mb.mtime(), mb.mtime_nsec()),
        );
        diff(
            "xattrs",
            format!("{:?}", xattrs(&pa)),
            format!("{:?}", xattrs(&pb)),
        );
        let t = ma.file_type();
        if t.is_file() {
            diff("size", ma.len().to_string(), mb.len().to_string());
            if ma.len() == mb.len() {
                if let Some(at) = first_difference(&pa, &pb) {
                    out.push(format!("{}: content differs at byte {at}", rel.display()));
                }
            }
        } else if t.is_symlink() {
            diff(
                "symlink target",
                format!("{:?}", fs::read_link(&pa).expect("readlink")),
                format!("{:?}", fs::read_link(&pb).expect("readlink")),
            );
        } else if t.is_char_device() || t.is_block_device() {
            diff("rdev", ma.rdev().to_string(), mb.rdev().to_string());
        }
    }
    let (ga, gb) = (link_groups(&a), link_groups(&b));
    if ga != gb {
        out.push(format!("hard-link groups differ: {ga:?} != {gb:?}"));
    }
    out
}

/// Panics with every difference when the trees below `src` and `dst` differ.
pub fn assert_same_tree(src: &Path, dst: &Path) {
    let diffs = tree_differences(src, dst);
    assert!(
        diffs.is_empty(),
        "restored tree {} differs from {}:\n  {}",
        dst.display(),
        src.display(),
        diffs.join("\n  ")
    );
}
