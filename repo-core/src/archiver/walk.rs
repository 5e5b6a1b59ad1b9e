//! The local file-system walker: arranges the backup paths into one tree, walks it depth first
//! in sorted name order through directory descriptors (dirfd-relative, never following a swapped
//! entry), in lockstep with the parent snapshot's trees, and emits the ordered event stream for
//! the collector and the file jobs for the readers. Also turns `lstat` results into tree nodes.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crossbeam_channel::Sender;

use super::{BackupOptions, Event, Excluder, FileJob, FileStatus, Seen, Shared};
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{Node, NodeKind, TreeCursor};
use crate::format::BlobType;
use crate::progress::{Phase, ProgressEvent};
use crate::source::{self, DirStack, EnterError, Meta};

/// Caches uid → user name and gid → group name lookups.
#[derive(Default)]
pub(super) struct Owners {
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
pub(super) fn stored_time(what: &str, time: (i64, i64), notes: &mut Vec<String>) -> i64 {
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
pub(super) fn node_from_stat(
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
pub(super) enum Source {
    Target(PathBuf),
    Dir(PathBuf, BTreeMap<Vec<u8>, Source>),
}

/// The path a backup path names, as the snapshot records it: absolute, with every symlink in
/// the directories above its last component resolved (as tar and restic do, so `/lib/x`
/// with `/lib -> usr/lib` is `/usr/lib/x`), and its last component kept as named: a symlink
/// named is stored as the symlink. A path ending in `/` or `/.`, or in `..`, is resolved
/// whole, so `/var/run/` names the directory `/var/run` points to, as `ls -l /var/run/` does.
pub(super) fn source_path(p: &Path) -> Result<PathBuf> {
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
pub(super) type Sources = (Vec<PathBuf>, BTreeMap<Vec<u8>, Source>);

pub(super) fn arrange_sources(paths: &[PathBuf]) -> Result<Sources> {
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

pub(super) struct Walker<'s, 'r> {
    pub(super) shared: &'s Shared<'r>,
    pub(super) opts: &'s BackupOptions,
    pub(super) excluder: &'s Excluder,
    pub(super) job_tx: Sender<FileJob>,
    pub(super) ev_tx: Sender<Event>,
    pub(super) next_ticket: u64,
    pub(super) owners: Owners,
    pub(super) skipped: Vec<(PathBuf, String)>,
    /// The directories of the current path, open: every entry is reached relative to its
    /// parent's descriptor, so a directory swapped for a symlink is never followed.
    pub(super) dirs: DirStack,
}

/// Whether an error from opening a directory means it is no longer one (a symlink or
/// another kind of file took its place).
pub(super) fn not_a_directory(e: &std::io::Error) -> bool {
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
    pub(super) fn walk_root(&mut self, mut parent: Option<&mut TreeCursor>) -> bool {
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

    pub(super) fn walk_sources(
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
