//! Where a restore writes: the [`Destination`] seam, and the driver that runs the selection
//! walk of a plan into one.
//!
//! A destination gets the selected entries of a snapshot in tree order (a directory before
//! its contents, then its end) and does with them what it is for: the local file system
//! ([`super::execute`], through [`super::local`]) creates them under a target, in batches
//! filled from the packs in parallel; the dry run ([`super::select`]) only compares them with
//! what the target holds. A tar or zip dump is the next one: a destination that writes each
//! entry to a stream, reading file contents through the pack reader in order.

use std::path::Path;

use super::options::RestorePlan;
use super::select::{Filter, Sel};
use crate::error::Result;
use crate::format::tree::Node;
use crate::progress::OpCtx;
use crate::repository::{Indexed, Repository};

/// What receives the entries a restore selects.
pub(crate) trait Destination {
    /// A directory, at `rel` below the restore's start. `Ok(false)` skips its contents (and
    /// then no [`Destination::exit`] follows).
    fn enter(&mut self, rel: &Path, node: &Node) -> Result<bool>;
    /// The end of the directory last entered.
    fn exit(&mut self) -> Result<()>;
    /// A non-directory at `rel`.
    fn leaf(&mut self, rel: &Path, node: &Node) -> Result<()>;
    /// Every entry was handed over: complete what is still pending.
    fn finish(&mut self) -> Result<()>;
    /// The walk or a step failed: undo what is pending, so that no entry is left half made.
    fn abandon(&mut self);
}

impl Repository<Indexed> {
    /// Runs the selection walk of `plan` into `dest`, then finishes it, or abandons it when
    /// anything failed.
    pub(super) fn restore_into(
        &self,
        ctx: &OpCtx<'_>,
        plan: &RestorePlan,
        dest: &mut dyn Destination,
    ) -> Result<()> {
        let filter = Filter::new(&plan.opts)?;
        let result = self
            .select(ctx, &plan.start, &plan.sub, &filter, &mut |s| match s {
                Sel::Enter { rel, node } => dest.enter(rel, node),
                Sel::Exit => dest.exit().map(|()| true),
                Sel::Leaf { rel, node } => dest.leaf(rel, node).map(|()| true),
            })
            .and_then(|()| dest.finish());
        if result.is_err() {
            dest.abandon();
        }
        result
    }
}
