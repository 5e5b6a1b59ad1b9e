//! The one public error type of repo-core: [`Error`] with an [`ErrorKind`], typed corruption and
//! a transient flag that the retry layer reads.
//!
//! Messages are lowercase, carry no trailing period and name the object they are about
//! ("pack 3fa2c1d9: header MAC mismatch"). Guidance for people (what to do next) belongs in the CLI.

use std::fmt;

/// What went wrong, coarsely, so that callers can branch (the CLI maps kinds to exit codes).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// An object, snapshot, path or repository does not exist.
    NotFound,
    /// There is no repository at the given location.
    NoRepository,
    /// No key file opens with the given password or key.
    WrongSecret,
    /// Repository bytes failed authentication, hashing or decoding.
    Corrupt,
    /// A conflicting lock is held by another process.
    Locked,
    /// The repository cannot be written (read-only media or mount, no write permission), so
    /// not even a lock could be taken.
    ReadOnly,
    /// The operation was cancelled through its [`crate::CancelToken`].
    Cancelled,
    /// The repository was written by a newer format version.
    UnsupportedVersion,
    /// The storage backend failed.
    Backend,
    /// A local file-system operation failed.
    Io,
    /// The caller passed arguments that cannot work.
    InvalidInput,
    /// A backup found nothing to store: every backup path is excluded or could not be read
    /// (see `BackupOptions::allow_empty`).
    NothingToBackUp,
    /// A bug in Cairn: an invariant did not hold.
    Internal,
}

/// The way repository bytes were found to be corrupt.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CorruptionKind {
    /// Authenticated decryption failed: the bytes were altered, or belong to another object.
    MacMismatch,
    /// The content does not hash to the id it is stored under.
    IdMismatch,
    /// The object is shorter than its structure says.
    Truncated,
    /// The plaintext does not decode as the structure it must be.
    BadEncoding,
    /// A version or tag that this program does not know.
    UnknownVersion,
}

impl fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MacMismatch => "authentication failed",
            Self::IdMismatch => "hash does not match its id",
            Self::Truncated => "truncated",
            Self::BadEncoding => "malformed",
            Self::UnknownVersion => "unknown version or tag",
        })
    }
}

/// The error type of every public operation in repo-core.
pub struct Error(Box<Inner>);

struct Inner {
    kind: ErrorKind,
    corruption: Option<CorruptionKind>,
    transient: bool,
    storage_full: bool,
    message: String,
    lock_holder: Option<LockHolder>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// A lock found in the repository: the one an [`ErrorKind::Locked`] error ran into
/// ([`Error::lock_holder`]), or one of [`crate::Repository::locks`].
///
/// Facts only: what to advise (wait, unlock, remove all) is the caller's choice. Its methods
/// (age, staleness, a description for messages) are in the lock module.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// The lock file's name in `locks/` (as listed: storage anyone can write to, so not
    /// necessarily an id).
    pub name: String,
    /// What the lock says; `None` when it cannot be read (damaged, not a lock, or written with
    /// another key). Such a lock never goes stale.
    pub lock: Option<LockDetails>,
}

/// The content of a readable lock.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockDetails {
    /// Exclusive (excludes everyone) or shared.
    pub exclusive: bool,
    /// Host the holder runs on.
    pub hostname: String,
    /// User the holder runs as.
    pub username: String,
    /// Process id of the holder on its host.
    pub pid: u32,
    /// When the holder last wrote the lock (ns since the epoch, by its clock).
    pub time_ns: i64,
    /// What the holder is doing ("backup", "check", ...).
    pub operation: String,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            kind,
            corruption: None,
            transient: false,
            storage_full: false,
            message: message.into(),
            lock_holder: None,
            source: None,
        }))
    }

    /// An [`ErrorKind::Locked`] error about the lock `holder`, with a message describing it.
    pub(crate) fn locked(message: impl Into<String>, holder: LockHolder) -> Self {
        let mut e = Self::new(ErrorKind::Locked, message);
        e.0.lock_holder = Some(holder);
        e
    }

    /// A corruption error about `object` (which names the object, e.g. "pack 3fa2c1d9").
    pub fn corrupt(
        corruption: CorruptionKind,
        object: impl fmt::Display,
        detail: impl fmt::Display,
    ) -> Self {
        let mut e = Self::new(ErrorKind::Corrupt, format!("{object}: {detail}"));
        e.0.corruption = Some(corruption);
        e
    }

    /// An I/O error with the path or operation it happened on.
    ///
    /// A full file system or an exhausted quota is marked ([`Error::is_storage_full`]).
    pub fn io(context: impl fmt::Display, err: std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            _ => ErrorKind::Io,
        };
        let storage_full = is_storage_full(&err);
        let mut e = Self::new(kind, format!("{context}: {err}")).with_source(err);
        e.0.storage_full = storage_full;
        e
    }

    /// A backend failure; `transient` marks failures that a retry may cure.
    pub fn backend(message: impl Into<String>, transient: bool) -> Self {
        let mut e = Self::new(ErrorKind::Backend, message);
        e.0.transient = transient;
        e
    }

    /// A backend failure caused by a file-system or network I/O error, classified for the
    /// retry layer: not found is [`ErrorKind::NotFound`]; an interrupted, timed-out or
    /// would-block call is transient; everything else is a permanent [`ErrorKind::Backend`].
    ///
    /// A full file system or exhausted quota (`ENOSPC`, `EDQUOT`) is permanent on purpose:
    /// space does not come back within the seconds a retry waits, so retrying would only
    /// delay the error and rewrite the same doomed object; freeing space needs a person. It is
    /// marked ([`Error::is_storage_full`]) so callers can say what to do.
    pub fn backend_io(context: impl fmt::Display, err: std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let io_kind = err.kind();
        let mut e = Self::io(context, err);
        if io_kind != Io::NotFound {
            e.0.kind = ErrorKind::Backend;
            e.0.transient = matches!(io_kind, Io::Interrupted | Io::TimedOut | Io::WouldBlock);
        }
        e
    }

    /// Invalid arguments from the caller.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// The operation was cancelled.
    pub fn cancelled() -> Self {
        Self::new(ErrorKind::Cancelled, "operation cancelled")
    }

    /// An internal invariant failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Attaches an underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.0.source = Some(Box::new(source));
        self
    }

    /// Prefixes the message with more context, keeping kind and corruption.
    #[must_use]
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.0.message = format!("{context}: {}", self.0.message);
        self
    }

    /// A copy without the source chain (for reporting one error in two places).
    #[must_use]
    pub fn clone_shallow(&self) -> Self {
        Self(Box::new(Inner {
            kind: self.0.kind,
            corruption: self.0.corruption,
            transient: self.0.transient,
            storage_full: self.0.storage_full,
            message: self.0.message.clone(),
            lock_holder: self.0.lock_holder.clone(),
            source: None,
        }))
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// For [`ErrorKind::Corrupt`]: how the bytes were found to be corrupt.
    pub fn corruption(&self) -> Option<CorruptionKind> {
        self.0.corruption
    }

    /// True when retrying the same operation may succeed (network hiccups, timeouts).
    pub fn is_transient(&self) -> bool {
        self.0.transient
    }

    /// True when the operation failed because a file system was full or a quota was used up
    /// (`ENOSPC`, `EDQUOT`): on the repository's storage for [`ErrorKind::Backend`], on a local
    /// file system (a restore target) for [`ErrorKind::Io`]. Freeing space and running the
    /// operation again cures it.
    pub fn is_storage_full(&self) -> bool {
        self.0.storage_full
    }

    /// For [`ErrorKind::Locked`]: the lock that stood in the way.
    pub fn lock_holder(&self) -> Option<&LockHolder> {
        self.0.lock_holder.as_ref()
    }

    /// The message without the source chain.
    pub fn message(&self) -> &str {
        &self.0.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.0.kind)
            .field("corruption", &self.0.corruption)
            .field("transient", &self.0.transient)
            .field("storage_full", &self.0.storage_full)
            .field("message", &self.0.message)
            .field("lock_holder", &self.0.lock_holder)
            .finish()
    }
}

/// Whether an I/O error means that there is no space left (file system full, quota exceeded).
fn is_storage_full(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_error_names_object_and_kind() {
        let e = Error::corrupt(
            CorruptionKind::MacMismatch,
            "pack 3fa2c1d9",
            "header authentication failed",
        );
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert_eq!(e.corruption(), Some(CorruptionKind::MacMismatch));
        assert_eq!(e.to_string(), "pack 3fa2c1d9: header authentication failed");
    }

    #[test]
    fn io_not_found_maps_to_not_found() {
        let e = Error::io(
            "open /x",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(!e.is_transient());
    }

    #[test]
    fn full_disk_and_quota_are_permanent_storage_full_backend_errors() {
        for errno in [nix::libc::ENOSPC, nix::libc::EDQUOT] {
            let e = Error::backend_io(
                "write data/ab/abcd",
                std::io::Error::from_raw_os_error(errno),
            );
            assert_eq!(e.kind(), ErrorKind::Backend, "{e}");
            assert!(!e.is_transient(), "errno {errno} must not be retried");
            assert!(e.is_storage_full(), "{e}");
            assert!(e.message().starts_with("write data/ab/abcd: "), "{e}");
            let e = e.context("upload pack abcd").clone_shallow();
            assert!(
                e.is_storage_full(),
                "context and shallow copies keep the mark"
            );
            // The same errno on a local file (a restore target) is an I/O error.
            let local = Error::io("write /t/f", std::io::Error::from_raw_os_error(errno));
            assert_eq!(local.kind(), ErrorKind::Io);
            assert!(local.is_storage_full());
        }
        let timeout =
            Error::backend_io("read x", std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(timeout.is_transient() && !timeout.is_storage_full());
        let missing =
            Error::backend_io("read x", std::io::Error::from(std::io::ErrorKind::NotFound));
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        let denied = Error::backend_io(
            "write x",
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        assert!(!denied.is_transient() && !denied.is_storage_full());
    }
}
