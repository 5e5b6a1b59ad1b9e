//! Backup: walk → read and chunk → dedup → compress and encrypt → pack → upload → trees →
//! index → snapshot.
//!
//! Threads and bounded channels (memory is bounded whatever the file sizes):
//! - one walker runs the [`Source`] (the local file system: [`crate::source::local`]) into a
//!   [`Sink`] ([`sink`]), which looks each entry up in the parent snapshot's trees in lockstep
//!   and emits an ordered event stream to the collector and file jobs to the readers;
//! - file readers ([`read`]) chunk each file, hash every chunk and queue it to the pack writer,
//!   which dedups against the index and the blobs already added by this run;
//! - the pack writer ([`crate::pack`]) compresses and encrypts blobs on every core (a single
//!   large file thus keeps every core busy), fills data and tree packs, and uploads them in
//!   parallel;
//! - the collector ([`tree`], the calling thread) assembles tree blobs bottom-up from the
//!   event stream.
//!
//! Each stage gets only what it uses: the sink the repository (parent trees, index), the
//! readers the key that names chunks, and all of them the abort flag shared with the pack
//! writer.
//!
//! Write order (spec/09-invariants.md): every pack is uploaded before the index file that lists
//! it, and the index before the snapshot. A failure or cancellation at any point leaves only
//! unreferenced packs.

use std::collections::HashMap;
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
use crate::progress::{EntryStatus, OpCtx, Phase, ProgressEvent};
use crate::repository::{Indexed, Repository};
use crate::snapshot::Snapshot;
use crate::source::local::LocalSource;
use crate::source::{Source, SourceFile};

mod options;
mod read;
mod sink;
mod tree;

pub use options::{BackupOptions, BackupSummary, ParentSelection};
use read::{read_file, Reading};
pub(crate) use sink::{Known, Sink};
use tree::{Collected, Collector};

enum Event {
    Enter(Node),
    Leave,
    Entry(Node, Option<EntryStatus>),
    File(Node, EntryStatus, u64),
}

struct FileJob {
    ticket: u64,
    path: PathBuf,
    /// New or changed, for [`ProgressEvent::FileSaved`].
    status: EntryStatus,
    /// The file's content, handed over by the source.
    content: Box<dyn SourceFile>,
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

impl Repository<Indexed> {
    /// Backs up `paths` of the local file system into a new snapshot. Takes a shared lock
    /// for the duration.
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
        // Bad options fail before the source is opened.
        let _ = self.checked_level(opts)?;
        let source = LocalSource::new(paths, opts)?;
        self.backup_from(ctx, &source, opts)
    }

    /// Checks the options that can be wrong before anything is read, and returns the
    /// compression level to use.
    fn checked_level(&self, opts: &BackupOptions) -> Result<i32> {
        check_overrides(opts)?;
        let level = opts
            .compression_level
            .unwrap_or(self.config().compression_level);
        if !(-7..=22).contains(&level) {
            return Err(Error::invalid(format!(
                "compression level {level} is outside -7..=22"
            )));
        }
        Ok(level)
    }

    /// The parent snapshot `opts` asks for: by default the latest of this host with the
    /// same paths.
    fn parent_for(
        &self,
        ctx: &OpCtx<'_>,
        opts: &BackupOptions,
        hostname: &str,
        paths: &[Vec<u8>],
    ) -> Result<Option<Snapshot>> {
        Ok(match opts.parent {
            ParentSelection::None => None,
            ParentSelection::Id(id) => Some(self.load_snapshot(&id)?),
            ParentSelection::Auto => {
                let mut want = paths.to_vec();
                want.sort();
                self.snapshots(ctx)?.into_iter().rev().find(|s| {
                    let mut have = s.meta.paths.clone();
                    have.sort();
                    s.meta.hostname == hostname && have == want
                })
            }
        })
    }

    /// Backs up what `source` walks into a new snapshot: the pipeline of the module docs.
    pub(crate) fn backup_from(
        &self,
        ctx: &OpCtx<'_>,
        source: &dyn Source,
        opts: &BackupOptions,
    ) -> Result<BackupSummary> {
        let level = self.checked_level(opts)?;
        let _lock = if opts.dry_run {
            None
        } else {
            Some(self.lock_for_writing(LockMode::Shared, "backup", opts.lock_wait)?)
        };
        let started_ns = now_ns();
        let hostname = opts.hostname.clone().unwrap_or_else(crate::host::hostname);
        let path_bytes = source.paths().to_vec();
        let parent = self.parent_for(ctx, opts, &hostname, &path_bytes)?;
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
        let bytes_read = AtomicU64::new(0);
        let reading = Reading {
            key: self.master_key(),
            ctx: *ctx,
            abort: &abort,
            bytes_read: &bytes_read,
        };
        let mut writer = PackWriter::new(self, &abort, level, opts.dry_run);
        if let Some(bytes) = opts.pack_size {
            writer = writer.with_target(bytes as usize);
        }
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
        // Each queued job may hold its file open: the queue bounds those descriptors.
        let (job_tx, job_rx) = bounded::<FileJob>(128);
        let (ev_tx, ev_rx) = bounded::<Event>(4096);
        let (res_tx, res_rx) = unbounded::<FileResult>();

        let mut walker_skipped = Vec::new();
        let mut paths_found = 0u64;
        let outcome: Result<Collected> = std::thread::scope(|s| {
            let queue = writer.start(s, cores);
            let abort = &abort;
            if opts.scan {
                let ctx = *ctx;
                let _ = s.spawn(move || source.scan(&ctx, &|| abort.failed()));
            }
            // Walker: a large stack, as directory depth may drive a source's recursion.
            let walker = std::thread::Builder::new()
                .name("cairn-walk".into())
                .stack_size(256 << 20)
                .spawn_scoped(s, {
                    let walker_skipped = &mut walker_skipped;
                    let paths_found = &mut paths_found;
                    let mut sink = Sink {
                        repo: self,
                        ctx: *ctx,
                        abort,
                        force: opts.force,
                        job_tx,
                        ev_tx,
                        next_ticket: 0,
                        skipped: Vec::new(),
                        paths_found: 0,
                        parents: vec![parent_root],
                    };
                    move || {
                        source.walk(&mut sink);
                        *walker_skipped = sink.skipped;
                        *paths_found = sink.paths_found;
                    }
                });
            if let Err(e) = walker {
                abort.fail(Error::internal(format!("cannot start the walker: {e}")));
            }
            let readers = opts.read_concurrency.unwrap_or(cores.max(2));
            for _ in 0..readers {
                let job_rx = job_rx.clone();
                let res_tx = res_tx.clone();
                let queue = queue.clone();
                let reading = &reading;
                let _ = s.spawn(move || {
                    let mut chunker = Chunker::new(chunker_params, seed);
                    for mut job in job_rx {
                        let result = if abort.failed() {
                            Err(Error::cancelled())
                        } else {
                            read_file(reading, &mut chunker, &mut job, &queue)
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
                abort,
                progress: ctx.progress,
                queue,
                results: res_rx,
                early: HashMap::new(),
                stats: SnapshotSummary::default(),
                skipped: Vec::new(),
            };
            let root = collector.run(&ev_rx);
            if let Err(e) = &root {
                if e.kind() != ErrorKind::Cancelled || ctx.cancel.is_cancelled() {
                    abort.fail(e.clone_shallow());
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
        if paths_found == 0 && !opts.allow_empty {
            // Before the pack writer finishes: no index and no snapshot is written.
            return Err(Error::new(
                ErrorKind::NothingToBackUp,
                "nothing to back up: every backup path is excluded or could not be read",
            ));
        }
        // Packs, then index, then snapshot: the snapshot only ever references indexed, stored
        // blobs. A dry run writes no index.
        let written = writer.finish()?;
        skipped.extend(walker_skipped);
        skipped.sort();
        stats.bytes_read = bytes_read.load(Ordering::Relaxed);
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

/// The per-backup overrides of the repository's defaults, checked before anything is read:
/// the pack size within what the format allows (1 to 512 MiB, as at init), the number of
/// reader threads from 1 to 256.
fn check_overrides(opts: &BackupOptions) -> Result<()> {
    if let Some(p) = opts.pack_size {
        if !(1 << 20..=512 << 20).contains(&p) {
            return Err(Error::invalid(format!(
                "pack size {p} bytes is outside 1..=512 MiB"
            )));
        }
    }
    if let Some(n) = opts.read_concurrency {
        if !(1..=256).contains(&n) {
            return Err(Error::invalid(format!(
                "read concurrency {n} is outside 1..=256"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The seam with a source that is not a file system: a synthetic tree in memory.

    use std::io::Cursor;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use super::*;
    use crate::backend::MemoryBackend;
    use crate::crypto::{KdfParams, Secret};
    use crate::format::tree::NodeKind;
    use crate::repository::InitOptions;

    /// `/data` holding two files and a symlink; counts the files it hands over to be read.
    struct MemorySource {
        paths: Vec<Vec<u8>>,
        opened: AtomicUsize,
    }

    struct Content(Cursor<Vec<u8>>);

    impl std::io::Read for Content {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl SourceFile for Content {
        fn changed_while_read(&self, _len: u64) -> bool {
            false
        }
    }

    fn node(name: &str, kind: NodeKind, ctime: i64) -> Node {
        let mut n = Node::new(name.as_bytes().to_vec(), kind);
        n.ctime_ns = ctime;
        n.mtime_ns = ctime;
        n.inode = ctime as u64;
        n
    }

    const FILES: [(&str, &[u8]); 2] = [("a.txt", b"alpha"), ("b.bin", &[7u8; 100_000])];

    impl Source for MemorySource {
        fn paths(&self) -> &[Vec<u8>] {
            &self.paths
        }

        fn walk(&self, sink: &mut Sink<'_>) {
            let mut dir = node("data", NodeKind::Dir, 1);
            sink.backup_path_found();
            let known = sink.look_up(&mut dir);
            if !sink.enter(dir, &known) {
                return;
            }
            for (i, (name, bytes)) in FILES.iter().enumerate() {
                let mut file = node(name, NodeKind::File, 10 + i as i64);
                file.size = bytes.len() as u64;
                let known = sink.look_up(&mut file);
                let more = if known.content() {
                    sink.unchanged_file(Path::new(name), file)
                } else {
                    let _ = self.opened.fetch_add(1, Ordering::Relaxed);
                    let content = Box::new(Content(Cursor::new(bytes.to_vec())));
                    sink.file(Path::new(name), file, &known, content)
                };
                if !more {
                    return;
                }
            }
            let mut link = node("link", NodeKind::Symlink, 20);
            link.symlink_target = b"a.txt".to_vec();
            let _ = sink.look_up(&mut link);
            let _ = sink.entry(link) && sink.leave();
        }
    }

    #[test]
    fn any_source_backs_up_through_the_sink_and_unchanged_files_are_not_read_again() {
        let secret = Secret::password("pw");
        let init = InitOptions {
            kdf: KdfParams::insecure_fast(),
            ..InitOptions::default()
        };
        let ctx = OpCtx::default();
        let repo = Repository::init(Arc::new(MemoryBackend::new()), &secret, &init)
            .unwrap()
            .into_indexed(&ctx)
            .unwrap();
        let source = MemorySource {
            paths: vec![b"/data".to_vec()],
            opened: AtomicUsize::new(0),
        };
        let first = repo
            .backup_from(&ctx, &source, &BackupOptions::default())
            .unwrap();
        assert_eq!(source.opened.load(Ordering::Relaxed), 2);
        assert_eq!(first.stats.files_new, 2);
        assert_eq!(first.stats.others, 1);
        assert_eq!(first.stats.bytes_total, 100_005);

        let repo = repo.reload_index(&ctx).unwrap();
        let snap = repo.load_snapshot(&first.snapshot.unwrap()).unwrap();
        assert_eq!(snap.meta.paths, vec![b"/data".to_vec()]);
        let root = repo.read_tree(&snap.meta.tree).unwrap();
        let data = repo
            .read_tree(root.nodes[0].subtree.as_ref().unwrap())
            .unwrap();
        let names: Vec<&[u8]> = data.nodes.iter().map(|n| n.name.as_slice()).collect();
        assert_eq!(names, [&b"a.txt"[..], b"b.bin", b"link"]);
        for (n, (_, bytes)) in data.nodes.iter().zip(FILES) {
            let mut got = Vec::new();
            for id in &n.content {
                got.extend(repo.read_blob(BlobType::Data, id).unwrap());
            }
            assert_eq!(got, bytes);
        }
        assert_eq!(data.nodes[2].symlink_target, b"a.txt");

        // The same source again: the parent is found by paths and host, nothing is read.
        let second = repo
            .backup_from(&ctx, &source, &BackupOptions::default())
            .unwrap();
        assert_eq!(second.parent, first.snapshot);
        assert_eq!(source.opened.load(Ordering::Relaxed), 2);
        assert_eq!(second.stats.files_unmodified, 2);
        assert_eq!(second.stats.bytes_read, 0);
    }
}
