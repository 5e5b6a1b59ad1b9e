//! Storage backends: opaque bytes under `(FileType, name)`, shaped for object stores.
//!
//! **Architecture Invariant:** a backend never sees plaintext and never interprets bytes.
//! Contract for implementations (repo-testkit's `backend_conformance` checks each point):
//! - Names: every type is its own namespace. A name is valid when it is not empty, holds no
//!   `/` and no NUL, and does not begin with `.` (the local backend's temporary files do);
//!   the one [`FileType::Config`] object is named `config`. Every call given another name fails
//!   with [`crate::ErrorKind::InvalidInput`] and touches nothing.
//! - `write` stores a whole object atomically: readers see all of it or nothing. Objects are
//!   written once; writing an existing name with the same bytes is harmless, and a write to an
//!   existing name replaces the object whole (the upload retry after a short write relies on
//!   it). Zero-length objects are objects like any other.
//! - Writes of different objects may run concurrently, from several threads.
//! - `list` gives every object of the type once or more, with its length, and nothing else,
//!   in any order: a paginated listing may repeat names ([`RetryBackend`] sorts and
//!   deduplicates).
//! - No rename is assumed, so object stores fit.
//! - Errors say whether they are transient ([`crate::Error::is_transient`]) so a retry layer can decide.
//! - A missing object (read, range read, size) is reported with [`crate::ErrorKind::NotFound`];
//!   a range that does not lie within the object is a permanent [`crate::ErrorKind::Backend`]
//!   error.

mod limit;
mod local;
mod memory;
mod retry;

pub use limit::RateLimitedBackend;
pub(crate) use local::open_regular;
pub use local::LocalBackend;
pub use memory::MemoryBackend;
pub use retry::RetryBackend;

use crate::error::{Error, Result};

/// Refuses a name that the [`Backend`] contract says is not valid for `file_type` (see the
/// module documentation) with [`crate::ErrorKind::InvalidInput`].
pub(crate) fn check_name(file_type: FileType, name: &str) -> Result<()> {
    let valid = match file_type {
        FileType::Config => name == "config",
        _ => !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\0']),
    };
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid object name {name:?} for {}",
            match file_type {
                FileType::Config => "the config",
                other => other.dir(),
            }
        )))
    }
}

/// The kinds of file in a repository, each in its own namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileType {
    /// The single `config` object.
    Config,
    /// Key files in `keys/`.
    Key,
    /// Snapshot files in `snapshots/`.
    Snapshot,
    /// Index files in `index/`.
    Index,
    /// Pack files in `data/<2 hex>/`.
    Pack,
    /// Lock files in `locks/`.
    Lock,
}

impl FileType {
    /// Every file type.
    pub const ALL: [FileType; 6] = [
        Self::Config,
        Self::Key,
        Self::Snapshot,
        Self::Index,
        Self::Pack,
        Self::Lock,
    ];

    /// Directory name in the layout (empty for config).
    pub fn dir(self) -> &'static str {
        match self {
            Self::Config => "",
            Self::Key => "keys",
            Self::Snapshot => "snapshots",
            Self::Index => "index",
            Self::Pack => "data",
            Self::Lock => "locks",
        }
    }
}

/// Storage for a repository's objects.
pub trait Backend: Send + Sync {
    /// A human-readable location (path or URL) for messages.
    fn location(&self) -> String;

    /// Prepares a location for a new repository (directories, bucket). A location holding
    /// only what an interrupted init leaves (the layout and key files, no config) is accepted
    /// as it is; one holding a repository (a config) or files that are not a repository's is
    /// refused, and then nothing changes. What to do with leftovers is the repository's
    /// decision ([`Repository::init`](crate::Repository::init)), never the backend's.
    fn create(&self) -> Result<()>;

    /// Stores a whole object atomically, replacing one of the same name.
    fn write(&self, file_type: FileType, name: &str, data: &[u8]) -> Result<()>;

    /// Reads a whole object.
    fn read(&self, file_type: FileType, name: &str) -> Result<Vec<u8>>;

    /// Reads `len` bytes at `offset`; a range past the end is a permanent
    /// [`crate::ErrorKind::Backend`] error.
    fn read_range(&self, file_type: FileType, name: &str, offset: u64, len: u32)
        -> Result<Vec<u8>>;

    /// The length of a stored object (used to confirm that an upload arrived whole).
    ///
    /// The default lists the type; backends with a cheaper way (stat, HEAD) override it.
    fn size(&self, file_type: FileType, name: &str) -> Result<u64> {
        check_name(file_type, name)?;
        self.list(file_type)?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
            .ok_or_else(|| {
                Error::new(
                    crate::ErrorKind::NotFound,
                    format!("{}/{name}: not found", file_type.dir()),
                )
            })
    }

    /// Lists the objects of a type with their lengths: each at least once, in any order.
    fn list(&self, file_type: FileType) -> Result<Vec<(String, u64)>>;

    /// Removes an object; removing a missing object is not an error.
    fn delete(&self, file_type: FileType, name: &str) -> Result<()>;

    /// Temporary files that interrupted writes left behind (a backup killed mid-upload), as
    /// paths relative to the repository (`data/ab/.tmp-…`), sorted. They are not objects and no
    /// listing shows them; `check` names them so that a person can remove them. Backends whose
    /// writes leave nothing behind (object stores, memory) have none: the default.
    fn temporary_files(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}
