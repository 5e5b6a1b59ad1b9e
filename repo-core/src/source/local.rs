//! The local file system as a backup source: arranges the backup paths into one tree and walks
//! it depth first in sorted name order through directory descriptors (dirfd-relative, never
//! following a swapped entry, [`dirfd`]), turning each `lstat` into a tree node for the
//! [`Sink`]. Exclusion rules are in [`exclude`], the optional pre-scan in [`scan`], and the
//! reading of file contents (sparse holes skipped) in [`file`].

mod dirfd;
mod exclude;
mod file;
mod scan;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::archiver::{BackupOptions, Known};
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{Node, NodeKind};
use crate::progress::OpCtx;
use crate::source::{Sink, Source};
use dirfd::{DirStack, EnterError, Meta, OPEN_WINDOW};
use exclude::Excluder;
use file::LocalFile;

/// The local file system under a set of backup paths.
pub(crate) struct LocalSource {
    /// The resolved backup paths, sorted, none inside another.
    roots: Vec<PathBuf>,
    /// The same as the snapshot records them.
    paths: Vec<Vec<u8>>,
    /// The same arranged as a tree of path components.
    tree: BTreeMap<Vec<u8>, Arranged>,
    excluder: Excluder,
    one_file_system: bool,
}

impl LocalSource {
    /// Resolves `paths` (see [`source_path`]) and compiles the exclusion rules of `opts`.
    pub(crate) fn new(paths: &[PathBuf], opts: &BackupOptions) -> Result<Self> {
        let excluder = Excluder::new(opts)?;
        let (roots, tree) = arrange_sources(paths)?;
        let paths = roots
            .iter()
            .map(|p| p.as_os_str().as_bytes().to_vec())
            .collect();
        Ok(Self {
            roots,
            paths,
            tree,
            excluder,
            one_file_system: opts.one_file_system,
        })
    }
}

impl Source for LocalSource {
    fn paths(&self) -> &[Vec<u8>] {
        &self.paths
    }

    fn scan(&self, ctx: &OpCtx<'_>, stop: &dyn Fn() -> bool) {
        scan::scan(ctx, stop, &self.excluder, &self.roots);
    }

    fn walk(&self, sink: &mut Sink<'_>) {
        let dirs = match DirStack::new(OPEN_WINDOW) {
            Ok(d) => d,
            Err(e) => {
                sink.fail(Error::io("open the root directory /", e));
                return;
            }
        };
        let mut w = Walker {
            sink,
            source: self,
            owners: Owners::default(),
            dirs,
        };
        // `/` has no name to arrange: its entries are the backup paths.
        let _ = if self.roots.iter().any(|r| r.parent().is_none()) {
            w.walk_root()
        } else {
            w.walk_sources(Path::new("/"), &self.tree)
        };
    }
}

/// Caches uid → user name and gid → group name lookups.
#[derive(Default)]
struct Owners {
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
    let stored = dirfd::clamped_ns(time);
    if dirfd::checked_ns(time.0, time.1).is_none() {
        notes.push(format!(
            "{what} {} cannot be stored (snapshots hold times from 1677-09-21 to 2262-04-11); \
             stored as {}",
            dirfd::utc(time.0, time.1),
            dirfd::utc(
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

/// Backup paths arranged as a tree of path components: a backup path, or a directory above
/// one or more of them.
#[derive(Debug)]
enum Arranged {
    Target(PathBuf),
    Dir(PathBuf, BTreeMap<Vec<u8>, Arranged>),
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
type Sources = (Vec<PathBuf>, BTreeMap<Vec<u8>, Arranged>);

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
                let _ = level.insert(key, Arranged::Target(cur.clone()));
                break;
            }
            let entry = level
                .entry(key)
                .or_insert_with(|| Arranged::Dir(cur.clone(), BTreeMap::new()));
            level = match entry {
                Arranged::Dir(_, children) => children,
                Arranged::Target(_) => break,
            };
        }
    }
    Ok((kept, root))
}

/// One walk of a [`LocalSource`].
struct Walker<'w, 'a> {
    sink: &'w mut Sink<'a>,
    source: &'w LocalSource,
    owners: Owners,
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
    fn skip(&mut self, path: &Path, e: &Error) {
        self.sink.skip(path, e);
    }

    /// Skips `path` with a message of our own.
    fn skip_because(&mut self, path: &Path, why: &str) {
        let e = Error::new(ErrorKind::Io, format!("{}: {why}", path.display()));
        self.skip(path, &e);
    }

    /// `lstat` of `name` in the current directory, and the node it makes. Times a snapshot
    /// cannot hold are reported as warnings. None (after reporting it) when it fails.
    fn stat(&mut self, path: &Path, name: &[u8]) -> Option<(Meta, Node)> {
        let Some(dir) = self.dirs.top() else {
            self.skip_because(path, "its directory changed during the backup");
            return None;
        };
        match dirfd::lstat_at(dir, name) {
            Ok(meta) => {
                let mut notes = Vec::new();
                let node = node_from_stat(name.to_vec(), &meta, &mut self.owners, &mut notes);
                for message in &notes {
                    self.sink.warn(path, message);
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
    fn walk_root(&mut self) -> bool {
        let listed = self
            .dirs
            .top()
            .map(|root| dirfd::fstat(root).and_then(|m| Ok((m.dev, dirfd::list(root)?))));
        let (dev, names) = match listed {
            Some(Ok(l)) => l,
            Some(Err(e)) => {
                self.skip(Path::new("/"), &Error::io("read directory /", e));
                return true;
            }
            None => return true,
        };
        for name in names {
            if self.sink.stopped() {
                return false;
            }
            let path = Path::new("/").join(OsStr::from_bytes(&name));
            if !self.entry(&path, name, Some(dev)) {
                return false;
            }
        }
        true
    }

    /// Walks the directories above the backup paths (only what leads to a backup path) and
    /// each backup path below them.
    fn walk_sources(&mut self, dir: &Path, level: &BTreeMap<Vec<u8>, Arranged>) -> bool {
        for (name, arranged) in level {
            if self.sink.stopped() {
                return false;
            }
            if !self.still_there(dir, name) {
                break;
            }
            match arranged {
                Arranged::Target(path) => {
                    if !self.entry(path, name.clone(), None) {
                        return false;
                    }
                }
                Arranged::Dir(path, children) => {
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
                    let known = self.sink.look_up(&mut node);
                    if !self.enter(path, name, &meta) {
                        continue;
                    }
                    if !known.xattrs() {
                        node.xattrs = self.dirs.top().map(dirfd::xattrs_of).unwrap_or_default();
                    }
                    let ok = self.sink.enter(node, &known) && self.walk_sources(path, children);
                    self.dirs.leave();
                    if !ok || !self.sink.leave() {
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
        let opened = dirfd::open_at(dir, name, false).and_then(|f| Ok((dirfd::fstat(&f)?, f)));
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
    fn entry(&mut self, path: &Path, name: Vec<u8>, root_dev: Option<u64>) -> bool {
        if self.source.excluder.excluded_before_stat(path) {
            return true;
        }
        let Some((meta, mut node)) = self.stat(path, &name) else {
            return true;
        };
        if self
            .source
            .excluder
            .excluded_after_stat(path, node.kind, node.size)
        {
            return true;
        }
        if root_dev.is_none() || path.parent() == Some(Path::new("/")) {
            // A backup path itself (or, when `/` is one, an entry of it): not excluded.
            self.sink.backup_path_found();
        }
        let known = self.sink.look_up(&mut node);
        match node.kind {
            NodeKind::Dir => self.dir(path, &name, &meta, node, &known, root_dev),
            NodeKind::File => {
                if known.content() {
                    return self.sink.unchanged_file(path, node);
                }
                let Some((file, opened)) = self.open_file(path, &name, &meta) else {
                    return true;
                };
                if !known.xattrs() {
                    node.xattrs = dirfd::xattrs_of(&file);
                }
                let content = Box::new(LocalFile::new(file, &opened, &meta));
                self.sink.file(path, node, &known, content)
            }
            NodeKind::Symlink => {
                let Some(dir) = self.dirs.top() else {
                    return true;
                };
                match dirfd::read_link_at(dir, &name) {
                    Ok(target) => node.symlink_target = target,
                    Err(e) => {
                        self.skip(path, &Error::io(format!("read link {}", path.display()), e));
                        return true;
                    }
                }
                if !known.xattrs() {
                    node.xattrs = dirfd::xattrs_at(dir, &name);
                }
                self.sink.entry(node)
            }
            NodeKind::Socket => {
                self.sink.warn(path, "socket not backed up");
                true
            }
            NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {
                if let Some(dir) = self.dirs.top() {
                    if !known.xattrs() {
                        node.xattrs = dirfd::xattrs_at(dir, &name);
                    }
                }
                self.sink.entry(node)
            }
        }
    }

    /// A directory entry: entered, listed and walked, unless it is on another file system
    /// under --one-file-system or an exclusion marker says to leave it out.
    fn dir(
        &mut self,
        path: &Path,
        name: &[u8],
        meta: &Meta,
        mut node: Node,
        known: &Known,
        root_dev: Option<u64>,
    ) -> bool {
        let root_dev = root_dev.unwrap_or(node.device);
        if self.source.one_file_system && node.device != root_dev {
            return true;
        }
        if !self.enter(path, name, meta) {
            return true;
        }
        let Some(dir) = self.dirs.top() else {
            self.dirs.leave();
            return true;
        };
        if self.source.excluder.excluded_dir(dir) {
            self.dirs.leave();
            return true;
        }
        if !known.xattrs() {
            node.xattrs = dirfd::xattrs_of(dir);
        }
        let names = match dirfd::list(dir) {
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
        if !self.sink.enter(node, known) {
            self.dirs.leave();
            return false;
        }
        let mut ok = true;
        for child in names {
            if self.sink.stopped() {
                ok = false;
                break;
            }
            if !self.still_there(path, &child) {
                break;
            }
            let child_path = path.join(OsStr::from_bytes(&child));
            if !self.entry(&child_path, child, Some(root_dev)) {
                ok = false;
                break;
            }
        }
        self.dirs.leave();
        ok && self.sink.leave()
    }
}
