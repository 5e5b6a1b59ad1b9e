//! The one pattern dialect of Cairn, shared by every command that selects entries by path:
//! backup excludes, restore includes and excludes, find, and later dump and forget paths.
//!
//! The rules, the same everywhere:
//! - `*` and `?` match within one path component, `**` across components, `[abc]`/`[!a]`
//!   a character class, `\` escapes the next character.
//! - A pattern that starts with `/` is anchored: it matches the whole path (the absolute path
//!   in a backup, the path inside the snapshot in restore and find). Any other pattern matches
//!   the last components of a path at any depth: `*.log` matches `/a/b/x.log`, `b/c`
//!   matches `/a/b/c`.
//! - A pattern that ends with `/` matches directories only: `cache/` selects a directory
//!   named `cache` (and so, where the command prunes, everything below it) and never a file
//!   named `cache`.
//!
//! Paths are matched as bytes, so names that are not UTF-8 match as well as any other.

use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// Whether a group of patterns distinguishes case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Case {
    Sensitive,
    Insensitive,
}

/// A compiled set of patterns.
#[derive(Clone, Debug)]
pub(crate) struct PatternSet {
    /// Patterns that match entries of every kind.
    any: GlobSet,
    /// Patterns written with a trailing `/`: directories only.
    dirs: GlobSet,
}

impl PatternSet {
    /// Compiles `groups` of patterns into one set; `what` names them in errors ("exclude",
    /// "include", "find"). An empty pattern, or one that is only slashes, is refused: it
    /// would select nothing or everything, and neither is what anyone writing it meant.
    pub(crate) fn compile(what: &str, groups: &[(&[String], Case)]) -> Result<Self> {
        let mut any = GlobSetBuilder::new();
        let mut dirs = GlobSetBuilder::new();
        for (patterns, case) in groups {
            for p in patterns.iter() {
                let dirs_only = p.ends_with('/');
                let body = p.trim_end_matches('/');
                if body.is_empty() {
                    return Err(Error::invalid(format!(
                        "invalid {what} pattern {p:?}: empty; write a name, a glob such as \
                         '*.log', or an absolute path"
                    )));
                }
                let anchored = if body.starts_with('/') {
                    body.to_string()
                } else {
                    format!("**/{body}")
                };
                let glob = GlobBuilder::new(&anchored)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .case_insensitive(*case == Case::Insensitive)
                    .build()
                    .map_err(|e| Error::invalid(format!("invalid {what} pattern {p:?}: {e}")))?;
                let _ = if dirs_only {
                    dirs.add(glob)
                } else {
                    any.add(glob)
                };
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build()
                .map_err(|e| Error::invalid(format!("invalid {what} patterns: {e}")))
        };
        Ok(Self {
            any: build(any)?,
            dirs: build(dirs)?,
        })
    }

    /// Compiles case-sensitive `patterns`.
    pub(crate) fn sensitive(what: &str, patterns: &[String]) -> Result<Self> {
        Self::compile(what, &[(patterns, Case::Sensitive)])
    }

    /// Whether the set holds no pattern.
    pub(crate) fn is_empty(&self) -> bool {
        self.any.is_empty() && self.dirs.is_empty()
    }

    /// Whether a pattern matches `path`, an entry that is a directory or not.
    pub(crate) fn matches(&self, path: &Path, is_dir: bool) -> bool {
        self.any.is_match(path) || (is_dir && self.dirs.is_match(path))
    }

    /// Whether a pattern that applies to every kind of entry matches `path`: what can be
    /// decided before the entry's kind is known (a backup checks this before it stats).
    pub(crate) fn matches_any_kind(&self, path: &Path) -> bool {
        self.any.is_match(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(patterns: &[&str]) -> PatternSet {
        let p: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        PatternSet::sensitive("test", &p).unwrap()
    }

    #[test]
    fn unanchored_patterns_match_trailing_components_at_any_depth() {
        let s = set(&["*.log", "b/c"]);
        assert!(s.matches(Path::new("/x.log"), false));
        assert!(s.matches(Path::new("/a/b/x.log"), false));
        assert!(s.matches(Path::new("/a/b/c"), true));
        assert!(!s.matches(Path::new("/a/bb/c"), false));
        assert!(
            !s.matches(Path::new("/a/x.log/y"), false),
            "only the last components"
        );
        assert!(!s.matches(Path::new("/a/b/c/d"), false));
    }

    #[test]
    fn anchored_patterns_match_the_whole_path() {
        let s = set(&["/home/*/tmp", "/var/**/cache"]);
        assert!(s.matches(Path::new("/home/ann/tmp"), true));
        assert!(!s.matches(Path::new("/x/home/ann/tmp"), true));
        assert!(
            !s.matches(Path::new("/home/ann/b/tmp"), true),
            "`*` stays in one name"
        );
        assert!(s.matches(Path::new("/var/cache"), true));
        assert!(s.matches(Path::new("/var/a/b/cache"), true));
    }

    #[test]
    fn a_trailing_slash_matches_directories_only() {
        let s = set(&["cache/", "/srv/data//"]);
        assert!(s.matches(Path::new("/a/cache"), true));
        assert!(!s.matches(Path::new("/a/cache"), false));
        assert!(!s.matches_any_kind(Path::new("/a/cache")));
        assert!(s.matches(Path::new("/srv/data"), true));
        assert!(!s.matches(Path::new("/srv/data"), false));
        let plain = set(&["cache"]);
        assert!(plain.matches(Path::new("/a/cache"), false));
        assert!(plain.matches_any_kind(Path::new("/a/cache")));
    }

    #[test]
    fn case_escapes_and_bytes() {
        let p = vec!["*.TMP".to_string()];
        let i = PatternSet::compile("exclude", &[(&p, Case::Insensitive)]).unwrap();
        assert!(i.matches(Path::new("/a/x.tmp"), false));
        assert!(!set(&["*.TMP"]).matches(Path::new("/a/x.tmp"), false));
        let e = set(&[r"\*"]);
        assert!(e.matches(Path::new("/a/*"), false));
        assert!(!e.matches(Path::new("/a/b"), false));
        use std::os::unix::ffi::OsStrExt;
        let raw = Path::new(std::ffi::OsStr::from_bytes(b"/a/\xff.bin"));
        assert!(set(&["*.bin"]).matches(raw, false));
    }

    #[test]
    fn empty_and_malformed_patterns_are_refused_with_their_text() {
        for bad in ["", "/", "//", "a[b"] {
            let p = vec![bad.to_string()];
            let e = PatternSet::sensitive("exclude", &p)
                .unwrap_err()
                .to_string();
            assert!(e.contains("invalid exclude pattern"), "{bad:?}: {e}");
            assert!(e.contains(&format!("{bad:?}")), "{bad:?}: {e}");
        }
        assert!(set(&[]).is_empty());
        assert!(!set(&["x/"]).is_empty());
    }
}
