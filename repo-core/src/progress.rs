//! Progress reporting and cancellation for long operations.
//!
//! [`Progress::event`] is called concurrently from worker threads, so implementations must be
//! cheap and thread-safe. [`CancelToken`] is cooperative: it is checked between files, chunks
//! and backend calls, so work already in flight may finish after cancellation (as with
//! ripgrep's `Quit`). Cancelling a backup is always safe: it leaves only unreferenced packs,
//! which never make a snapshot unreadable.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// The phases of long operations.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Counting what a backup will read (for the ETA). It runs alongside [`Phase::Backup`]:
    /// its [`ProgressEvent::Totals`] are the backup's totals.
    Scan,
    /// Reading, chunking and storing files.
    Backup,
    /// Writing files of a restore.
    Restore,
    /// Re-reading restored files.
    Verify,
    /// Checking repository structure.
    CheckStructure,
    /// Reading and verifying pack data.
    CheckData,
    /// Loading index files.
    LoadIndex,
}

/// How a backup stores a regular file (see [`ProgressEvent::FileSaved`]).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryStatus {
    /// Not in the parent snapshot: read and stored.
    New,
    /// In the parent snapshot with other metadata or content: read again and stored.
    Changed,
    /// As the parent snapshot has it: not read, its blobs reused.
    Unchanged,
}

impl EntryStatus {
    /// `new`, `changed` or `unchanged`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Changed => "changed",
            Self::Unchanged => "unchanged",
        }
    }
}

/// One progress event.
#[non_exhaustive]
#[derive(Debug)]
pub enum ProgressEvent<'a> {
    /// A phase began; `total_items` and `total_bytes` are known totals, if any.
    PhaseStarted {
        /// Which phase.
        phase: Phase,
        /// Items to process, if known.
        total_items: Option<u64>,
        /// Bytes to process, if known.
        total_bytes: Option<u64>,
    },
    /// Totals became known (or grew) while the phase runs.
    Totals {
        /// Which phase.
        phase: Phase,
        /// Items to process.
        items: u64,
        /// Bytes to process.
        bytes: u64,
    },
    /// Work advanced by `items` and `bytes`.
    Advanced {
        /// Which phase.
        phase: Phase,
        /// Items completed.
        items: u64,
        /// Bytes completed.
        bytes: u64,
    },
    /// An entry could not be processed and was skipped.
    Skipped {
        /// The entry.
        path: &'a Path,
        /// Why.
        error: &'a Error,
    },
    /// A non-fatal oddity (e.g. a file changed while it was read).
    Warning {
        /// The entry.
        path: &'a Path,
        /// What happened.
        message: &'a str,
    },
    /// A backup began reading a regular file. Several files are read at once, each on its
    /// own thread; [`ProgressEvent::FileSaved`] follows when the file is done, and a
    /// [`ProgressEvent::Skipped`] instead when it could not be read.
    FileStarted {
        /// The file.
        path: &'a Path,
    },
    /// A backup stored a regular file (with `dry_run`, would have): read and chunked when new
    /// or changed, taken from the parent snapshot when unchanged.
    FileSaved {
        /// The file.
        path: &'a Path,
        /// How it was stored.
        status: EntryStatus,
        /// Its size.
        bytes: u64,
    },
    /// A phase ended.
    PhaseFinished {
        /// Which phase.
        phase: Phase,
    },
}

/// Receives progress events. Called concurrently from workers.
pub trait Progress: Send + Sync {
    /// Handles one event.
    fn event(&self, event: &ProgressEvent<'_>);
}

/// A progress sink that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _event: &ProgressEvent<'_>) {}
}

/// A cooperative cancellation flag; clones share it.
#[derive(Debug, Default, Clone)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Cancelled)` once cancellation was requested.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::cancelled())
        } else {
            Ok(())
        }
    }
}

/// The context every long operation takes: where progress goes and how to cancel.
#[derive(Clone, Copy)]
pub struct OpCtx<'a> {
    /// Progress sink.
    pub progress: &'a dyn Progress,
    /// Cancellation flag.
    pub cancel: &'a CancelToken,
}

static NO_PROGRESS: NoProgress = NoProgress;

impl Default for OpCtx<'static> {
    /// Silent and never cancelled.
    fn default() -> Self {
        static NEVER: std::sync::OnceLock<CancelToken> = std::sync::OnceLock::new();
        Self {
            progress: &NO_PROGRESS,
            cancel: NEVER.get_or_init(CancelToken::new),
        }
    }
}

impl<'a> OpCtx<'a> {
    /// A context from a progress sink and a token.
    pub fn new(progress: &'a dyn Progress, cancel: &'a CancelToken) -> Self {
        Self { progress, cancel }
    }
}
