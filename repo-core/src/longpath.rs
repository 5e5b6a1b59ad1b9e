//! Paths longer than the kernel accepts in one system call.
//!
//! Linux refuses a path of `PATH_MAX` (4096) bytes or more with `ENAMETOOLONG`, yet a
//! directory tree may be far deeper than that: 10,000 levels of one-letter names make paths of
//! 20,000 bytes. Backups must still read such trees and restores must recreate them.
//!
//! [`LongPaths::resolve`] returns the path unchanged when it is short, which is the case on the
//! hot path. A long path is cut at component boundaries into pieces shorter than
//! `PIECE_LEN`; each piece but the last is opened as a directory (`O_PATH | O_NOFOLLOW`,
//! relative to the previous one through `/proc/self/fd/N/`), and the result is
//! `/proc/self/fd/N/<last piece>`, short enough for any path-taking call. The directory
//! descriptors are cached per operation (keyed by the directory a piece is relative to and the
//! piece) and shared with
//! [`Resolved`] through an `Arc`, so a descriptor stays open, and its number cannot be reused by
//! another directory, for as long as a resolved path that names it is alive.
//!
//! Symlinks: the last component of each piece is opened with `O_NOFOLLOW`, so a symlink there
//! makes the resolution fail (`ELOOP`) instead of leading elsewhere. Components inside a piece
//! are resolved by the kernel as in any path; callers that must not follow symlinks check each
//! directory they create or enter, as they do for short paths.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Paths shorter than this (in bytes) are passed to the kernel as they are.
pub(crate) const DIRECT_LEN: usize = 1024;

/// A longer path is cut into pieces shorter than this. Short pieces keep every system call's
/// lookup to a few hundred components, so walking a deep tree costs time in proportion to its
/// size, not to its depth squared.
const PIECE_LEN: usize = 512;

/// At most this many directory descriptors stay cached; beyond it the cache starts afresh
/// (descriptors still used by a live [`Resolved`] stay open until it is dropped).
const MAX_CACHED: usize = 512;

/// A path ready for a system call, holding open the directory it is relative to, if any.
#[derive(Debug)]
pub(crate) struct Resolved {
    path: PathBuf,
    _anchor: Option<Arc<Anchor>>,
}

impl std::ops::Deref for Resolved {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for Resolved {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// A directory opened to resolve paths through, with an identity that is never reused (its
/// descriptor number may be, once it is closed).
#[derive(Debug)]
struct Anchor {
    fd: OwnedFd,
    id: u64,
}

/// The anchor a piece is relative to (0: none) and the piece.
type AnchorKey = (u64, Vec<u8>);

/// Per-operation cache of the directories that long paths are resolved through, keyed by the
/// anchor a piece is relative to and the piece itself.
#[derive(Debug, Default)]
pub(crate) struct LongPaths {
    anchors: Mutex<HashMap<AnchorKey, Arc<Anchor>>>,
    next_id: AtomicU64,
}

fn via(anchor: Option<&Arc<Anchor>>, rest: &[u8]) -> PathBuf {
    match anchor {
        None => PathBuf::from(OsStr::from_bytes(rest)),
        Some(a) => {
            let mut p = format!("/proc/self/fd/{}/", a.fd.as_raw_fd()).into_bytes();
            p.extend_from_slice(rest);
            PathBuf::from(OsStr::from_bytes(&p))
        }
    }
}

impl LongPaths {
    /// A path naming the same file as `path` that a system call accepts. Fails with
    /// `ENAMETOOLONG` only when a single component is itself too long, and with the error of
    /// opening a directory on the way (`ENOENT`, `ENOTDIR`, `ELOOP` for a symlink, ...).
    pub(crate) fn resolve(&self, path: &Path) -> std::io::Result<Resolved> {
        let bytes = path.as_os_str().as_bytes();
        if bytes.len() < DIRECT_LEN {
            return Ok(Resolved {
                path: path.to_path_buf(),
                _anchor: None,
            });
        }
        let mut anchor: Option<Arc<Anchor>> = None;
        let mut start = 0;
        loop {
            let rest = &bytes[start..];
            if rest.len() < PIECE_LEN {
                return Ok(Resolved {
                    path: via(anchor.as_ref(), rest),
                    _anchor: anchor,
                });
            }
            // Cut at the last '/' that keeps the piece short (never at the leading '/').
            let window = &bytes[start..start + PIECE_LEN];
            let cut = match window.iter().rposition(|&b| b == b'/') {
                Some(i) if start + i > 0 => start + i,
                _ => return Err(std::io::Error::from_raw_os_error(nix::libc::ENAMETOOLONG)),
            };
            let key = (
                anchor.as_ref().map_or(0, |a| a.id),
                bytes[start..cut].to_vec(),
            );
            let cached = self
                .anchors
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&key)
                .cloned();
            let next = match cached {
                Some(a) => a,
                None => {
                    let dir = std::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(
                            nix::libc::O_PATH | nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW,
                        )
                        .open(via(anchor.as_ref(), &key.1))?;
                    let a = Arc::new(Anchor {
                        fd: OwnedFd::from(dir),
                        id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
                    });
                    let mut anchors = self.anchors.lock().unwrap_or_else(PoisonError::into_inner);
                    if anchors.len() >= MAX_CACHED {
                        anchors.clear();
                    }
                    let _ = anchors.insert(key, Arc::clone(&a));
                    a
                }
            };
            anchor = Some(next);
            // Skip the separator (and any repeated ones).
            start = cut;
            while start < bytes.len() && bytes[start] == b'/' {
                start += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Makes `levels` nested directories named `name` under `root`, through the resolver.
    fn nest(long: &LongPaths, root: &Path, name: &str, levels: usize) -> PathBuf {
        let mut p = root.to_path_buf();
        for _ in 0..levels {
            p.push(name);
            std::fs::create_dir(&*long.resolve(&p).unwrap()).unwrap();
        }
        p
    }

    #[test]
    fn short_paths_pass_through_unchanged() {
        let long = LongPaths::default();
        let p = Path::new("/etc/hostname");
        assert_eq!(&*long.resolve(p).unwrap(), p);
    }

    #[test]
    fn long_paths_reach_the_same_file_and_cache_pieces() {
        let tmp = tempfile::tempdir().unwrap();
        let long = LongPaths::default();
        // 600 levels of 10 bytes: 6,600 bytes, beyond PATH_MAX.
        let deep = nest(&long, tmp.path(), "directory", 600);
        assert!(deep.as_os_str().len() > 4096);
        let file = deep.join("f");
        std::fs::write(&*long.resolve(&file).unwrap(), b"deep").unwrap();
        assert!(
            std::fs::read(&file).is_err(),
            "the kernel refuses the plain path"
        );

        // A fresh resolver (no cache) finds the same file.
        let other = LongPaths::default();
        let resolved = other.resolve(&file).unwrap();
        assert!(resolved.as_os_str().len() < DIRECT_LEN);
        assert_eq!(std::fs::read(&*resolved).unwrap(), b"deep");
        let pieces = other.anchors.lock().unwrap().len();
        assert!(pieces >= file.as_os_str().len() / PIECE_LEN, "{pieces}");
        let ino = std::fs::metadata(&*resolved).unwrap().ino();
        drop(resolved);
        // Resolving again reuses every cached directory.
        let again = other.resolve(&file).unwrap();
        assert_eq!(other.anchors.lock().unwrap().len(), pieces);
        assert_eq!(std::fs::metadata(&*again).unwrap().ino(), ino);
    }

    #[test]
    fn a_symlink_where_a_piece_ends_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let long = LongPaths::default();
        let deep = nest(&long, tmp.path(), "directory", 500);
        // Replace every directory of the chain, one by one from the bottom, by a symlink to
        // an outside directory: whichever of them ends a piece, resolution must refuse it.
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let target = deep.join("x");
        assert!(LongPaths::default().resolve(&target).is_ok());
        let mut refused = 0;
        let mut p = deep.clone();
        for _ in 0..120 {
            let fresh = LongPaths::default();
            let sys = fresh.resolve(&p).unwrap();
            let moved = fresh.resolve(&p.with_file_name("moved")).unwrap();
            std::fs::rename(&*sys, &*moved).unwrap();
            std::os::unix::fs::symlink(&outside, &*sys).unwrap();
            drop((sys, moved));
            if LongPaths::default().resolve(&target).is_err() {
                refused += 1;
            }
            let fresh = LongPaths::default();
            let sys = fresh.resolve(&p).unwrap();
            std::fs::remove_file(&*sys).unwrap();
            std::fs::rename(&*fresh.resolve(&p.with_file_name("moved")).unwrap(), &*sys).unwrap();
            p.pop();
        }
        assert!(
            refused >= 1,
            "a symlink at a piece boundary must be refused"
        );
    }
}
