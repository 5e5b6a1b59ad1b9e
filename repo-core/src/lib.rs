//! Cairn core library: encrypted, deduplicating, content-addressed backup repositories.
//!
//! Files are split into content-defined chunks (FastCDC with a per-repository seed), each
//! identified by a keyed BLAKE3 hash, compressed with zstd, encrypted with XChaCha20-Poly1305
//! and stored in pack files; an index maps blobs to packs, and snapshots point at trees of
//! directory listings. The on-disk format is specified in `spec/`.
//!
//! ```
//! use std::sync::Arc;
//! use repo_core::{BackupOptions, InitOptions, KdfParams, MemoryBackend, OpCtx, Repository,
//!                 RestoreOptions, Secret, SnapshotFilter};
//!
//! # fn main() -> repo_core::Result<()> {
//! let source = tempfile::tempdir().unwrap();
//! std::fs::write(source.path().join("hello.txt"), b"hello, world").unwrap();
//!
//! let backend = Arc::new(MemoryBackend::new());
//! let secret = Secret::password("correct horse battery staple");
//! let mut init = InitOptions::default();
//! init.kdf = KdfParams::insecure_fast(); // tests only: keep the real default elsewhere
//! let ctx = OpCtx::default();
//!
//! let repo = Repository::init(backend, &secret, &init)?.into_indexed(&ctx)?;
//! let summary = repo.backup(&ctx, &[source.path().to_path_buf()], &BackupOptions::default())?;
//! assert_eq!(summary.stats.files_new, 1);
//!
//! let repo = repo.reload_index(&ctx)?;
//! let snapshot = repo.find_snapshot(&ctx, "latest", &SnapshotFilter::default())?;
//! let mut opts = RestoreOptions::default();
//! opts.subpath = Some(source.path().to_path_buf());
//! let plan = repo.plan_restore(&ctx, &snapshot, &opts)?;
//! let target = tempfile::tempdir().unwrap();
//! repo.restore(&ctx, &plan, target.path())?;
//! assert_eq!(std::fs::read(target.path().join("hello.txt")).unwrap(), b"hello, world");
//! # Ok(())
//! # }
//! ```
//!
//! # Patterns
//!
//! Backup excludes, restore includes and excludes and [`Repository::find`] share one pattern
//! dialect. `*` and `?` match within one path component, `**` across components, `[abc]` a
//! character class, and `\` escapes the next character. A pattern that starts with `/` is
//! matched against the whole path (the absolute path in a backup, the path inside the snapshot
//! otherwise); any other pattern matches the last components of a path at any depth (`*.log`,
//! `b/c`). A pattern that ends with `/` matches directories only: `cache/` selects a directory
//! named `cache` and everything below it, never a file of that name. An empty pattern is an
//! error.
//!
//! # What is public
//!
//! Every public item is exported here, at the top, by one path. The modules are private,
//! except `format` (hidden from the docs): the on-disk structures of `spec/`, public for the
//! golden vectors and fuzz targets, and not a stable API, since it follows the format version.
//! The items of the format that the API hands out ([`Node`], [`Tree`], [`SnapshotSummary`],
//! [`Config`], [`BlobType`]) are exported here too. Nothing reaches below [`Repository`]: the
//! master key, the raw backend of an open repository and the lock files stay inside. The
//! `internals` cargo feature, enabled only by dev-dependencies (this crate's tests, the test
//! kit, the fuzz targets and the benches), adds the hidden `internals` and `fuzzing` modules
//! that those need to build hostile objects and drive the chunker directly.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod archiver;
mod backend;
mod cache;
mod checker;
mod chunker;
mod crypto;
mod error;
mod forget;
/// The on-disk format: every structure of `spec/`, its encoding and limits. Not a stable API:
/// it changes with the format version. Public only for the golden vectors, the fuzz targets and
/// the tests that build hostile objects.
#[doc(hidden)]
pub mod format;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod fuzzing;
mod host;
mod id;
mod index;
mod inspect;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals;
mod keys;
mod lock;
mod pack;
mod pattern;
mod progress;
mod repository;
mod restorer;
mod retention;
mod snapshot;
mod source;
mod stats;
mod walk;

pub use archiver::{BackupOptions, BackupSummary, ParentSelection};
pub use backend::{Backend, FileType, LocalBackend, MemoryBackend};
pub use checker::{CheckOptions, CheckReport, Problem};
pub use chunker::ChunkerParams;
pub use crypto::{KdfParams, Secret};
pub use error::{CorruptionKind, Error, ErrorKind, LockDetails, LockHolder, Result};
pub use forget::{ForgetGroup, ForgetOptions, ForgetPlan, GroupBy, GroupKey};
pub use format::config::Config;
pub use format::snapshot::SnapshotSummary;
pub use format::tree::{Node, NodeKind, Tree, Xattr};
pub use format::BlobType;
pub use id::{BlobId, Id, IndexId, KeyId, PackId, SnapshotId};
pub use index::{BlobLocation, MasterIndex};
pub use keys::KeyInfo;
pub use lock::{LockGuard, LockMode, Unlock, MAX_LOCK_WAIT};
pub use progress::{CancelToken, EntryStatus, NoProgress, OpCtx, Phase, Progress, ProgressEvent};
pub use repository::{Indexed, InitOptions, OpenOptions, Opened, Repository, DEFAULT_PACK_SIZE};
pub use restorer::{Overwrite, PlannedEntry, RestoreOptions, RestorePlan, RestoreSummary};
pub use retention::{apply_retention, LocalTime, RetentionDecision, RetentionPolicy};
pub use snapshot::{select as select_snapshot, Snapshot, SnapshotFilter};
pub use stats::{DiffEntry, DiffKind, DiffReport, RepoStats};
pub use walk::WalkEntry;
