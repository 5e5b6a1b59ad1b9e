//! A decorator that limits the rate of uploads and downloads of any backend (`--limit-upload`,
//! `--limit-download`): every write waits until the upload budget allows its bytes, every read
//! until the download budget allows what it returned. The budget is shared by all threads, so
//! parallel uploads together stay within the rate. After a pause, at most a quarter second's
//! worth goes out at once.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Backend, FileType};
use crate::error::Result;

/// How much unused budget a pause leaves for the next transfer.
const BURST: Duration = Duration::from_millis(250);

/// A rate budget: the time at which the bytes reserved so far have been "sent".
#[derive(Debug)]
struct Bucket {
    bytes_per_second: f64,
    next: Option<Instant>,
}

impl Bucket {
    fn new(bytes_per_second: u64) -> Self {
        Self {
            bytes_per_second: bytes_per_second.max(1) as f64,
            next: None,
        }
    }

    /// Reserves `n` bytes at `now`; returns how long the caller waits for them.
    fn reserve(&mut self, now: Instant, n: u64) -> Duration {
        let earliest = now.checked_sub(BURST).unwrap_or(now);
        let start = match self.next {
            Some(t) if t > earliest => t,
            _ => earliest,
        };
        let end = start + Duration::from_secs_f64(n as f64 / self.bytes_per_second);
        self.next = Some(end);
        end.saturating_duration_since(now)
    }
}

/// Limits the transfer rate of the wrapped backend.
pub struct RateLimitedBackend {
    inner: Arc<dyn Backend>,
    upload: Option<Mutex<Bucket>>,
    download: Option<Mutex<Bucket>>,
}

impl RateLimitedBackend {
    /// Wraps `inner`, with at most `upload` and `download` bytes per second (None: no limit).
    pub fn new(inner: Arc<dyn Backend>, upload: Option<u64>, download: Option<u64>) -> Self {
        Self {
            inner,
            upload: upload.map(|r| Mutex::new(Bucket::new(r))),
            download: download.map(|r| Mutex::new(Bucket::new(r))),
        }
    }

    fn wait(bucket: Option<&Mutex<Bucket>>, n: usize) {
        if let Some(b) = bucket {
            let delay = b
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .reserve(Instant::now(), n as u64);
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
        }
    }
}

impl Backend for RateLimitedBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self) -> Result<()> {
        self.inner.create()
    }

    fn write(&self, file_type: FileType, name: &str, data: &[u8]) -> Result<()> {
        Self::wait(self.upload.as_ref(), data.len());
        self.inner.write(file_type, name, data)
    }

    fn read(&self, file_type: FileType, name: &str) -> Result<Vec<u8>> {
        let data = self.inner.read(file_type, name)?;
        Self::wait(self.download.as_ref(), data.len());
        Ok(data)
    }

    fn read_range(
        &self,
        file_type: FileType,
        name: &str,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>> {
        let data = self.inner.read_range(file_type, name, offset, len)?;
        Self::wait(self.download.as_ref(), data.len());
        Ok(data)
    }

    fn list(&self, file_type: FileType) -> Result<Vec<(String, u64)>> {
        self.inner.list(file_type)
    }

    fn size(&self, file_type: FileType, name: &str) -> Result<u64> {
        self.inner.size(file_type, name)
    }

    fn delete(&self, file_type: FileType, name: &str) -> Result<()> {
        self.inner.delete(file_type, name)
    }

    fn temporary_files(&self) -> Result<Vec<String>> {
        self.inner.temporary_files()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_spaces_transfers_at_the_rate_with_a_short_burst() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = Bucket::new(1000);
        // A first transfer may use the burst: 250 bytes at once, the rest at the rate.
        assert_eq!(b.reserve(t0, 250), Duration::ZERO);
        assert_eq!(b.reserve(t0, 500), Duration::from_millis(500));
        // Back to back, the waits add up: 1000 more bytes end 1.5 s after t0.
        assert_eq!(b.reserve(t0, 1000), Duration::from_millis(1500));
        // Later, once the budget caught up, only the new bytes count (minus the burst).
        let later = t0 + Duration::from_secs(60);
        assert_eq!(b.reserve(later, 1000), Duration::from_millis(750));
        // Threads sharing the bucket share the rate: two reservations of 1000 at the same
        // moment end one second apart.
        let mut shared = Bucket::new(1000);
        let first = shared.reserve(later, 1000);
        let second = shared.reserve(later, 1000);
        assert_eq!(second - first, Duration::from_secs(1));
    }
}
