//! Exclusion rules of a backup: patterns (the dialect of [`crate::pattern`]), `--exclude-if-present` marker files and
//! `CACHEDIR.TAG` directories, compiled once from [`BackupOptions`].

use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::dirfd;
use crate::archiver::BackupOptions;
use crate::error::Result;
use crate::format::tree::NodeKind;
use crate::pattern::{Case, PatternSet};

/// Compiled exclusion rules.
pub(super) struct Excluder {
    patterns: PatternSet,
    if_present: Vec<PathBuf>,
    caches: bool,
    larger_than: Option<u64>,
}

pub(super) const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

impl Excluder {
    pub(super) fn new(opts: &BackupOptions) -> Result<Self> {
        Ok(Self {
            patterns: PatternSet::compile(
                "exclude",
                &[
                    (&opts.excludes, Case::Sensitive),
                    (&opts.iexcludes, Case::Insensitive),
                ],
            )?,
            if_present: opts.exclude_if_present.iter().map(PathBuf::from).collect(),
            caches: opts.exclude_caches,
            larger_than: opts.exclude_larger_than,
        })
    }

    /// Whether a pattern excludes `path` whatever its kind: checked before the entry is
    /// stat'ed, so an excluded entry costs no system call.
    pub(super) fn excluded_before_stat(&self, path: &Path) -> bool {
        self.patterns.matches_any_kind(path)
    }

    /// Whether the rules that need the entry's `lstat` exclude it: a directories-only pattern
    /// (one written with a trailing `/`) a directory, the size limit a regular file.
    pub(super) fn excluded_after_stat(&self, path: &Path, kind: NodeKind, size: u64) -> bool {
        match kind {
            NodeKind::Dir => self.patterns.matches(path, true),
            NodeKind::File => self.larger_than.is_some_and(|limit| size > limit),
            _ => false,
        }
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
