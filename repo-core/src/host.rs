//! Facts about the host this process runs on: the current time, the host name and the user
//! name. Locks, snapshots and key files record them; nothing else asks the system for them.

/// Nanoseconds since the Unix epoch (0 for a clock before it, `i64::MAX` past 2262).
pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// This machine's host name ("unknown" when the system does not say).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".to_string())
}

/// The current user's name: from the user database, else `$USER`, else empty.
pub fn username() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_default()
}
