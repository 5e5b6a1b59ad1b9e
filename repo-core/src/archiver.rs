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

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{bounded, unbounded};

use crate::chunker::{Chunker, ChunkerParams};
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::{SnapshotFile, SnapshotSummary};
use crate::format::tree::{Node, TreeCursor};
use crate::format::BlobType;
use crate::host::now_ns;
use crate::id::BlobId;
use crate::lock::LockMode;
use crate::pack::{Abort, PackWriter};
use crate::progress::{OpCtx, Phase, ProgressEvent};
use crate::repository::{Indexed, Repository};
use crate::snapshot::Snapshot;
use crate::source::{self, DirStack, Meta, OPEN_WINDOW};

mod exclude;
mod options;
mod read;
mod scan;
mod tree;
mod walk;

use exclude::Excluder;
pub use options::{BackupOptions, BackupSummary, ParentSelection};
use read::read_file;
use scan::scan;
use tree::{Collected, Collector};
use walk::{arrange_sources, Owners, Walker};

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
        let hostname = opts.hostname.clone().unwrap_or_else(crate::host::hostname);
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
            username: crate::host::username(),
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
