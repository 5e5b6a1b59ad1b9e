//! Choosing what to restore: the selection walk over a snapshot's trees (subpath, include
//! and exclude patterns), the totals of a [`super::RestorePlan`], and the dry run that lists
//! entry by entry what a restore would do.
//!
//! The walk reports entries in pre-order ([`Sel`]) and holds one level per directory of the
//! current path, so it costs memory linear in depth, whatever the size of the snapshot.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::destination::Destination;
use super::options::{Overwrite, PlannedEntry, RestoreOptions, RestorePlan};
use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
use crate::format::BlobType;
use crate::id::{BlobId, PackId};
use crate::pattern::PatternSet;
use crate::progress::OpCtx;
use crate::repository::{Indexed, Repository};
use crate::snapshot::Snapshot;

/// The include and exclude patterns of a restore, compiled (the dialect of
/// [`crate::pattern`]: a trailing `/` selects directories only).
pub(super) struct Filter {
    includes: PatternSet,
    excludes: PatternSet,
}

impl Filter {
    pub(super) fn new(opts: &RestoreOptions) -> Result<Self> {
        Ok(Self {
            includes: PatternSet::sensitive("include", &opts.includes)?,
            excludes: PatternSet::sensitive("exclude", &opts.excludes)?,
        })
    }
}

/// What the selection walk reports, in pre-order.
pub(super) enum Sel<'a> {
    /// A directory to restore (emitted only once something in it is selected, or it is).
    Enter { rel: &'a Path, node: &'a Node },
    /// The end of the last directory entered.
    Exit,
    /// A non-directory to restore.
    Leaf { rel: &'a Path, node: &'a Node },
}

/// One directory of the selection walk's current path.
pub(super) struct SelLevel {
    node: Node,
    included: bool,
    emitted: bool,
}

/// Totals of a subtree, for plans.
#[derive(Clone, Copy, Default)]
pub(super) struct Totals {
    files: u64,
    dirs: u64,
    others: u64,
    bytes: u64,
    damaged: u64,
}

impl Totals {
    pub(super) fn add(&mut self, o: &Totals, times: u64) {
        self.files = self.files.saturating_add(o.files.saturating_mul(times));
        self.dirs = self.dirs.saturating_add(o.dirs.saturating_mul(times));
        self.others = self.others.saturating_add(o.others.saturating_mul(times));
        self.bytes = self.bytes.saturating_add(o.bytes.saturating_mul(times));
        self.damaged = self.damaged.saturating_add(o.damaged.saturating_mul(times));
    }
}

impl Repository<Indexed> {
    /// Plans restoring `snapshot` (or its `subpath`), applying include and exclude filters:
    /// counts entries and bytes and the packs to read.
    ///
    /// Without filters each distinct tree is read once however often the snapshot refers to
    /// it, so a hostile snapshot whose expanded size is astronomical plans in the time of its
    /// stored size. Hard links count as files, their content once per name.
    pub fn plan_restore(
        &self,
        ctx: &OpCtx<'_>,
        snapshot: &Snapshot,
        opts: &RestoreOptions,
    ) -> Result<RestorePlan> {
        let filter = Filter::new(opts)?;
        let sub = opts.subpath.clone().unwrap_or_else(|| PathBuf::from("/"));
        let start = self.node_at(&snapshot.meta.tree, &sub)?;
        let mut packs = HashSet::new();
        let totals = if opts.includes.is_empty() && opts.excludes.is_empty() {
            match (start.kind, start.subtree) {
                (NodeKind::Dir, Some(tree)) => {
                    let mut memo = HashMap::new();
                    self.tree_totals(ctx, &tree, &mut memo, &mut packs)?
                }
                _ => {
                    let mut t = Totals::default();
                    self.count_node(&start, &mut t, &mut packs);
                    t
                }
            }
        } else {
            let mut t = Totals::default();
            self.select(ctx, &start, &sub, &filter, &mut |s| {
                match s {
                    Sel::Enter { .. } => t.dirs += 1,
                    Sel::Leaf { node, .. } => self.count_node(node, &mut t, &mut packs),
                    Sel::Exit => {}
                }
                Ok(true)
            })?;
            t
        };
        Ok(RestorePlan {
            snapshot: snapshot.id,
            files: totals.files,
            dirs: totals.dirs,
            others: totals.others,
            bytes: totals.bytes,
            packs: packs.len(),
            damaged: totals.damaged,
            opts: opts.clone(),
            start,
            sub,
        })
    }

    /// Adds a non-directory node to `t`, its packs to `packs`.
    pub(super) fn count_node(&self, node: &Node, t: &mut Totals, packs: &mut HashSet<PackId>) {
        match node.kind {
            NodeKind::File => {
                t.files += 1;
                match self.content_len(&node.content, Some(packs)) {
                    Some(len) if len == node.size => t.bytes = t.bytes.saturating_add(len),
                    _ => t.damaged += 1,
                }
            }
            NodeKind::Dir => t.dirs += 1,
            _ => t.others += 1,
        }
    }

    /// The total length of `content`, or `None` if a blob is not in the index.
    pub(super) fn content_len(
        &self,
        content: &[BlobId],
        mut packs: Option<&mut HashSet<PackId>>,
    ) -> Option<u64> {
        let mut len = 0u64;
        for id in content {
            let loc = self.index().lookup(BlobType::Data, id)?;
            if let Some(p) = packs.as_deref_mut() {
                let _ = p.insert(loc.pack);
            }
            len += u64::from(loc.raw_len);
        }
        Some(len)
    }

    /// Totals of the tree `id` and everything below it, each distinct tree read once.
    /// Iterative, so depth does not grow the call stack.
    pub(super) fn tree_totals(
        &self,
        ctx: &OpCtx<'_>,
        id: &BlobId,
        memo: &mut HashMap<BlobId, Totals>,
        packs: &mut HashSet<PackId>,
    ) -> Result<Totals> {
        // (tree, its subtrees still to add, totals so far)
        let mut stack: Vec<(BlobId, Vec<BlobId>, Totals)> = Vec::new();
        let open = |this: &Self,
                    id: &BlobId,
                    packs: &mut HashSet<PackId>|
         -> Result<(Vec<BlobId>, Totals)> {
            let tree = this.read_tree(id)?;
            let mut t = Totals::default();
            let mut subs = Vec::new();
            for n in &tree.nodes {
                if n.kind == NodeKind::Dir {
                    t.dirs += 1;
                    if let Some(s) = n.subtree {
                        subs.push(s);
                    }
                } else {
                    this.count_node(n, &mut t, packs);
                }
            }
            Ok((subs, t))
        };
        let (subs, t) = open(self, id, packs)?;
        stack.push((*id, subs, t));
        loop {
            ctx.cancel.check()?;
            let Some(top) = stack.last_mut() else {
                return Err(Error::internal("empty totals stack"));
            };
            if let Some(sub) = top.1.pop() {
                if let Some(done) = memo.get(&sub) {
                    let done = *done;
                    top.2.add(&done, 1);
                } else {
                    // No cycle is possible: a tree is named by the hash of its bytes, so it
                    // cannot list itself or an ancestor. Depth costs one entry per level.
                    let (subs, t) = open(self, &sub, packs)?;
                    stack.push((sub, subs, t));
                }
                continue;
            }
            let (tid, _, t) = stack
                .pop()
                .unwrap_or_else(|| unreachable!("stack has a top"));
            let _ = memo.insert(tid, t);
            match stack.last_mut() {
                Some(parent) => parent.2.add(&t, 1),
                None => return Ok(t),
            }
        }
    }

    /// Walks what a restore of `start` selects, in pre-order: a directory is reported when it
    /// or something below it is selected, before its contents. `visit` returns false at an
    /// `Enter` to skip that directory's contents.
    pub(super) fn select(
        &self,
        ctx: &OpCtx<'_>,
        start: &Node,
        sub: &Path,
        filter: &Filter,
        visit: &mut dyn FnMut(Sel<'_>) -> Result<bool>,
    ) -> Result<()> {
        if start.kind != NodeKind::Dir {
            let rel = PathBuf::from(OsStr::from_bytes(&start.name));
            let _ = visit(Sel::Leaf {
                rel: &rel,
                node: start,
            })?;
            return Ok(());
        }
        let subtree = start
            .subtree
            .ok_or_else(|| Error::internal("directory without subtree"))?;
        let include_all = filter.includes.is_empty();
        let mut stack: Vec<SelLevel> = Vec::new();
        // Entries deeper than this are inside a directory `visit` skipped.
        let mut skip_below: Option<usize> = None;
        let emit = |stack: &mut Vec<SelLevel>,
                    skip_below: &mut Option<usize>,
                    top_rel: &Path,
                    visit: &mut dyn FnMut(Sel<'_>) -> Result<bool>|
         -> Result<()> {
            // Emit the directories of the stack not emitted yet; `top_rel` is the path of the
            // deepest. Emitted levels are a prefix of the stack, so this costs the number of
            // pending levels, not the depth.
            let upto = stack.len();
            let first = stack.iter().rposition(|l| l.emitted).map_or(0, |p| p + 1);
            if first == upto {
                return Ok(());
            }
            let mut paths: Vec<&Path> = top_rel.ancestors().take(upto - first).collect();
            paths.reverse();
            for (i, p) in (first..upto).zip(paths) {
                let level = &mut stack[i];
                level.emitted = true;
                if !visit(Sel::Enter {
                    rel: p,
                    node: &level.node,
                })? {
                    // Not entered: no `Exit` either.
                    level.emitted = false;
                    *skip_below = Some(i + 1);
                    return Ok(());
                }
            }
            Ok(())
        };
        self.walk_tree(&subtree, sub, &mut |e| {
            ctx.cancel.check()?;
            while stack.len() >= e.depth {
                let done = stack
                    .pop()
                    .unwrap_or_else(|| unreachable!("stack is not empty"));
                if skip_below.is_some_and(|d| stack.len() < d) {
                    skip_below = None;
                }
                if done.emitted {
                    let _ = visit(Sel::Exit)?;
                }
            }
            let is_dir = e.node.kind == NodeKind::Dir;
            if skip_below.is_some() || filter.excludes.matches(&e.path, is_dir) {
                return Ok(false);
            }
            let inherited = stack.last().map_or(include_all, |l| l.included);
            let included = inherited || filter.includes.matches(&e.path, is_dir);
            let rel = e.path.strip_prefix(sub).unwrap_or(&e.path);
            if e.node.kind == NodeKind::Dir {
                let mut node = e.node.clone();
                node.content = Vec::new();
                stack.push(SelLevel {
                    node,
                    included,
                    emitted: false,
                });
                if included {
                    emit(&mut stack, &mut skip_below, rel, visit)?;
                }
                return Ok(skip_below.is_none());
            }
            if included {
                let parent = rel.parent().unwrap_or(Path::new(""));
                emit(&mut stack, &mut skip_below, parent, visit)?;
                if skip_below.is_none() {
                    let _ = visit(Sel::Leaf { rel, node: &e.node })?;
                }
            }
            Ok(false)
        })?;
        while let Some(done) = stack.pop() {
            if done.emitted {
                let _ = visit(Sel::Exit)?;
            }
        }
        Ok(())
    }

    /// Lists what restoring `plan` into `target` would do, entry by entry, without changing
    /// anything (paths are only inspected, with `lstat`).
    pub fn dry_run_restore(
        &self,
        ctx: &OpCtx<'_>,
        plan: &RestorePlan,
        target: &Path,
        visit: &mut dyn FnMut(&PlannedEntry) -> Result<()>,
    ) -> Result<()> {
        let mut dry = DryRun {
            repo: self,
            plan,
            target,
            first_of: HashMap::new(),
            visit,
        };
        self.restore_into(ctx, plan, &mut dry)
    }
}

/// The dry run as a destination: each entry is compared with what the target holds, and
/// reported with the action a restore would take.
struct DryRun<'a, 'v> {
    repo: &'a Repository<Indexed>,
    plan: &'a RestorePlan,
    target: &'a Path,
    /// The first name of each hard-link group seen.
    first_of: HashMap<(u64, u64), PathBuf>,
    visit: &'v mut dyn FnMut(&PlannedEntry) -> Result<()>,
}

impl DryRun<'_, '_> {
    fn entry(&mut self, rel: &Path, node: &Node) -> Result<()> {
        let (plan, target, overwrite) = (self.plan, self.target, self.plan.opts.overwrite);
        let existing = std::fs::symlink_metadata(target.join(rel)).ok();
        let mut link_to = None;
        if node.kind == NodeKind::File && node.links > 1 {
            match self.first_of.get(&(node.device, node.inode)) {
                Some(f) => link_to = Some(f.clone()),
                None => {
                    let _ = self
                        .first_of
                        .insert((node.device, node.inode), rel.to_path_buf());
                }
            }
        }
        let damaged = node.kind == NodeKind::File
            && link_to.is_none()
            && self.repo.content_len(&node.content, None) != Some(node.size);
        let action = match (&existing, node.kind) {
            _ if damaged => "damaged",
            (None, _) => "create",
            (Some(m), NodeKind::Dir) if m.is_dir() => "merge",
            (Some(_), _) if overwrite == Overwrite::Never => "keep",
            (Some(m), NodeKind::File)
                if overwrite == Overwrite::IfChanged
                    && m.is_file()
                    && std::os::unix::fs::MetadataExt::size(m) == node.size
                    && mtime_ns(m) == node.mtime_ns =>
            {
                "keep"
            }
            (Some(m), _) if m.is_dir() => {
                let empty = std::fs::read_dir(target.join(rel))
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(false);
                if empty {
                    "replace"
                } else if plan.opts.delete_conflicting {
                    "delete-conflicting"
                } else {
                    "conflict"
                }
            }
            (Some(_), _) => "replace",
        };
        (self.visit)(&PlannedEntry {
            path: rel.to_path_buf(),
            kind: node.kind.as_str(),
            size: node.size,
            link_to,
            action,
        })
    }
}

impl Destination for DryRun<'_, '_> {
    fn enter(&mut self, rel: &Path, node: &Node) -> Result<bool> {
        self.entry(rel, node).map(|()| true)
    }

    fn exit(&mut self) -> Result<()> {
        Ok(())
    }

    fn leaf(&mut self, rel: &Path, node: &Node) -> Result<()> {
        self.entry(rel, node)
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }

    /// Nothing was changed, so nothing is undone.
    fn abandon(&mut self) {}
}

pub(super) fn mtime_ns(m: &std::fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    m.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(m.mtime_nsec())
}
