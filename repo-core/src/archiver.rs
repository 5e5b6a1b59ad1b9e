//! Backup: walk → read and chunk → dedup → compress and encrypt → pack → upload → trees →
//! index → snapshot.
//!
//! Threads and bounded channels (memory is bounded whatever the file sizes):
//! - one walker (DFS, sorted names, lockstep with the parent snapshot's trees) emits an ordered
//!   event stream to the collector and file jobs to the readers;
//! - file readers chunk each file, hash every chunk, look it up in the index and the set of
//!   blobs already added by this run, and hand new chunks on;
//! - compressors (one per core) compress and encrypt blobs; a single large file thus keeps every
//!   core busy;
//! - the packer appends blobs to a data pack and a tree pack and seals full packs;
//! - uploaders write packs to the backend in parallel;
//! - the collector (the calling thread) assembles tree blobs bottom-up from the event stream.
//!
//! Write order (spec/09-invariants.md): every pack is uploaded before the index file that lists
//! it, and the index before the snapshot. A failure or cancellation at any point leaves only
//! unreferenced packs.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::chunker::{Chunker, ChunkerParams};
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::{SnapshotFile, SnapshotSummary};
use crate::format::tree::{Node, NodeKind, TreeCursor, TreeEncoder};
use crate::format::BlobType;
use crate::id::{BlobId, SnapshotId};
use crate::lock::LockMode;
use crate::pack::{Abort, BlobQueue, PackWriter};
use crate::progress::{OpCtx, Phase, ProgressEvent};
use crate::repository::{now_ns, Indexed, Repository, Snapshot};
use crate::source::{self, DirStack, EnterError, Meta, OPEN_WINDOW};

/// Which snapshot a backup compares against to skip reading unchanged files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParentSelection {
    /// The latest snapshot of the same host and the same set of paths.
    #[default]
    Auto,
    /// None: read every file.
    None,
    /// This snapshot.
    Id(SnapshotId),
}

/// Options of [`Repository::backup`].
#[non_exhaustive]
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Glob patterns to exclude (`*` stays within a path component, `**` spans components;
    /// a pattern without a leading `/` matches at any depth).
    pub excludes: Vec<String>,
    /// Like `excludes`, matched case-insensitively.
    pub iexcludes: Vec<String>,
    /// Exclude directories that contain a file of one of these names.
    pub exclude_if_present: Vec<String>,
    /// Exclude directories holding a valid `CACHEDIR.TAG`.
    pub exclude_caches: bool,
    /// Do not cross file-system boundaries below each backup path.
    pub one_file_system: bool,
    /// Tags for the snapshot.
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's).
    pub hostname: Option<String>,
    /// Snapshot description.
    pub description: String,
    /// Parent snapshot choice.
    pub parent: ParentSelection,
    /// Read every file even when the parent says it is unchanged.
    pub force: bool,
    /// Do everything except writing to the repository.
    pub dry_run: bool,
    /// zstd level for this backup (default: the repository's).
    pub compression_level: Option<i32>,
    /// Snapshot time, ns since the epoch (default: now).
    pub time_ns: Option<i64>,
    /// Count files and bytes first, so progress can show an ETA.
    pub scan: bool,
    /// How long to wait for a conflicting lock.
    pub lock_wait: std::time::Duration,
}

/// What a backup did.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    /// The new snapshot (None on a dry run).
    pub snapshot: Option<SnapshotId>,
    /// The parent snapshot used.
    pub parent: Option<SnapshotId>,
    /// Counters (also stored in the snapshot).
    pub stats: SnapshotSummary,
    /// Entries left out because they could not be read, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileStatus {
    New,
    Changed,
    Unmodified,
}

enum Event {
    Enter(Node),
    Leave,
    Entry(Node, Option<FileStatus>),
    File(Node, FileStatus, u64),
}

struct FileJob {
    ticket: u64,
    path: PathBuf,
    /// The file, opened by the walker relative to its directory and confirmed to be the
    /// regular file its lstat saw.
    file: File,
    /// `fstat` of `file` when it was opened.
    opened: Meta,
    /// What the walker's lstat saw, which the tree records: the reader warns when the file it
    /// read no longer matches it.
    seen: Seen,
}

/// The metadata of a file as the walker saw it.
#[derive(Clone, Copy)]
struct Seen {
    size: u64,
    mtime_ns: i64,
    inode: u64,
}

impl Seen {
    fn of(meta: &Meta) -> Self {
        Self {
            size: meta.size,
            mtime_ns: source::clamped_ns(meta.mtime),
            inode: meta.ino,
        }
    }
}

struct FileDone {
    content: Vec<BlobId>,
    bytes: u64,
}

struct FileResult {
    ticket: u64,
    path: PathBuf,
    result: Result<FileDone>,
}

/// What every backup stage reads: the repository, the operation context, the abort handle
/// shared with the pack writer, and the bytes-read counter.
struct Shared<'r> {
    repo: &'r Repository<Indexed>,
    ctx: OpCtx<'r>,
    abort: &'r Abort<'r>,
    bytes_read: AtomicU64,
}

impl Shared<'_> {
    fn fail(&self, e: Error) {
        self.abort.fail(e);
    }

    fn failed(&self) -> bool {
        self.abort.failed()
    }
}

/// Compiled exclusion rules.
struct Excluder {
    set: GlobSet,
    iset: GlobSet,
    if_present: Vec<PathBuf>,
    caches: bool,
}

const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

impl Excluder {
    fn new(opts: &BackupOptions) -> Result<Self> {
        let build = |patterns: &[String], case_insensitive: bool| -> Result<GlobSet> {
            let mut b = GlobSetBuilder::new();
            for p in patterns {
                let trimmed = p.trim_end_matches('/');
                if trimmed.is_empty() {
                    continue;
                }
                let pat = if trimmed.starts_with('/') {
                    trimmed.to_string()
                } else {
                    format!("**/{trimmed}")
                };
                let glob = GlobBuilder::new(&pat)
                    .literal_separator(true)
                    .case_insensitive(case_insensitive)
                    .backslash_escape(true)
                    .build()
                    .map_err(|e| Error::invalid(format!("invalid exclude pattern {p:?}: {e}")))?;
                let _ = b.add(glob);
            }
            b.build()
                .map_err(|e| Error::invalid(format!("invalid exclude patterns: {e}")))
        };
        Ok(Self {
            set: build(&opts.excludes, false)?,
            iset: build(&opts.iexcludes, true)?,
            if_present: opts.exclude_if_present.iter().map(PathBuf::from).collect(),
            caches: opts.exclude_caches,
        })
    }

    fn excluded_path(&self, path: &Path) -> bool {
        self.set.is_match(path) || self.iset.is_match(path)
    }

    /// Whether the open directory `dir` carries a marker that excludes it. Markers are looked
    /// up in it by name, not following symlinks.
    fn excluded_dir(&self, dir: &File) -> bool {
        if self
            .if_present
            .iter()
            .any(|m| source::lstat_at(dir, m.as_os_str().as_bytes()).is_ok())
        {
            return true;
        }
        // Only a regular file can be a tag: opening a fifo would block the backup, opening a
        // device could have side effects.
        self.caches && source::file_starts_with(dir, b"CACHEDIR.TAG", CACHEDIR_SIGNATURE)
    }
}

/// Caches uid → user name and gid → group name lookups.
#[derive(Default)]
pub(crate) struct Owners {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Owners {
    fn user(&mut self, uid: u32) -> String {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
                    .unwrap_or_default()
            })
            .clone()
    }

    fn group(&mut self, gid: u32) -> String {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
                    .ok()
                    .flatten()
                    .map(|g| g.name)
                    .unwrap_or_default()
            })
            .clone()
    }
}

/// One of a file's times as a node stores it: nanoseconds since the epoch. A time outside
/// what that holds (before 1677-09-21 or after 2262-04-11) is stored as the nearest one it
/// holds, and `notes` gets a message saying so.
fn stored_time(what: &str, time: (i64, i64), notes: &mut Vec<String>) -> i64 {
    let stored = source::clamped_ns(time);
    if source::checked_ns(time.0, time.1).is_none() {
        notes.push(format!(
            "{what} {} cannot be stored (snapshots hold times from 1677-09-21 to 2262-04-11); \
             stored as {}",
            source::utc(time.0, time.1),
            source::utc(
                stored.div_euclid(1_000_000_000),
                stored.rem_euclid(1_000_000_000)
            ),
        ));
    }
    stored
}

/// Builds a node from `lstat` metadata; `notes` gets what could not be stored as it is.
fn node_from_stat(
    name: Vec<u8>,
    meta: &Meta,
    owners: &mut Owners,
    notes: &mut Vec<String>,
) -> Node {
    let kind = meta.kind;
    let mut node = Node::new(name, kind);
    node.mode = meta.mode;
    node.uid = meta.uid;
    node.gid = meta.gid;
    node.user = owners.user(node.uid);
    node.group = owners.group(node.gid);
    node.mtime_ns = stored_time("modification time", meta.mtime, notes);
    node.ctime_ns = stored_time("status change time", meta.ctime, notes);
    node.atime_ns = stored_time("access time", meta.atime, notes);
    node.device = meta.dev;
    node.inode = meta.ino;
    node.links = meta.nlink;
    if kind == NodeKind::File {
        node.size = meta.size;
    }
    if matches!(kind, NodeKind::CharDevice | NodeKind::BlockDevice) {
        node.rdev = meta.rdev;
    }
    node
}

/// Backup sources arranged as a tree of path components.
#[derive(Debug)]
enum Source {
    Target(PathBuf),
    Dir(PathBuf, BTreeMap<Vec<u8>, Source>),
}

/// The path a backup path names, as the snapshot records it: absolute, with every symlink in
/// the directories above its last component resolved (as tar and restic do, so `/lib/x`
/// with `/lib -> usr/lib` is `/usr/lib/x`), and its last component kept as named: a symlink
/// named is stored as the symlink. A path ending in `/` or `/.`, or in `..`, is resolved
/// whole, so `/var/run/` names the directory `/var/run` points to, as `ls -l /var/run/` does.
fn source_path(p: &Path) -> Result<PathBuf> {
    let failed = |e: std::io::Error| {
        Error::new(
            if e.kind() == std::io::ErrorKind::NotFound {
                ErrorKind::NotFound
            } else {
                ErrorKind::Io
            },
            format!("source path {}: {e}", p.display()),
        )
    };
    let abs = std::path::absolute(p).map_err(failed)?;
    let bytes = abs.as_os_str().as_bytes();
    let last = abs.components().next_back();
    let resolved = match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name))
            if !bytes.ends_with(b"/")
                && !bytes.ends_with(b"/.")
                && matches!(last, Some(Component::Normal(_))) =>
        {
            fs::canonicalize(parent).map_err(failed)?.join(name)
        }
        _ => fs::canonicalize(&abs).map_err(failed)?,
    };
    let _ = resolved.symlink_metadata().map_err(failed)?;
    Ok(resolved)
}

/// The resolved backup paths, and the same arranged as a tree of components.
type Sources = (Vec<PathBuf>, BTreeMap<Vec<u8>, Source>);

fn arrange_sources(paths: &[PathBuf]) -> Result<Sources> {
    let mut abs = Vec::new();
    for p in paths {
        abs.push(source_path(p)?);
    }
    abs.sort();
    abs.dedup();
    // Drop paths inside another backup path.
    let mut kept: Vec<PathBuf> = Vec::new();
    for a in abs {
        if !kept.iter().any(|k| a.starts_with(k)) {
            kept.push(a);
        }
    }
    let mut root = BTreeMap::new();
    for path in &kept {
        let comps: Vec<&OsStr> = path
            .components()
            .filter_map(|c| {
                if let Component::Normal(n) = c {
                    Some(n)
                } else {
                    None
                }
            })
            .collect();
        let mut level = &mut root;
        let mut cur = PathBuf::from("/");
        for (i, comp) in comps.iter().enumerate() {
            cur.push(comp);
            let key = comp.as_bytes().to_vec();
            if i + 1 == comps.len() {
                let _ = level.insert(key, Source::Target(cur.clone()));
                break;
            }
            let entry = level
                .entry(key)
                .or_insert_with(|| Source::Dir(cur.clone(), BTreeMap::new()));
            level = match entry {
                Source::Dir(_, children) => children,
                Source::Target(_) => break,
            };
        }
    }
    Ok((kept, root))
}

struct Walker<'s, 'r> {
    shared: &'s Shared<'r>,
    opts: &'s BackupOptions,
    excluder: &'s Excluder,
    job_tx: Sender<FileJob>,
    ev_tx: Sender<Event>,
    next_ticket: u64,
    owners: Owners,
    skipped: Vec<(PathBuf, String)>,
    /// The directories of the current path, open: every entry is reached relative to its
    /// parent's descriptor, so a directory swapped for a symlink is never followed.
    dirs: DirStack,
}

/// Whether an error from opening a directory means it is no longer one (a symlink or
/// another kind of file took its place).
fn not_a_directory(e: &std::io::Error) -> bool {
    e.raw_os_error().is_some_and(|n| {
        n == rustix::io::Errno::LOOP.raw_os_error() || n == rustix::io::Errno::NOTDIR.raw_os_error()
    })
}

impl Walker<'_, '_> {
    fn emit(&self, ev: Event) -> bool {
        self.ev_tx.send(ev).is_ok()
    }

    fn skip(&mut self, path: &Path, e: &Error) {
        self.shared
            .ctx
            .progress
            .event(&ProgressEvent::Skipped { path, error: e });
        self.skipped.push((path.to_path_buf(), e.to_string()));
    }

    /// Skips `path` with a message of our own.
    fn skip_because(&mut self, path: &Path, why: &str) {
        let e = Error::new(ErrorKind::Io, format!("{}: {why}", path.display()));
        self.skip(path, &e);
    }

    /// The parent snapshot's listing of a directory whose parent node is `old`. A parent tree
    /// that cannot be read only costs speed: its files are read again.
    fn parent_subtree(&self, old: Option<&Node>) -> Option<TreeCursor> {
        let node = old?;
        if node.kind != NodeKind::Dir {
            return None;
        }
        let id = node.subtree.as_ref()?;
        let raw = self.shared.repo.read_blob(BlobType::Tree, id).ok()?;
        TreeCursor::new(raw, &format_args!("tree {id}")).ok()
    }

    /// `lstat` of `name` in the current directory, and the node it makes. Times a snapshot
    /// cannot hold are reported as warnings. None (after reporting it) when it fails.
    fn stat(&mut self, path: &Path, name: &[u8]) -> Option<(Meta, Node)> {
        let Some(dir) = self.dirs.top() else {
            self.skip_because(path, "its directory changed during the backup");
            return None;
        };
        match source::lstat_at(dir, name) {
            Ok(meta) => {
                let mut notes = Vec::new();
                let node = node_from_stat(name.to_vec(), &meta, &mut self.owners, &mut notes);
                for message in &notes {
                    self.shared
                        .ctx
                        .progress
                        .event(&ProgressEvent::Warning { path, message });
                }
                Some((meta, node))
            }
            Err(e) => {
                self.skip(path, &Error::io(format!("stat {}", path.display()), e));
                None
            }
        }
    }

    /// Enters the directory `name` of the current directory, which `meta` (its lstat)
    /// described. False, after reporting it, when what is there now is not that directory:
    /// then nothing of it is stored.
    fn enter(&mut self, path: &Path, name: &[u8], meta: &Meta) -> bool {
        match self.dirs.enter(name, meta) {
            Ok(_) => true,
            Err(EnterError::Changed) => {
                self.skip_because(
                    path,
                    "replaced by another directory while the backup read it; not backed up \
                     (back it up again)",
                );
                false
            }
            Err(EnterError::Io(e)) if not_a_directory(&e) => {
                self.skip_because(
                    path,
                    "no longer a directory (replaced during the backup, not followed); not \
                     backed up (back it up again)",
                );
                false
            }
            Err(EnterError::Io(e)) => {
                self.skip(path, &Error::io(format!("open {}", path.display()), e));
                false
            }
        }
    }

    /// Whether the current directory (at `path`) can still be read from; when it was lost
    /// (moved or replaced while the walk was below it, see [`DirStack::leave`]) this says so,
    /// naming the first entry left out.
    fn still_there(&mut self, path: &Path, next: &[u8]) -> bool {
        if self.dirs.top().is_some() {
            return true;
        }
        let why = format!(
            "directory moved or replaced during the backup; its entries from {:?} on are not \
             backed up (back it up again)",
            OsStr::from_bytes(next)
        );
        self.skip_because(path, &why);
        false
    }

    /// Backs up the whole file system: every entry of `/` is a backup path, on the device of
    /// `/` for --one-file-system.
    fn walk_root(&mut self, mut parent: Option<&mut TreeCursor>) -> bool {
        let listed = self
            .dirs
            .top()
            .map(|root| source::fstat(root).and_then(|m| Ok((m.dev, source::list(root)?))));
        let (dev, names) = match listed {
            Some(Ok(l)) => l,
            Some(Err(e)) => {
                self.skip(Path::new("/"), &Error::io("read directory /", e));
                return true;
            }
            None => return true,
        };
        for name in names {
            if self.shared.failed() {
                return false;
            }
            let path = Path::new("/").join(OsStr::from_bytes(&name));
            if !self.entry(&path, name, parent.as_deref_mut(), Some(dev)) {
                return false;
            }
        }
        true
    }

    fn walk_sources(
        &mut self,
        dir: &Path,
        level: &BTreeMap<Vec<u8>, Source>,
        mut parent: Option<&mut TreeCursor>,
    ) -> bool {
        for (name, source) in level {
            if self.shared.failed() {
                return false;
            }
            if !self.still_there(dir, name) {
                break;
            }
            match source {
                Source::Target(path) => {
                    if !self.entry(path, name.clone(), parent.as_deref_mut(), None) {
                        return false;
                    }
                }
                Source::Dir(path, children) => {
                    let Some((meta, mut node)) = self.stat(path, name) else {
                        continue;
                    };
                    if meta.kind != NodeKind::Dir {
                        self.skip_because(
                            path,
                            "no longer a directory (changed since the backup started)",
                        );
                        continue;
                    }
                    if !self.enter(path, name, &meta) {
                        continue;
                    }
                    node.xattrs = self.dirs.top().map(source::xattrs_of).unwrap_or_default();
                    let old = parent.as_deref_mut().and_then(|p| p.take(name));
                    let mut sub = self.parent_subtree(old.as_ref());
                    let ok = self.emit(Event::Enter(node))
                        && self.walk_sources(path, children, sub.as_mut());
                    self.dirs.leave();
                    if !ok || !self.emit(Event::Leave) {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Opens the regular file `name` of the current directory, which `meta` (its lstat)
    /// described, and checks that what was opened is that file. None after reporting it.
    fn open_file(&mut self, path: &Path, name: &[u8], meta: &Meta) -> Option<(File, Meta)> {
        let dir = self.dirs.top()?;
        // Not following a symlink and not blocking on a fifo: either may have been swapped in
        // since the lstat.
        let opened = source::open_at(dir, name, false).and_then(|f| Ok((source::fstat(&f)?, f)));
        match opened {
            Ok((m, f)) if m.kind == NodeKind::File && m.same_file(meta) => Some((f, m)),
            Ok(_) => {
                self.skip_because(
                    path,
                    "no longer the regular file it was (replaced during the backup)",
                );
                None
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                self.skip_because(
                    path,
                    "no longer a regular file (replaced by a symlink during the backup)",
                );
                None
            }
            Err(e) => {
                self.skip(path, &Error::io(format!("open {}", path.display()), e));
                None
            }
        }
    }

    /// Handles one entry of the current directory; `root_dev` is the device of the backup
    /// path it lies under.
    fn entry(
        &mut self,
        path: &Path,
        name: Vec<u8>,
        parent: Option<&mut TreeCursor>,
        root_dev: Option<u64>,
    ) -> bool {
        if self.excluder.excluded_path(path) {
            return true;
        }
        let Some((meta, mut node)) = self.stat(path, &name) else {
            return true;
        };
        let old = parent.and_then(|p| p.take(&node.name));
        let unchanged_meta = old.as_ref().is_some_and(|o| {
            o.kind == node.kind && o.ctime_ns == node.ctime_ns && o.inode == node.inode
        });
        // Extended attributes of an entry whose metadata did not change are the parent's.
        let old_xattrs = match &old {
            Some(o) if unchanged_meta => Some(o.xattrs.clone()),
            _ => None,
        };
        match node.kind {
            NodeKind::Dir => {
                let root_dev = root_dev.unwrap_or(node.device);
                if self.opts.one_file_system && node.device != root_dev {
                    return true;
                }
                if !self.enter(path, &name, &meta) {
                    return true;
                }
                let Some(dir) = self.dirs.top() else {
                    self.dirs.leave();
                    return true;
                };
                if self.excluder.excluded_dir(dir) {
                    self.dirs.leave();
                    return true;
                }
                node.xattrs = old_xattrs.unwrap_or_else(|| source::xattrs_of(dir));
                let names = match source::list(dir) {
                    Ok(n) => n,
                    Err(e) => {
                        self.dirs.leave();
                        self.skip(
                            path,
                            &Error::io(format!("read directory {}", path.display()), e),
                        );
                        return true;
                    }
                };
                let mut sub = self.parent_subtree(old.as_ref());
                if !self.emit(Event::Enter(node)) {
                    self.dirs.leave();
                    return false;
                }
                let mut ok = true;
                for child in names {
                    if self.shared.failed() {
                        ok = false;
                        break;
                    }
                    if !self.still_there(path, &child) {
                        break;
                    }
                    let child_path = path.join(OsStr::from_bytes(&child));
                    if !self.entry(&child_path, child, sub.as_mut(), Some(root_dev)) {
                        ok = false;
                        break;
                    }
                }
                self.dirs.leave();
                ok && self.emit(Event::Leave)
            }
            NodeKind::File => {
                let status = match &old {
                    Some(o)
                        if !self.opts.force
                            && o.kind == NodeKind::File
                            && o.size == node.size
                            && o.mtime_ns == node.mtime_ns
                            && o.ctime_ns == node.ctime_ns
                            && o.inode == node.inode
                            && o.content.iter().all(|id| {
                                self.shared.repo.index().contains(BlobType::Data, id)
                            }) =>
                    {
                        node.content = o.content.clone();
                        node.xattrs = o.xattrs.clone();
                        self.shared.ctx.progress.event(&ProgressEvent::Advanced {
                            phase: Phase::Backup,
                            items: 1,
                            bytes: node.size,
                        });
                        return self.emit(Event::Entry(node, Some(FileStatus::Unmodified)));
                    }
                    Some(o) if o.kind == NodeKind::File => FileStatus::Changed,
                    _ => FileStatus::New,
                };
                let Some((file, opened)) = self.open_file(path, &name, &meta) else {
                    return true;
                };
                node.xattrs = old_xattrs.unwrap_or_else(|| source::xattrs_of(&file));
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                if self
                    .job_tx
                    .send(FileJob {
                        ticket,
                        path: path.to_path_buf(),
                        file,
                        opened,
                        seen: Seen::of(&meta),
                    })
                    .is_err()
                {
                    return false;
                }
                self.emit(Event::File(node, status, ticket))
            }
            NodeKind::Symlink => {
                let Some(dir) = self.dirs.top() else {
                    return true;
                };
                match source::read_link_at(dir, &name) {
                    Ok(target) => node.symlink_target = target,
                    Err(e) => {
                        self.skip(path, &Error::io(format!("read link {}", path.display()), e));
                        return true;
                    }
                }
                node.xattrs = old_xattrs.unwrap_or_else(|| source::xattrs_at(dir, &name));
                self.emit(Event::Entry(node, None))
            }
            NodeKind::Socket => {
                self.shared.ctx.progress.event(&ProgressEvent::Warning {
                    path,
                    message: "socket not backed up",
                });
                true
            }
            NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {
                if let Some(dir) = self.dirs.top() {
                    node.xattrs = old_xattrs.unwrap_or_else(|| source::xattrs_at(dir, &name));
                }
                self.emit(Event::Entry(node, None))
            }
        }
    }
}

/// Reads a file, producing the zeros of its holes without reading them when it is sparse.
///
/// Reading a hole makes the kernel zero-fill page after page; for a mostly empty multi-GiB
/// file that dominates the backup. Holes still reach the chunker as zeros, so they chunk and
/// dedupe exactly as if they had been read.
struct HoleSkippingReader<'f> {
    file: &'f File,
    pos: u64,
    /// Bytes up to here (from `pos`) are known to be a hole.
    hole_end: u64,
    /// Bytes up to here (from `hole_end`) are known to be data.
    data_end: u64,
    sparse: bool,
}

impl<'f> HoleSkippingReader<'f> {
    fn new(file: &'f File, sparse: bool) -> Self {
        Self {
            file,
            pos: 0,
            hole_end: 0,
            data_end: 0,
            sparse,
        }
    }

    /// Finds the next data region at or after `pos`.
    fn locate(&mut self) -> std::io::Result<()> {
        use nix::unistd::{lseek, Whence};
        use std::os::fd::AsRawFd;
        let fd = self.file.as_raw_fd();
        let at = i64::try_from(self.pos).map_err(std::io::Error::other)?;
        match lseek(fd, at, Whence::SeekData) {
            Ok(data) => {
                let data = data as u64;
                let hole =
                    lseek(fd, data as i64, Whence::SeekHole).map_err(std::io::Error::from)? as u64;
                self.hole_end = data;
                self.data_end = hole;
            }
            // No data after `pos`: the rest is a hole up to the end of the file.
            Err(nix::errno::Errno::ENXIO) => {
                let end = self.file.metadata()?.len();
                self.hole_end = end;
                self.data_end = end;
            }
            // File systems without SEEK_DATA: read everything.
            Err(_) => self.sparse = false,
        }
        Ok(())
    }
}

impl Read for HoleSkippingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        if !self.sparse {
            let n = self.file.read_at(buf, self.pos)?;
            self.pos += n as u64;
            return Ok(n);
        }
        if self.pos >= self.data_end {
            self.locate()?;
            if !self.sparse || self.pos >= self.data_end {
                // Past the last hole (or no hole support): plain reads from here on.
                self.sparse = false;
                return self.read(buf);
            }
        }
        let n = if self.pos < self.hole_end {
            let n = buf
                .len()
                .min(usize::try_from(self.hole_end - self.pos).unwrap_or(usize::MAX));
            buf[..n].fill(0);
            n
        } else {
            let want = buf
                .len()
                .min(usize::try_from(self.data_end - self.pos).unwrap_or(usize::MAX));
            self.file.read_at(&mut buf[..want], self.pos)?
        };
        self.pos += n as u64;
        Ok(n)
    }
}

/// Reads one file: chunks, hashes, dedups and queues new chunks.
fn read_file(
    shared: &Shared<'_>,
    chunker: &mut Chunker,
    job: &FileJob,
    queue: &BlobQueue<'_>,
) -> Result<FileDone> {
    let path = job.path.as_path();
    // Fewer allocated blocks than the size needs: the file has holes.
    let sparse = job.opened.blocks.saturating_mul(512) < job.opened.size;
    let mut file = HoleSkippingReader::new(&job.file, sparse);
    let key = shared.repo.master_key();
    chunker.reset();
    let mut content = Vec::new();
    let mut bytes = 0u64;
    loop {
        shared.ctx.cancel.check()?;
        if shared.failed() {
            return Err(Error::cancelled());
        }
        let chunk = match chunker.next_chunk(&mut file) {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
        };
        let id = key.blob_id(chunk);
        let len = chunk.len() as u64;
        queue.save_with_id(BlobType::Data, id, || chunk.to_vec());
        content.push(id);
        bytes += len;
        let _ = shared.bytes_read.fetch_add(len, Ordering::Relaxed);
        shared.ctx.progress.event(&ProgressEvent::Advanced {
            phase: Phase::Backup,
            items: 0,
            bytes: len,
        });
    }
    if let Ok(after) = file.file.metadata() {
        if source::clamped_ns((after.mtime(), after.mtime_nsec())) != job.seen.mtime_ns
            || after.ino() != job.seen.inode
            || after.size() != job.seen.size
            || after.size() != bytes
        {
            let message = "file changed while it was read; the snapshot holds the bytes read";
            shared
                .ctx
                .progress
                .event(&ProgressEvent::Warning { path, message });
        }
    }
    shared.ctx.progress.event(&ProgressEvent::Advanced {
        phase: Phase::Backup,
        items: 1,
        bytes: 0,
    });
    Ok(FileDone { content, bytes })
}

/// Counts files and bytes under the sources for the progress ETA.
fn scan(shared: &Shared<'_>, excluder: &Excluder, roots: &[PathBuf]) {
    shared.ctx.progress.event(&ProgressEvent::PhaseStarted {
        phase: Phase::Scan,
        total_items: None,
        total_bytes: None,
    });
    let mut counter = ScanCounter {
        shared,
        items: 0,
        bytes: 0,
        last: std::time::Instant::now(),
    };
    if let Ok(mut dirs) = DirStack::new(OPEN_WINDOW) {
        for root in roots {
            if shared.failed() {
                return;
            }
            let names: Vec<&[u8]> = root
                .components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n.as_bytes()),
                    _ => None,
                })
                .collect();
            let Some((last, above)) = names.split_last() else {
                // `/` itself: each of its entries.
                let entries = dirs.top().and_then(|d| source::list(d).ok());
                for name in entries.unwrap_or_default() {
                    let path = Path::new("/").join(OsStr::from_bytes(&name));
                    counter.tree(excluder, &mut dirs, path, &name);
                }
                continue;
            };
            let depth = dirs.depth();
            let reached = above.iter().all(|name| {
                let meta = dirs.top().and_then(|d| source::lstat_at(d, name).ok());
                meta.is_some_and(|m| m.kind == NodeKind::Dir && dirs.enter(name, &m).is_ok())
            });
            if reached {
                counter.tree(excluder, &mut dirs, root.clone(), last);
            }
            while dirs.depth() > depth {
                dirs.leave();
            }
        }
    }
    counter.report();
    shared
        .ctx
        .progress
        .event(&ProgressEvent::PhaseFinished { phase: Phase::Scan });
}

/// Files and bytes counted by [`scan`] so far.
struct ScanCounter<'s, 'r> {
    shared: &'s Shared<'r>,
    items: u64,
    bytes: u64,
    last: std::time::Instant,
}

impl ScanCounter<'_, '_> {
    fn report(&mut self) {
        self.shared.ctx.progress.event(&ProgressEvent::Totals {
            phase: Phase::Scan,
            items: self.items,
            bytes: self.bytes,
        });
        self.last = std::time::Instant::now();
    }

    /// Counts the regular files at and below `name` of the current directory (`path` is
    /// its path), depth first with an explicit stack, through descriptors as the walker does.
    fn tree(&mut self, excluder: &Excluder, dirs: &mut DirStack, path: PathBuf, name: &[u8]) {
        let base = dirs.depth();
        // The directories entered, with their paths and the entries not yet counted.
        let mut pending: Vec<(PathBuf, std::vec::IntoIter<Vec<u8>>)> = Vec::new();
        self.visit(excluder, dirs, &mut pending, path, name);
        while !self.shared.failed() {
            let Some((dir, entries)) = pending.last_mut() else {
                break;
            };
            let next = entries.next().map(|n| (dir.join(OsStr::from_bytes(&n)), n));
            match next {
                Some((child, n)) => self.visit(excluder, dirs, &mut pending, child, &n),
                None => {
                    let _ = pending.pop();
                    dirs.leave();
                }
            }
        }
        while dirs.depth() > base {
            dirs.leave();
        }
    }

    fn visit(
        &mut self,
        excluder: &Excluder,
        dirs: &mut DirStack,
        pending: &mut Vec<(PathBuf, std::vec::IntoIter<Vec<u8>>)>,
        path: PathBuf,
        name: &[u8],
    ) {
        if excluder.excluded_path(&path) {
            return;
        }
        let Some(meta) = dirs.top().and_then(|d| source::lstat_at(d, name).ok()) else {
            return;
        };
        if meta.kind == NodeKind::File {
            self.items += 1;
            self.bytes += meta.size;
        } else if meta.kind == NodeKind::Dir && dirs.enter(name, &meta).is_ok() {
            let names = dirs
                .top()
                .filter(|d| !excluder.excluded_dir(d))
                .and_then(|d| source::list(d).ok());
            match names {
                Some(names) => pending.push((path, names.into_iter())),
                None => dirs.leave(),
            }
        }
        if self.last.elapsed().as_millis() > 250 {
            self.report();
        }
    }
}

/// What the collector hands back: root tree, counters, skipped entries.
type Collected = (BlobId, SnapshotSummary, Vec<(PathBuf, String)>);

/// A directory being assembled: its own node (None for the root) and its entries so far,
/// already encoded (the walker emits them in name order).
struct Frame {
    node: Option<Node>,
    nodes: TreeEncoder,
}

struct Collector<'s, 'r> {
    shared: &'s Shared<'r>,
    queue: BlobQueue<'s>,
    results: Receiver<FileResult>,
    early: HashMap<u64, FileResult>,
    stats: SnapshotSummary,
    skipped: Vec<(PathBuf, String)>,
}

impl Collector<'_, '_> {
    fn wait_for(&mut self, ticket: u64) -> Result<FileResult> {
        if let Some(r) = self.early.remove(&ticket) {
            return Ok(r);
        }
        loop {
            let r = self
                .results
                .recv()
                .map_err(|_| Error::internal("file readers stopped early"))?;
            if r.ticket == ticket {
                return Ok(r);
            }
            let _ = self.early.insert(r.ticket, r);
        }
    }

    fn run(&mut self, events: &Receiver<Event>) -> Result<BlobId> {
        let mut stack = vec![Frame {
            node: None,
            nodes: TreeEncoder::default(),
        }];
        for ev in events {
            if self.shared.failed() {
                break;
            }
            match ev {
                Event::Enter(node) => stack.push(Frame {
                    node: Some(node),
                    nodes: TreeEncoder::default(),
                }),
                Event::Leave => {
                    let frame = stack
                        .pop()
                        .ok_or_else(|| Error::internal("unbalanced walk"))?;
                    let mut node = frame
                        .node
                        .ok_or_else(|| Error::internal("unbalanced walk"))?;
                    node.subtree = Some(self.save_tree(frame.nodes)?);
                    self.stats.dirs += 1;
                    stack
                        .last_mut()
                        .ok_or_else(|| Error::internal("unbalanced walk"))?
                        .nodes
                        .push(&node)?;
                }
                Event::Entry(node, status) => {
                    match status {
                        Some(FileStatus::Unmodified) => {
                            self.stats.files_unmodified += 1;
                            self.stats.bytes_total += node.size;
                        }
                        Some(_) => {}
                        None => self.stats.others += 1,
                    }
                    stack
                        .last_mut()
                        .ok_or_else(|| Error::internal("unbalanced walk"))?
                        .nodes
                        .push(&node)?;
                }
                Event::File(mut node, status, ticket) => {
                    let r = self.wait_for(ticket)?;
                    match r.result {
                        Ok(done) => {
                            node.content = done.content;
                            node.size = done.bytes;
                            self.stats.bytes_total += done.bytes;
                            match status {
                                FileStatus::New => self.stats.files_new += 1,
                                _ => self.stats.files_changed += 1,
                            }
                            stack
                                .last_mut()
                                .ok_or_else(|| Error::internal("unbalanced walk"))?
                                .nodes
                                .push(&node)?;
                        }
                        Err(e) if e.kind() == ErrorKind::Cancelled => return Err(e),
                        Err(e) => {
                            self.shared.ctx.progress.event(&ProgressEvent::Skipped {
                                path: &r.path,
                                error: &e,
                            });
                            self.skipped.push((r.path, e.to_string()));
                        }
                    }
                }
            }
        }
        if self.shared.failed() {
            return Err(Error::cancelled());
        }
        if stack.len() != 1 {
            return Err(Error::internal("walk ended inside a directory"));
        }
        let root = stack.pop().map(|f| f.nodes).unwrap_or_default();
        self.save_tree(root)
    }

    fn save_tree(&mut self, nodes: TreeEncoder) -> Result<BlobId> {
        Ok(self.queue.save(BlobType::Tree, nodes.finish()))
    }
}

impl Repository<Indexed> {
    /// Backs up `paths` into a new snapshot. Takes a shared lock for the duration.
    ///
    /// Unreadable entries are skipped and reported ([`BackupSummary::skipped`]); anything that
    /// endangers the snapshot (backend failure, cancellation) aborts it, leaving no snapshot.
    pub fn backup(
        &self,
        ctx: &OpCtx<'_>,
        paths: &[PathBuf],
        opts: &BackupOptions,
    ) -> Result<BackupSummary> {
        if paths.is_empty() {
            return Err(Error::invalid("nothing to back up: give at least one path"));
        }
        let level = opts
            .compression_level
            .unwrap_or(self.config().compression_level);
        if !(-7..=22).contains(&level) {
            return Err(Error::invalid(format!(
                "compression level {level} is outside -7..=22"
            )));
        }
        let excluder = Excluder::new(opts)?;
        let (roots, sources) = arrange_sources(paths)?;
        // `/` has no name to arrange: its entries are the backup paths.
        let whole_root = roots.iter().any(|r| r.parent().is_none());
        let _lock = if opts.dry_run {
            None
        } else {
            Some(self.lock_for_writing(LockMode::Shared, "backup", opts.lock_wait)?)
        };
        let started_ns = now_ns();
        let hostname = opts.hostname.clone().unwrap_or_else(crate::lock::hostname);
        let path_bytes: Vec<Vec<u8>> = roots
            .iter()
            .map(|p| p.as_os_str().as_bytes().to_vec())
            .collect();

        let parent: Option<Snapshot> = match opts.parent {
            ParentSelection::None => None,
            ParentSelection::Id(id) => Some(self.load_snapshot(&id)?),
            ParentSelection::Auto => {
                let mut want = path_bytes.clone();
                want.sort();
                self.snapshots(ctx)?.into_iter().rev().find(|s| {
                    let mut have = s.meta.paths.clone();
                    have.sort();
                    s.meta.hostname == hostname && have == want
                })
            }
        };
        // An unreadable parent only costs speed: every file is then read again.
        let parent_root = match &parent {
            Some(p) => match self
                .read_blob(BlobType::Tree, &p.meta.tree)
                .and_then(|raw| TreeCursor::new(raw, &format_args!("tree {}", p.meta.tree)))
            {
                Ok(t) => Some(t),
                Err(e) => {
                    let message =
                        format!("parent snapshot {} unusable, reading every file: {e}", p.id);
                    ctx.progress.event(&ProgressEvent::Warning {
                        path: Path::new("/"),
                        message: &message,
                    });
                    None
                }
            },
            None => None,
        };

        let abort = Abort::new(ctx.cancel);
        let shared = Shared {
            repo: self,
            ctx: *ctx,
            abort: &abort,
            bytes_read: AtomicU64::new(0),
        };
        let writer = PackWriter::new(self, &abort, level, opts.dry_run);
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        let chunker_params = ChunkerParams {
            min: self.config().chunk_min,
            avg: self.config().chunk_avg,
            max: self.config().chunk_max,
        };
        let seed = self.master_key().chunker_seed();

        ctx.progress.event(&ProgressEvent::PhaseStarted {
            phase: Phase::Backup,
            total_items: None,
            total_bytes: None,
        });
        // Each queued job holds its file open: the queue bounds those descriptors.
        let (job_tx, job_rx) = bounded::<FileJob>(128);
        let (ev_tx, ev_rx) = bounded::<Event>(4096);
        let (res_tx, res_rx) = unbounded::<FileResult>();

        let mut walker_skipped = Vec::new();
        let outcome: Result<Collected> = std::thread::scope(|s| {
            let shared = &shared;
            let queue = writer.start(s, cores);
            if opts.scan {
                let excluder = &excluder;
                let roots = &roots;
                let _ = s.spawn(move || scan(shared, excluder, roots));
            }
            // Walker: a large stack, as directory depth drives its recursion.
            let walker = std::thread::Builder::new()
                .name("cairn-walk".into())
                .stack_size(256 << 20)
                .spawn_scoped(s, {
                    let excluder = &excluder;
                    let sources = &sources;
                    let mut parent_root = parent_root;
                    let walker_skipped = &mut walker_skipped;
                    move || {
                        let dirs = match DirStack::new(OPEN_WINDOW) {
                            Ok(d) => d,
                            Err(e) => {
                                shared.fail(Error::io("open the root directory /", e));
                                return;
                            }
                        };
                        let mut w = Walker {
                            shared,
                            opts,
                            excluder,
                            job_tx,
                            ev_tx,
                            next_ticket: 0,
                            owners: Owners::default(),
                            skipped: Vec::new(),
                            dirs,
                        };
                        let _ = if whole_root {
                            w.walk_root(parent_root.as_mut())
                        } else {
                            w.walk_sources(Path::new("/"), sources, parent_root.as_mut())
                        };
                        *walker_skipped = w.skipped;
                    }
                });
            if let Err(e) = walker {
                shared.fail(Error::internal(format!("cannot start the walker: {e}")));
            }
            let readers = cores.max(2);
            for _ in 0..readers {
                let job_rx = job_rx.clone();
                let res_tx = res_tx.clone();
                let queue = queue.clone();
                let _ = s.spawn(move || {
                    let mut chunker = Chunker::new(chunker_params, seed);
                    for job in job_rx {
                        let result = if shared.failed() {
                            Err(Error::cancelled())
                        } else {
                            read_file(shared, &mut chunker, &job, &queue)
                        };
                        let _ = res_tx.send(FileResult {
                            ticket: job.ticket,
                            path: job.path,
                            result,
                        });
                    }
                });
            }
            drop((job_rx, res_tx));

            let mut collector = Collector {
                shared,
                queue,
                results: res_rx,
                early: HashMap::new(),
                stats: SnapshotSummary::default(),
                skipped: Vec::new(),
            };
            let root = collector.run(&ev_rx);
            if let Err(e) = &root {
                if e.kind() != ErrorKind::Cancelled || ctx.cancel.is_cancelled() {
                    shared.fail(e.clone_shallow());
                }
            }
            drop(ev_rx);
            let Collector { stats, skipped, .. } = collector;
            root.map(|r| (r, stats, skipped))
        });
        ctx.progress.event(&ProgressEvent::PhaseFinished {
            phase: Phase::Backup,
        });

        if let Some(e) = abort.take_error() {
            return Err(e);
        }
        ctx.cancel.check()?;
        let (root, mut stats, mut skipped) = outcome?;
        // Packs, then index, then snapshot: the snapshot only ever references indexed, stored
        // blobs. A dry run writes no index.
        let written = writer.finish()?;
        skipped.extend(walker_skipped);
        skipped.sort();
        stats.bytes_read = shared.bytes_read.load(Ordering::Relaxed);
        stats.bytes_added = written.bytes_added;
        stats.blobs_added = written.blobs_added;
        stats.errors_skipped = skipped.len() as u64;
        stats.started_ns = started_ns;
        stats.finished_ns = now_ns();

        if opts.dry_run {
            return Ok(BackupSummary {
                snapshot: None,
                parent: parent.map(|p| p.id),
                stats,
                skipped,
            });
        }
        let snapshot = SnapshotFile {
            time_ns: opts.time_ns.unwrap_or(started_ns),
            hostname,
            username: crate::lock::username(),
            paths: path_bytes,
            tags: opts.tags.clone(),
            description: opts.description.clone(),
            parent: parent.as_ref().map(|p| p.id),
            tree: root,
            program_version: format!("cairn {}", env!("CARGO_PKG_VERSION")),
            summary: stats.clone(),
        };
        let id = self.save_snapshot(&snapshot)?;
        Ok(BackupSummary {
            snapshot: Some(id),
            parent: parent.map(|p| p.id),
            stats,
            skipped,
        })
    }
}
