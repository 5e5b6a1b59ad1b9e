//! Implements spec/06-tree.md: tree blobs, one per directory.
//!
//! A tree blob's plaintext is `version:u8 || postcard(Vec<Node>)` with nodes sorted by the raw
//! bytes of their names, names unique. Identical directories encode to identical bytes and so
//! dedupe to one blob.

use serde::{Deserialize, Serialize};

use crate::error::{CorruptionKind, Error, Result};
use crate::format::{decode_exact, encode_versioned, split_version, valid_name};
use crate::id::BlobId;

/// The kind of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A Unix socket (recorded, never restored as a live socket).
    Socket,
}

impl NodeKind {
    /// Lowercase name for listings and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Dir => "dir",
            Self::Symlink => "symlink",
            Self::Fifo => "fifo",
            Self::CharDevice => "chardev",
            Self::BlockDevice => "blockdev",
            Self::Socket => "socket",
        }
    }
}

/// One extended attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// Attribute name, raw bytes.
    pub name: Vec<u8>,
    /// Attribute value, raw bytes.
    pub value: Vec<u8>,
}

/// One directory entry with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// File name, raw bytes (never empty, `.`, `..`, nor containing `/` or NUL).
    pub name: Vec<u8>,
    /// Entry kind.
    pub kind: NodeKind,
    /// Permission and special bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Owner user name, empty when unknown.
    pub user: String,
    /// Owner group name, empty when unknown.
    pub group: String,
    /// Modification time, ns since the Unix epoch.
    pub mtime_ns: i64,
    /// Status change time, ns since the Unix epoch.
    pub ctime_ns: i64,
    /// Access time, ns since the Unix epoch.
    pub atime_ns: i64,
    /// File size in bytes (files), 0 otherwise.
    pub size: u64,
    /// Device of the file system holding the entry.
    pub device: u64,
    /// Inode number.
    pub inode: u64,
    /// Hard link count.
    pub links: u64,
    /// Symlink target, raw bytes.
    pub symlink_target: Vec<u8>,
    /// Device number of a character or block device.
    pub rdev: u64,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<Xattr>,
    /// Content blobs of a file, in order.
    pub content: Vec<BlobId>,
    /// Tree blob of a directory.
    pub subtree: Option<BlobId>,
}

impl Node {
    /// A node of `kind` named `name` with every other field zero or empty.
    pub fn new(name: Vec<u8>, kind: NodeKind) -> Self {
        Self {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            user: String::new(),
            group: String::new(),
            mtime_ns: 0,
            ctime_ns: 0,
            atime_ns: 0,
            size: 0,
            device: 0,
            inode: 0,
            links: 0,
            symlink_target: Vec::new(),
            rdev: 0,
            xattrs: Vec::new(),
            content: Vec::new(),
            subtree: None,
        }
    }

    /// The name, lossily as text (for display only).
    pub fn name_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.name)
    }
}

/// A directory listing: the content of a tree blob.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// Entries sorted by name bytes.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Sorts the nodes into canonical order.
    pub fn sort(&mut self) {
        self.nodes.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    }

    /// Encodes a tree; fails on names or orders that a decoder would refuse.
    pub fn to_plaintext(&self) -> Result<Vec<u8>> {
        self.validate(&"tree")
            .map_err(|e| Error::internal(e.to_string()))?;
        encode_versioned(&self.nodes)
    }

    /// Decodes and validates a tree plaintext: names must be valid and strictly increasing, and
    /// each node's fields must fit its kind.
    pub fn from_plaintext(bytes: &[u8], object: &dyn std::fmt::Display) -> Result<Self> {
        let nodes: Vec<Node> = decode_exact(split_version(bytes, object)?, object)?;
        let tree = Self { nodes };
        tree.validate(object)?;
        Ok(tree)
    }

    /// Looks a name up by binary search.
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }

    fn validate(&self, object: &dyn std::fmt::Display) -> Result<()> {
        let bad = |msg: String| Err(Error::corrupt(CorruptionKind::BadEncoding, object, msg));
        for (i, node) in self.nodes.iter().enumerate() {
            if !valid_name(&node.name) {
                return bad(format!("invalid entry name {:?}", node.name_lossy()));
            }
            if i > 0 && self.nodes[i - 1].name >= node.name {
                return bad(format!(
                    "entries not sorted or duplicated at {:?}",
                    node.name_lossy()
                ));
            }
            match node.kind {
                NodeKind::Dir if node.subtree.is_none() => {
                    return bad(format!("directory {:?} has no subtree", node.name_lossy()))
                }
                NodeKind::Dir => {}
                _ if node.subtree.is_some() => {
                    return bad(format!(
                        "non-directory {:?} has a subtree",
                        node.name_lossy()
                    ))
                }
                _ => {}
            }
            if node.kind != NodeKind::File && !node.content.is_empty() {
                return bad(format!("non-file {:?} has content", node.name_lossy()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_roundtrip_and_hostile_names_refused() {
        let mut t = Tree::default();
        t.nodes.push(Node::new(b"b".to_vec(), NodeKind::File));
        t.nodes.push(Node::new(vec![0xff, 0xfe], NodeKind::Symlink));
        t.nodes.push(Node::new(b"a".to_vec(), NodeKind::Fifo));
        t.sort();
        let bytes = t.to_plaintext().unwrap();
        assert_eq!(Tree::from_plaintext(&bytes, &"tree x").unwrap(), t);
        for bad in [&b".."[..], b".", b"", b"a/b"] {
            let evil = vec![1u8]
                .into_iter()
                .chain(
                    crate::format::encode(&vec![Node::new(bad.to_vec(), NodeKind::File)]).unwrap(),
                )
                .collect::<Vec<u8>>();
            let err = Tree::from_plaintext(&evil, &"tree x").unwrap_err();
            assert_eq!(
                err.corruption(),
                Some(CorruptionKind::BadEncoding),
                "{bad:?}"
            );
        }
    }
}
