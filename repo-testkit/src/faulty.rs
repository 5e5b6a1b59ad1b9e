//! [`FaultyBackend`]: a [`Backend`] wrapper that injects failures (transient and permanent
//! write errors, short and empty uploads reported as successful, corrupted reads, stale and
//! overlapping paged listings) and models storage that runs full, so a test can show what the
//! repository does about each.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use repo_core::{Backend, Error, FileType, MemoryBackend, Result};

/// One injected fault, consumed by the first operation it matches (except
/// [`Fault::ListPagedOverlap`], which stays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The next write of this type fails with a transient error, storing nothing.
    WriteTransient(FileType),
    /// The next write of this type fails permanently ("403 access denied"), storing nothing.
    WritePermanent(FileType),
    /// The next write of this type stores only the first half but reports success.
    WriteShort(FileType),
    /// The next write of this type stores zero bytes but reports success.
    WriteEmpty(FileType),
    /// The next read (whole or range) of this type returns the bytes with one flipped.
    ReadCorrupt(FileType),
    /// The next list of this type returns only the first entry (a stale or paged listing).
    ListPartial(FileType),
    /// Lists of this type come as overlapping pages in no particular order, as an object
    /// store's paginated listing can while objects are added: every name appears, some twice.
    /// Not consumed: every listing of the type is paged while it is injected.
    ListPagedOverlap(FileType),
}

/// Storage capacity, like a file system or quota.
#[derive(Debug, Default)]
struct Space {
    /// A write that would take the stored bytes above this fails and stores nothing.
    limit: Option<u64>,
    /// The storage runs full when the first write of this type arrives (the limit becomes
    /// what is stored at that moment).
    full_at: Option<FileType>,
    /// Writes refused for lack of space.
    refused: Vec<(FileType, String)>,
}

/// Wraps a backend (a [`MemoryBackend`] by default) and injects [`Fault`]s and a capacity.
/// Clones share the faults, the capacity and the wrapped storage.
#[derive(Clone)]
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    faults: Arc<Mutex<VecDeque<Fault>>>,
    fired: Arc<Mutex<Vec<Fault>>>,
    space: Arc<Mutex<Space>>,
}

impl Default for FaultyBackend {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FaultyBackend {
    /// Over a new, empty [`MemoryBackend`].
    pub fn new() -> Self {
        Self::wrap(Arc::new(MemoryBackend::new()))
    }

    /// Over `inner`: without faults and capacity every call goes straight through.
    pub fn wrap(inner: Arc<dyn Backend>) -> Self {
        Self {
            inner,
            faults: Arc::default(),
            fired: Arc::default(),
            space: Arc::default(),
        }
    }

    /// The wrapped backend, to look at or alter what is stored without any fault.
    pub fn inner(&self) -> &dyn Backend {
        self.inner.as_ref()
    }

    /// Queues `fault`.
    pub fn inject(&self, fault: Fault) {
        lock(&self.faults).push_back(fault);
    }

    /// The faults that fired so far, in order.
    pub fn fired(&self) -> Vec<Fault> {
        lock(&self.fired).clone()
    }

    /// Bytes stored, all types together.
    pub fn used(&self) -> u64 {
        FileType::ALL
            .iter()
            .flat_map(|&t| self.inner.list(t).expect("list the wrapped backend"))
            .map(|(_, len)| len)
            .sum()
    }

    /// Limits the stored bytes, all types together, to `limit` (`None`: no limit). A write
    /// that does not fit fails like a full disk ("No space left on device", permanent,
    /// [`Error::is_storage_full`]) and stores nothing.
    pub fn set_capacity(&self, limit: Option<u64>) {
        lock(&self.space).limit = limit;
    }

    /// Makes the storage run full when the first write of `file_type` arrives: the capacity
    /// becomes what is stored at that moment.
    pub fn fill_at(&self, file_type: FileType) {
        lock(&self.space).full_at = Some(file_type);
    }

    /// Removes the capacity and a pending [`FaultyBackend::fill_at`]: space is back.
    pub fn unlimited(&self) {
        let mut space = lock(&self.space);
        space.limit = None;
        space.full_at = None;
    }

    /// The writes refused for lack of space since the last call, in order.
    pub fn take_refused(&self) -> Vec<(FileType, String)> {
        std::mem::take(&mut lock(&self.space).refused)
    }

    /// Refuses the write, like a full disk, when it does not fit.
    fn check_space(&self, t: FileType, name: &str, len: usize) -> Result<()> {
        let mut space = lock(&self.space);
        if space.full_at == Some(t) {
            space.full_at = None;
            space.limit = Some(self.used());
        }
        match space.limit {
            Some(limit) if self.used() + len as u64 > limit => {
                space.refused.push((t, name.to_string()));
                Err(Error::backend_io(
                    format_args!("write {}/{name}", t.dir()),
                    std::io::Error::from_raw_os_error(nix::libc::ENOSPC),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Takes the first queued fault that `pred` matches, recording it as fired.
    fn take(&self, pred: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let i = faults.iter().position(pred)?;
        let f = faults.remove(i)?;
        lock(&self.fired).push(f);
        Some(f)
    }

    /// Flips a byte in the middle of `data` when a [`Fault::ReadCorrupt`] of `t` is queued.
    fn maybe_corrupt(&self, t: FileType, data: &mut [u8]) {
        if !data.is_empty() && self.take(|f| *f == Fault::ReadCorrupt(t)).is_some() {
            let mid = data.len() / 2;
            data[mid] ^= 0x40;
        }
    }
}

impl Backend for FaultyBackend {
    fn location(&self) -> String {
        format!("faulty:{}", self.inner.location())
    }

    fn create(&self) -> Result<()> {
        self.inner.create()
    }

    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        self.check_space(t, name, data.len())?;
        match self.take(|f| match f {
            Fault::WriteTransient(x)
            | Fault::WritePermanent(x)
            | Fault::WriteShort(x)
            | Fault::WriteEmpty(x) => *x == t,
            _ => false,
        }) {
            Some(Fault::WriteTransient(_)) => Err(Error::backend("connection reset by peer", true)),
            Some(Fault::WritePermanent(_)) => Err(Error::backend("403 access denied", false)),
            Some(Fault::WriteShort(_)) => self.inner.write(t, name, &data[..data.len() / 2]),
            Some(Fault::WriteEmpty(_)) => self.inner.write(t, name, &[]),
            _ => self.inner.write(t, name, data),
        }
    }

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        let mut data = self.inner.read(t, name)?;
        self.maybe_corrupt(t, &mut data);
        Ok(data)
    }

    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u32) -> Result<Vec<u8>> {
        let mut data = self.inner.read_range(t, name, offset, len)?;
        self.maybe_corrupt(t, &mut data);
        Ok(data)
    }

    fn list(&self, t: FileType) -> Result<Vec<(String, u64)>> {
        let mut all = self.inner.list(t)?;
        if self.take(|f| *f == Fault::ListPartial(t)).is_some() {
            all.truncate(1);
        }
        if lock(&self.faults).contains(&Fault::ListPagedOverlap(t)) {
            let mut paged = Vec::new();
            for page in all.chunks(2).rev() {
                paged.extend_from_slice(page);
                // The next page starts again at the last name of this one.
                paged.extend(page.last().cloned());
            }
            all = paged;
        }
        Ok(all)
    }

    fn size(&self, t: FileType, name: &str) -> Result<u64> {
        self.inner.size(t, name)
    }

    fn delete(&self, t: FileType, name: &str) -> Result<()> {
        self.inner.delete(t, name)
    }

    fn temporary_files(&self) -> Result<Vec<String>> {
        self.inner.temporary_files()
    }
}
