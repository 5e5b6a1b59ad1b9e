//! Executing a restore plan: the selection walk's entries are gathered into bounded
//! [`Batch`]es; each batch's files are created, filled run by run from the packs in parallel
//! (through the pack reader), verified, linked, and its finished directories given their
//! metadata before the walk goes on. The file system side of each step is in
//! [`super::local`].

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use rustix::fs::{FileType as Kind, Mode, OFlags};

use super::destination::Destination;
use super::local::dirfd::{self as rfs, DirFd};
use super::local::{open_target, temp_name};
use super::options::{Overwrite, RestoreOptions, RestorePlan, RestoreSummary};
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{Node, NodeKind, Xattr};
use crate::format::BlobType;
use crate::id::{BlobId, PackId};
use crate::lock::LockMode;
use crate::pack::reader::{self, BlobSpan};
use crate::progress::{OpCtx, Phase, ProgressEvent};
use crate::repository::{Indexed, Repository};

/// A restore flushes its batch at this many files (or hard links)...
pub(super) const BATCH_FILES: usize = 16384;
/// ... or when its files and finished directories refer to as many directories (each an open
/// descriptor until the batch is done) as [`batch_dirs`] allows ...
/// ... or when the paths of the directories it holds reach this many bytes ...
pub(super) const BATCH_PATH_BYTES: usize = 8 << 20;

/// ... or at this many content blobs to place.
pub(super) const BATCH_BLOBS: usize = 1 << 18;

/// Directories a batch may hold open: a third of the open-file limit, between 64 and 2048
/// (measured on the 81k-file benchmark tree: batches flushed every 256 directories cost 8 % of
/// the restore time in barriers).
pub(super) fn batch_dirs() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 16);
    usize::try_from(limit / 3).unwrap_or(2048).clamp(64, 2048)
}

/// The deepest levels of the current path that keep their directory open.
pub(super) const OPEN_LEVELS: usize = 64;

impl Repository<Indexed> {
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

/// What restoring an entry needs of its tree node: a compact copy (no name, no owner names,
/// boxed slices), held once per entry of a batch.
#[derive(Debug, Clone)]
pub(super) struct EntryMeta {
    pub(super) kind: NodeKind,
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime_ns: i64,
    pub(super) atime_ns: i64,
    pub(super) size: u64,
    pub(super) rdev: u64,
    /// `(device, inode)` of a file with other hard links, which groups its names.
    pub(super) link_key: Option<(u64, u64)>,
    pub(super) content: Box<[BlobId]>,
    pub(super) symlink_target: Box<[u8]>,
    pub(super) xattrs: Box<[Xattr]>,
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
pub(super) struct Level {
    pub(super) meta: EntryMeta,
    /// Its descriptor, while it is among the deepest [`OPEN_LEVELS`] levels.
    pub(super) dir: Option<Arc<DirFd>>,
    pub(super) dev: u64,
    pub(super) ino: u64,
    /// Made by this restore (see [`DirFd::fresh`]).
    pub(super) fresh: bool,
}

/// What became of a file in a batch's creation step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileState {
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
pub(super) struct FileJob {
    pub(super) dir: Arc<DirFd>,
    pub(super) name: OsString,
    pub(super) meta: EntryMeta,
    pub(super) state: Mutex<FileState>,
    /// Blob placements still to write; the file is complete at zero.
    pub(super) remaining: AtomicUsize,
}

/// A further name of a hard link group.
pub(super) struct LinkJob {
    pub(super) dir: Arc<DirFd>,
    pub(super) name: OsString,
    pub(super) meta: EntryMeta,
}

/// Where the first name of a hard link group ended up.
#[derive(Clone)]
pub(super) enum LinkState {
    /// In the current batch, not complete yet.
    Pending,
    /// Complete: its path (relative to the target) and identity.
    Restored { path: PathBuf, dev: u64, ino: u64 },
    /// Not restored here: further names get their own copy.
    NotRestored,
}

pub(super) struct Batch {
    /// See [`batch_dirs`].
    pub(super) max_dirs: usize,
    pub(super) files: Vec<FileJob>,
    pub(super) links: Vec<LinkJob>,
    /// Directories whose contents are all in this batch or earlier ones, in post-order.
    pub(super) finished: Vec<(Arc<DirFd>, EntryMeta)>,
    pub(super) blobs: usize,
    /// Bytes of the directory paths the batch holds (for messages): bounded, so that a deep
    /// tree costs memory linear in its depth, not its depth squared.
    pub(super) path_bytes: usize,
    /// Times the directory of consecutive files changed: bounds the descriptors held.
    pub(super) dir_changes: usize,
    pub(super) last_dir: Option<(u64, u64)>,
}

impl Batch {
    pub(super) fn is_full(&self) -> bool {
        self.files.len() + self.links.len() >= BATCH_FILES
            || self.dir_changes + self.finished.len() >= self.max_dirs
            || self.blobs >= BATCH_BLOBS
            || self.path_bytes >= BATCH_PATH_BYTES
    }

    pub(super) fn note_dir(&mut self, dir: &DirFd) {
        if self.last_dir != Some((dir.dev, dir.ino)) {
            self.last_dir = Some((dir.dev, dir.ino));
            self.dir_changes += 1;
            self.path_bytes += dir.path.as_os_str().len();
        }
    }
}

/// A blob to write at `offset` of the batch's file `file`.
#[derive(Clone, Copy)]
pub(super) struct Placement {
    pub(super) file: usize,
    pub(super) offset: u64,
}

pub(super) struct NeededBlob {
    pub(super) span: BlobSpan,
    pub(super) places: Vec<Placement>,
}

/// Consecutive blobs of one pack read in one request.
pub(super) struct ReadRun {
    pub(super) pack: PackId,
    pub(super) blobs: Vec<NeededBlob>,
}

pub(super) struct Restorer<'a, 'c> {
    pub(super) repo: &'a Repository<Indexed>,
    pub(super) ctx: &'a OpCtx<'c>,
    pub(super) plan: &'a RestorePlan,
    pub(super) opts: &'a RestoreOptions,
    pub(super) target: &'a Path,
    pub(super) summary: Mutex<RestoreSummary>,
    pub(super) written: AtomicU64,
    pub(super) root: Arc<DirFd>,
    pub(super) stack: Vec<Level>,
    pub(super) batch: Batch,
    pub(super) links: HashMap<(u64, u64), LinkState>,
    pub(super) root_user: bool,
}

impl Restorer<'_, '_> {
    pub(super) fn summary(&self) -> std::sync::MutexGuard<'_, RestoreSummary> {
        self.summary
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn warn(&self, msg: String) {
        self.summary().warnings.push(msg);
    }

    pub(super) fn not_restored(&self, msg: String) {
        self.summary().not_restored.push(msg);
    }

    /// The path shown for `name` in `dir`: under the target as the user named it.
    pub(super) fn shown(&self, dir: &DirFd, name: &OsStr) -> PathBuf {
        self.target.join(dir.display(name))
    }

    pub(super) fn io_at(
        &self,
        what: &str,
        dir: &DirFd,
        name: &OsStr,
        e: impl Into<std::io::Error>,
    ) -> Error {
        Error::io(
            format!("{what} {}", self.shown(dir, name).display()),
            e.into(),
        )
    }

    /// One regular file is finished with: restored, kept or skipped.
    pub(super) fn item_done(&self) {
        self.ctx.progress.event(&ProgressEvent::Advanced {
            phase: Phase::Restore,
            items: 1,
            bytes: 0,
        });
    }

    pub(super) fn run(&mut self) -> Result<()> {
        self.ctx.progress.event(&ProgressEvent::PhaseStarted {
            phase: Phase::Restore,
            // Items are regular files (restored, kept or skipped as damaged), as in the
            // summary; directories and other entries show in neither count.
            total_items: Some(self.plan.files),
            total_bytes: Some(self.plan.bytes),
        });
        let repo = self.repo;
        let (ctx, plan) = (self.ctx, self.plan);
        repo.restore_into(ctx, plan, self)?;
        self.ctx.progress.event(&ProgressEvent::PhaseFinished {
            phase: Phase::Restore,
        });
        Ok(())
    }
}

/// The local file system under the target: entries are made as the module docs say.
impl Destination for Restorer<'_, '_> {
    fn enter(&mut self, _rel: &Path, node: &Node) -> Result<bool> {
        Restorer::enter(self, node)
    }

    fn exit(&mut self) -> Result<()> {
        Restorer::exit(self)
    }

    fn leaf(&mut self, _rel: &Path, node: &Node) -> Result<()> {
        Restorer::leaf(self, node)
    }

    fn finish(&mut self) -> Result<()> {
        // A flush may queue own copies of hard links for one more batch.
        while !self.batch.files.is_empty()
            || !self.batch.links.is_empty()
            || !self.batch.finished.is_empty()
        {
            self.flush()?;
        }
        Ok(())
    }

    fn abandon(&mut self) {
        // Temporary files of the batch are removed; directories still open get the
        // snapshot's metadata, so none is left owner-only or made writable.
        self.discard_batch();
        while !self.stack.is_empty() {
            if Restorer::exit(self).is_err() {
                break;
            }
        }
        self.finish_dirs();
    }
}

impl Restorer<'_, '_> {
    /// The directory new entries go into: the deepest level, or the target.
    pub(super) fn current_dir(&self) -> Result<Arc<DirFd>> {
        match self.stack.last() {
            None => Ok(self.root.clone()),
            Some(l) => l
                .dir
                .clone()
                .ok_or_else(|| Error::internal("the current directory is not open")),
        }
    }

    /// A directory of the snapshot: make or enter it. Returns false to skip its contents.
    pub(super) fn enter(&mut self, node: &Node) -> Result<bool> {
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
    pub(super) fn exit(&mut self) -> Result<()> {
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
    pub(super) fn leaf(&mut self, node: &Node) -> Result<()> {
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
                Ok(())
            }
        }
    }

    pub(super) fn add_file(
        &mut self,
        dir: Arc<DirFd>,
        name: OsString,
        meta: EntryMeta,
    ) -> Result<()> {
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

    pub(super) fn flush_if_full(&mut self) -> Result<()> {
        if self.batch.is_full() {
            self.flush()
        } else {
            Ok(())
        }
    }

    /// Executes the batch: create, fill, verify, link, finish directories.
    pub(super) fn flush(&mut self) -> Result<()> {
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

    pub(super) fn flush_files(&self) -> Result<()> {
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
    pub(super) fn discard_batch(&mut self) {
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
    pub(super) fn finish_dirs(&mut self) {
        for (dir, meta) in std::mem::take(&mut self.batch.finished) {
            self.set_fd_metadata(&dir.fd, &meta, &self.target.join(&dir.path));
        }
    }

    /// Fills the batch's created files, pack range by pack range in parallel; each file is
    /// finished (metadata, rename) by the worker that writes its last blob.
    pub(super) fn fill_files(&self, files: &[FileJob]) -> Result<()> {
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

    pub(super) fn restore_run(&self, run: &ReadRun, files: &[FileJob]) -> Result<()> {
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
    pub(super) fn verify(&self, files: &[FileJob]) {
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
