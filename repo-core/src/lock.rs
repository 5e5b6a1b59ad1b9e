//! Repository locks: shared for backup, restore and reads, exclusive for anything that deletes.
//!
//! Implements the semantics of spec/08-locks.md. A lock is a file in `locks/`, refreshed every
//! five minutes by writing a new lock file and deleting the old one (no rename needed). A lock
//! is stale when its holder's process is gone on the same host, or when it was not refreshed
//! for 30 minutes; stale locks are ignored, and stale locks of this host are removed.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backend::{Backend, FileType};
use crate::crypto::MasterKey;
use crate::error::{Error, ErrorKind, LockDetails, LockHolder, Result};
use crate::format::envelope::ObjectType;
use crate::format::lock::LockFile;
use crate::format::MAX_SMALL_FILE_LEN;
use crate::host::{hostname, now_ns, username};
use crate::id::{short, Id};
use crate::repository::{open_file, seal_file};

/// Shared or exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Many shared holders may coexist; excludes exclusive holders.
    Shared,
    /// Excludes every other holder.
    Exclusive,
}

/// Which locks [`crate::Repository::unlock`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlock {
    /// Stale locks only (see [`LockHolder::is_stale`]): safe while other processes run.
    Stale,
    /// Every lock, including those of running processes and those that cannot be read. Only
    /// for when no other process is using the repository.
    All,
}

/// How often a held lock is rewritten.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Age after which an unrefreshed lock is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// The longest wait for a conflicting lock that [`LockGuard::acquire`] accepts (100 years of
/// 365 days): longer ones cannot be added to the clock everywhere, and mean "forever" anyway.
pub const MAX_LOCK_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// A held lock; released on drop.
pub struct LockGuard {
    backend: Arc<dyn Backend>,
    current: Arc<Mutex<String>>,
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<JoinHandle<()>>,
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::ESRCH) => false,
        Err(_) => true,
    }
}

impl LockDetails {
    fn from_file(l: LockFile) -> Self {
        Self {
            exclusive: l.exclusive,
            hostname: l.hostname,
            username: l.username,
            pid: l.pid,
            time_ns: l.time_ns,
            operation: l.operation,
        }
    }
}

impl LockHolder {
    /// Whether the lock no longer protects anything: its holder is gone from this host, or it
    /// was not refreshed for [`STALE_AFTER`]. Plain `unlock` ([`crate::Unlock::Stale`])
    /// removes exactly these.
    pub fn is_stale(&self) -> bool {
        self.is_stale_at(now_ns(), &hostname())
    }

    /// Whether the holder runs on this host, whose processes can be checked.
    pub fn on_this_host(&self) -> bool {
        self.lock.as_ref().is_some_and(|l| l.hostname == hostname())
    }

    /// Whether the lock is dated further ahead of this host's clock than [`STALE_AFTER`]: a
    /// wrong clock or a forged lock, which will not go stale until that time has passed.
    pub fn is_far_future(&self) -> bool {
        self.ahead_secs(now_ns())
            .is_some_and(|s| s > STALE_AFTER.as_secs())
    }

    fn is_stale_at(&self, now_ns: i64, host: &str) -> bool {
        match &self.lock {
            None => false,
            Some(l) => {
                let age = now_ns.saturating_sub(l.time_ns);
                age > STALE_AFTER.as_nanos() as i64 || (l.hostname == host && !process_alive(l.pid))
            }
        }
    }

    /// "an exclusive lock held by alice@web1 (pid 123, backup), refreshed 12s ago" for messages.
    ///
    /// A lock whose time is ahead of this host's clock says by how much ("dated 90s in the
    /// future"); one ahead by more than [`STALE_AFTER`] is called suspicious, since it will not
    /// go stale until that time has passed. An unreadable lock is named: by its short id when
    /// its name is one, else by its whole (escaped) file name.
    pub fn describe(&self) -> String {
        match &self.lock {
            None => {
                let hex = self.name.len() == 64 && self.name.bytes().all(|b| b.is_ascii_hexdigit());
                let name = if hex {
                    format!("lock {}", short(&self.name))
                } else {
                    format!("locks/{}", self.name.escape_debug())
                };
                format!(
                    "an unreadable lock ({name}: damaged, not a lock, or written with another key)"
                )
            }
            Some(l) => {
                let now = now_ns();
                let when = match self.ahead_secs(now) {
                    Some(ahead) if ahead > STALE_AFTER.as_secs() => format!(
                        "dated {} in the future, which is suspicious (a wrong clock on {}, or a forged lock): it will not go stale until then",
                        approx_duration(ahead),
                        l.hostname
                    ),
                    Some(ahead) => {
                        format!("dated {ahead}s in the future ({}'s clock is ahead)", l.hostname)
                    }
                    None => format!(
                        "refreshed {}s ago",
                        now.saturating_sub(l.time_ns) / 1_000_000_000
                    ),
                };
                format!(
                    "{} lock held by {}@{} (pid {}, {}), {when}",
                    if l.exclusive {
                        "an exclusive"
                    } else {
                        "a shared"
                    },
                    l.username,
                    l.hostname,
                    l.pid,
                    l.operation,
                )
            }
        }
    }

    /// Whole seconds by which the lock's time is ahead of `now_ns`, when it is.
    fn ahead_secs(&self, now_ns: i64) -> Option<u64> {
        let l = self.lock.as_ref()?;
        let ahead = i128::from(l.time_ns) - i128::from(now_ns);
        (ahead > 0).then(|| u64::try_from(ahead / 1_000_000_000).unwrap_or(u64::MAX))
    }
}

/// A duration for people, rounded down to its largest unit: "90s", "45 minutes", "3 days".
fn approx_duration(secs: u64) -> String {
    const MIN: u64 = 60;
    const HOUR: u64 = 60 * MIN;
    const DAY: u64 = 24 * HOUR;
    const YEAR: u64 = 365 * DAY;
    match secs {
        s if s >= 2 * YEAR => format!("{} years", s / YEAR),
        s if s >= 2 * DAY => format!("{} days", s / DAY),
        s if s >= 2 * HOUR => format!("{} hours", s / HOUR),
        s if s >= 2 * MIN => format!("{} minutes", s / MIN),
        s => format!("{s}s"),
    }
}

/// Reads every lock file.
pub(crate) fn list_locks(backend: &dyn Backend, key: &MasterKey) -> Result<Vec<LockHolder>> {
    let mut out = Vec::new();
    for (name, size) in backend.list(FileType::Lock)? {
        let lock = if size > MAX_SMALL_FILE_LEN {
            None
        } else {
            match backend.read(FileType::Lock, &name) {
                Ok(bytes) => {
                    let object = format!("lock {}", short(&name));
                    open_file(key, ObjectType::Lock, &bytes, &object)
                        .and_then(|p| LockFile::from_plaintext(&p, &object))
                        .ok()
                        .map(LockDetails::from_file)
                }
                // Removed meanwhile: its holder released it.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        };
        out.push(LockHolder { name, lock });
    }
    Ok(out)
}

/// Removes locks: all of them, or only stale ones. Returns how many were removed.
///
/// Removing all locks reads none of them, so that no lock file, however damaged or hostile
/// (an unreadable body, a name that is not an id), can survive it.
pub(crate) fn remove_locks(backend: &dyn Backend, key: &MasterKey, which: Unlock) -> Result<usize> {
    if which == Unlock::All {
        let names = backend.list(FileType::Lock)?;
        for (name, _) in &names {
            backend.delete(FileType::Lock, name)?;
        }
        return Ok(names.len());
    }
    let now = now_ns();
    let host = hostname();
    let mut n = 0;
    for found in list_locks(backend, key)? {
        if found.is_stale_at(now, &host) {
            backend.delete(FileType::Lock, &found.name)?;
            n += 1;
        }
    }
    Ok(n)
}

fn write_lock(backend: &dyn Backend, key: &MasterKey, lock: &LockFile) -> Result<String> {
    let sealed = seal_file(key, ObjectType::Lock, &lock.to_plaintext()?)?;
    let name = Id::hash(&sealed).to_hex();
    backend.write(FileType::Lock, &name, &sealed)?;
    Ok(name)
}

impl LockGuard {
    /// Takes a lock, waiting up to `wait` for conflicting holders to go away.
    pub(crate) fn acquire(
        backend: Arc<dyn Backend>,
        key: MasterKey,
        mode: LockMode,
        operation: &str,
        wait: Duration,
    ) -> Result<Self> {
        let host = hostname();
        let exclusive = mode == LockMode::Exclusive;
        let deadline = Some(wait)
            .filter(|w| *w <= MAX_LOCK_WAIT)
            .and_then(|w| Instant::now().checked_add(w))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "lock wait {}s is too long: at most {} days",
                    wait.as_secs(),
                    MAX_LOCK_WAIT.as_secs() / 86_400
                ))
            })?;
        let mut lock = LockFile {
            exclusive,
            hostname: host.clone(),
            username: username(),
            pid: std::process::id(),
            time_ns: now_ns(),
            operation: operation.to_string(),
        };
        loop {
            let conflict = Self::conflict(backend.as_ref(), &key, exclusive, None, &host)?;
            if conflict.is_none() {
                lock.time_ns = now_ns();
                let name = write_lock(backend.as_ref(), &key, &lock)?;
                // Two processes may have looked at the same moment: check again now that ours
                // is visible, and back off if someone else's conflicts.
                match Self::conflict(backend.as_ref(), &key, exclusive, Some(&name), &host)? {
                    None => return Ok(Self::start(backend, key, lock, name)),
                    Some(other) => {
                        backend.delete(FileType::Lock, &name)?;
                        if Instant::now() >= deadline {
                            return Err(locked_error(other));
                        }
                    }
                }
            } else if Instant::now() >= deadline {
                return Err(locked_error(conflict.unwrap_or_else(|| LockHolder {
                    name: String::new(),
                    lock: None,
                })));
            }
            std::thread::sleep(
                Duration::from_millis(200)
                    .min(deadline.saturating_duration_since(Instant::now()))
                    .max(Duration::from_millis(10)),
            );
        }
    }

    fn conflict(
        backend: &dyn Backend,
        key: &MasterKey,
        exclusive: bool,
        own: Option<&str>,
        host: &str,
    ) -> Result<Option<LockHolder>> {
        let now = now_ns();
        for found in list_locks(backend, key)? {
            if Some(found.name.as_str()) == own {
                continue;
            }
            if found.is_stale_at(now, host) {
                if found.lock.as_ref().is_some_and(|l| l.hostname == host) {
                    // A lock of a process that died on this host: clear it.
                    let _ = backend.delete(FileType::Lock, &found.name);
                }
                continue;
            }
            let other_exclusive = found.lock.as_ref().is_none_or(|l| l.exclusive);
            if exclusive || other_exclusive {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    fn start(backend: Arc<dyn Backend>, key: MasterKey, lock: LockFile, name: String) -> Self {
        let current = Arc::new(Mutex::new(name));
        let (stop, stopped) = mpsc::channel::<()>();
        let refresher = {
            let backend = Arc::clone(&backend);
            let current = Arc::clone(&current);
            std::thread::Builder::new()
                .name("cairn-lock-refresh".into())
                .spawn(move || {
                    let mut lock = lock;
                    loop {
                        match stopped.recv_timeout(REFRESH_INTERVAL) {
                            Err(RecvTimeoutError::Timeout) => {
                                lock.time_ns = now_ns();
                                if let Ok(new_name) = write_lock(backend.as_ref(), &key, &lock) {
                                    let mut cur = current
                                        .lock()
                                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                                    let old = std::mem::replace(&mut *cur, new_name);
                                    let _ = backend.delete(FileType::Lock, &old);
                                }
                            }
                            _ => return,
                        }
                    }
                })
                .ok()
        };
        Self {
            backend,
            current,
            stop: Some(stop),
            refresher,
        }
    }
}

/// The error for a conflicting lock: it describes the lock and carries it, so that the caller
/// can say what to do about it.
fn locked_error(other: LockHolder) -> Error {
    Error::locked(format!("repository is locked: {}", other.describe()), other)
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        let name = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let _ = self.backend.delete(FileType::Lock, &name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;

    #[test]
    fn exclusive_excludes_shared_and_shared_coexist() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let key = MasterKey::generate().unwrap();
        let a = LockGuard::acquire(
            Arc::clone(&backend),
            key.clone(),
            LockMode::Shared,
            "backup",
            Duration::ZERO,
        )
        .unwrap();
        let b = LockGuard::acquire(
            Arc::clone(&backend),
            key.clone(),
            LockMode::Shared,
            "backup",
            Duration::ZERO,
        )
        .unwrap();
        let err = LockGuard::acquire(
            Arc::clone(&backend),
            key.clone(),
            LockMode::Exclusive,
            "prune",
            Duration::ZERO,
        )
        .err()
        .unwrap();
        assert_eq!(err.kind(), ErrorKind::Locked);
        assert!(err.to_string().contains("shared lock held by"), "{err}");
        drop((a, b));
        assert!(backend.list(FileType::Lock).unwrap().is_empty());
        let _x = LockGuard::acquire(
            Arc::clone(&backend),
            key.clone(),
            LockMode::Exclusive,
            "prune",
            Duration::ZERO,
        )
        .unwrap();
        assert!(
            LockGuard::acquire(backend, key, LockMode::Shared, "backup", Duration::ZERO).is_err()
        );
    }

    #[test]
    fn lock_of_dead_process_on_this_host_is_cleared() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let key = MasterKey::generate().unwrap();
        let dead = LockFile {
            exclusive: true,
            hostname: hostname(),
            username: "x".into(),
            pid: 0x7fff_fff0,
            time_ns: now_ns(),
            operation: "prune".into(),
        };
        write_lock(backend.as_ref(), &key, &dead).unwrap();
        let other_host = LockFile {
            hostname: "elsewhere.example".into(),
            ..dead
        };
        let _g = LockGuard::acquire(
            Arc::clone(&backend),
            key.clone(),
            LockMode::Shared,
            "backup",
            Duration::ZERO,
        );
        // The dead local lock is gone; a live-looking lock from another host still blocks.
        write_lock(backend.as_ref(), &key, &other_host).unwrap();
        let err = LockGuard::acquire(backend, key, LockMode::Shared, "backup", Duration::ZERO)
            .err()
            .unwrap();
        let holder = err.lock_holder().expect("a locked error names the lock");
        let details = holder.lock.as_ref().expect("a readable lock");
        assert_eq!(details.hostname, "elsewhere.example");
        assert!(!holder.on_this_host() && !holder.is_stale(), "{holder:?}");
        assert!(err.to_string().contains("x@elsewhere.example"), "{err}");
    }
}
