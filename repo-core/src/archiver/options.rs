//! The options a backup takes and the summary it returns.

use std::path::PathBuf;

use crate::format::snapshot::SnapshotSummary;
use crate::id::SnapshotId;

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

/// Options of [`Repository::backup`](crate::Repository::backup).
#[non_exhaustive]
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// [Patterns](crate#patterns) to exclude, matched against absolute paths; an excluded
    /// directory is not entered. A trailing `/` excludes directories only.
    pub excludes: Vec<String>,
    /// Like `excludes`, matched case-insensitively.
    pub iexcludes: Vec<String>,
    /// Exclude directories that contain a file of one of these names.
    pub exclude_if_present: Vec<String>,
    /// Exclude directories holding a valid `CACHEDIR.TAG`.
    pub exclude_caches: bool,
    /// Exclude regular files larger than this many bytes.
    pub exclude_larger_than: Option<u64>,
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
    /// Target pack size in bytes for this backup, 1 to 512 MiB (default: the repository's).
    pub pack_size: Option<u64>,
    /// Files read at once (default: one per core, at least 2), 1 to 256.
    pub read_concurrency: Option<usize>,
    /// Snapshot time, ns since the epoch (default: now).
    pub time_ns: Option<i64>,
    /// Count files and bytes first, so progress can show an ETA.
    pub scan: bool,
    /// Save a snapshot even when every backup path is excluded or could not be read (it is
    /// empty); without this such a backup fails with [`ErrorKind::NothingToBackUp`](crate::ErrorKind::NothingToBackUp).
    pub allow_empty: bool,
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
