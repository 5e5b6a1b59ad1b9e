//! Read-only reports over snapshots: `stats`, `diff` and `find`.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Result;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::format::BlobType;
use crate::id::BlobId;
use crate::pattern::PatternSet;
use crate::progress::OpCtx;
use crate::repository::{Indexed, Repository};
use crate::snapshot::Snapshot;
use crate::walk::WalkEntry;

/// Sizes and ratios of a set of snapshots.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepoStats {
    /// Snapshots counted.
    pub snapshots: u64,
    /// Files, summed over snapshots.
    pub files: u64,
    /// Bytes a restore of every counted snapshot would write.
    pub restore_size: u64,
    /// Distinct blobs referenced.
    pub unique_blobs: u64,
    /// Plaintext bytes of those blobs.
    pub raw_size: u64,
    /// Stored bytes of those blobs (compressed and encrypted).
    pub stored_size: u64,
    /// Bytes of all packs in the repository.
    pub repository_size: u64,
    /// restore_size / raw_size.
    pub dedup_ratio: f64,
    /// raw_size / stored_size.
    pub compression_ratio: f64,
}

/// How an entry differs between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// Only in the second snapshot.
    Added,
    /// Only in the first.
    Removed,
    /// Content or type changed.
    Modified,
    /// Only metadata changed.
    Metadata,
}

/// One difference.
#[derive(Debug, Clone, Serialize)]
pub struct DiffEntry {
    /// Path inside the snapshots (lossy text when the name is not UTF-8).
    pub path: String,
    /// The exact bytes of the path, for callers that must show or compare it without loss.
    #[serde(skip)]
    pub path_bytes: Vec<u8>,
    /// What changed.
    pub kind: DiffKind,
    /// The entry's kind: in the second snapshot, or in the first when it was removed.
    #[serde(skip)]
    pub node_kind: NodeKind,
}

/// The differences between two snapshots with what they add up to.
#[derive(Debug, Clone, Default)]
pub struct DiffReport {
    /// Every difference, in path order.
    pub entries: Vec<DiffEntry>,
    /// Bytes of the data blobs the second snapshot's added and modified files hold that the
    /// first snapshot's removed and modified files do not (content, before compression).
    pub bytes_added: u64,
    /// Bytes of the data blobs that removed and modified files held and no longer do.
    pub bytes_removed: u64,
}

impl Repository<Indexed> {
    /// Counts sizes and ratios over `snapshots`.
    pub fn stats(&self, ctx: &OpCtx<'_>, snapshots: &[Snapshot]) -> Result<RepoStats> {
        let mut s = RepoStats {
            snapshots: snapshots.len() as u64,
            ..RepoStats::default()
        };
        let mut blobs: HashSet<(BlobType, BlobId)> = HashSet::new();
        for snap in snapshots {
            let _ = blobs.insert((BlobType::Tree, snap.meta.tree));
            self.walk_tree(&snap.meta.tree, Path::new("/"), &mut |e| {
                ctx.cancel.check()?;
                match e.node.kind {
                    NodeKind::File => {
                        s.files += 1;
                        s.restore_size += e.node.size;
                        for id in &e.node.content {
                            let _ = blobs.insert((BlobType::Data, *id));
                        }
                    }
                    NodeKind::Dir => {
                        if let Some(t) = e.node.subtree {
                            let _ = blobs.insert((BlobType::Tree, t));
                        }
                    }
                    _ => {}
                }
                Ok(true)
            })?;
        }
        for (t, id) in &blobs {
            if let Some(loc) = self.index().lookup(*t, id) {
                s.unique_blobs += 1;
                s.raw_size += u64::from(loc.raw_len);
                s.stored_size += u64::from(loc.stored_len);
            }
        }
        s.repository_size = self.index().packs().iter().map(|p| p.size).sum();
        s.dedup_ratio = if s.raw_size == 0 {
            0.0
        } else {
            s.restore_size as f64 / s.raw_size as f64
        };
        s.compression_ratio = if s.stored_size == 0 {
            0.0
        } else {
            s.raw_size as f64 / s.stored_size as f64
        };
        Ok(s)
    }

    /// Differences from snapshot `a` to snapshot `b`, in path order. Identical subtrees are
    /// skipped without being read.
    pub fn diff(&self, ctx: &OpCtx<'_>, a: &Snapshot, b: &Snapshot) -> Result<Vec<DiffEntry>> {
        Ok(self.diff_report(ctx, a, b)?.entries)
    }

    /// [`Repository::diff`] with the bytes of content added and removed. Only the differing
    /// entries are compared: a blob that moved from one of them into an unchanged file counts
    /// as removed.
    pub fn diff_report(&self, ctx: &OpCtx<'_>, a: &Snapshot, b: &Snapshot) -> Result<DiffReport> {
        let mut out = Vec::new();
        let mut blobs_a: HashSet<BlobId> = HashSet::new();
        let mut blobs_b: HashSet<BlobId> = HashSet::new();
        let mut stack: Vec<(Option<BlobId>, Option<BlobId>, PathBuf)> =
            vec![(Some(a.meta.tree), Some(b.meta.tree), PathBuf::from("/"))];
        while let Some((ta, tb, dir)) = stack.pop() {
            ctx.cancel.check()?;
            if ta == tb {
                continue;
            }
            let load = |t: Option<BlobId>| -> Result<std::sync::Arc<Tree>> {
                Ok(match t {
                    Some(id) => self.read_tree(&id)?,
                    None => std::sync::Arc::new(Tree::default()),
                })
            };
            let (ta, tb) = (load(ta)?, load(tb)?);
            let mut names: Vec<&[u8]> = ta
                .nodes
                .iter()
                .chain(tb.nodes.iter())
                .map(|n| n.name.as_slice())
                .collect();
            names.sort_unstable();
            names.dedup();
            let mut sub = Vec::new();
            for name in names {
                let path = dir.join(OsStr::from_bytes(name));
                let (na, nb) = (ta.find(name), tb.find(name));
                let dir_of = |n: Option<&Node>| {
                    n.filter(|n| n.kind == NodeKind::Dir)
                        .and_then(|n| n.subtree)
                };
                let kind = match (na, nb) {
                    (None, Some(_)) => Some(DiffKind::Added),
                    (Some(_), None) => Some(DiffKind::Removed),
                    (Some(x), Some(y)) => {
                        if x.kind != y.kind
                            || x.content != y.content
                            || x.symlink_target != y.symlink_target
                            || x.size != y.size
                        {
                            (!(x.kind == NodeKind::Dir && y.kind == NodeKind::Dir))
                                .then_some(DiffKind::Modified)
                        } else if x.kind != NodeKind::Dir
                            && (x.mode != y.mode
                                || x.uid != y.uid
                                || x.gid != y.gid
                                || x.mtime_ns != y.mtime_ns
                                || x.xattrs != y.xattrs)
                        {
                            Some(DiffKind::Metadata)
                        } else {
                            None
                        }
                    }
                    (None, None) => None,
                };
                if let Some(kind) = kind {
                    if kind != DiffKind::Metadata {
                        if let Some(x) = na.filter(|n| n.kind == NodeKind::File) {
                            blobs_a.extend(x.content.iter().copied());
                        }
                        if let Some(y) = nb.filter(|n| n.kind == NodeKind::File) {
                            blobs_b.extend(y.content.iter().copied());
                        }
                    }
                    let entry = DiffEntry {
                        path: path.to_string_lossy().into_owned(),
                        path_bytes: path.as_os_str().as_bytes().to_vec(),
                        kind,
                        node_kind: nb.or(na).map_or(NodeKind::File, |n| n.kind),
                    };
                    out.push((path.clone(), entry));
                }
                let (da, db) = (dir_of(na), dir_of(nb));
                if (da.is_some() || db.is_some()) && da != db {
                    sub.push((da, db, path));
                }
            }
            stack.extend(sub.into_iter().rev());
        }
        // A directory's entries are found before those of its subdirectories: sort by the raw
        // path, component by component, which is pre-order with names in byte order.
        out.sort_by(|x, y| x.0.cmp(&y.0));
        let bytes_of = |ids: &mut dyn Iterator<Item = &BlobId>| -> u64 {
            ids.filter_map(|id| self.index().lookup(BlobType::Data, id))
                .map(|loc| u64::from(loc.raw_len))
                .sum()
        };
        Ok(DiffReport {
            entries: out.into_iter().map(|(_, entry)| entry).collect(),
            bytes_added: bytes_of(&mut blobs_b.difference(&blobs_a)),
            bytes_removed: bytes_of(&mut blobs_a.difference(&blobs_b)),
        })
    }

    /// Entries whose name or path matches one of `patterns` (the dialect of
    /// [`crate::pattern`]: anchored with a leading `/`, directories only with a trailing one),
    /// across `snapshots`.
    pub fn find(
        &self,
        ctx: &OpCtx<'_>,
        snapshots: &[Snapshot],
        patterns: &[String],
    ) -> Result<Vec<(Snapshot, WalkEntry)>> {
        let set = PatternSet::sensitive("find", patterns)?;
        let mut out = Vec::new();
        for snap in snapshots {
            self.walk_tree(&snap.meta.tree, Path::new("/"), &mut |e| {
                ctx.cancel.check()?;
                if set.matches(&e.path, e.node.kind == NodeKind::Dir) {
                    out.push((snap.clone(), e.clone()));
                }
                Ok(true)
            })?;
        }
        Ok(out)
    }
}
