//! Restore: plan (how much, from how many packs), then execute in bounded batches.
//!
//! **Where writes go.** The target is opened once; every directory below it is opened by name
//! relative to its parent's descriptor with `O_DIRECTORY | O_NOFOLLOW`, and every create,
//! write, chmod, chown, utimes, xattr, rename and unlink goes through those descriptors
//! ([`crate::restore_fs`]). A directory of the target swapped for a symlink while the restore
//! runs makes that one step fail; it can never send a write outside the target. Regular files
//! and their metadata are set through the file's own descriptor; symlinks and special files
//! through their parent's, never following the last component.
//!
//! **Files appear complete or not at all.** Each file is written under a temporary name in its
//! directory (`.cairn-restore-<16 hex>`, derived from its name), given its metadata, and
//! renamed over its final name when every byte is in place, so an interrupted restore (an
//! error, a cancellation, a kill) never leaves a partly written file under the snapshot's
//! name, and a rerun with `--overwrite never` keeps only complete files. After an error, the
//! temporary files this restore made are removed through the same descriptors; a kill may
//! leave some, which the next restore into the same place removes.
//!
//! **What is replaced.** An existing non-directory is replaced atomically by the rename. An
//! existing empty directory where the snapshot has something else is removed; a non-empty
//! one is left alone and reported unless [`RestoreOptions::delete_conflicting`] is set, and
//! even then removal never crosses into another file system nor through a mount point.
//!
//! **Memory.** The snapshot is walked once and executed in batches of at most
//! [`BATCH_FILES`] files: a batch's files are created, filled pack range by pack range in
//! parallel, verified, linked, and its finished directories given their metadata, before the
//! walk goes on. Memory is one batch plus one entry per level of the current path, whatever
//! the size of the snapshot once expanded (a tree referenced many times costs time, not
//! memory). Open descriptors are bounded too: the deepest [`OPEN_LEVELS`] levels of the
//! current path keep theirs, and going back up reopens a directory through `..`, checked
//! against the identity recorded on the way down.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use rayon::prelude::*;
use rustix::fs::{AtFlags, FileType as Kind, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{Node, NodeKind, Xattr};
use crate::format::BlobType;
use crate::id::{BlobId, PackId, SnapshotId};
use crate::lock::LockMode;
use crate::pack::reader::{self, BlobSpan};
use crate::progress::{OpCtx, Phase, ProgressEvent};
use crate::repository::{Indexed, Repository, Snapshot};
use crate::restore_fs::{self as rfs, DirFd, RemoveError};

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
    /// Re-read restored (and kept) files and check them against the snapshot.
    pub verify: bool,
    /// How long to wait for a conflicting lock.
    pub lock_wait: std::time::Duration,
    /// Delete a non-empty directory that is where the snapshot has a file, symlink or special
    /// file (without it such an entry is left alone and reported). Never crosses into another
    /// file system or through a mount point.
    pub delete_conflicting: bool,
}

/// One entry of a dry run ([`Repository::dry_run_restore`]).
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
    /// What the restore would do: `create`, `replace`, `merge` (an existing directory),
    /// `keep` (left alone by the overwrite policy), `conflict` (a non-empty directory is in
    /// the way: left alone unless `delete_conflicting`), `delete-conflicting` (it would be
    /// deleted), `damaged` (the snapshot's entry cannot be restored).
    pub action: &'static str,
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

/// What a restore will do: totals only, so planning costs no memory per entry. Serializable,
/// so a dry run prints it.
#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    /// The snapshot restored.
    pub snapshot: SnapshotId,
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
    /// Files whose recorded size disagrees with their content (a damaged or hostile tree):
    /// they are not restored, everything else is.
    pub damaged: u64,
    #[serde(skip)]
    opts: RestoreOptions,
    #[serde(skip)]
    start: Node,
    #[serde(skip)]
    sub: PathBuf,
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
    /// Entries of the snapshot that were not restored, with the reason: a non-empty directory
    /// in the way, a mount point, a damaged file.
    pub not_restored: Vec<String>,
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

/// A restore flushes its batch at this many files (or hard links)...
const BATCH_FILES: usize = 16384;
/// ... or when its files and finished directories refer to as many directories (each an open
/// descriptor until the batch is done) as [`batch_dirs`] allows ...
/// ... or when the paths of the directories it holds reach this many bytes ...
const BATCH_PATH_BYTES: usize = 8 << 20;
/// ... or at this many content blobs to place.
const BATCH_BLOBS: usize = 1 << 18;
/// Directories a batch may hold open: a third of the open-file limit, between 64 and 2048
/// (measured on the 81k-file benchmark tree: batches flushed every 256 directories cost 8 % of
/// the restore time in barriers).
fn batch_dirs() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 16);
    usize::try_from(limit / 3).unwrap_or(2048).clamp(64, 2048)
}

/// The deepest levels of the current path that keep their directory open.
const OPEN_LEVELS: usize = 64;

/// What the selection walk reports, in pre-order.
enum Sel<'a> {
    /// A directory to restore (emitted only once something in it is selected, or it is).
    Enter { rel: &'a Path, node: &'a Node },
    /// The end of the last directory entered.
    Exit,
    /// A non-directory to restore.
    Leaf { rel: &'a Path, node: &'a Node },
}

/// One directory of the selection walk's current path.
struct SelLevel {
    node: Node,
    included: bool,
    emitted: bool,
}

/// Totals of a subtree, for plans.
#[derive(Clone, Copy, Default)]
struct Totals {
    files: u64,
    dirs: u64,
    others: u64,
    bytes: u64,
    damaged: u64,
}

impl Totals {
    fn add(&mut self, o: &Totals, times: u64) {
        self.files = self.files.saturating_add(o.files.saturating_mul(times));
        self.dirs = self.dirs.saturating_add(o.dirs.saturating_mul(times));
        self.others = self.others.saturating_add(o.others.saturating_mul(times));
        self.bytes = self.bytes.saturating_add(o.bytes.saturating_mul(times));
        self.damaged = self.damaged.saturating_add(o.damaged.saturating_mul(times));
    }
}

impl Repository<Indexed> {
    /// Plans restoring `snapshot` (or its `subpath`), applying include and exclude filters:
    /// counts entries and bytes and the packs to read.
    ///
    /// Without filters each distinct tree is read once however often the snapshot refers to
    /// it, so a hostile snapshot whose expanded size is astronomical plans in the time of its
    /// stored size. Hard links count as files, their content once per name.
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
        let mut packs = HashSet::new();
        let totals = if opts.includes.is_empty() && opts.excludes.is_empty() {
            match (start.kind, start.subtree) {
                (NodeKind::Dir, Some(tree)) => {
                    let mut memo = HashMap::new();
                    self.tree_totals(ctx, &tree, &mut memo, &mut packs)?
                }
                _ => {
                    let mut t = Totals::default();
                    self.count_node(&start, &mut t, &mut packs);
                    t
                }
            }
        } else {
            let mut t = Totals::default();
            self.select(ctx, &start, &sub, &includes, &excludes, &mut |s| {
                match s {
                    Sel::Enter { .. } => t.dirs += 1,
                    Sel::Leaf { node, .. } => self.count_node(node, &mut t, &mut packs),
                    Sel::Exit => {}
                }
                Ok(true)
            })?;
            t
        };
        Ok(RestorePlan {
            snapshot: snapshot.id,
            files: totals.files,
            dirs: totals.dirs,
            others: totals.others,
            bytes: totals.bytes,
            packs: packs.len(),
            damaged: totals.damaged,
            opts: opts.clone(),
            start,
            sub,
        })
    }

    /// Adds a non-directory node to `t`, its packs to `packs`.
    fn count_node(&self, node: &Node, t: &mut Totals, packs: &mut HashSet<PackId>) {
        match node.kind {
            NodeKind::File => {
                t.files += 1;
                match self.content_len(&node.content, Some(packs)) {
                    Some(len) if len == node.size => t.bytes = t.bytes.saturating_add(len),
                    _ => t.damaged += 1,
                }
            }
            NodeKind::Dir => t.dirs += 1,
            _ => t.others += 1,
        }
    }

    /// The total length of `content`, or `None` if a blob is not in the index.
    fn content_len(
        &self,
        content: &[BlobId],
        mut packs: Option<&mut HashSet<PackId>>,
    ) -> Option<u64> {
        let mut len = 0u64;
        for id in content {
            let loc = self.index().lookup(BlobType::Data, id)?;
            if let Some(p) = packs.as_deref_mut() {
                let _ = p.insert(loc.pack);
            }
            len += u64::from(loc.raw_len);
        }
        Some(len)
    }

    /// Totals of the tree `id` and everything below it, each distinct tree read once.
    /// Iterative, so depth does not grow the call stack.
    fn tree_totals(
        &self,
        ctx: &OpCtx<'_>,
        id: &BlobId,
        memo: &mut HashMap<BlobId, Totals>,
        packs: &mut HashSet<PackId>,
    ) -> Result<Totals> {
        // (tree, its subtrees still to add, totals so far)
        let mut stack: Vec<(BlobId, Vec<BlobId>, Totals)> = Vec::new();
        let open = |this: &Self,
                    id: &BlobId,
                    packs: &mut HashSet<PackId>|
         -> Result<(Vec<BlobId>, Totals)> {
            let tree = this.read_tree(id)?;
            let mut t = Totals::default();
            let mut subs = Vec::new();
            for n in &tree.nodes {
                if n.kind == NodeKind::Dir {
                    t.dirs += 1;
                    if let Some(s) = n.subtree {
                        subs.push(s);
                    }
                } else {
                    this.count_node(n, &mut t, packs);
                }
            }
            Ok((subs, t))
        };
        let (subs, t) = open(self, id, packs)?;
        stack.push((*id, subs, t));
        loop {
            ctx.cancel.check()?;
            let Some(top) = stack.last_mut() else {
                return Err(Error::internal("empty totals stack"));
            };
            if let Some(sub) = top.1.pop() {
                if let Some(done) = memo.get(&sub) {
                    let done = *done;
                    top.2.add(&done, 1);
                } else {
                    // No cycle is possible: a tree is named by the hash of its bytes, so it
                    // cannot list itself or an ancestor. Depth costs one entry per level.
                    let (subs, t) = open(self, &sub, packs)?;
                    stack.push((sub, subs, t));
                }
                continue;
            }
            let (tid, _, t) = stack
                .pop()
                .unwrap_or_else(|| unreachable!("stack has a top"));
            let _ = memo.insert(tid, t);
            match stack.last_mut() {
                Some(parent) => parent.2.add(&t, 1),
                None => return Ok(t),
            }
        }
    }

    /// Walks what a restore of `start` selects, in pre-order: a directory is reported when it
    /// or something below it is selected, before its contents. `visit` returns false at an
    /// `Enter` to skip that directory's contents.
    fn select(
        &self,
        ctx: &OpCtx<'_>,
        start: &Node,
        sub: &Path,
        includes: &GlobSet,
        excludes: &GlobSet,
        visit: &mut dyn FnMut(Sel<'_>) -> Result<bool>,
    ) -> Result<()> {
        if start.kind != NodeKind::Dir {
            let rel = PathBuf::from(OsStr::from_bytes(&start.name));
            let _ = visit(Sel::Leaf {
                rel: &rel,
                node: start,
            })?;
            return Ok(());
        }
        let subtree = start
            .subtree
            .ok_or_else(|| Error::internal("directory without subtree"))?;
        let include_all = includes.is_empty();
        let mut stack: Vec<SelLevel> = Vec::new();
        // Entries deeper than this are inside a directory `visit` skipped.
        let mut skip_below: Option<usize> = None;
        let emit = |stack: &mut Vec<SelLevel>,
                    skip_below: &mut Option<usize>,
                    top_rel: &Path,
                    visit: &mut dyn FnMut(Sel<'_>) -> Result<bool>|
         -> Result<()> {
            // Emit the directories of the stack not emitted yet; `top_rel` is the path of the
            // deepest. Emitted levels are a prefix of the stack, so this costs the number of
            // pending levels, not the depth.
            let upto = stack.len();
            let first = stack.iter().rposition(|l| l.emitted).map_or(0, |p| p + 1);
            if first == upto {
                return Ok(());
            }
            let mut paths: Vec<&Path> = top_rel.ancestors().take(upto - first).collect();
            paths.reverse();
            for (i, p) in (first..upto).zip(paths) {
                let level = &mut stack[i];
                level.emitted = true;
                if !visit(Sel::Enter {
                    rel: p,
                    node: &level.node,
                })? {
                    // Not entered: no `Exit` either.
                    level.emitted = false;
                    *skip_below = Some(i + 1);
                    return Ok(());
                }
            }
            Ok(())
        };
        self.walk_tree(&subtree, sub, &mut |e| {
            ctx.cancel.check()?;
            while stack.len() >= e.depth {
                let done = stack
                    .pop()
                    .unwrap_or_else(|| unreachable!("stack is not empty"));
                if skip_below.is_some_and(|d| stack.len() < d) {
                    skip_below = None;
                }
                if done.emitted {
                    let _ = visit(Sel::Exit)?;
                }
            }
            if skip_below.is_some() || excludes.is_match(&e.path) {
                return Ok(false);
            }
            let inherited = stack.last().map_or(include_all, |l| l.included);
            let included = inherited || includes.is_match(&e.path);
            let rel = e.path.strip_prefix(sub).unwrap_or(&e.path);
            if e.node.kind == NodeKind::Dir {
                let mut node = e.node.clone();
                node.content = Vec::new();
                stack.push(SelLevel {
                    node,
                    included,
                    emitted: false,
                });
                if included {
                    emit(&mut stack, &mut skip_below, rel, visit)?;
                }
                return Ok(skip_below.is_none());
            }
            if included {
                let parent = rel.parent().unwrap_or(Path::new(""));
                emit(&mut stack, &mut skip_below, parent, visit)?;
                if skip_below.is_none() {
                    let _ = visit(Sel::Leaf { rel, node: &e.node })?;
                }
            }
            Ok(false)
        })?;
        while let Some(done) = stack.pop() {
            if done.emitted {
                let _ = visit(Sel::Exit)?;
            }
        }
        Ok(())
    }

    /// Lists what restoring `plan` into `target` would do, entry by entry, without changing
    /// anything (paths are only inspected, with `lstat`).
    pub fn dry_run_restore(
        &self,
        ctx: &OpCtx<'_>,
        plan: &RestorePlan,
        target: &Path,
        visit: &mut dyn FnMut(&PlannedEntry) -> Result<()>,
    ) -> Result<()> {
        let includes = globset(&plan.opts.includes)?;
        let excludes = globset(&plan.opts.excludes)?;
        let overwrite = plan.opts.overwrite;
        let mut first_of: HashMap<(u64, u64), PathBuf> = HashMap::new();
        self.select(
            ctx,
            &plan.start,
            &plan.sub,
            &includes,
            &excludes,
            &mut |s| {
                let (rel, node) = match s {
                    Sel::Enter { rel, node } | Sel::Leaf { rel, node } => (rel, node),
                    Sel::Exit => return Ok(true),
                };
                let existing = std::fs::symlink_metadata(target.join(rel)).ok();
                let mut link_to = None;
                if node.kind == NodeKind::File && node.links > 1 {
                    match first_of.get(&(node.device, node.inode)) {
                        Some(f) => link_to = Some(f.clone()),
                        None => {
                            let _ = first_of.insert((node.device, node.inode), rel.to_path_buf());
                        }
                    }
                }
                let damaged = node.kind == NodeKind::File
                    && link_to.is_none()
                    && self.content_len(&node.content, None) != Some(node.size);
                let action = match (&existing, node.kind) {
                    _ if damaged => "damaged",
                    (None, _) => "create",
                    (Some(m), NodeKind::Dir) if m.is_dir() => "merge",
                    (Some(_), _) if overwrite == Overwrite::Never => "keep",
                    (Some(m), NodeKind::File)
                        if overwrite == Overwrite::IfChanged
                            && m.is_file()
                            && std::os::unix::fs::MetadataExt::size(m) == node.size
                            && mtime_ns(m) == node.mtime_ns =>
                    {
                        "keep"
                    }
                    (Some(m), _) if m.is_dir() => {
                        let empty = std::fs::read_dir(target.join(rel))
                            .map(|mut d| d.next().is_none())
                            .unwrap_or(false);
                        if empty {
                            "replace"
                        } else if plan.opts.delete_conflicting {
                            "delete-conflicting"
                        } else {
                            "conflict"
                        }
                    }
                    (Some(_), _) => "replace",
                };
                visit(&PlannedEntry {
                    path: rel.to_path_buf(),
                    kind: node.kind.as_str(),
                    size: node.size,
                    link_to,
                    action,
                })?;
                Ok(true)
            },
        )
    }

    /// Restores a planned snapshot into `target` (created if missing). Takes a shared lock.
    ///
    /// On error no file that was only partly written is left under its name (see the module
    /// docs); [`Error::is_storage_full`] tells a full target file system from other failures.
    pub fn restore(
        &self,
        ctx: &OpCtx<'_>,
        plan: &RestorePlan,
        target: &Path,
    ) -> Result<RestoreSummary> {
        let _lock = self.lock(LockMode::Shared, "restore", plan.opts.lock_wait)?;
        let root = open_target(target)?;
        let mut r = Restorer {
            repo: self,
            ctx,
            plan,
            opts: &plan.opts,
            target,
            summary: Mutex::new(RestoreSummary::default()),
            written: AtomicU64::new(0),
            root: Arc::new(root),
            stack: Vec::new(),
            batch: Batch {
                max_dirs: batch_dirs(),
                files: Vec::new(),
                links: Vec::new(),
                finished: Vec::new(),
                blobs: 0,
                path_bytes: 0,
                dir_changes: 0,
                last_dir: None,
            },
            links: HashMap::new(),
            root_user: rustix::process::geteuid().is_root(),
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

fn mtime_ns(m: &std::fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    m.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(m.mtime_nsec())
}

/// Creates `target` if missing and opens it: the one path-based step of a restore.
fn open_target(target: &Path) -> Result<DirFd> {
    let io = |what: &str, e: std::io::Error| Error::io(format!("{what} {}", target.display()), e);
    match std::fs::metadata(target) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::invalid(format!(
                "restore target {} exists and is not a directory",
                target.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(target).map_err(|e| io("create", e))?;
        }
        Err(e) => return Err(io("stat", e)),
    }
    let fd = rustix::fs::open(
        target,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io("open", e.into()))?;
    DirFd::new(fd, PathBuf::new()).map_err(|e| io("open", e))
}

/// What restoring an entry needs of its tree node: a compact copy (no name, no owner names,
/// boxed slices), held once per entry of a batch.
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

impl From<&Node> for EntryMeta {
    fn from(n: &Node) -> Self {
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
            content: n.content.clone().into_boxed_slice(),
            symlink_target: n.symlink_target.clone().into_boxed_slice(),
            xattrs: n.xattrs.clone().into_boxed_slice(),
        }
    }
}

/// A directory of the current path.
struct Level {
    meta: EntryMeta,
    /// Its descriptor, while it is among the deepest [`OPEN_LEVELS`] levels.
    dir: Option<Arc<DirFd>>,
    dev: u64,
    ino: u64,
    /// Made by this restore (see [`DirFd::fresh`]).
    fresh: bool,
}

/// What became of a file in a batch's creation step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileState {
    /// Not created yet.
    New,
    /// Created under its temporary name (identity recorded), being filled.
    Writing { dev: u64, ino: u64 },
    /// Complete under its final name.
    Done,
    /// Left as it was by the overwrite policy.
    Kept,
    /// Not restored (reported).
    Skipped,
}

/// A regular file of a batch.
struct FileJob {
    dir: Arc<DirFd>,
    name: OsString,
    meta: EntryMeta,
    state: Mutex<FileState>,
    /// Blob placements still to write; the file is complete at zero.
    remaining: AtomicUsize,
}

/// A further name of a hard link group.
struct LinkJob {
    dir: Arc<DirFd>,
    name: OsString,
    meta: EntryMeta,
}

/// Where the first name of a hard link group ended up.
#[derive(Clone)]
enum LinkState {
    /// In the current batch, not complete yet.
    Pending,
    /// Complete: its path (relative to the target) and identity.
    Restored { path: PathBuf, dev: u64, ino: u64 },
    /// Not restored here: further names get their own copy.
    NotRestored,
}

struct Batch {
    /// See [`batch_dirs`].
    max_dirs: usize,
    files: Vec<FileJob>,
    links: Vec<LinkJob>,
    /// Directories whose contents are all in this batch or earlier ones, in post-order.
    finished: Vec<(Arc<DirFd>, EntryMeta)>,
    blobs: usize,
    /// Bytes of the directory paths the batch holds (for messages): bounded, so that a deep
    /// tree costs memory linear in its depth, not its depth squared.
    path_bytes: usize,
    /// Times the directory of consecutive files changed: bounds the descriptors held.
    dir_changes: usize,
    last_dir: Option<(u64, u64)>,
}

impl Batch {
    fn is_full(&self) -> bool {
        self.files.len() + self.links.len() >= BATCH_FILES
            || self.dir_changes + self.finished.len() >= self.max_dirs
            || self.blobs >= BATCH_BLOBS
            || self.path_bytes >= BATCH_PATH_BYTES
    }

    fn note_dir(&mut self, dir: &DirFd) {
        if self.last_dir != Some((dir.dev, dir.ino)) {
            self.last_dir = Some((dir.dev, dir.ino));
            self.dir_changes += 1;
            self.path_bytes += dir.path.as_os_str().len();
        }
    }
}

/// A blob to write at `offset` of the batch's file `file`.
#[derive(Clone, Copy)]
struct Placement {
    file: usize,
    offset: u64,
}

struct NeededBlob {
    span: BlobSpan,
    places: Vec<Placement>,
}

/// Consecutive blobs of one pack read in one request.
struct ReadRun {
    pack: PackId,
    blobs: Vec<NeededBlob>,
}

fn timespec(ns: i64) -> Timespec {
    Timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000),
    }
}

fn timestamps(m: &EntryMeta) -> Timestamps {
    Timestamps {
        last_access: timespec(m.atime_ns),
        last_modification: timespec(m.mtime_ns),
    }
}

/// The temporary name a file (or link, or special file) is made under before it is renamed
/// over `name`: short whatever the length of `name`, and the same on every run, so a rerun
/// after a kill finds and replaces what the killed run left.
fn temp_name(name: &OsStr) -> OsString {
    let h = blake3::hash(name.as_bytes());
    let mut s = OsString::from(".cairn-restore-");
    s.push(hex::encode(&h.as_bytes()[..8]));
    s
}

const FILE_FLAGS: OFlags = OFlags::WRONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NONBLOCK);

struct Restorer<'a, 'c> {
    repo: &'a Repository<Indexed>,
    ctx: &'a OpCtx<'c>,
    plan: &'a RestorePlan,
    opts: &'a RestoreOptions,
    target: &'a Path,
    summary: Mutex<RestoreSummary>,
    written: AtomicU64,
    root: Arc<DirFd>,
    stack: Vec<Level>,
    batch: Batch,
    links: HashMap<(u64, u64), LinkState>,
    root_user: bool,
}

impl Restorer<'_, '_> {
    fn summary(&self) -> std::sync::MutexGuard<'_, RestoreSummary> {
        self.summary
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn warn(&self, msg: String) {
        self.summary().warnings.push(msg);
    }

    fn not_restored(&self, msg: String) {
        self.summary().not_restored.push(msg);
    }

    /// The path shown for `name` in `dir`: under the target as the user named it.
    fn shown(&self, dir: &DirFd, name: &OsStr) -> PathBuf {
        self.target.join(dir.display(name))
    }

    fn io_at(&self, what: &str, dir: &DirFd, name: &OsStr, e: impl Into<std::io::Error>) -> Error {
        Error::io(
            format!("{what} {}", self.shown(dir, name).display()),
            e.into(),
        )
    }

    fn item_done(&self) {
        self.ctx.progress.event(&ProgressEvent::Advanced {
            phase: Phase::Restore,
            items: 1,
            bytes: 0,
        });
    }

    fn run(&mut self) -> Result<()> {
        self.ctx.progress.event(&ProgressEvent::PhaseStarted {
            phase: Phase::Restore,
            total_items: Some(self.plan.files + self.plan.dirs + self.plan.others),
            total_bytes: Some(self.plan.bytes),
        });
        let includes = globset(&self.opts.includes)?;
        let excludes = globset(&self.opts.excludes)?;
        let repo = self.repo;
        let ctx = self.ctx;
        let plan = self.plan;
        let result = repo.select(
            ctx,
            &plan.start,
            &plan.sub,
            &includes,
            &excludes,
            &mut |s| match s {
                Sel::Enter { node, .. } => self.enter(node),
                Sel::Exit => self.exit().map(|()| true),
                Sel::Leaf { node, .. } => self.leaf(node).map(|()| true),
            },
        );
        // A flush may queue own copies of hard links for one more batch.
        let result = result.and_then(|()| {
            while !self.batch.files.is_empty()
                || !self.batch.links.is_empty()
                || !self.batch.finished.is_empty()
            {
                self.flush()?;
            }
            Ok(())
        });
        if let Err(e) = result {
            // Temporary files of the batch are removed; directories still open get the
            // snapshot's metadata, so none is left owner-only or made writable.
            self.discard_batch();
            while !self.stack.is_empty() {
                if self.exit().is_err() {
                    break;
                }
            }
            self.finish_dirs();
            return Err(e);
        }
        self.ctx.progress.event(&ProgressEvent::PhaseFinished {
            phase: Phase::Restore,
        });
        Ok(())
    }

    /// The directory new entries go into: the deepest level, or the target.
    fn current_dir(&self) -> Result<Arc<DirFd>> {
        match self.stack.last() {
            None => Ok(self.root.clone()),
            Some(l) => l
                .dir
                .clone()
                .ok_or_else(|| Error::internal("the current directory is not open")),
        }
    }

    /// A directory of the snapshot: make or enter it. Returns false to skip its contents.
    fn enter(&mut self, node: &Node) -> Result<bool> {
        self.ctx.cancel.check()?;
        let parent = self.current_dir()?;
        let name = OsStr::from_bytes(&node.name).to_owned();
        let existing =
            rfs::stat_at(&parent.fd, &name).map_err(|e| self.io_at("stat", &parent, &name, e))?;
        let mut created = false;
        match existing {
            Some(st) if rfs::kind(&st) == Kind::Directory => {}
            Some(_) if self.opts.overwrite == Overwrite::Never => {
                self.warn(format!(
                    "{}: exists and is not a directory; left alone with what the snapshot has below it",
                    self.shown(&parent, &name).display()
                ));
                return Ok(false);
            }
            Some(_) => {
                // A file or symlink where the snapshot has a directory never matches it.
                rfs::unlink(&parent.fd, &name)
                    .map_err(|e| self.io_at("replace", &parent, &name, e))?;
                created = true;
            }
            None => created = true,
        }
        if created {
            match rustix::fs::mkdirat(&parent.fd, &name, Mode::from_raw_mode(0o700)) {
                Ok(()) => {}
                Err(e) => return Err(self.io_at("create directory", &parent, &name, e)),
            }
        }
        let fd = rfs::open_dir(&parent.fd, &name).map_err(|e| {
            self.io_at(
                "open directory (replaced by something else while restoring?)",
                &parent,
                &name,
                e,
            )
        })?;
        let mut dir = DirFd::new(fd, parent.path.join(&name))
            .map_err(|e| self.io_at("open directory", &parent, &name, e))?;
        dir.fresh = created;
        if !created && !self.root_user {
            // An earlier restore may have made it read-only: writable until its metadata is set.
            if let Ok(st) = rustix::fs::fstat(&dir.fd) {
                if st.st_mode & 0o300 != 0o300 && st.st_uid == rustix::process::geteuid().as_raw() {
                    let _ = rustix::fs::fchmod(
                        &dir.fd,
                        Mode::from_raw_mode((st.st_mode | 0o700) & 0o7777),
                    );
                }
            }
        }
        self.summary().dirs += 1;
        let (dev, ino) = (dir.dev, dir.ino);
        self.stack.push(Level {
            meta: EntryMeta::from(node),
            dir: Some(Arc::new(dir)),
            dev,
            ino,
            fresh: created,
        });
        let n = self.stack.len();
        if n > OPEN_LEVELS {
            self.stack[n - 1 - OPEN_LEVELS].dir = None;
        }
        Ok(true)
    }

    /// The end of a directory: its metadata is set once its batch is done.
    fn exit(&mut self) -> Result<()> {
        let Some(level) = self.stack.pop() else {
            return Err(Error::internal("exit without a directory"));
        };
        let dir = level
            .dir
            .ok_or_else(|| Error::internal("the finished directory is not open"))?;
        if let Some(parent) = self.stack.last_mut() {
            if parent.dir.is_none() {
                let fd = rfs::open_parent(&dir.fd, parent.dev, parent.ino).map_err(|e| {
                    Error::io(
                        format!(
                            "reopen {} (moved while restoring?)",
                            self.target
                                .join(dir.path.parent().unwrap_or(Path::new("")))
                                .display()
                        ),
                        e,
                    )
                })?;
                let path = dir.path.parent().map(Path::to_path_buf).unwrap_or_default();
                let mut reopened =
                    DirFd::new(fd, path).map_err(|e| Error::io("reopen directory", e))?;
                reopened.fresh = parent.fresh;
                parent.dir = Some(Arc::new(reopened));
            }
        }
        self.batch.path_bytes += dir.path.as_os_str().len();
        self.batch.finished.push((dir, level.meta));
        if self.batch.is_full() {
            self.flush()?;
        }
        Ok(())
    }

    /// A non-directory of the snapshot.
    fn leaf(&mut self, node: &Node) -> Result<()> {
        self.ctx.cancel.check()?;
        let dir = self.current_dir()?;
        let name = OsStr::from_bytes(&node.name).to_owned();
        let meta = EntryMeta::from(node);
        match node.kind {
            NodeKind::File => {
                if let Some(key) = meta.link_key {
                    match self.links.get(&key) {
                        Some(LinkState::Pending | LinkState::Restored { .. }) => {
                            self.batch.note_dir(&dir);
                            self.batch.links.push(LinkJob { dir, name, meta });
                            return self.flush_if_full();
                        }
                        Some(LinkState::NotRestored) => {}
                        None => {
                            let _ = self.links.insert(key, LinkState::Pending);
                        }
                    }
                }
                self.add_file(dir, name, meta)
            }
            NodeKind::Socket => {
                self.warn(format!(
                    "{}: socket not restored (a socket is made by the program that listens on it)",
                    self.shown(&dir, &name).display()
                ));
                Ok(())
            }
            _ => {
                self.special(&dir, &name, &meta)?;
                self.item_done();
                Ok(())
            }
        }
    }

    fn add_file(&mut self, dir: Arc<DirFd>, name: OsString, meta: EntryMeta) -> Result<()> {
        if self.repo.content_len(&meta.content, None) != Some(meta.size) {
            let shown = self.shown(&dir, &name);
            if let Some(key) = meta.link_key {
                let _ = self.links.insert(key, LinkState::NotRestored);
            }
            self.not_restored(format!(
                "{}: damaged in the snapshot (its recorded size {} disagrees with its content, or \
                 its content is missing from the index); not restored: run `cairn check`",
                shown.display(),
                meta.size
            ));
            self.item_done();
            return Ok(());
        }
        self.batch.note_dir(&dir);
        self.batch.blobs += meta.content.len();
        self.batch.files.push(FileJob {
            dir,
            name,
            remaining: AtomicUsize::new(meta.content.len()),
            meta,
            state: Mutex::new(FileState::New),
        });
        self.flush_if_full()
    }

    fn flush_if_full(&mut self) -> Result<()> {
        if self.batch.is_full() {
            self.flush()
        } else {
            Ok(())
        }
    }

    /// Decides about an entry already at `name` for a non-directory of the snapshot. Returns
    /// `Ok(Some(existing is kept))`, or `Ok(None)` when the entry is not restored (reported).
    fn make_way(&self, dir: &DirFd, name: &OsStr, meta: &EntryMeta) -> Result<Option<bool>> {
        if dir.fresh {
            // Only this restore writes there, and names in a tree are unique.
            return Ok(Some(false));
        }
        let Some(st) = rfs::stat_at(&dir.fd, name).map_err(|e| self.io_at("stat", dir, name, e))?
        else {
            return Ok(Some(false));
        };
        match self.opts.overwrite {
            Overwrite::Never => return Ok(Some(true)),
            Overwrite::IfChanged
                if meta.kind == NodeKind::File
                    && rfs::kind(&st) == Kind::RegularFile
                    && st.st_size as u64 == meta.size
                    && st
                        .st_mtime
                        .saturating_mul(1_000_000_000)
                        .saturating_add(st.st_mtime_nsec as i64)
                        == meta.mtime_ns =>
            {
                return Ok(Some(true))
            }
            _ => {}
        }
        if rfs::kind(&st) != Kind::Directory {
            // The rename replaces it.
            return Ok(Some(false));
        }
        let shown = self.shown(dir, name);
        if rfs::dir_is_empty(&dir.fd, name).map_err(|e| self.io_at("list", dir, name, e))? {
            return match rustix::fs::unlinkat(&dir.fd, name, AtFlags::REMOVEDIR) {
                Ok(()) => Ok(Some(false)),
                Err(Errno::BUSY) => {
                    self.not_restored(format!(
                        "{}: a mount point is in the way; not restored",
                        shown.display()
                    ));
                    Ok(None)
                }
                Err(e) => Err(self.io_at("replace", dir, name, e)),
            };
        }
        if !self.opts.delete_conflicting {
            self.not_restored(format!(
                "{}: a non-empty directory is where the snapshot has a {}; left alone \
                 (--delete-conflicting deletes it)",
                shown.display(),
                meta.kind.as_str()
            ));
            return Ok(None);
        }
        match rfs::remove_tree(dir, name, &shown) {
            Ok(()) => Ok(Some(false)),
            Err(RemoveError::MountPoint(p)) => {
                self.not_restored(format!(
                    "{}: not restored: {} is a mount point or on another file system, and is \
                     never deleted",
                    shown.display(),
                    p.display()
                ));
                Ok(None)
            }
            Err(RemoveError::Io(p, e)) => Err(Error::io(format!("delete {}", p.display()), e)),
        }
    }

    /// Makes a symlink, FIFO or device node under its temporary name, gives it its metadata
    /// and renames it into place.
    fn special(&self, dir: &DirFd, name: &OsStr, meta: &EntryMeta) -> Result<()> {
        if meta.kind != NodeKind::Symlink && meta.kind != NodeKind::Fifo && !self.root_user {
            self.warn(format!(
                "{}: device node not restored (needs root)",
                self.shown(dir, name).display()
            ));
            return Ok(());
        }
        match self.make_way(dir, name, meta)? {
            None => return Ok(()),
            Some(true) => return Ok(()),
            Some(false) => {}
        }
        let tmp = temp_name(name);
        rfs::unlink(&dir.fd, &tmp).map_err(|e| self.io_at("remove", dir, &tmp, e))?;
        let made = match meta.kind {
            NodeKind::Symlink => {
                rustix::fs::symlinkat(OsStr::from_bytes(&meta.symlink_target), &dir.fd, &tmp)
            }
            NodeKind::Fifo => {
                rustix::fs::mknodat(&dir.fd, &tmp, Kind::Fifo, Mode::from_raw_mode(0o600), 0)
            }
            NodeKind::CharDevice => rustix::fs::mknodat(
                &dir.fd,
                &tmp,
                Kind::CharacterDevice,
                Mode::from_raw_mode(0o600),
                meta.rdev,
            ),
            _ => rustix::fs::mknodat(
                &dir.fd,
                &tmp,
                Kind::BlockDevice,
                Mode::from_raw_mode(0o600),
                meta.rdev,
            ),
        };
        made.map_err(|e| self.io_at(&format!("create {}", meta.kind.as_str()), dir, name, e))?;
        self.set_special_metadata(dir, &tmp, name, meta);
        self.rename_into_place(dir, &tmp, name)?;
        self.summary().others += 1;
        Ok(())
    }

    /// Renames `tmp` over `name` in `dir`.
    fn rename_into_place(&self, dir: &DirFd, tmp: &OsStr, name: &OsStr) -> Result<()> {
        if let Err(e) = rustix::fs::renameat(&dir.fd, tmp, &dir.fd, name) {
            let _ = rfs::unlink(&dir.fd, tmp);
            return Err(self.io_at("rename into place", dir, name, e));
        }
        Ok(())
    }

    /// Metadata of a symlink or special file, by its (temporary) name in `dir`, never
    /// following it.
    fn set_special_metadata(&self, dir: &DirFd, tmp: &OsStr, name: &OsStr, meta: &EntryMeta) {
        let mut problems = Vec::new();
        if self.root_user {
            if let Err(e) = rustix::fs::chownat(
                &dir.fd,
                tmp,
                Some(rustix::fs::Uid::from_raw(meta.uid)),
                Some(rustix::fs::Gid::from_raw(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            ) {
                problems.push(format!("owner: {e}"));
            }
        }
        let path = rfs::proc_path(&dir.fd, tmp);
        for x in meta.xattrs.iter() {
            if let Err(e) = rustix::fs::lsetxattr(
                &path,
                OsStr::from_bytes(&x.name),
                &x.value,
                rustix::fs::XattrFlags::empty(),
            ) {
                problems.push(format!("xattr {}: {e}", String::from_utf8_lossy(&x.name)));
            }
        }
        if meta.kind != NodeKind::Symlink {
            // chmod follows symlinks: open the entry itself and change it through its
            // descriptor's magic link, after checking it is still what was made.
            let res = rustix::fs::openat(
                &dir.fd,
                tmp,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .and_then(|fd| {
                let st = rustix::fs::fstat(&fd)?;
                if matches!(
                    rfs::kind(&st),
                    Kind::Symlink | Kind::Directory | Kind::RegularFile
                ) {
                    return Err(Errno::STALE);
                }
                rustix::fs::chmod(
                    rfs::proc_path(&fd, OsStr::new("")),
                    Mode::from_raw_mode(meta.mode),
                )
            });
            if let Err(e) = res {
                problems.push(format!("mode: {e}"));
            }
        }
        if let Err(e) =
            rustix::fs::utimensat(&dir.fd, tmp, &timestamps(meta), AtFlags::SYMLINK_NOFOLLOW)
        {
            problems.push(format!("times: {e}"));
        }
        if !problems.is_empty() {
            self.warn(format!(
                "{}: {}",
                self.shown(dir, name).display(),
                problems.join(", ")
            ));
        }
    }

    /// Owner, xattrs, mode and times of a regular file or directory, through its descriptor.
    fn set_fd_metadata(&self, fd: impl AsFd, meta: &EntryMeta, shown: &Path) {
        let fd = fd.as_fd();
        let mut problems = Vec::new();
        if self.root_user {
            if let Err(e) = rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(meta.uid)),
                Some(rustix::fs::Gid::from_raw(meta.gid)),
            ) {
                problems.push(format!("owner: {e}"));
            }
        }
        for x in meta.xattrs.iter() {
            if let Err(e) = rustix::fs::fsetxattr(
                fd,
                OsStr::from_bytes(&x.name),
                &x.value,
                rustix::fs::XattrFlags::empty(),
            ) {
                problems.push(format!("xattr {}: {e}", String::from_utf8_lossy(&x.name)));
            }
        }
        // After the owner: chown clears set-id bits.
        if let Err(e) = rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode & 0o7777)) {
            problems.push(format!("mode: {e}"));
        }
        if let Err(e) = rustix::fs::futimens(fd, &timestamps(meta)) {
            problems.push(format!("times: {e}"));
        }
        if !problems.is_empty() {
            self.warn(format!("{}: {}", shown.display(), problems.join(", ")));
        }
    }

    /// Opens the temporary file of `job` for writing and checks it is the file created.
    fn open_temp(&self, job: &FileJob, dev: u64, ino: u64) -> Result<File> {
        let tmp = temp_name(&job.name);
        let fd = rustix::fs::openat(&job.dir.fd, &tmp, FILE_FLAGS, Mode::empty())
            .map_err(|e| self.io_at("open", &job.dir, &job.name, e))?;
        if job.dir.fresh {
            return Ok(File::from(fd));
        }
        let st = rustix::fs::fstat(&fd).map_err(|e| self.io_at("stat", &job.dir, &job.name, e))?;
        if st.st_dev != dev || st.st_ino != ino {
            return Err(Error::io(
                format!("write {}", self.shown(&job.dir, &job.name).display()),
                std::io::Error::other("its temporary file was replaced while restoring"),
            ));
        }
        Ok(File::from(fd))
    }

    /// Creation step of a batch file: apply the policy to what is there, create the
    /// temporary file at full length (sparse until filled); an empty file completes here.
    fn create_file(&self, job: &FileJob) -> Result<()> {
        let set = |s: FileState| {
            *job.state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = s;
        };
        match self.make_way(&job.dir, &job.name, &job.meta)? {
            None => {
                set(FileState::Skipped);
                return Ok(());
            }
            Some(true) => {
                // A temporary file left by a killed run is not kept.
                let _ = rfs::unlink(&job.dir.fd, &temp_name(&job.name));
                set(FileState::Kept);
                return Ok(());
            }
            Some(false) => {}
        }
        let tmp = temp_name(&job.name);
        let flags = FILE_FLAGS | OFlags::CREATE | OFlags::EXCL;
        let fd = match rustix::fs::openat(&job.dir.fd, &tmp, flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => {
                // Left by a killed run (or in the way): replaced.
                rfs::unlink(&job.dir.fd, &tmp)
                    .map_err(|e| self.io_at("remove", &job.dir, &tmp, e))?;
                rustix::fs::openat(&job.dir.fd, &tmp, flags, Mode::from_raw_mode(0o600))
                    .map_err(|e| self.io_at("create", &job.dir, &job.name, e))?
            }
            Err(e) => return Err(self.io_at("create", &job.dir, &job.name, e)),
        };
        // The identity guards the writes against a swapped temporary file; not needed where only
        // this restore writes.
        let (dev, ino) = if job.dir.fresh {
            (0, 0)
        } else {
            let st =
                rustix::fs::fstat(&fd).map_err(|e| self.io_at("stat", &job.dir, &job.name, e))?;
            (st.st_dev, st.st_ino)
        };
        set(FileState::Writing { dev, ino });
        rustix::fs::ftruncate(&fd, job.meta.size)
            .map_err(|e| self.io_at("size", &job.dir, &job.name, e))?;
        if job.meta.content.is_empty() {
            self.finish_file(job, fd)?;
        }
        Ok(())
    }

    /// A file whose every byte is written: metadata through its descriptor, then the rename.
    fn finish_file(&self, job: &FileJob, fd: impl AsFd) -> Result<()> {
        let shown = self.shown(&job.dir, &job.name);
        self.set_fd_metadata(fd, &job.meta, &shown);
        self.rename_into_place(&job.dir, &temp_name(&job.name), &job.name)?;
        *job.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = FileState::Done;
        self.item_done();
        Ok(())
    }

    /// Executes the batch: create, fill, verify, link, finish directories.
    fn flush(&mut self) -> Result<()> {
        let links = std::mem::take(&mut self.batch.links);
        self.batch.blobs = 0;
        self.batch.path_bytes = 0;
        self.batch.dir_changes = 0;
        self.batch.last_dir = None;
        // On failure the files stay in the batch for `discard_batch`.
        self.flush_files()?;
        let files = std::mem::take(&mut self.batch.files);
        // Hard link groups whose first name is in this batch.
        for job in &files {
            if let Some(key) = job.meta.link_key {
                if matches!(self.links.get(&key), Some(LinkState::Pending)) {
                    let state = *job
                        .state
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let new = match state {
                        // Kept by if-changed: taken to match the snapshot, so linked to; kept by
                        // never: unrelated to it, so further names get their own copy.
                        FileState::Done | FileState::Kept
                            if state == FileState::Done
                                || self.opts.overwrite == Overwrite::IfChanged =>
                        {
                            match rfs::stat_at(&job.dir.fd, &job.name) {
                                Ok(Some(st)) => LinkState::Restored {
                                    path: job.dir.path.join(&job.name),
                                    dev: st.st_dev,
                                    ino: st.st_ino,
                                },
                                _ => LinkState::NotRestored,
                            }
                        }
                        _ => LinkState::NotRestored,
                    };
                    let _ = self.links.insert(key, new);
                }
            }
        }
        drop(files);
        let mut own_copies = Vec::new();
        for link in links {
            self.ctx.cancel.check()?;
            if !self.link(&link)? {
                own_copies.push(link);
            }
        }
        self.finish_dirs();
        // Further names whose first name was not restored get their own copy.
        for l in own_copies {
            self.add_file(l.dir, l.name, l.meta)?;
        }
        Ok(())
    }

    fn flush_files(&self) -> Result<()> {
        let files = &self.batch.files;
        if files.is_empty() {
            return Ok(());
        }
        files.par_iter().try_for_each(|job| {
            self.ctx.cancel.check()?;
            self.create_file(job)
        })?;
        let mut skipped = 0;
        for job in files {
            match *job
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
            {
                FileState::Kept => {
                    skipped += 1;
                    self.item_done();
                }
                FileState::Skipped => self.item_done(),
                _ => {}
            }
        }
        self.summary().files_skipped += skipped;
        self.fill_files(files)?;
        let restored = files
            .iter()
            .filter(|j| {
                *j.state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    == FileState::Done
            })
            .count() as u64;
        self.summary().files_restored += restored;
        if self.opts.verify {
            self.verify(files);
        }
        Ok(())
    }

    /// Removes the temporary files of a failed batch (only what this restore created, checked
    /// by identity, through the directories' descriptors).
    fn discard_batch(&mut self) {
        for job in &self.batch.files {
            let state = *job
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let FileState::Writing { dev, ino } = state {
                let tmp = temp_name(&job.name);
                if let Ok(Some(st)) = rfs::stat_at(&job.dir.fd, &tmp) {
                    if job.dir.fresh || (st.st_dev == dev && st.st_ino == ino) {
                        let _ = rfs::unlink(&job.dir.fd, &tmp);
                    }
                }
            }
        }
        self.batch.files.clear();
        self.batch.links.clear();
    }

    /// Directory metadata of the finished directories, in post-order.
    fn finish_dirs(&mut self) {
        for (dir, meta) in std::mem::take(&mut self.batch.finished) {
            self.set_fd_metadata(&dir.fd, &meta, &self.target.join(&dir.path));
            self.item_done();
        }
    }

    /// Links a further name of a hard link group to its first. Returns false when the first
    /// was not restored here (the caller makes an own copy).
    fn link(&self, job: &LinkJob) -> Result<bool> {
        let Some(LinkState::Restored { path, dev, ino }) =
            job.meta.link_key.and_then(|k| self.links.get(&k).cloned())
        else {
            return Ok(false);
        };
        match self.make_way(&job.dir, &job.name, &job.meta)? {
            None => return Ok(true),
            Some(true) => {
                self.summary().files_skipped += 1;
                self.item_done();
                return Ok(true);
            }
            Some(false) => {}
        }
        // The first name's directory, reached from the target without following symlinks.
        let mut dir: OwnedFd = rustix::fs::openat(
            &self.root.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open the restore target", e.into()))?;
        let parent = path.parent().unwrap_or(Path::new(""));
        for c in parent.components() {
            if let Component::Normal(n) = c {
                dir = match rfs::open_dir(&dir, n) {
                    Ok(d) => d,
                    Err(_) => return Ok(false),
                };
            }
        }
        let Some(first_name) = path.file_name() else {
            return Ok(false);
        };
        let tmp = temp_name(&job.name);
        rfs::unlink(&job.dir.fd, &tmp).map_err(|e| self.io_at("remove", &job.dir, &tmp, e))?;
        if rustix::fs::linkat(&dir, first_name, &job.dir.fd, &tmp, AtFlags::empty()).is_err() {
            return Ok(false);
        }
        match rfs::stat_at(&job.dir.fd, &tmp) {
            Ok(Some(st)) if st.st_dev == dev && st.st_ino == ino => {}
            _ => {
                // The first name was replaced meanwhile: not linked to whatever is there now.
                let _ = rfs::unlink(&job.dir.fd, &tmp);
                return Ok(false);
            }
        }
        self.rename_into_place(&job.dir, &tmp, &job.name)?;
        // Renaming a name over another name of the same file does nothing: the temporary
        // name stays.
        if let Ok(Some(_)) = rfs::stat_at(&job.dir.fd, &tmp) {
            let _ = rfs::unlink(&job.dir.fd, &tmp);
        }
        self.summary().files_restored += 1;
        self.item_done();
        Ok(true)
    }

    /// Fills the batch's created files, pack range by pack range in parallel; each file is
    /// finished (metadata, rename) by the worker that writes its last blob.
    fn fill_files(&self, files: &[FileJob]) -> Result<()> {
        let mut by_pack: HashMap<PackId, HashMap<BlobId, NeededBlob>> = HashMap::new();
        for (fi, job) in files.iter().enumerate() {
            let state = *job
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !matches!(state, FileState::Writing { .. }) || job.meta.content.is_empty() {
                continue;
            }
            let mut offset = 0u64;
            for id in job.meta.content.iter() {
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
                        span: BlobSpan {
                            blob_type: BlobType::Data,
                            id: *id,
                            offset: loc.offset,
                            stored_len: loc.stored_len,
                            raw_len: loc.raw_len,
                        },
                        places: Vec::new(),
                    })
                    .places
                    .push(Placement { file: fi, offset });
                offset += u64::from(loc.raw_len);
            }
        }
        // Runs of nearby blobs read in one request each (the pack reader's coalescing).
        let mut packs: Vec<(PackId, HashMap<BlobId, NeededBlob>)> = by_pack.into_iter().collect();
        packs.sort_by_key(|(p, _)| *p);
        let runs: Vec<ReadRun> = packs
            .into_iter()
            .flat_map(|(pack, blobs)| {
                reader::runs(blobs.into_values().collect(), |b: &NeededBlob| b.span)
                    .into_iter()
                    .map(move |blobs| ReadRun { pack, blobs })
            })
            .collect();
        runs.par_iter()
            .try_for_each(|run| self.restore_run(run, files))
    }

    fn restore_run(&self, run: &ReadRun, files: &[FileJob]) -> Result<()> {
        self.ctx.cancel.check()?;
        let reader = self.repo.pack_reader();
        reader.read_run(
            &run.pack,
            &run.blobs,
            |b| b.span,
            |b, raw| {
                let zero = raw.iter().all(|&x| x == 0);
                for place in &b.places {
                    let job = &files[place.file];
                    let FileState::Writing { dev, ino } = *job
                        .state
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                    else {
                        return Err(Error::internal("a blob for a file not being written"));
                    };
                    let mut file = None;
                    if !zero {
                        let f = self.open_temp(job, dev, ino)?;
                        f.write_all_at(&raw, place.offset)
                            .map_err(|e| self.io_at("write", &job.dir, &job.name, e))?;
                        file = Some(f);
                    }
                    let _ = self.written.fetch_add(raw.len() as u64, Ordering::Relaxed);
                    self.ctx.progress.event(&ProgressEvent::Advanced {
                        phase: Phase::Restore,
                        items: 0,
                        bytes: raw.len() as u64,
                    });
                    if job.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                        let f = match file {
                            Some(f) => f,
                            None => self.open_temp(job, dev, ino)?,
                        };
                        self.finish_file(job, &f)?;
                    }
                }
                Ok(())
            },
        )
    }

    /// Re-reads the batch's restored and kept files and checks them against the snapshot.
    fn verify(&self, files: &[FileJob]) {
        let key = self.repo.master_key();
        let checked = AtomicU64::new(0);
        let failures: Vec<String> = files
            .par_iter()
            .filter_map(|job| {
                let state = *job
                    .state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let kept = match state {
                    FileState::Done => false,
                    FileState::Kept => true,
                    _ => return None,
                };
                let _ = checked.fetch_add(1, Ordering::Relaxed);
                let shown = self.shown(&job.dir, &job.name);
                let how = if kept { " (kept as it was)" } else { "" };
                let check = || -> Result<Option<String>> {
                    let fd = rustix::fs::openat(
                        &job.dir.fd,
                        &job.name,
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| self.io_at("open", &job.dir, &job.name, e))?;
                    let st = rustix::fs::fstat(&fd)
                        .map_err(|e| self.io_at("stat", &job.dir, &job.name, e))?;
                    if rfs::kind(&st) != Kind::RegularFile {
                        return Ok(Some(format!(
                            "{}{how}: not a regular file",
                            shown.display()
                        )));
                    }
                    let mut f = File::from(fd);
                    let mut buf = Vec::new();
                    for id in job.meta.content.iter() {
                        let loc = self
                            .repo
                            .index()
                            .lookup(BlobType::Data, id)
                            .ok_or_else(|| Error::internal("blob vanished from the index"))?;
                        buf.resize(loc.raw_len as usize, 0);
                        if f.read_exact(&mut buf).is_err() || key.blob_id(&buf) != *id {
                            return Ok(Some(format!(
                                "{}{how}: content differs from the snapshot",
                                shown.display()
                            )));
                        }
                    }
                    let mut extra = [0u8; 1];
                    if f.read(&mut extra)
                        .map_err(|e| self.io_at("read", &job.dir, &job.name, e))?
                        != 0
                    {
                        return Ok(Some(format!(
                            "{}{how}: longer than in the snapshot",
                            shown.display()
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
        let mut s = self.summary();
        s.files_verified += checked.load(Ordering::Relaxed);
        s.verify_failures.extend(failures);
    }
}
