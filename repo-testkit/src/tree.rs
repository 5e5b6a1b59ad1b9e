//! Tree comparison: [`TreeCompare`] lists every difference between two directory trees by
//! content and metadata (kinds, modes, owners, nanosecond mtimes, sizes and bytes, symlink
//! targets, device numbers, extended attributes, hard-link groups); [`first_difference`]
//! compares two files, reading only where either holds data.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::{self, File};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::is_root;

/// Every entry below `root` (relative paths), depth first, not following symlinks.
pub fn entries(root: &Path) -> BTreeMap<PathBuf, fs::Metadata> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let rd = fs::read_dir(&dir).unwrap_or_else(|e| panic!("list {}: {e}", dir.display()));
        for entry in rd {
            let entry = entry.expect("directory entry");
            let child = rel.join(entry.file_name());
            let meta = fs::symlink_metadata(root.join(&child)).expect("lstat");
            if meta.is_dir() {
                stack.push(child.clone());
            }
            let _ = out.insert(child, meta);
        }
    }
    out
}

fn kind(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_file() {
        "file"
    } else if t.is_dir() {
        "dir"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_char_device() {
        "chardev"
    } else if t.is_block_device() {
        "blockdev"
    } else {
        "socket"
    }
}

fn xattrs(path: &Path) -> BTreeMap<OsString, Vec<u8>> {
    let Ok(names) = xattr::list(path) else {
        return BTreeMap::new();
    };
    names
        .filter_map(|n| {
            let value = xattr::get(path, &n).ok().flatten()?;
            Some((n, value))
        })
        .collect()
}

/// Byte ranges of a file that may hold data; the rest are holes, which read as zeros.
fn data_extents(f: &File, len: u64) -> Vec<(u64, u64)> {
    use nix::unistd::{lseek, Whence};
    use std::os::fd::AsRawFd;
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        let start = match lseek(f.as_raw_fd(), pos as i64, Whence::SeekData) {
            Ok(s) => s as u64,
            Err(nix::errno::Errno::ENXIO) => break,
            // No SEEK_DATA support: treat everything as data.
            Err(_) => return vec![(0, len)],
        };
        let end = lseek(f.as_raw_fd(), start as i64, Whence::SeekHole).map_or(len, |e| e as u64);
        out.push((start, end.min(len)));
        pos = end.max(start + 1);
    }
    out
}

/// Sorted, merged union of two sets of ranges.
fn union(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The offset of the first differing byte of two files, or `None` when they are equal.
///
/// Only ranges where either file holds data are read: holes in both read as zeros in both, so
/// a sparse file of gigabytes compares in milliseconds.
pub fn first_difference(a: &Path, b: &Path) -> Option<u64> {
    let fa = File::open(a).unwrap_or_else(|e| panic!("open {}: {e}", a.display()));
    let fb = File::open(b).unwrap_or_else(|e| panic!("open {}: {e}", b.display()));
    let la = fa.metadata().expect("stat").len();
    let lb = fb.metadata().expect("stat").len();
    let common = la.min(lb);
    let mut ranges = data_extents(&fa, common);
    ranges.extend(data_extents(&fb, common));
    const BLOCK: u64 = 1 << 20;
    let mut ba = vec![0u8; BLOCK.min(common) as usize];
    let mut bb = ba.clone();
    for (start, end) in union(ranges) {
        let mut pos = start;
        while pos < end.min(common) {
            let n = (end.min(common) - pos).min(BLOCK) as usize;
            fa.read_exact_at(&mut ba[..n], pos).expect("read");
            fb.read_exact_at(&mut bb[..n], pos).expect("read");
            if ba[..n] != bb[..n] {
                let at = ba[..n].iter().zip(&bb[..n]).position(|(x, y)| x != y);
                return Some(pos + at.unwrap_or(0) as u64);
            }
            pos += n as u64;
        }
    }
    (la != lb).then_some(common)
}

/// Hard-link groups below a root: sets of relative paths sharing an inode (only groups of 2+).
fn link_groups(all: &BTreeMap<PathBuf, fs::Metadata>) -> BTreeSet<BTreeSet<PathBuf>> {
    let mut by_inode: BTreeMap<(u64, u64), BTreeSet<PathBuf>> = BTreeMap::new();
    for (path, meta) in all {
        if meta.is_file() && meta.nlink() > 1 {
            let _ = by_inode
                .entry((meta.dev(), meta.ino()))
                .or_default()
                .insert(path.clone());
        }
    }
    by_inode.into_values().filter(|g| g.len() > 1).collect()
}

/// How [`TreeCompare::differences`] compares two trees: everything, by default; owners only
/// as root (who alone can restore them).
#[derive(Debug, Clone, Copy)]
pub struct TreeCompare {
    /// Compare owners (uid and gid). Default: [`is_root`]. Off where another user restored
    /// (files are theirs, as they must be).
    pub owners: bool,
}

impl Default for TreeCompare {
    fn default() -> Self {
        Self { owners: is_root() }
    }
}

impl TreeCompare {
    /// Every difference between the trees below `src` and `dst` (the roots themselves are
    /// not compared): entry sets, kinds, modes, owners (see [`TreeCompare::owners`]), mtimes
    /// to the nanosecond (symlinks' too), sizes and contents, symlink targets, device
    /// numbers, extended attributes and hard-link groups.
    pub fn differences(&self, src: &Path, dst: &Path) -> Vec<String> {
        let a = entries(src);
        let b = entries(dst);
        let mut out = Vec::new();
        for p in a.keys().filter(|p| !b.contains_key(*p)) {
            out.push(format!("{}: missing from the restore", p.display()));
        }
        for p in b.keys().filter(|p| !a.contains_key(*p)) {
            out.push(format!("{}: not in the source", p.display()));
        }
        for (rel, ma) in &a {
            let Some(mb) = b.get(rel) else { continue };
            let (pa, pb) = (src.join(rel), dst.join(rel));
            let mut diff = |what: &str, x: String, y: String| {
                if x != y {
                    out.push(format!("{}: {what} {x} != {y}", rel.display()));
                }
            };
            diff("kind", kind(ma).into(), kind(mb).into());
            if kind(ma) != kind(mb) {
                continue;
            }
            if !ma.file_type().is_symlink() {
                diff(
                    "mode",
                    format!("{:o}", ma.mode() & 0o7777),
                    format!("{:o}", mb.mode() & 0o7777),
                );
            }
            if self.owners {
                diff(
                    "owner",
                    format!("{}:{}", ma.uid(), ma.gid()),
                    format!("{}:{}", mb.uid(), mb.gid()),
                );
            }
            diff(
                "mtime",
                format!("{}.{:09}", ma.mtime(), ma.mtime_nsec()),
                format!("{}.{:09}", mb.mtime(), mb.mtime_nsec()),
            );
            diff(
                "xattrs",
                format!("{:?}", xattrs(&pa)),
                format!("{:?}", xattrs(&pb)),
            );
            let t = ma.file_type();
            if t.is_file() {
                diff("size", ma.len().to_string(), mb.len().to_string());
                if ma.len() == mb.len() {
                    if let Some(at) = first_difference(&pa, &pb) {
                        out.push(format!("{}: content differs at byte {at}", rel.display()));
                    }
                }
            } else if t.is_symlink() {
                diff(
                    "symlink target",
                    format!("{:?}", fs::read_link(&pa).expect("readlink")),
                    format!("{:?}", fs::read_link(&pb).expect("readlink")),
                );
            } else if t.is_char_device() || t.is_block_device() {
                diff("rdev", ma.rdev().to_string(), mb.rdev().to_string());
            }
        }
        let (ga, gb) = (link_groups(&a), link_groups(&b));
        if ga != gb {
            out.push(format!("hard-link groups differ: {ga:?} != {gb:?}"));
        }
        out
    }

    /// Panics with every difference when the trees below `src` and `dst` differ.
    pub fn assert_same(&self, src: &Path, dst: &Path) {
        let diffs = self.differences(src, dst);
        assert!(
            diffs.is_empty(),
            "restored tree {} differs from {}:\n  {}",
            dst.display(),
            src.display(),
            diffs.join("\n  ")
        );
    }
}

/// [`TreeCompare::differences`] with the default comparison.
pub fn tree_differences(src: &Path, dst: &Path) -> Vec<String> {
    TreeCompare::default().differences(src, dst)
}

/// [`TreeCompare::assert_same`] with the default comparison: panics with every difference
/// when the trees below `src` and `dst` differ.
pub fn assert_same_tree(src: &Path, dst: &Path) {
    TreeCompare::default().assert_same(src, dst);
}
