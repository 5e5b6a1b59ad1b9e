//! The local file system side of a restore: the target opened once, entries made in the way
//! cleared (by the overwrite policy and `delete_conflicting`), files created under temporary
//! names and renamed into place, hard links, symlinks and special files, and metadata (mode,
//! owner, times, xattrs) set through descriptors. Every call is descriptor-relative from the
//! target's descriptor and never follows a symlink ([`dirfd`]).

pub(super) mod dirfd;

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType as Kind, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::execute::{EntryMeta, FileJob, FileState, LinkJob, LinkState, Restorer};
use super::options::Overwrite;
use crate::error::{Error, Result};
use crate::format::tree::NodeKind;
use dirfd::{self as rfs, DirFd, RemoveError};

/// Creates `target` if missing and opens it: the one path-based step of a restore.
pub(super) fn open_target(target: &Path) -> Result<DirFd> {
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

pub(super) fn timespec(ns: i64) -> Timespec {
    Timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000),
    }
}

pub(super) fn timestamps(m: &EntryMeta) -> Timestamps {
    Timestamps {
        last_access: timespec(m.atime_ns),
        last_modification: timespec(m.mtime_ns),
    }
}

/// The temporary name a file (or link, or special file) is made under before it is renamed
/// over `name`: short whatever the length of `name`, and the same on every run, so a rerun
/// after a kill finds and replaces what the killed run left.
pub(super) fn temp_name(name: &OsStr) -> OsString {
    let h = blake3::hash(name.as_bytes());
    let mut s = OsString::from(".cairn-restore-");
    s.push(hex::encode(&h.as_bytes()[..8]));
    s
}

pub(super) const FILE_FLAGS: OFlags = OFlags::WRONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NONBLOCK);

impl Restorer<'_, '_> {
    /// Decides about an entry already at `name` for a non-directory of the snapshot. Returns
    /// `Ok(Some(existing is kept))`, or `Ok(None)` when the entry is not restored (reported).
    pub(super) fn make_way(
        &self,
        dir: &DirFd,
        name: &OsStr,
        meta: &EntryMeta,
    ) -> Result<Option<bool>> {
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
    pub(super) fn special(&self, dir: &DirFd, name: &OsStr, meta: &EntryMeta) -> Result<()> {
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
    pub(super) fn rename_into_place(&self, dir: &DirFd, tmp: &OsStr, name: &OsStr) -> Result<()> {
        if let Err(e) = rustix::fs::renameat(&dir.fd, tmp, &dir.fd, name) {
            let _ = rfs::unlink(&dir.fd, tmp);
            return Err(self.io_at("rename into place", dir, name, e));
        }
        Ok(())
    }

    /// Metadata of a symlink or special file, by its (temporary) name in `dir`, never
    /// following it.
    pub(super) fn set_special_metadata(
        &self,
        dir: &DirFd,
        tmp: &OsStr,
        name: &OsStr,
        meta: &EntryMeta,
    ) {
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
    pub(super) fn set_fd_metadata(&self, fd: impl AsFd, meta: &EntryMeta, shown: &Path) {
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
    pub(super) fn open_temp(&self, job: &FileJob, dev: u64, ino: u64) -> Result<File> {
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
    pub(super) fn create_file(&self, job: &FileJob) -> Result<()> {
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
    pub(super) fn finish_file(&self, job: &FileJob, fd: impl AsFd) -> Result<()> {
        let shown = self.shown(&job.dir, &job.name);
        self.set_fd_metadata(fd, &job.meta, &shown);
        self.rename_into_place(&job.dir, &temp_name(&job.name), &job.name)?;
        *job.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = FileState::Done;
        self.item_done();
        Ok(())
    }

    /// Links a further name of a hard link group to its first. Returns false when the first
    /// was not restored here (the caller makes an own copy).
    pub(super) fn link(&self, job: &LinkJob) -> Result<bool> {
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
}
