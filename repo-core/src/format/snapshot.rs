//! Implements spec/07-snapshot.md: snapshot files in `snapshots/`.
//!
//! An envelope of type Snapshot whose plaintext is `version:u8 || postcard(SnapshotFile)`.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::format::{decode_exact, encode_versioned, split_version};
use crate::id::{BlobId, SnapshotId};

/// Counters recorded with each snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files whose metadata changed since the parent (their content was read).
    pub files_changed: u64,
    /// Files reused from the parent without reading.
    pub files_unmodified: u64,
    /// Directories in the snapshot.
    pub dirs: u64,
    /// Other entries (symlinks, devices, fifos).
    pub others: u64,
    /// Bytes of file content read from the source.
    pub bytes_read: u64,
    /// Total size of the files in the snapshot.
    pub bytes_total: u64,
    /// Blob bytes newly stored (after compression and encryption).
    pub bytes_added: u64,
    /// Blobs newly stored.
    pub blobs_added: u64,
    /// Backup start, ns since the Unix epoch.
    pub started_ns: i64,
    /// Backup end, ns since the Unix epoch.
    pub finished_ns: i64,
    /// Entries that could not be read and were left out.
    pub errors_skipped: u64,
}

/// A snapshot: one backup run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFile {
    /// Snapshot time, ns since the Unix epoch.
    pub time_ns: i64,
    /// Host that made it.
    pub hostname: String,
    /// User that made it.
    pub username: String,
    /// Backed-up paths, as raw bytes (absolute).
    pub paths: Vec<Vec<u8>>,
    /// Tags.
    pub tags: Vec<String>,
    /// Free-form description.
    pub description: String,
    /// The snapshot this one was compared against, if any.
    pub parent: Option<SnapshotId>,
    /// Root tree blob.
    pub tree: BlobId,
    /// Program and version that wrote it.
    pub program_version: String,
    /// Counters.
    pub summary: SnapshotSummary,
}

impl SnapshotFile {
    /// The plaintext.
    pub fn to_plaintext(&self) -> Result<Vec<u8>> {
        encode_versioned(self)
    }

    /// Parses a snapshot plaintext.
    pub fn from_plaintext(bytes: &[u8], object: &dyn std::fmt::Display) -> Result<Self> {
        decode_exact(split_version(bytes, object)?, object)
    }
}
