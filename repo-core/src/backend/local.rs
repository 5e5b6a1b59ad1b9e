//! A repository in a local directory.
//!
//! Writes go to a temporary file in the destination directory, are fsynced, renamed into place,
//! and the directory is fsynced, so a crash leaves either the whole object or none (plus, at
//! worst, a `.tmp-*` file that listings ignore). A write that fails (a full file system or
//! exhausted quota included) removes its temporary file before it returns the error, which for
//! `ENOSPC`/`EDQUOT` is permanent and marked [`Error::is_storage_full`].
//!
//! Every file is read through [`open_regular`]: opened with `O_NOFOLLOW | O_NONBLOCK` and
//! refused unless `fstat` says it is a regular file, so a FIFO, a device or a symlink (to
//! `/dev/zero`, say) in place of a repository file is an error naming it, never a read that
//! blocks forever or never ends.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind as IoKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{check_name, Backend, FileType};
use crate::error::{Error, Result};

/// A repository stored under a directory.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    root: PathBuf,
}

const TMP_PREFIX: &str = ".tmp-";

/// Classifies a file-system error for the retry layer ([`Error::backend_io`]): a full file
/// system or exhausted quota is permanent and marked as such.
fn io_err(context: impl std::fmt::Display, e: std::io::Error) -> Error {
    Error::backend_io(context, e)
}

impl LocalBackend {
    /// A backend for the directory `root` (which need not exist before `create`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The repository directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir_of(&self, file_type: FileType, name: &str) -> PathBuf {
        match file_type {
            FileType::Config => self.root.clone(),
            FileType::Pack => self.root.join("data").join(name.get(..2).unwrap_or("00")),
            other => self.root.join(other.dir()),
        }
    }

    fn path_of(&self, file_type: FileType, name: &str) -> Result<PathBuf> {
        check_name(file_type, name)?;
        Ok(match file_type {
            FileType::Config => self.root.join("config"),
            _ => self.dir_of(file_type, name).join(name),
        })
    }
}

/// Opens `path` for reading only when it is a regular file.
///
/// The last component is not followed (`O_NOFOLLOW`: a symlink is refused, whatever it points
/// to) and the open does not wait (`O_NONBLOCK`: a FIFO without a writer opens at once, and
/// `O_NOCTTY`: a terminal is not taken over); the opened file is then checked with `fstat`, so
/// what is read is what was checked. Anything but a regular file is an
/// [`std::io::ErrorKind::InvalidData`] error saying "not a regular file (a FIFO)" and the like.
/// `O_NONBLOCK` has no effect on reads of a regular file.
pub(crate) fn open_regular(path: &Path) -> std::io::Result<File> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path);
    let file = match opened {
        Ok(f) => f,
        // With O_NOFOLLOW, ELOOP means that the last component is a symlink.
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(match fs::symlink_metadata(path) {
                Ok(m) => not_regular(m.file_type()),
                Err(_) => e,
            })
        }
        Err(e) => return Err(e),
    };
    let file_type = file.metadata()?.file_type();
    if !file_type.is_file() {
        return Err(not_regular(file_type));
    }
    Ok(file)
}

/// "not a regular file (a FIFO)": the error for a file of `file_type` where a regular one must be.
pub(crate) fn not_regular(file_type: fs::FileType) -> std::io::Error {
    let what = if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else {
        "of an unknown kind"
    };
    std::io::Error::new(IoKind::InvalidData, format!("not a regular file ({what})"))
}

/// `path`'s length, when it is a regular file (not following a symlink).
fn regular_len(path: &Path) -> std::io::Result<u64> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.file_type().is_file() {
        return Err(not_regular(meta.file_type()));
    }
    Ok(meta.len())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> Result<()> {
        match fs::read_dir(&self.root) {
            Ok(entries) => {
                for entry in entries {
                    let entry =
                        entry.map_err(|e| io_err(format!("list {}", self.root.display()), e))?;
                    let name = entry.file_name();
                    // An init that was interrupted leaves the layout without a config; it may be
                    // completed. Anything else means the directory is in use.
                    let layout = ["keys", "snapshots", "index", "data", "locks"]
                        .iter()
                        .any(|d| name == *d);
                    if !layout && !name.to_string_lossy().starts_with(TMP_PREFIX) {
                        return Err(Error::invalid(format!(
                            "{}: directory is not empty; choose an empty or new directory",
                            self.root.display()
                        )));
                    }
                }
            }
            Err(e) if e.kind() == IoKind::NotFound => {
                fs::create_dir_all(&self.root)
                    .map_err(|e| io_err(format!("create {}", self.root.display()), e))?;
            }
            Err(e) => return Err(io_err(format!("open {}", self.root.display()), e)),
        }
        let mkdir = |d: &Path| match fs::create_dir(d) {
            Err(e) if e.kind() != IoKind::AlreadyExists => {
                Err(io_err(format!("create {}", d.display()), e))
            }
            _ => Ok(()),
        };
        for t in [
            FileType::Key,
            FileType::Snapshot,
            FileType::Index,
            FileType::Lock,
            FileType::Pack,
        ] {
            mkdir(&self.root.join(t.dir()))?;
        }
        for i in 0..=255u8 {
            mkdir(&self.root.join("data").join(hex::encode([i])))?;
        }
        sync_dir(&self.root).map_err(|e| io_err(format!("sync {}", self.root.display()), e))
    }

    fn write(&self, file_type: FileType, name: &str, data: &[u8]) -> Result<()> {
        let path = self.path_of(file_type, name)?;
        let dir = self.dir_of(file_type, name);
        if file_type == FileType::Pack && !dir.exists() {
            fs::create_dir_all(&dir).map_err(|e| io_err(format!("create {}", dir.display()), e))?;
        }
        let mut suffix = [0u8; 8];
        crate::crypto::random_bytes(&mut suffix)?;
        let tmp = dir.join(format!("{TMP_PREFIX}{name}-{}", hex::encode(suffix)));
        let result = (|| -> std::io::Result<()> {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            let written = f.metadata()?.len();
            if written != data.len() as u64 {
                return Err(std::io::Error::other(format!(
                    "wrote {written} of {} bytes",
                    data.len()
                )));
            }
            drop(f);
            fs::rename(&tmp, &path)?;
            sync_dir(&dir)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(format!("write {}", path.display()), e));
        }
        Ok(())
    }

    fn read(&self, file_type: FileType, name: &str) -> Result<Vec<u8>> {
        let path = self.path_of(file_type, name)?;
        let read = || -> std::io::Result<Vec<u8>> {
            let mut f = open_regular(&path)?;
            let mut bytes = Vec::new();
            let _ = f.read_to_end(&mut bytes)?;
            Ok(bytes)
        };
        read().map_err(|e| io_err(format!("read {}", path.display()), e))
    }

    fn read_range(
        &self,
        file_type: FileType,
        name: &str,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>> {
        let path = self.path_of(file_type, name)?;
        let ctx = || format!("read {} at {offset}+{len}", path.display());
        let mut f = open_regular(&path).map_err(|e| io_err(ctx(), e))?;
        let file_len = f.metadata().map_err(|e| io_err(ctx(), e))?.len();
        if offset
            .checked_add(u64::from(len))
            .is_none_or(|end| end > file_len)
        {
            return Err(Error::backend(
                format!("{}: beyond the file length {file_len}", ctx()),
                false,
            ));
        }
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| io_err(ctx(), e))?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact(&mut buf).map_err(|e| io_err(ctx(), e))?;
        Ok(buf)
    }

    fn list(&self, file_type: FileType) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut list_dir = |dir: &Path| -> Result<()> {
            let entries = match fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == IoKind::NotFound => return Ok(()),
                Err(e) => return Err(io_err(format!("list {}", dir.display()), e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_err(format!("list {}", dir.display()), e))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with('.') {
                    continue;
                }
                let meta = entry
                    .metadata()
                    .map_err(|e| io_err(format!("stat {name}"), e))?;
                if meta.is_file() {
                    out.push((name.to_string(), meta.len()));
                }
            }
            Ok(())
        };
        match file_type {
            FileType::Config => {
                if let Ok(len) = regular_len(&self.root.join("config")) {
                    out.push(("config".to_string(), len));
                }
            }
            FileType::Pack => {
                let data = self.root.join("data");
                let subdirs = match fs::read_dir(&data) {
                    Ok(e) => e,
                    Err(e) if e.kind() == IoKind::NotFound => return Ok(out),
                    Err(e) => return Err(io_err(format!("list {}", data.display()), e)),
                };
                for sub in subdirs {
                    let sub = sub.map_err(|e| io_err(format!("list {}", data.display()), e))?;
                    if sub.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        list_dir(&sub.path())?;
                    }
                }
            }
            other => list_dir(&self.root.join(other.dir()))?,
        }
        Ok(out)
    }

    fn size(&self, file_type: FileType, name: &str) -> Result<u64> {
        let path = self.path_of(file_type, name)?;
        regular_len(&path).map_err(|e| io_err(format!("stat {}", path.display()), e))
    }

    fn delete(&self, file_type: FileType, name: &str) -> Result<()> {
        let path = self.path_of(file_type, name)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == IoKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("delete {}", path.display()), e)),
        }
    }

    /// The `.tmp-*` entries (anything but directories) in the repository directory, `keys/`,
    /// `snapshots/`, `index/`, `locks/` and `data/<xx>/`: where [`LocalBackend::write`] puts its
    /// temporary files. Names that are not UTF-8 are not cairn's and are left out.
    fn temporary_files(&self) -> Result<Vec<String>> {
        let mut dirs: Vec<String> = vec![String::new()];
        for t in [
            FileType::Key,
            FileType::Snapshot,
            FileType::Index,
            FileType::Lock,
        ] {
            dirs.push(t.dir().to_string());
        }
        let data = self.root.join("data");
        match fs::read_dir(&data) {
            Ok(subdirs) => {
                for sub in subdirs {
                    let sub = sub.map_err(|e| io_err(format!("list {}", data.display()), e))?;
                    if sub.file_type().is_ok_and(|t| t.is_dir()) {
                        if let Some(name) = sub.file_name().to_str() {
                            dirs.push(format!("data/{name}"));
                        }
                    }
                }
            }
            Err(e) if e.kind() == IoKind::NotFound => {}
            Err(e) => return Err(io_err(format!("list {}", data.display()), e)),
        }
        let mut out = Vec::new();
        for rel in dirs {
            let dir = self.root.join(&rel);
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == IoKind::NotFound => continue,
                Err(e) => return Err(io_err(format!("list {}", dir.display()), e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_err(format!("list {}", dir.display()), e))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with(TMP_PREFIX) && !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(if rel.is_empty() {
                        name.to_string()
                    } else {
                        format!("{rel}/{name}")
                    });
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

impl LocalBackend {
    /// True when the directory looks like a repository (has a config).
    ///
    /// Any entry named `config` counts, without following it: a `config` that is not a regular
    /// file is then refused by name when it is read, rather than reported as no repository.
    pub fn is_repository(&self) -> bool {
        fs::symlink_metadata(self.root.join("config")).is_ok()
    }

    /// Error kind helper for callers: whether the root exists at all.
    pub fn exists(&self) -> bool {
        self.root.exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_write_read_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("repo"));
        b.create().unwrap();
        b.write(FileType::Pack, "abcdef", b"hello").unwrap();
        assert_eq!(b.read(FileType::Pack, "abcdef").unwrap(), b"hello");
        assert_eq!(
            b.read_range(FileType::Pack, "abcdef", 1, 3).unwrap(),
            b"ell"
        );
        assert!(b.read_range(FileType::Pack, "abcdef", 3, 3).is_err());
        assert_eq!(
            b.list(FileType::Pack).unwrap(),
            vec![("abcdef".to_string(), 5)]
        );
        b.delete(FileType::Pack, "abcdef").unwrap();
        assert_eq!(
            b.read(FileType::Pack, "abcdef").unwrap_err().kind(),
            crate::ErrorKind::NotFound
        );
        // A complete repository (with a config) or foreign files make the directory unusable.
        b.write(FileType::Config, "config", b"x").unwrap();
        assert!(b.create().is_err(), "create on a repository must fail");
        let other = LocalBackend::new(dir.path().join("other"));
        fs::create_dir(other.root()).unwrap();
        fs::write(other.root().join("notes.txt"), b"mine").unwrap();
        assert!(
            other.create().is_err(),
            "create on a non-empty directory must fail"
        );
        assert!(other.root().join("notes.txt").exists());
    }

    #[test]
    fn failed_write_removes_its_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("repo"));
        b.create().unwrap();
        // A directory where the object goes makes the final rename fail.
        let blocker = b.root().join("data/ab/abcdef");
        fs::create_dir(&blocker).unwrap();
        let err = b.write(FileType::Pack, "abcdef", b"hello").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Backend, "{err}");
        assert!(!err.is_transient() && !err.is_storage_full(), "{err:?}");
        let left: Vec<_> = fs::read_dir(b.root().join("data/ab"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("abcdef")],
            "temp file left"
        );
        assert!(blocker.is_dir());
    }

    #[test]
    fn create_accepts_what_an_interrupted_init_left() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("repo"));
        b.create().unwrap();
        b.write(FileType::Key, "0123456789abcdef", b"orphan key")
            .unwrap();
        // The layout and a key file, no config: accepted, and the key is the repository's
        // business (Repository::init removes it), not the backend's.
        b.create().unwrap();
        assert_eq!(b.list(FileType::Key).unwrap().len(), 1);
        b.write(FileType::Config, "config", b"sealed").unwrap();
        assert!(
            b.create().is_err(),
            "a location with a config is a repository"
        );
    }
}
