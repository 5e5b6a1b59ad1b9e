//! Walking snapshot trees: `walk_tree` (every entry below a tree, in order; `ls`, `find`,
//! `stats` and restore's selection walk), `node_at` (one path) and `read_file_at` (a file's
//! bytes by offset, for the FUSE mount to come). Check, `diff` and restore planning (totals
//! once per distinct tree) read trees one at a time with `Repository::read_tree` instead,
//! since each needs its own order or pairing.
//!
//! Walks are iterative (an explicit stack), so directory depth never grows the call stack.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{Node, NodeKind, Tree, TreeCursor};
use crate::format::BlobType;
use crate::id::BlobId;
use crate::repository::{Indexed, Repository};

/// Trees whose encoding is larger than this are walked node by node instead of decoded whole.
const STREAM_TREES_OVER: usize = 1 << 20;

/// One directory's entries during a walk.
enum Listing {
    /// A decoded tree and the index of the next node.
    Decoded(Arc<Tree>, usize),
    /// A large tree read node by node.
    Streamed(Box<TreeCursor>, BlobId),
}

impl Listing {
    fn next(&mut self) -> Result<Option<Node>> {
        match self {
            Listing::Decoded(tree, i) => {
                let node = tree.nodes.get(*i).cloned();
                *i += 1;
                Ok(node)
            }
            Listing::Streamed(cursor, id) => cursor.next_node(&format_args!("tree {id}")),
        }
    }
}

/// An entry met during a walk: its path inside the snapshot (absolute, `/`-rooted) and node.
#[derive(Debug, Clone)]
pub struct WalkEntry {
    /// Path inside the snapshot.
    pub path: PathBuf,
    /// The node.
    pub node: Node,
    /// Depth below the walk's start (children of the start are at 1).
    pub depth: usize,
}

impl Repository<Indexed> {
    /// Finds the node at `path` (absolute inside the snapshot) below the root tree `root`.
    /// The root itself is returned as a directory node named `/` when `path` is `/` or empty.
    pub fn node_at(&self, root: &BlobId, path: &Path) -> Result<Node> {
        let mut node = Node::new(b"/".to_vec(), NodeKind::Dir);
        node.subtree = Some(*root);
        for comp in path.components() {
            let name = match comp {
                std::path::Component::Normal(n) => n.as_bytes(),
                std::path::Component::RootDir | std::path::Component::CurDir => continue,
                std::path::Component::ParentDir | std::path::Component::Prefix(_) => {
                    return Err(Error::invalid(format!(
                        "{}: paths inside a snapshot must not contain ..",
                        path.display()
                    )))
                }
            };
            let subtree = match (node.kind, node.subtree) {
                (NodeKind::Dir, Some(s)) => s,
                _ => {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("{}: not found in the snapshot", path.display()),
                    ))
                }
            };
            let tree = self.read_tree(&subtree)?;
            node = tree.find(name).cloned().ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("{}: not found in the snapshot", path.display()),
                )
            })?;
        }
        Ok(node)
    }

    /// The stored path nearest to `path` (absolute inside the snapshot), for a "not found"
    /// message: its longest prefix that exists, then, if that is a directory, the entry of it
    /// whose name is closest to the next component (at most a third of its letters off).
    pub fn nearest_stored_path(&self, root: &BlobId, path: &Path) -> Result<PathBuf> {
        let mut found = PathBuf::from("/");
        let mut subtree = Some(*root);
        for comp in path.components() {
            let std::path::Component::Normal(name) = comp else {
                continue;
            };
            let Some(id) = subtree else {
                break;
            };
            let tree = self.read_tree(&id)?;
            if let Some(node) = tree.find(name.as_bytes()) {
                found.push(name);
                subtree = (node.kind == NodeKind::Dir)
                    .then_some(node.subtree)
                    .flatten();
                continue;
            }
            let want = name.as_bytes();
            let close = tree
                .nodes
                .iter()
                .filter(|n| n.name.len() <= 255)
                .map(|n| (edit_distance(&n.name, want), n))
                .filter(|(d, _)| *d <= want.len().div_ceil(3).max(1))
                .min_by_key(|(d, n)| (*d, n.name.clone()));
            if let Some((_, n)) = close {
                found.push(std::ffi::OsStr::from_bytes(&n.name));
            }
            break;
        }
        Ok(found)
    }

    /// Visits every node below the tree `start` (pre-order, names sorted), with paths under
    /// `base`. `visit` returns false to skip a directory's children.
    ///
    /// Memory: one listing per level of the current path. Small trees come decoded from the
    /// tree cache; a large one (a directory of a million files) is decoded node by node from
    /// its encoded bytes, a quarter of its decoded size.
    pub fn walk_tree(
        &self,
        start: &BlobId,
        base: &Path,
        visit: &mut dyn FnMut(&WalkEntry) -> Result<bool>,
    ) -> Result<()> {
        let mut dir = base.to_path_buf();
        let mut stack = vec![self.listing(start)?];
        while let Some(top) = stack.last_mut() {
            let Some(node) = top.next()? else {
                let _ = stack.pop();
                if !stack.is_empty() {
                    let _ = dir.pop();
                }
                continue;
            };
            let entry = WalkEntry {
                path: dir.join(std::ffi::OsStr::from_bytes(&node.name)),
                node,
                depth: stack.len(),
            };
            let descend = visit(&entry)?;
            if descend && entry.node.kind == NodeKind::Dir {
                if let Some(sub) = &entry.node.subtree {
                    stack.push(self.listing(sub)?);
                    dir = entry.path;
                }
            }
        }
        Ok(())
    }

    /// The entries of tree `id`, decoded through the cache or streamed when large.
    fn listing(&self, id: &BlobId) -> Result<Listing> {
        let raw_len = self
            .index()
            .lookup(BlobType::Tree, id)
            .map_or(0, |loc| loc.raw_len);
        if raw_len as usize > STREAM_TREES_OVER {
            let raw = self.read_blob(BlobType::Tree, id)?;
            let cursor = TreeCursor::new(raw, &format_args!("tree {id}"))?;
            Ok(Listing::Streamed(Box::new(cursor), *id))
        } else {
            Ok(Listing::Decoded(self.read_tree(id)?, 0))
        }
    }

    /// Reads up to `len` bytes of a file node's content at `offset` (the FUSE read path).
    pub fn read_file_at(&self, node: &Node, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len.min(64 << 20));
        let mut pos = 0u64;
        for id in &node.content {
            if out.len() >= len {
                break;
            }
            let loc = self.index().lookup(BlobType::Data, id).ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("data blob {id} is not in the index"),
                )
            })?;
            let blob_len = u64::from(loc.raw_len);
            if pos + blob_len > offset {
                let data = self.read_blob(BlobType::Data, id)?;
                let start = offset.saturating_sub(pos) as usize;
                let take = (data.len() - start).min(len - out.len());
                out.extend_from_slice(&data[start..start + take]);
            }
            pos += blob_len;
        }
        Ok(out)
    }
}

/// Levenshtein distance of two byte strings (names up to 255 bytes: the caller bounds them).
fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    let b = &b[..b.len().min(255)];
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == cb {
                prev
            } else {
                1 + prev.min(row[j]).min(cur)
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance(b"docs", b"docs"), 0);
        assert_eq!(edit_distance(b"docs", b"doc"), 1);
        assert_eq!(edit_distance(b"docs", b"dogs"), 1);
        assert_eq!(edit_distance(b"", b"abc"), 3);
        assert_eq!(edit_distance(b"kitten", b"sitting"), 3);
    }
}
