//! Restore: plan (which entries, which blobs from which packs), then execute.
//!
//! Execution order: directories (pre-order) → file contents, pack by pack in parallel, each
//! needed pack range read once → hard links, special files, symlinks → file metadata →
//! directory metadata deepest first. Symlinks are created last, so no write ever goes through
//! a symlink the restore made; files are opened with `O_NOFOLLOW` and existing entries are
//! checked with `lstat`, so symlinks already in the target are never followed either. Names come
//! from validated trees (no empty, `.`, `..`, `/` or NUL), so every path stays inside the target.
//!
//! Failure (a full file system, a damaged pack, cancellation): files are created at full length
//! and filled in place, so a file cut off halfway would look finished. Each file counts the
//! blobs still to write, and when the content step fails, every file not completely written is
//! removed before the error returns (one being replaced too: it was already truncated). Files
//! already complete stay, owner-only and without their metadata, and the next run of the same
//! restore (`Overwrite::Always`, the default, or `IfChanged`: their times do not match yet)
//! rewrites them and completes the rest. A crash (no chance to clean up) can still leave
//! incomplete files, owner-only and with the wrong times, which such a run also replaces.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use rayon::prelude::*;
use serde::Serialize;

use crate::backend::FileType;
use crate::error::{CorruptionKind, Error, ErrorKind, Result};
use crate::format::envelope;
use crate::format::tree::{Node, NodeKind, Xattr};
use crate::format::BlobType;
use crate::id::{BlobId, PackId, SnapshotId};
use crate::lock::LockMode;
use crate::longpath::{LongPaths, Resolved};
use crate::progress::{OpCtx, Phase, ProgressEvent};
use crate::repository::{Indexed, Repository, Snapshot};

/// What to do when a file to restore already exists in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum Overwrite {
    /// Replace it.
    #[default]
    Always,
    /// Replace it unless its size and modification time already match the snapshot.
    IfChanged,
    /// Keep it as it is, content and metadata (existing directories are merged into).
    Never,
}

/// Options of [`Repository::plan_restore`] and [`Repository::restore`].
#[non_exhaustive]
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Path inside the snapshot to restore (default: all of it).
    pub subpath: Option<PathBuf>,
    /// Restore only entries matching one of these globs (paths inside the snapshot).
    pub includes: Vec<String>,
    /// Leave out entries matching these globs.
    pub excludes: Vec<String>,
    /// Existing-file policy.
    pub overwrite: Overwrite,
    /// Re-read restored files and check them against the snapshot.
    pub verify: bool,
    /// How long to wait for a conflicting lock.
    pub lock_wait: std::time::Duration,
}

/// One entry of a restore plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedEntry {
    /// Path relative to the target.
    #[serde(serialize_with = "ser_path")]
    pub path: PathBuf,
    /// Entry kind.
    pub kind: &'static str,
    /// Bytes of content.
    pub size: u64,
    /// For a hard link: the earlier entry it links to.
    #[serde(serialize_with = "ser_opt_path")]
    pub link_to: Option<PathBuf>,
    #[serde(skip)]
    node: EntryMeta,
}

/// What restoring an entry needs of its tree node. The plan holds one per entry of the
/// snapshot, so it is a compact copy: no name (the path has it), no owner names (owners are
/// restored by number), boxed slices instead of vectors.
#[derive(Debug, Clone)]
struct EntryMeta {
    kind: NodeKind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i64,
    atime_ns: i64,
    size: u64,
    rdev: u64,
    /// `(device, inode)` of a file with other hard links, which groups its names.
    link_key: Option<(u64, u64)>,
    content: Box<[BlobId]>,
    symlink_target: Box<[u8]>,
    xattrs: Box<[Xattr]>,
}

impl From<Node> for EntryMeta {
    fn from(n: Node) -> Self {
        Self {
            kind: n.kind,
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            mtime_ns: n.mtime_ns,
            atime_ns: n.atime_ns,
            size: n.size,
            rdev: n.rdev,
            link_key: (n.kind == NodeKind::File && n.links > 1).then_some((n.device, n.inode)),
            content: n.content.into_boxed_slice(),
            symlink_target: n.symlink_target.into_boxed_slice(),
            xattrs: n.xattrs.into_boxed_slice(),
        }
    }
}

fn ser_path<S: serde::Serializer>(p: &Path, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

fn ser_opt_path<S: serde::Serializer>(
    p: &Option<PathBuf>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_str(&p.to_string_lossy()),
        None => s.serialize_none(),
    }
}

/// What a restore will do. Serializable, so a dry run prints it.
#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    /// The snapshot restored.
    pub snapshot: SnapshotId,
    /// Entries in pre-order.
    pub entries: Vec<PlannedEntry>,
    /// Regular files (hard links included).
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Other entries.
    pub others: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Packs to read.
    pub packs: usize,
    #[serde(skip)]
    opts: RestoreOptions,
}

/// What a restore did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreSummary {
    /// Files written.
    pub files_restored: u64,
    /// Files left alone by the overwrite policy.
    pub files_skipped: u64,
    /// Directories.
    pub dirs: u64,
    /// Other entries.
    pub others: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Files whose verification found a difference (empty unless `verify`).
    pub verify_failures: Vec<String>,
    /// Entries whose metadata could not be fully restored, with the reason.
    pub warnings: Vec<String>,
    /// Files verified.
    pub files_verified: u64,
}

fn globset(patterns: &[String]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let t = p.trim_end_matches('/');
        let pat = if t.starts_with('/') {
            t.to_string()
        } else {
            format!("**/{t}")
        };
        let _ = b.add(
            GlobBuilder::new(&pat)
                .literal_separator(true)
                .build()
                .map_err(|e| Error::invalid(format!("invalid pattern {p:?}: {e}")))?,
        );
    }
    b.build()
        .map_err(|e| Error::invalid(format!("invalid patterns: {e}")))
}

impl Repository<Indexed> {
    /// Plans restoring `snapshot` (or its `subpath`), applying include and exclude filters.
    pub fn plan_restore(
        &self,
        ctx: &OpCtx<'_>,
        snapshot: &Snapshot,
        opts: &RestoreOptions,
    ) -> Result<RestorePlan> {
        let includes = globset(&opts.includes)?;
        let excludes = globset(&opts.excludes)?;
        let sub = opts.subpath.clone().unwrap_or_else(|| PathBuf::from("/"));
        let start = self.node_at(&snapshot.meta.tree, &sub)?;
        let mut entries: Vec<PlannedEntry> = Vec::new();
        let mut push = |path: PathBuf, node: Node| {
            entries.push(PlannedEntry {
                path,
                kind: node.kind.as_str(),
                size: node.size,
                link_to: None,
                node: EntryMeta::from(node),
            });
        };
        // Paths inside the snapshot are `sub/...`; paths in the target drop the `sub` prefix.
        let mut included_dirs: Vec<bool> = Vec::new();
        if start.kind == NodeKind::Dir {
            let subtree = start
                .subtree
                .ok_or_else(|| Error::internal("directory without subtree"))?;
            let mut depth_included: Vec<bool> = vec![opts.includes.is_empty()];
            self.walk_tree(&subtree, &sub, &mut |e| {
                ctx.cancel.check()?;
                if excludes.is_match(&e.path) {
                    return Ok(false);
                }
                depth_included.truncate(e.depth);
                let inherited = depth_included.last().copied().unwrap_or(true);
                let included = inherited || includes.is_match(&e.path);
                let rel = e
                    .path
                    .strip_prefix(&sub)
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|_| e.path.clone());
                if e.node.kind == NodeKind::Dir {
                    depth_included.push(included);
                    included_dirs.push(included);
                    push(rel, e.node.clone());
                    return Ok(true);
                }
                if included {
                    push(rel, e.node.clone());
                }
                Ok(false)
            })?;
            // Drop directories that neither matched nor hold anything that did.
            if !opts.includes.is_empty() {
                let mut keep = vec![false; entries.len()];
                let mut dir_idx = 0;
                for (i, e) in entries.iter().enumerate() {
                    if e.node.kind == NodeKind::Dir {
                        keep[i] = included_dirs[dir_idx];
                        dir_idx += 1;
                    } else {
                        keep[i] = true;
                    }
                }
                for i in (0..entries.len()).rev() {
                    if keep[i] {
                        let mut p = entries[i].path.parent().map(Path::to_path_buf);
                        let mut j = i;
                        while let Some(parent) = p {
                            while j > 0 && entries[j].path != parent {
                                j -= 1;
                            }
                            if entries[j].path == parent {
                                keep[j] = true;
                            }
                            p = parent.parent().map(Path::to_path_buf);
                        }
                    }
                }
                let mut it = keep.into_iter();
                entries.retain(|_| it.next().unwrap_or(false));
            }
        } else {
            let name = std::ffi::OsStr::from_bytes(&start.name).to_owned();
            push(PathBuf::from(name), start.clone());
        }
        // Hard links: later members of a (device, inode) group link to the first.
        let mut first_of: HashMap<(u64, u64), PathBuf> = HashMap::new();
        for e in &mut entries {
            if let Some(key) = e.node.link_key {
                match first_of.get(&key) {
                    Some(first) => e.link_to = Some(first.clone()),
                    None => {
                        let _ = first_of.insert(key, e.path.clone());
                    }
                }
            }
        }
        let mut plan = RestorePlan {
            snapshot: snapshot.id,
            entries,
            files: 0,
            dirs: 0,
            others: 0,
            bytes: 0,
            packs: 0,
            opts: opts.clone(),
        };
        let mut packs = std::collections::HashSet::new();
        for e in &plan.entries {
            match e.node.kind {
                NodeKind::File => {
                    plan.files += 1;
                    if e.link_to.is_none() {
                        plan.bytes += e.node.size;
                        let mut content_len = 0u64;
                        for id in &e.node.content {
                            let loc = self.index().lookup(BlobType::Data, id).ok_or_else(|| {
                                Error::new(
                                    ErrorKind::NotFound,
                                    format!(
                                        "{}: data blob {id} is not in the index",
                                        e.path.display()
                                    ),
                                )
                            })?;
                            let _ = packs.insert(loc.pack);
                            content_len += u64::from(loc.raw_len);
                        }
                        // A size that disagrees with the content (a damaged or hostile tree)
                        // would make a huge sparse file, or writes past the file's end.
                        if content_len != e.node.size {
                            return Err(Error::corrupt(
                                CorruptionKind::BadEncoding,
                                format_args!("snapshot {}: file {}", snapshot.id, e.path.display()),
                                format_args!(
                                    "size {} but its content holds {content_len} bytes",
                                    e.node.size
                                ),
                            ));
                        }
                    }
                }
                NodeKind::Dir => plan.dirs += 1,
                _ => plan.others += 1,
            }
        }
        plan.packs = packs.len();
        plan.entries.shrink_to_fit();
        Ok(plan)
    }

    /// Restores a planned snapshot into `target` (created if missing). Takes a shared lock.
    ///
    /// On error no file that was only partly written is left behind (see the module docs);
    /// [`Error::is_storage_full`] tells a full target file system from other failures.
    pub fn restore(
        &self,
        ctx: &OpCtx<'_>,
        plan: &RestorePlan,
        target: &Path,
    ) -> Result<RestoreSummary> {
        let _lock = self.lock(LockMode::Shared, "restore", plan.opts.lock_wait)?;
        let r = Restorer {
            repo: self,
            ctx,
            plan,
            target,
            summary: Mutex::new(RestoreSummary::default()),
            written: AtomicU64::new(0),
            long: LongPaths::default(),
        };
        r.run()?;
        let mut s = r
            .summary
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.bytes_written = r.written.load(Ordering::Relaxed);
        Ok(s)
    }
}

struct Restorer<'a, 'c> {
    repo: &'a Repository<Indexed>,
    ctx: &'a OpCtx<'c>,
    plan: &'a RestorePlan,
    target: &'a Path,
    summary: Mutex<RestoreSummary>,
    written: AtomicU64,
    /// Directories that paths too long for one system call are resolved through.
    long: LongPaths,
}

/// A restore reads at most this many bytes of a pack in one request (more if one blob is
/// larger). Measured on a 1 GiB tree of 82k files: 4 MiB runs instead of whole 16 MiB packs cut
/// the restore's peak RSS from 167 to 133 MiB and made it faster, as both workers stay busy.
const MAX_READ_RUN: u32 = 4 << 20;

/// A blob to write at `offset` of file `file` (an index into the plan's entries), which is
/// `slot` in the list of files being written.
#[derive(Clone, Copy)]
struct Placement {
    file: usize,
    slot: usize,
    offset: u64,
}

struct NeededBlob {
    id: BlobId,
    offset: u32,
    stored_len: u32,
    raw_len: u32,
    places: Vec<Placement>,
}

/// What became of one regular file in the creation step of a restore.
enum FileOutcome {
    /// Created empty at its full length, to be filled.
    Created,
    /// Left as it was by the overwrite policy.
    Kept,
    /// Failed; `created` when a file was made anyway (it must be removed). Boxed: one
    /// outcome per file is held at once, and a million files should cost 16 MB, not 60.
    Failed { created: bool, error: Box<Error> },
}
const _: () = assert!(std::mem::size_of::<FileOutcome>() <= 16);

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn to_timespec(ns: i64) -> nix::sys::time::TimeSpec {
    nix::sys::time::TimeSpec::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
}

impl Restorer<'_, '_> {
    /// The path of `rel` inside the target, in a form system calls accept however deep it is.
    fn at(&self, rel: &Path) -> Result<Resolved> {
        let path = self.target.join(rel);
        self.long
            .resolve(&path)
            .map_err(|e| Error::io(format!("open directories above {}", path.display()), e))
    }

    fn warn(&self, msg: String) {
        self.summary
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .warnings
            .push(msg);
    }

    fn run(&self) -> Result<()> {
        let io = |what: &str, p: &Path, e: std::io::Error| {
            Error::io(format!("{what} {}", p.display()), e)
        };
        match fs::symlink_metadata(self.target) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::invalid(format!(
                    "restore target {} exists and is not a directory",
                    self.target.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(self.target).map_err(|e| io("create", self.target, e))?;
            }
            Err(e) => return Err(io("stat", self.target, e)),
        }
        let total_bytes = self.plan.bytes;
        self.ctx.progress.event(&ProgressEvent::PhaseStarted {
            phase: Phase::Restore,
            total_items: Some(self.plan.files + self.plan.dirs + self.plan.others),
            total_bytes: Some(total_bytes),
        });
        // 1. Directories, parents first. A skipped directory skips its subtree.
        let mut blocked: Vec<PathBuf> = Vec::new();
        let under_blocked =
            |p: &Path, blocked: &[PathBuf]| blocked.iter().any(|b| p.starts_with(b));
        for e in &self.plan.entries {
            if e.node.kind != NodeKind::Dir || under_blocked(&e.path, &blocked) {
                continue;
            }
            self.ctx.cancel.check()?;
            let path = self.at(&e.path)?;
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                // A file or symlink where the snapshot has a directory never matches it, so
                // if-changed replaces it like always does.
                Ok(_) if self.plan.opts.overwrite != Overwrite::Never => {
                    fs::remove_file(&path).map_err(|err| io("replace", &path, err))?;
                    fs::create_dir(&path).map_err(|err| io("create directory", &path, err))?;
                }
                Ok(_) => {
                    self.warn(format!(
                        "{}: exists and is not a directory; left alone with its contents",
                        path.display()
                    ));
                    blocked.push(e.path.clone());
                    continue;
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    fs::create_dir(&path).map_err(|err| io("create directory", &path, err))?;
                }
                Err(err) => return Err(io("stat", &path, err)),
            }
            // Owner-only until the metadata pass, so nobody reads half-restored contents.
            let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o700));
            self.summary
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .dirs += 1;
        }
        // 2. Regular files: create (sparse, at full length), then fill pack by pack.
        let never = self.plan.opts.overwrite == Overwrite::Never;
        // Existing entries kept by `Overwrite::Never`: neither replaced nor given the
        // snapshot's metadata.
        let mut left_alone: HashSet<usize> = HashSet::new();
        // Files that hold the snapshot's content after this step, so later names can link to
        // them. A hard link whose first name is not among them (left alone, or below a
        // directory left alone) gets its own copy instead: a link would join an unrelated
        // file, or reach through a symlink in the target.
        let mut linkable: HashSet<&Path> = HashSet::new();
        let mut own_copy: HashSet<usize> = HashSet::new();
        let mut files: Vec<usize> = Vec::new();
        // Files under their first (or only) name are independent of each other: they are
        // created in parallel, a few system calls each for tens of thousands of small files.
        // Further names of a hard link come after, in order, as they depend on the first.
        let first_names: Vec<usize> = (self.plan.entries.iter().enumerate())
            .filter(|(_, e)| {
                e.node.kind == NodeKind::File
                    && e.link_to.is_none()
                    && !under_blocked(&e.path, &blocked)
            })
            .map(|(i, _)| i)
            .collect();
        let outcomes: Vec<FileOutcome> = first_names
            .par_iter()
            .map(|&i| self.create_file(i))
            .collect();
        let mut failure = None;
        for (&i, outcome) in first_names.iter().zip(outcomes) {
            if self.record(i, outcome, &mut files, &mut left_alone, &mut failure) {
                let _ = linkable.insert(self.plan.entries[i].path.as_path());
            }
        }
        // Further names whose first name was not restored here get their own copy.
        let own: Vec<usize> = (self.plan.entries.iter().enumerate())
            .filter(|(_, e)| {
                e.node.kind == NodeKind::File
                    && e.link_to
                        .as_ref()
                        .is_some_and(|first| !linkable.contains(first.as_path()))
                    && !under_blocked(&e.path, &blocked)
            })
            .map(|(i, _)| i)
            .collect();
        for i in own {
            if failure.is_some() {
                break;
            }
            let _ = own_copy.insert(i);
            let outcome = self.create_file(i);
            let _ = self.record(i, outcome, &mut files, &mut left_alone, &mut failure);
        }
        if let Some(error) = failure {
            // The files made so far hold no content yet: only empty ones are complete, the
            // others are removed.
            self.remove_incomplete(&files, |fi| self.plan.entries[fi].node.content.is_empty());
            return Err(error);
        }
        self.write_contents(&files)?;
        // 3. Hard links, special files and symlinks (symlinks last of all).
        for (i, e) in self.plan.entries.iter().enumerate() {
            if under_blocked(&e.path, &blocked) || own_copy.contains(&i) {
                continue;
            }
            let path = self.at(&e.path)?;
            let special = match e.node.kind {
                NodeKind::File => e.link_to.is_some(),
                NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => true,
                _ => false,
            };
            if special && never && fs::symlink_metadata(&path).is_ok() {
                let _ = left_alone.insert(i);
                if e.node.kind == NodeKind::File {
                    self.summary
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .files_skipped += 1;
                }
                continue;
            }
            let made = match (&e.node.kind, &e.link_to) {
                (NodeKind::File, Some(first)) => {
                    self.clear_for_special(&path)?;
                    fs::hard_link(self.at(first)?, &path)
                        .map(|()| true)
                        .map_err(|err| io("link", &path, err))?
                }
                (NodeKind::Fifo, _) => {
                    self.clear_for_special(&path)?;
                    nix::unistd::mkfifo(&*path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                        .map_err(|err| {
                            Error::io(format!("mkfifo {}", path.display()), err.into())
                        })?;
                    true
                }
                (NodeKind::CharDevice | NodeKind::BlockDevice, _) => {
                    if is_root() {
                        self.clear_for_special(&path)?;
                        let kind = if e.node.kind == NodeKind::CharDevice {
                            nix::sys::stat::SFlag::S_IFCHR
                        } else {
                            nix::sys::stat::SFlag::S_IFBLK
                        };
                        nix::sys::stat::mknod(
                            &*path,
                            kind,
                            nix::sys::stat::Mode::from_bits_truncate(0o600),
                            e.node.rdev,
                        )
                        .map_err(|err| {
                            Error::io(format!("mknod {}", path.display()), err.into())
                        })?;
                        true
                    } else {
                        self.warn(format!(
                            "{}: device node not restored (needs root)",
                            path.display()
                        ));
                        false
                    }
                }
                _ => false,
            };
            if made {
                self.summary
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .others += u64::from(e.node.kind != NodeKind::File);
                if e.node.kind == NodeKind::File {
                    self.summary
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .files_restored += 1;
                }
            }
        }
        for (i, e) in self.plan.entries.iter().enumerate() {
            if e.node.kind != NodeKind::Symlink || under_blocked(&e.path, &blocked) {
                continue;
            }
            let path = self.at(&e.path)?;
            if never && fs::symlink_metadata(&path).is_ok() {
                let _ = left_alone.insert(i);
                continue;
            }
            self.clear_for_special(&path)?;
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&e.node.symlink_target), &path)
                .map_err(|err| io("symlink", &path, err))?;
            self.summary
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .others += 1;
        }
        // 4. Metadata: files and others, then directories deepest first.
        // An entry counts as done for progress once its metadata is set.
        let done = || {
            self.ctx.progress.event(&ProgressEvent::Advanced {
                phase: Phase::Restore,
                items: 1,
                bytes: 0,
            });
        };
        // Entries other than directories are independent: in parallel.
        (0..self.plan.entries.len()).into_par_iter().for_each(|i| {
            let e = &self.plan.entries[i];
            if e.node.kind != NodeKind::Dir && !under_blocked(&e.path, &blocked) {
                if (e.link_to.is_none() || own_copy.contains(&i)) && !left_alone.contains(&i) {
                    self.set_metadata(&e.path, &e.node);
                }
                done();
            }
        });
        for e in self.plan.entries.iter().rev() {
            if e.node.kind == NodeKind::Dir && !under_blocked(&e.path, &blocked) {
                self.set_metadata(&e.path, &e.node);
                done();
            }
        }
        self.ctx.progress.event(&ProgressEvent::PhaseFinished {
            phase: Phase::Restore,
        });
        if self.plan.opts.verify {
            self.verify(&files)?;
        }
        Ok(())
    }

    /// Books the outcome of [`Self::create_file`] for entry `i`. Returns true when the entry
    /// now holds the snapshot's content (or will), so further names may link to it.
    fn record(
        &self,
        i: usize,
        outcome: FileOutcome,
        files: &mut Vec<usize>,
        left_alone: &mut HashSet<usize>,
        failure: &mut Option<Error>,
    ) -> bool {
        match outcome {
            FileOutcome::Created => {
                files.push(i);
                true
            }
            FileOutcome::Kept => {
                self.summary
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .files_skipped += 1;
                if self.plan.opts.overwrite == Overwrite::Never {
                    let _ = left_alone.insert(i);
                    false
                } else {
                    // Kept by if-changed: taken to match the snapshot.
                    true
                }
            }
            FileOutcome::Failed { created, error } => {
                if created {
                    files.push(i);
                }
                let _ = failure.get_or_insert(*error);
                false
            }
        }
    }

    /// Makes the regular file of entry `i` empty at its full length (sparse until filled), or
    /// keeps what is there when the overwrite policy says so.
    fn create_file(&self, i: usize) -> FileOutcome {
        let e = &self.plan.entries[i];
        // `None`: kept; an error here means nothing was created.
        let opened = self.at(&e.path).and_then(|path| {
            if self.keep_existing(&path, &e.node)? {
                return Ok(None);
            }
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .mode(0o600)
                .open(&path)
                .map_err(|err| Error::io(format!("create {}", path.display()), err))
                .map(|file| Some((file, path)))
        });
        match opened {
            Ok(None) => FileOutcome::Kept,
            Ok(Some((file, path))) => match file.set_len(e.node.size) {
                Ok(()) => FileOutcome::Created,
                Err(err) => FileOutcome::Failed {
                    created: true,
                    error: Box::new(Error::io(format!("size {}", path.display()), err)),
                },
            },
            Err(error) => FileOutcome::Failed {
                created: false,
                error: Box::new(error),
            },
        }
    }

    /// Applies the overwrite policy to an existing path. Returns true to keep what is there.
    fn keep_existing(&self, path: &Path, node: &EntryMeta) -> Result<bool> {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io(format!("stat {}", path.display()), e)),
        };
        match self.plan.opts.overwrite {
            Overwrite::Never => return Ok(true),
            Overwrite::IfChanged
                if meta.is_file()
                    && meta.size() == node.size
                    && meta
                        .mtime()
                        .saturating_mul(1_000_000_000)
                        .saturating_add(meta.mtime_nsec())
                        == node.mtime_ns =>
            {
                return Ok(true)
            }
            _ => {}
        }
        // A file with other hard links is replaced, not rewritten in place: writing through
        // it would change its other names, which may lie outside the target.
        if !meta.is_file() || meta.nlink() > 1 {
            self.clear_for_special(path)?;
        }
        Ok(false)
    }

    /// Removes whatever is at `path` (not following symlinks) so a new entry can be made there.
    fn clear_for_special(&self, path: &Path) -> Result<()> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(path)
                .map_err(|e| Error::io(format!("replace {}", path.display()), e)),
            Ok(_) => fs::remove_file(path)
                .map_err(|e| Error::io(format!("replace {}", path.display()), e)),
            Err(_) => Ok(()),
        }
    }

    /// Removes the files among `files` (entry indices) that `complete` does not accept, so that
    /// none is left at its full length looking finished. Best effort: the error that stopped
    /// the restore is the one reported.
    fn remove_incomplete(&self, files: &[usize], complete: impl Fn(usize) -> bool) {
        for &fi in files {
            if !complete(fi) {
                if let Ok(path) = self.at(&self.plan.entries[fi].path) {
                    let _ = fs::remove_file(&*path);
                }
            }
        }
    }

    /// Fills the created files. If this fails (a full file system, a damaged pack,
    /// cancellation), every file not completely written is removed before the error returns.
    fn write_contents(&self, files: &[usize]) -> Result<()> {
        // Blob placements still to write per file; a file is complete at zero. Counting costs
        // no system call, so the normal path stays as fast as before.
        let remaining: Vec<AtomicUsize> = files
            .iter()
            .map(|&fi| AtomicUsize::new(self.plan.entries[fi].node.content.len()))
            .collect();
        let result = self.fill_files(files, &remaining);
        if result.is_err() {
            // Every pack task has returned (rayon joins them), so no write is in flight.
            let done: HashSet<usize> = files
                .iter()
                .zip(&remaining)
                .filter(|(_, r)| r.load(Ordering::Acquire) == 0)
                .map(|(&fi, _)| fi)
                .collect();
            self.remove_incomplete(files, |fi| done.contains(&fi));
        }
        result
    }

    fn fill_files(&self, files: &[usize], remaining: &[AtomicUsize]) -> Result<()> {
        // Group every needed blob by pack, each blob with all the places it goes.
        let mut by_pack: BTreeMap<PackId, HashMap<BlobId, NeededBlob>> = BTreeMap::new();
        for (slot, &fi) in files.iter().enumerate() {
            let node = &self.plan.entries[fi].node;
            let mut offset = 0u64;
            for id in &node.content {
                let loc = self
                    .repo
                    .index()
                    .lookup(BlobType::Data, id)
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::NotFound,
                            format!("data blob {id} is not in the index"),
                        )
                    })?;
                by_pack
                    .entry(loc.pack)
                    .or_default()
                    .entry(*id)
                    .or_insert_with(|| NeededBlob {
                        id: *id,
                        offset: loc.offset,
                        stored_len: loc.stored_len,
                        raw_len: loc.raw_len,
                        places: Vec::new(),
                    })
                    .places
                    .push(Placement {
                        file: fi,
                        slot,
                        offset,
                    });
                offset += u64::from(loc.raw_len);
            }
        }
        let packs: Vec<(PackId, Vec<NeededBlob>)> = by_pack
            .into_iter()
            .map(|(p, m)| {
                let mut v: Vec<NeededBlob> = m.into_values().collect();
                v.sort_by_key(|b| b.offset);
                (p, v)
            })
            .collect();
        packs
            .par_iter()
            .try_for_each(|(pack, blobs)| self.restore_pack(pack, blobs, remaining))?;
        let mut s = self
            .summary
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.files_restored += files.len() as u64;
        Ok(())
    }

    fn restore_pack(
        &self,
        pack: &PackId,
        blobs: &[NeededBlob],
        remaining: &[AtomicUsize],
    ) -> Result<()> {
        self.ctx.cancel.check()?;
        // Read runs of nearby blobs in one request; gaps over 1 MiB split the run, and a run
        // stops at MAX_READ_RUN bytes, so memory stays bounded whatever the pack size.
        let max_run: u32 = MAX_READ_RUN;
        let mut start = 0;
        while start < blobs.len() {
            let mut end = start + 1;
            let run_start = blobs[start].offset;
            let mut run_end = run_start + blobs[start].stored_len;
            while end < blobs.len()
                && blobs[end].offset <= run_end.saturating_add(1 << 20)
                && (run_end - run_start) < max_run
            {
                run_end = run_end.max(blobs[end].offset + blobs[end].stored_len);
                end += 1;
            }
            let bytes = self
                .repo
                .backend()
                .read_range(
                    FileType::Pack,
                    &pack.to_hex(),
                    u64::from(run_start),
                    run_end - run_start,
                )
                .map_err(|e| e.context(format_args!("pack {pack}")))?;
            for b in &blobs[start..end] {
                let at = (b.offset - run_start) as usize;
                let stored = bytes.get(at..at + b.stored_len as usize).ok_or_else(|| {
                    Error::corrupt(
                        crate::CorruptionKind::Truncated,
                        format!("pack {pack}"),
                        "shorter than the index says",
                    )
                })?;
                let raw = envelope::decode_blob(
                    self.repo.master_key(),
                    BlobType::Data,
                    &b.id,
                    stored,
                    b.raw_len,
                )
                .map_err(|e| e.context(format_args!("pack {pack}")))?;
                let zero = raw.iter().all(|&x| x == 0);
                for place in &b.places {
                    if !zero {
                        let path = self.at(&self.plan.entries[place.file].path)?;
                        let f = OpenOptions::new()
                            .write(true)
                            .custom_flags(nix::libc::O_NOFOLLOW)
                            .open(&path)
                            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
                        f.write_all_at(&raw, place.offset)
                            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
                    }
                    let _ = remaining[place.slot].fetch_sub(1, Ordering::Release);
                    let _ = self.written.fetch_add(raw.len() as u64, Ordering::Relaxed);
                    self.ctx.progress.event(&ProgressEvent::Advanced {
                        phase: Phase::Restore,
                        items: 0,
                        bytes: raw.len() as u64,
                    });
                }
            }
            start = end;
        }
        Ok(())
    }

    /// Gives the entry at `rel` (relative to the target) the metadata of `node`; what cannot be
    /// set becomes a warning.
    fn set_metadata(&self, rel: &Path, node: &EntryMeta) {
        let path = match self.at(rel) {
            Ok(p) => p,
            Err(e) => return self.warn(e.to_string()),
        };
        let path: &Path = &path;
        let mut problems = Vec::new();
        if is_root() {
            if let Err(e) = nix::unistd::fchownat(
                None,
                path,
                Some(nix::unistd::Uid::from_raw(node.uid)),
                Some(nix::unistd::Gid::from_raw(node.gid)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                problems.push(format!("owner: {e}"));
            }
        }
        for x in &node.xattrs {
            if let Err(e) = xattr::set(path, std::ffi::OsStr::from_bytes(&x.name), &x.value) {
                problems.push(format!("xattr {}: {e}", String::from_utf8_lossy(&x.name)));
            }
        }
        if node.kind != NodeKind::Symlink {
            if let Err(e) = fs::set_permissions(path, fs::Permissions::from_mode(node.mode)) {
                problems.push(format!("mode: {e}"));
            }
        }
        if let Err(e) = nix::sys::stat::utimensat(
            None,
            path,
            &to_timespec(node.atime_ns),
            &to_timespec(node.mtime_ns),
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        ) {
            problems.push(format!("times: {e}"));
        }
        if !problems.is_empty() {
            self.warn(format!("{}: {}", path.display(), problems.join(", ")));
        }
    }

    fn verify(&self, files: &[usize]) -> Result<()> {
        self.ctx.progress.event(&ProgressEvent::PhaseStarted {
            phase: Phase::Verify,
            total_items: Some(files.len() as u64),
            total_bytes: Some(self.plan.bytes),
        });
        let key = self.repo.master_key();
        let failures: Vec<String> = files
            .par_iter()
            .filter_map(|&fi| {
                let e = &self.plan.entries[fi];
                let check = || -> Result<Option<String>> {
                    let path = self.at(&e.path)?;
                    let mut f = File::open(&path)
                        .map_err(|err| Error::io(format!("open {}", path.display()), err))?;
                    let mut buf = Vec::new();
                    for id in &e.node.content {
                        let loc = self
                            .repo
                            .index()
                            .lookup(BlobType::Data, id)
                            .ok_or_else(|| Error::internal("blob vanished from the index"))?;
                        buf.resize(loc.raw_len as usize, 0);
                        if f.read_exact(&mut buf).is_err() || key.blob_id(&buf) != *id {
                            return Ok(Some(format!(
                                "{}: content differs from the snapshot",
                                path.display()
                            )));
                        }
                        self.ctx.progress.event(&ProgressEvent::Advanced {
                            phase: Phase::Verify,
                            items: 0,
                            bytes: buf.len() as u64,
                        });
                    }
                    let mut extra = [0u8; 1];
                    if f.read(&mut extra)
                        .map_err(|err| Error::io(format!("read {}", path.display()), err))?
                        != 0
                    {
                        return Ok(Some(format!(
                            "{}: longer than in the snapshot",
                            path.display()
                        )));
                    }
                    Ok(None)
                };
                match check() {
                    Ok(r) => r,
                    Err(err) => Some(err.to_string()),
                }
            })
            .collect();
        let mut s = self
            .summary
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.files_verified = files.len() as u64;
        s.verify_failures = failures;
        self.ctx.progress.event(&ProgressEvent::PhaseFinished {
            phase: Phase::Verify,
        });
        Ok(())
    }
}
