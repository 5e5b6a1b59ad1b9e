//! Restore: plan (how much, from how many packs), then execute in bounded batches.
//!
//! **Where writes go.** The target is opened once; every directory below it is opened by name
//! relative to its parent's descriptor with `O_DIRECTORY | O_NOFOLLOW`, and every create,
//! write, chmod, chown, utimes, xattr, rename and unlink goes through those descriptors
//! ([`local`]). A directory of the target swapped for a symlink while the restore
//! runs makes that one step fail; it can never send a write outside the target. Regular files
//! and their metadata are set through the file's own descriptor; symlinks and special files
//! through their parent's, never following the last component.
//!
//! **Files appear complete or not at all.** Each file is written under a temporary name in its
//! directory (`.cairn-restore-<16 hex>`, derived from its name), given its metadata, and
//! renamed over its final name when every byte is in place, so an interrupted restore (an
//! error, a cancellation, a kill) never leaves a partly written file under the snapshot's
//! name, and a rerun with `--overwrite never` keeps only complete files. After an error, the
//! temporary files this restore made are removed through the same descriptors; a kill may
//! leave some, which the next restore into the same place removes.
//!
//! **What is replaced.** An existing non-directory is replaced atomically by the rename. An
//! existing empty directory where the snapshot has something else is removed; a non-empty
//! one is left alone and reported unless [`RestoreOptions::delete_conflicting`] is set, and
//! even then removal never crosses into another file system nor through a mount point.
//!
//! **Memory.** The snapshot is walked once and executed in batches of at most
//! [`execute::BATCH_FILES`] files: a batch's files are created, filled pack range by pack range in
//! parallel, verified, linked, and its finished directories given their metadata, before the
//! walk goes on. Memory is one batch plus one entry per level of the current path, whatever
//! the size of the snapshot once expanded (a tree referenced many times costs time, not
//! memory). Open descriptors are bounded too: the deepest [`execute::OPEN_LEVELS`] levels of the
//! current path keep theirs, and going back up reopens a directory through `..`, checked
//! against the identity recorded on the way down.
//!
//! **Modules.** [`options`]: options, plan, summary; [`select`]: the selection walk, planning
//! and the dry run; [`destination`]: the seam every restore writes through, and its driver; [`execute`]: batches and the parallel filling of files; [`local`]: the
//! local file system operations, descriptor-relative.

mod destination;
mod execute;
mod local;
mod options;
mod select;

pub use options::{Overwrite, PlannedEntry, RestoreOptions, RestorePlan, RestoreSummary};
