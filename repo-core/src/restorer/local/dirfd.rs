//! Descriptor-relative file system operations for restore.
//!
//! Every call here works relative to a directory descriptor that was opened without following
//! symlinks, never by a path from the target's root: `O_NOFOLLOW` guards only the last
//! component of a path, so a directory of the target swapped for a symlink by someone else
//! while a restore runs would otherwise send later writes wherever it points. A directory is
//! opened once, by name relative to its parent's descriptor, with `O_DIRECTORY | O_NOFOLLOW`,
//! and everything inside it is created, written, changed and removed through that descriptor.
//! Whatever is renamed or exchanged in the target meanwhile, the descriptors keep naming the
//! directories this restore opened, all of them inside the target.
//!
//! Removal (of an entry in the way of one of the snapshot's) never crosses into another file
//! system nor descends through a mount point, and walks down with descriptors and back up with
//! `..` checked against the identity (device, inode) recorded on the way down, so its memory
//! and open descriptors do not grow with depth.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

/// An open directory of the target: its descriptor, identity and path (relative to the target,
/// for messages only; never used to reach it).
#[derive(Debug)]
pub(crate) struct DirFd {
    pub fd: OwnedFd,
    pub dev: u64,
    pub ino: u64,
    pub path: PathBuf,
    /// Made by this restore (mode 0700 until its metadata is set): nobody else can add, swap or
    /// replace entries in it, so what this restore creates there needs no check against
    /// interference, and nothing there is in the way of the snapshot's entries.
    pub fresh: bool,
}

impl DirFd {
    /// Wraps a descriptor opened as a directory, recording its identity.
    pub fn new(fd: OwnedFd, path: PathBuf) -> io::Result<Self> {
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Err(io::Error::from_raw_os_error(libc_enotdir()));
        }
        Ok(Self {
            fd,
            dev: st.st_dev,
            ino: st.st_ino,
            path,
            fresh: false,
        })
    }

    /// The path of `name` in this directory, for messages.
    pub fn display(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }
}

fn libc_enotdir() -> i32 {
    Errno::NOTDIR.raw_os_error()
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opens the directory `name` of `parent` without following a symlink there.
pub(crate) fn open_dir(parent: impl AsFd, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(parent, name, DIR_FLAGS, Mode::empty())?)
}

/// `lstat` of `name` in `parent`; `None` when nothing is there.
pub(crate) fn stat_at(parent: impl AsFd, name: &OsStr) -> io::Result<Option<Stat>> {
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The kind of a `stat` result.
pub(crate) fn kind(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Opens the parent of the directory `child` through `..` and checks that it is the directory
/// whose identity is `(dev, ino)`: a directory moved elsewhere meanwhile fails with `ESTALE`.
pub(crate) fn open_parent(child: impl AsFd, dev: u64, ino: u64) -> io::Result<OwnedFd> {
    let fd = rustix::fs::openat(child, "..", DIR_FLAGS, Mode::empty())?;
    let st = rustix::fs::fstat(&fd)?;
    if st.st_dev != dev || st.st_ino != ino {
        return Err(io::Error::from_raw_os_error(Errno::STALE.raw_os_error()));
    }
    Ok(fd)
}

/// Removes the non-directory `name` of `parent`, if there.
pub(crate) fn unlink(parent: impl AsFd, name: &OsStr) -> io::Result<()> {
    match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Why a directory in the way could not be removed.
#[derive(Debug)]
pub(crate) enum RemoveError {
    /// It (or a directory below it) is a mount point or on another file system.
    MountPoint(PathBuf),
    /// A system call failed.
    Io(PathBuf, io::Error),
}

/// Opens the directory `name` of `parent` for removal: no symlink, and no mount point or other
/// file system (`RESOLVE_NO_XDEV` where the kernel has `openat2`, the device number always).
fn open_for_removal(parent: &OwnedFd, parent_dev: u64, name: &OsStr) -> io::Result<OwnedFd> {
    let how = ResolveFlags::NO_XDEV | ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH;
    let fd = match rustix::fs::openat2(parent, name, DIR_FLAGS, Mode::empty(), how) {
        Ok(fd) => fd,
        // Kernels before 5.6 (and some sandboxes) lack openat2: the device check remains.
        Err(Errno::NOSYS) | Err(Errno::PERM) => open_dir(parent, name)?,
        Err(e) => return Err(e.into()),
    };
    if rustix::fs::fstat(&fd)?.st_dev != parent_dev {
        return Err(io::Error::from_raw_os_error(Errno::XDEV.raw_os_error()));
    }
    Ok(fd)
}

/// True when the directory `name` of `parent` holds nothing.
pub(crate) fn dir_is_empty(parent: impl AsFd, name: &OsStr) -> io::Result<bool> {
    let fd = open_dir(parent, name)?;
    let dir = rustix::fs::Dir::read_from(&fd)?;
    for e in dir {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One directory on the way down of [`remove_tree`].
struct Level {
    fd: Option<OwnedFd>,
    name: OsString,
    dev: u64,
    ino: u64,
    /// Subdirectories seen in the last listing, still to remove.
    pending: Vec<OsString>,
}

/// At most this many subdirectory names are held per level; a directory with more is listed
/// again once they are gone.
const PENDING_PER_LEVEL: usize = 256;

/// Removes the directory `name` of `parent` and everything below it, through descriptors.
/// Refuses (before removing anything below that point) at a mount point or another file
/// system; `display` is the path shown in messages.
pub(crate) fn remove_tree(
    parent: &DirFd,
    name: &OsStr,
    display: &Path,
) -> std::result::Result<(), RemoveError> {
    let io_err = |p: &Path, e: io::Error| {
        if e.raw_os_error() == Some(Errno::XDEV.raw_os_error()) {
            RemoveError::MountPoint(p.to_path_buf())
        } else {
            RemoveError::Io(p.to_path_buf(), e)
        }
    };
    let top = open_for_removal(&parent.fd, parent.dev, name).map_err(|e| io_err(display, e))?;
    let st = rustix::fs::fstat(&top).map_err(|e| io_err(display, e.into()))?;
    let mut path = display.to_path_buf();
    let mut stack = vec![Level {
        fd: Some(top),
        name: name.to_owned(),
        dev: st.st_dev,
        ino: st.st_ino,
        pending: Vec::new(),
    }];
    #[allow(clippy::collapsible_match)] // one arm per kind of entry reads better
    while let Some(level) = stack.last_mut() {
        let fd = level.fd.as_ref().ok_or_else(|| {
            RemoveError::Io(path.clone(), io::Error::other("directory descriptor lost"))
        })?;
        if level.pending.is_empty() {
            // List: remove what is not a directory, note subdirectories.
            let dir = rustix::fs::Dir::read_from(fd).map_err(|e| io_err(&path, e.into()))?;
            for e in dir {
                let e = e.map_err(|e| io_err(&path, e.into()))?;
                let n = e.file_name().to_bytes();
                if n == b"." || n == b".." {
                    continue;
                }
                let n = OsStr::from_bytes(n).to_owned();
                let st = stat_at(fd, &n).map_err(|e| io_err(&path.join(&n), e))?;
                match st {
                    None => {}
                    Some(st) if kind(&st) == FileType::Directory => {
                        // Beyond the limit: found again by the next listing.
                        if level.pending.len() < PENDING_PER_LEVEL {
                            level.pending.push(n);
                        }
                    }
                    Some(_) => unlink(fd, &n).map_err(|e| io_err(&path.join(&n), e))?,
                }
            }
        }
        if let Some(sub) = level.pending.pop() {
            let child =
                open_for_removal(fd, level.dev, &sub).map_err(|e| io_err(&path.join(&sub), e));
            let child = match child {
                Ok(c) => c,
                // Gone meanwhile: nothing to do.
                Err(RemoveError::Io(_, e)) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let st = rustix::fs::fstat(&child).map_err(|e| io_err(&path.join(&sub), e.into()))?;
            // Only the deepest directory's descriptor stays open; the way up is `..`.
            level.fd = None;
            path.push(&sub);
            stack.push(Level {
                fd: Some(child),
                name: sub,
                dev: st.st_dev,
                ino: st.st_ino,
                pending: Vec::new(),
            });
            continue;
        }
        // Empty now: go up and remove it.
        let done = stack
            .pop()
            .unwrap_or_else(|| unreachable!("stack is not empty"));
        let done_fd = done
            .fd
            .unwrap_or_else(|| unreachable!("the deepest level holds its descriptor"));
        let up = match stack.last() {
            Some(p) => open_parent(&done_fd, p.dev, p.ino).map_err(|e| io_err(&path, e))?,
            None => {
                drop(done_fd);
                match rustix::fs::unlinkat(&parent.fd, &done.name, AtFlags::REMOVEDIR) {
                    Ok(()) | Err(Errno::NOENT) => return Ok(()),
                    Err(Errno::BUSY) => return Err(RemoveError::MountPoint(path)),
                    Err(e) => return Err(io_err(&path, e.into())),
                }
            }
        };
        drop(done_fd);
        match rustix::fs::unlinkat(&up, &done.name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(Errno::BUSY) => return Err(RemoveError::MountPoint(path)),
            Err(e) => return Err(io_err(&path, e.into())),
        }
        let _ = path.pop();
        if let Some(p) = stack.last_mut() {
            p.fd = Some(up);
        }
    }
    Ok(())
}

/// A path that reaches the entry `name` of the directory `dir` without resolving any symlink
/// but the magic link of the descriptor itself, for the calls that take only paths
/// (`lsetxattr`). The final component is not followed by such calls.
pub(crate) fn proc_path(dir: &impl AsFd, name: &OsStr) -> PathBuf {
    use std::os::fd::AsRawFd;
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd()));
    if !name.is_empty() {
        p.push(name);
    }
    p
}
