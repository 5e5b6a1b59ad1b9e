//! Exclusion rules of a backup: glob patterns, `--exclude-if-present` marker files and
//! `CACHEDIR.TAG` directories, compiled once from [`BackupOptions`].

use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::dirfd;
use crate::archiver::BackupOptions;
use crate::error::{Error, Result};

/// Compiled exclusion rules.
pub(super) struct Excluder {
    set: GlobSet,
    iset: GlobSet,
    if_present: Vec<PathBuf>,
    caches: bool,
}

pub(super) const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

impl Excluder {
    pub(super) fn new(opts: &BackupOptions) -> Result<Self> {
        let build = |patterns: &[String], case_insensitive: bool| -> Result<GlobSet> {
            let mut b = GlobSetBuilder::new();
            for p in patterns {
                let trimmed = p.trim_end_matches('/');
                if trimmed.is_empty() {
                    continue;
                }
                let pat = if trimmed.starts_with('/') {
                    trimmed.to_string()
                } else {
                    format!("**/{trimmed}")
                };
                let glob = GlobBuilder::new(&pat)
                    .literal_separator(true)
                    .case_insensitive(case_insensitive)
                    .backslash_escape(true)
                    .build()
                    .map_err(|e| Error::invalid(format!("invalid exclude pattern {p:?}: {e}")))?;
                let _ = b.add(glob);
            }
            b.build()
                .map_err(|e| Error::invalid(format!("invalid exclude patterns: {e}")))
        };
        Ok(Self {
            set: build(&opts.excludes, false)?,
            iset: build(&opts.iexcludes, true)?,
            if_present: opts.exclude_if_present.iter().map(PathBuf::from).collect(),
            caches: opts.exclude_caches,
        })
    }

    pub(super) fn excluded_path(&self, path: &Path) -> bool {
        self.set.is_match(path) || self.iset.is_match(path)
    }

    /// Whether the open directory `dir` carries a marker that excludes it. Markers are looked
    /// up in it by name, not following symlinks.
    pub(super) fn excluded_dir(&self, dir: &File) -> bool {
        if self
            .if_present
            .iter()
            .any(|m| dirfd::lstat_at(dir, m.as_os_str().as_bytes()).is_ok())
        {
            return true;
        }
        // Only a regular file can be a tag: opening a fifo would block the backup, opening a
        // device could have side effects.
        self.caches && dirfd::file_starts_with(dir, b"CACHEDIR.TAG", CACHEDIR_SIGNATURE)
    }
}
