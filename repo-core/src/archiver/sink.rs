//! The sink a [`Source`](crate::source::Source) walks into: the parent-snapshot lookup (in
//! lockstep with the walk, one parent listing per level of the current path), the ordered
//! event stream for the collector, the file jobs for the readers, and the record of skipped
//! entries. Everything here is the same whatever the source.

use std::path::{Path, PathBuf};

use crossbeam_channel::Sender;

use super::{EntryStatus, Event, FileJob};
use crate::error::Error;
use crate::format::tree::{Node, NodeKind, TreeCursor};
use crate::format::BlobType;
use crate::id::BlobId;
use crate::pack::Abort;
use crate::progress::{OpCtx, Phase, ProgressEvent};
use crate::repository::{Indexed, Repository};
use crate::source::SourceFile;

/// What the parent snapshot already knows of an entry, from [`Sink::look_up`].
pub(crate) struct Known {
    status: EntryStatus,
    /// The parent's listing of the entry, when it was a directory there.
    subtree: Option<BlobId>,
    xattrs: bool,
    content: bool,
}

impl Known {
    /// The entry's extended attributes were filled in from the parent (its metadata did not
    /// change since): the source need not read them.
    pub(crate) fn xattrs(&self) -> bool {
        self.xattrs
    }

    /// The entry is a regular file unchanged since the parent whose content is all stored:
    /// its content was filled in, and the source hands it over with
    /// [`Sink::unchanged_file`] without reading it.
    pub(crate) fn content(&self) -> bool {
        self.content
    }
}

/// The archiver's side of a walk. Each method that returns `bool` returns false when the
/// backup stopped: the source then returns.
pub(crate) struct Sink<'a> {
    pub(super) repo: &'a Repository<Indexed>,
    pub(super) ctx: OpCtx<'a>,
    pub(super) abort: &'a Abort<'a>,
    /// Read every file even when the parent says it is unchanged.
    pub(super) force: bool,
    pub(super) job_tx: Sender<FileJob>,
    pub(super) ev_tx: Sender<Event>,
    pub(super) next_ticket: u64,
    pub(super) skipped: Vec<(PathBuf, String)>,
    /// Backup paths the source found and did not exclude ([`Sink::backup_path_found`]).
    pub(super) paths_found: u64,
    /// The parent snapshot's listing of each directory of the current path, the walk's root
    /// first; None where the parent has none.
    pub(super) parents: Vec<Option<TreeCursor>>,
}

impl Sink<'_> {
    /// Whether the backup stopped (failed or cancelled).
    pub(crate) fn stopped(&self) -> bool {
        self.abort.failed()
    }

    /// Fails the backup: no snapshot is written.
    pub(crate) fn fail(&self, e: Error) {
        self.abort.fail(e);
    }

    /// Leaves `path` out of the snapshot, reporting why.
    pub(crate) fn skip(&mut self, path: &Path, e: &Error) {
        self.ctx
            .progress
            .event(&ProgressEvent::Skipped { path, error: e });
        self.skipped.push((path.to_path_buf(), e.to_string()));
    }

    /// Reports something the snapshot holds differently from the source.
    pub(crate) fn warn(&self, path: &Path, message: &str) {
        self.ctx
            .progress
            .event(&ProgressEvent::Warning { path, message });
    }

    /// Finds `node` in the parent snapshot's listing of the current directory and fills in
    /// what it need not read again: the extended attributes when its metadata did not change
    /// (same kind, change time and inode), and the content of a regular file that did not
    /// change at all (also same size and modification time) and whose blobs are all stored.
    /// Every entry is looked up once, in name order, before it is handed over.
    pub(crate) fn look_up(&mut self, node: &mut Node) -> Known {
        let old = self
            .parents
            .last_mut()
            .and_then(Option::as_mut)
            .and_then(|p| p.take(&node.name));
        let mut known = Known {
            status: EntryStatus::New,
            subtree: None,
            xattrs: false,
            content: false,
        };
        let Some(old) = old else {
            return known;
        };
        if old.kind == NodeKind::Dir {
            known.subtree = old.subtree;
        }
        if old.kind == NodeKind::File && node.kind == NodeKind::File {
            known.status = EntryStatus::Changed;
        }
        let same_meta =
            old.kind == node.kind && old.ctime_ns == node.ctime_ns && old.inode == node.inode;
        if !same_meta {
            return known;
        }
        known.xattrs = true;
        let unchanged = node.kind == NodeKind::File
            && !self.force
            && old.size == node.size
            && old.mtime_ns == node.mtime_ns
            && old
                .content
                .iter()
                .all(|id| self.repo.index().contains(BlobType::Data, id));
        if unchanged {
            node.content = old.content;
            known.content = true;
        }
        node.xattrs = old.xattrs;
        known
    }

    /// The source found a backup path (for `/`, an entry of it) that is not excluded: it
    /// will be stored. A backup that found none saves no snapshot unless asked to
    /// ([`BackupOptions::allow_empty`](crate::BackupOptions::allow_empty)).
    pub(crate) fn backup_path_found(&mut self) {
        self.paths_found += 1;
    }

    fn emit(&self, ev: Event) -> bool {
        !self.stopped() && self.ev_tx.send(ev).is_ok()
    }

    /// A directory begins; its entries follow, then [`Sink::leave`]. `known` is what
    /// [`Sink::look_up`] said of it.
    pub(crate) fn enter(&mut self, node: Node, known: &Known) -> bool {
        // An unreadable parent listing only costs speed: its files are read again.
        let parent = known.subtree.as_ref().and_then(|id| {
            let raw = self.repo.read_blob(BlobType::Tree, id).ok()?;
            TreeCursor::new(raw, &format_args!("tree {id}")).ok()
        });
        self.parents.push(parent);
        self.emit(Event::Enter(node))
    }

    /// The directory last entered ends.
    pub(crate) fn leave(&mut self) -> bool {
        let _ = self.parents.pop();
        self.emit(Event::Leave)
    }

    /// An entry without content: a symlink, a device or a FIFO.
    pub(crate) fn entry(&mut self, node: Node) -> bool {
        self.emit(Event::Entry(node, None))
    }

    /// A regular file [`Known::content`] found unchanged: stored as the parent has it.
    pub(crate) fn unchanged_file(&mut self, path: &Path, node: Node) -> bool {
        self.ctx.progress.event(&ProgressEvent::FileSaved {
            path,
            status: EntryStatus::Unchanged,
            bytes: node.size,
        });
        self.ctx.progress.event(&ProgressEvent::Advanced {
            phase: Phase::Backup,
            items: 1,
            bytes: node.size,
        });
        self.emit(Event::Entry(node, Some(EntryStatus::Unchanged)))
    }

    /// A regular file to read: a reader thread chunks `content` and the collector stores
    /// the node with the blobs it made.
    pub(crate) fn file(
        &mut self,
        path: &Path,
        node: Node,
        known: &Known,
        content: Box<dyn SourceFile>,
    ) -> bool {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let job = FileJob {
            ticket,
            path: path.to_path_buf(),
            status: known.status,
            content,
        };
        !self.stopped()
            && self.job_tx.send(job).is_ok()
            && self.emit(Event::File(node, known.status, ticket))
    }
}
