//! What a restore is asked to do and what it reports: [`RestoreOptions`] (with its
//! [`Overwrite`] policy), the [`RestorePlan`] made by `plan_restore`, a dry run's
//! [`PlannedEntry`] and the [`RestoreSummary`] of an executed restore.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::format::tree::Node;
use crate::id::SnapshotId;

/// What to do when a file to restore already exists in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum Overwrite {
    /// Replace it.
    #[default]
    Always,
    /// Replace it unless its size and modification time already match the snapshot.
    IfChanged,
    /// Keep it as it is, content and metadata (existing directories are merged into).
    Never,
}

/// Options of [`Repository::plan_restore`] and [`Repository::restore`].
#[non_exhaustive]
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Path inside the snapshot to restore (default: all of it).
    pub subpath: Option<PathBuf>,
    /// Restore only entries matching one of these [patterns](crate#patterns) (paths inside the
    /// snapshot), with everything below a matching directory.
    pub includes: Vec<String>,
    /// Leave out entries matching these [patterns](crate#patterns), and everything below a
    /// matching directory.
    pub excludes: Vec<String>,
    /// Existing-file policy.
    pub overwrite: Overwrite,
    /// Re-read restored (and kept) files and check them against the snapshot.
    pub verify: bool,
    /// How long to wait for a conflicting lock.
    pub lock_wait: std::time::Duration,
    /// Delete a non-empty directory that is where the snapshot has a file, symlink or special
    /// file (without it such an entry is left alone and reported). Never crosses into another
    /// file system or through a mount point.
    pub delete_conflicting: bool,
}

/// One entry of a dry run ([`Repository::dry_run_restore`]).
#[derive(Debug, Clone, Serialize)]
pub struct PlannedEntry {
    /// Path relative to the target.
    #[serde(serialize_with = "ser_path")]
    pub path: PathBuf,
    /// Entry kind.
    pub kind: &'static str,
    /// Bytes of content.
    pub size: u64,
    /// For a hard link: the earlier entry it links to.
    #[serde(serialize_with = "ser_opt_path")]
    pub link_to: Option<PathBuf>,
    /// What the restore would do: `create`, `replace`, `merge` (an existing directory),
    /// `keep` (left alone by the overwrite policy), `conflict` (a non-empty directory is in
    /// the way: left alone unless `delete_conflicting`), `delete-conflicting` (it would be
    /// deleted), `damaged` (the snapshot's entry cannot be restored).
    pub action: &'static str,
}

fn ser_path<S: serde::Serializer>(p: &Path, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

fn ser_opt_path<S: serde::Serializer>(
    p: &Option<PathBuf>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_str(&p.to_string_lossy()),
        None => s.serialize_none(),
    }
}

/// What a restore will do: totals only, so planning costs no memory per entry. Serializable,
/// so a dry run prints it.
#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    /// The snapshot restored.
    pub snapshot: SnapshotId,
    /// Regular files (hard links included).
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Other entries.
    pub others: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Packs to read.
    pub packs: usize,
    /// Files whose recorded size disagrees with their content (a damaged or hostile tree):
    /// they are not restored, everything else is.
    pub damaged: u64,
    #[serde(skip)]
    pub(super) opts: RestoreOptions,
    #[serde(skip)]
    pub(super) start: Node,
    #[serde(skip)]
    pub(super) sub: PathBuf,
}

/// What a restore did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreSummary {
    /// Files written.
    pub files_restored: u64,
    /// Files left alone by the overwrite policy.
    pub files_skipped: u64,
    /// Directories.
    pub dirs: u64,
    /// Other entries.
    pub others: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Files whose verification found a difference (empty unless `verify`).
    pub verify_failures: Vec<String>,
    /// Entries whose metadata could not be fully restored, with the reason.
    pub warnings: Vec<String>,
    /// Entries of the snapshot that were not restored, with the reason: a non-empty directory
    /// in the way, a mount point, a damaged file.
    pub not_restored: Vec<String>,
    /// Files verified.
    pub files_verified: u64,
}
