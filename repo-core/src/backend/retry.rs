//! A decorator that retries transient backend failures with exponential backoff and normalises
//! listings (sorted, each name once).
//!
//! Only errors that say they are transient ([`crate::Error::is_transient`]) are retried;
//! permanent ones (not found, permission denied, a full disk or exhausted quota) fail at once:
//! space does not come back within the seconds the retries wait (see
//! [`crate::Error::backend_io`]). Writes are safe to
//! retry because every object is written whole and named by its content.

use std::sync::Arc;
use std::time::Duration;

use super::{Backend, FileType};
use crate::error::Result;

/// Retries transient failures of the wrapped backend.
pub struct RetryBackend {
    inner: Arc<dyn Backend>,
    attempts: u32,
    first_delay: Duration,
}

impl RetryBackend {
    /// Wraps `inner`: up to 5 attempts, waiting 0.2 s, 0.6 s, 1.8 s, 5.4 s between them.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Self {
            inner,
            attempts: 5,
            first_delay: Duration::from_millis(200),
        }
    }

    /// Sets the number of attempts and the first delay (tests use short delays).
    #[cfg(test)]
    #[must_use]
    pub fn with_policy(mut self, attempts: u32, first_delay: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.first_delay = first_delay;
        self
    }

    fn retry<T>(&self, mut op: impl FnMut() -> Result<T>) -> Result<T> {
        let mut delay = self.first_delay;
        let mut attempt = 1;
        loop {
            match op() {
                Err(e) if e.is_transient() && attempt < self.attempts => {
                    std::thread::sleep(delay);
                    delay = delay.saturating_mul(3);
                    attempt += 1;
                }
                Err(e) if e.is_transient() => {
                    return Err(e.context(format_args!("after {attempt} attempts")))
                }
                other => return other,
            }
        }
    }
}

impl Backend for RetryBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> Result<()> {
        self.retry(|| self.inner.create())
    }

    fn write(&self, file_type: FileType, name: &str, data: &[u8]) -> Result<()> {
        self.retry(|| self.inner.write(file_type, name, data))
    }

    fn read(&self, file_type: FileType, name: &str) -> Result<Vec<u8>> {
        self.retry(|| self.inner.read(file_type, name))
    }

    fn read_range(
        &self,
        file_type: FileType,
        name: &str,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>> {
        self.retry(|| self.inner.read_range(file_type, name, offset, len))
    }

    /// Lists, then normalises: sorted by name, each name once. An object store's paginated
    /// listing can repeat a name across pages while objects are added, and a repeated snapshot
    /// or index file must not count twice.
    fn list(&self, file_type: FileType) -> Result<Vec<(String, u64)>> {
        let mut all = self.retry(|| self.inner.list(file_type))?;
        all.sort_unstable();
        all.dedup_by(|a, b| a.0 == b.0);
        Ok(all)
    }

    fn size(&self, file_type: FileType, name: &str) -> Result<u64> {
        self.retry(|| self.inner.size(file_type, name))
    }

    fn delete(&self, file_type: FileType, name: &str) -> Result<()> {
        self.retry(|| self.inner.delete(file_type, name))
    }

    fn temporary_files(&self) -> Result<Vec<String>> {
        self.retry(|| self.inner.temporary_files())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;
    use crate::error::{Error, ErrorKind};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails the first `n` writes transiently (or permanently).
    struct Flaky {
        inner: MemoryBackend,
        left: AtomicU32,
        transient: bool,
    }

    impl Backend for Flaky {
        fn location(&self) -> String {
            "flaky".into()
        }
        fn create(&self) -> Result<()> {
            Ok(())
        }
        fn write(&self, t: FileType, n: &str, d: &[u8]) -> Result<()> {
            if self.left.load(Ordering::SeqCst) > 0 {
                let _ = self.left.fetch_sub(1, Ordering::SeqCst);
                return Err(Error::backend("connection reset", self.transient));
            }
            self.inner.write(t, n, d)
        }
        fn read(&self, t: FileType, n: &str) -> Result<Vec<u8>> {
            self.inner.read(t, n)
        }
        fn read_range(&self, t: FileType, n: &str, o: u64, l: u32) -> Result<Vec<u8>> {
            self.inner.read_range(t, n, o, l)
        }
        fn list(&self, t: FileType) -> Result<Vec<(String, u64)>> {
            self.inner.list(t)
        }
        fn delete(&self, t: FileType, n: &str) -> Result<()> {
            self.inner.delete(t, n)
        }
    }

    #[test]
    fn transient_failures_are_retried_and_permanent_ones_are_not() {
        let flaky = Arc::new(Flaky {
            inner: MemoryBackend::new(),
            left: AtomicU32::new(3),
            transient: true,
        });
        let b = RetryBackend::new(flaky.clone()).with_policy(5, Duration::from_millis(1));
        b.write(FileType::Pack, "aa", b"x").unwrap();
        assert_eq!(b.read(FileType::Pack, "aa").unwrap(), b"x");

        let flaky = Arc::new(Flaky {
            inner: MemoryBackend::new(),
            left: AtomicU32::new(10),
            transient: true,
        });
        let b = RetryBackend::new(flaky.clone()).with_policy(3, Duration::from_millis(1));
        let err = b.write(FileType::Pack, "aa", b"x").unwrap_err();
        assert!(err.to_string().contains("after 3 attempts"), "{err}");
        assert_eq!(flaky.left.load(Ordering::SeqCst), 7);

        let perm = Arc::new(Flaky {
            inner: MemoryBackend::new(),
            left: AtomicU32::new(1),
            transient: false,
        });
        let b = RetryBackend::new(perm.clone()).with_policy(5, Duration::from_millis(1));
        assert_eq!(
            b.write(FileType::Pack, "aa", b"x").unwrap_err().kind(),
            ErrorKind::Backend
        );
        assert_eq!(
            perm.left.load(Ordering::SeqCst),
            0,
            "a permanent failure is tried once"
        );
    }

    /// Fails every write with "no space left on device", counting the attempts.
    struct Full {
        attempts: AtomicU32,
    }

    impl Backend for Full {
        fn location(&self) -> String {
            "full".into()
        }
        fn create(&self) -> Result<()> {
            Ok(())
        }
        fn write(&self, t: FileType, n: &str, _: &[u8]) -> Result<()> {
            let _ = self.attempts.fetch_add(1, Ordering::SeqCst);
            Err(Error::backend_io(
                format_args!("write {}/{n}", t.dir()),
                std::io::Error::from_raw_os_error(nix::libc::ENOSPC),
            ))
        }
        fn read(&self, _: FileType, _: &str) -> Result<Vec<u8>> {
            Ok(Vec::new())
        }
        fn read_range(&self, _: FileType, _: &str, _: u64, _: u32) -> Result<Vec<u8>> {
            Ok(Vec::new())
        }
        fn list(&self, _: FileType) -> Result<Vec<(String, u64)>> {
            Ok(Vec::new())
        }
        fn delete(&self, _: FileType, _: &str) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_disk_is_not_retried() {
        let full = Arc::new(Full {
            attempts: AtomicU32::new(0),
        });
        let b = RetryBackend::new(full.clone()).with_policy(5, Duration::from_secs(10));
        let started = std::time::Instant::now();
        let err = b.write(FileType::Pack, "abcd", b"x").unwrap_err();
        assert!(err.is_storage_full(), "{err:?}");
        assert!(err.to_string().contains("No space left on device"), "{err}");
        assert_eq!(full.attempts.load(Ordering::SeqCst), 1);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no backoff wait"
        );
    }
}
