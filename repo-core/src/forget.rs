//! `forget`: plan which snapshots a retention policy removes, group by group, then remove
//! them under the exclusive lock.
//!
//! Forgetting deletes snapshot files only: the data they alone referenced stays until prune
//! removes it, so a forgotten snapshot can still be recovered by hand until then. The plan
//! is computed again under the lock before anything is deleted, so a snapshot saved between
//! planning and removal is never removed by a plan that did not see it.

use std::collections::{BTreeMap, HashMap};

use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::lock::LockMode;
use crate::progress::OpCtx;
use crate::repository::Repository;
use crate::retention::{apply_retention, LocalTime, RetentionDecision, RetentionPolicy};
use crate::snapshot::{Snapshot, SnapshotFilter};

/// Which snapshot fields make a group: a policy applies to each group on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBy {
    /// Group by host name.
    pub host: bool,
    /// Group by the set of backed-up paths.
    pub paths: bool,
    /// Group by the set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    /// By host and paths, as restic does.
    fn default() -> Self {
        Self {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

/// What a group's snapshots share: the fields grouped by, the others `None`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct GroupKey {
    /// The host, when grouping by host.
    pub host: Option<String>,
    /// The sorted backup paths, when grouping by paths.
    pub paths: Option<Vec<Vec<u8>>>,
    /// The sorted tags, when grouping by tags.
    pub tags: Option<Vec<String>>,
}

impl GroupKey {
    /// The key of `snap` under `by`.
    pub fn of(snap: &Snapshot, by: GroupBy) -> Self {
        fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
            let mut v = v.to_vec();
            v.sort();
            v
        }
        Self {
            host: by.host.then(|| snap.meta.hostname.clone()),
            paths: by.paths.then(|| sorted(&snap.meta.paths)),
            tags: by.tags.then(|| sorted(&snap.meta.tags)),
        }
    }
}

/// What to forget.
#[non_exhaustive]
#[derive(Debug, Clone, Default)]
pub struct ForgetOptions {
    /// The policy applied to each group.
    pub policy: RetentionPolicy,
    /// Only snapshots passing this filter are considered; the others are kept, untouched.
    pub filter: SnapshotFilter,
    /// How snapshots are grouped.
    pub group_by: GroupBy,
    /// How long to wait for a conflicting lock when removing.
    pub lock_wait: std::time::Duration,
}

/// One group's decisions, newest first.
#[derive(Debug, Clone)]
pub struct ForgetGroup {
    /// What the group shares.
    pub key: GroupKey,
    /// Each snapshot with the policy's decision.
    pub decisions: Vec<(Snapshot, RetentionDecision)>,
}

impl ForgetGroup {
    /// Whether the policy removes every snapshot of the group.
    pub fn emptied(&self) -> bool {
        self.decisions.iter().all(|(_, d)| !d.keep)
    }
}

/// The decisions of a policy over the repository's snapshots.
#[derive(Debug, Clone, Default)]
pub struct ForgetPlan {
    /// The groups, in key order.
    pub groups: Vec<ForgetGroup>,
    opts: ForgetOptions,
}

impl ForgetPlan {
    /// The snapshots the plan removes.
    pub fn removed(&self) -> Vec<SnapshotId> {
        self.groups
            .iter()
            .flat_map(|g| g.decisions.iter())
            .filter(|(_, d)| !d.keep)
            .map(|(s, _)| s.id)
            .collect()
    }
}

impl<S: Send + Sync> Repository<S> {
    /// Applies `opts.policy` to the snapshots `opts.filter` passes, group by group; `local`
    /// gives the local date and hour of a time (the time zone of the buckets). Removes
    /// nothing. An empty policy is refused: it would remove everything.
    pub fn plan_forget(
        &self,
        ctx: &OpCtx<'_>,
        opts: &ForgetOptions,
        local: &dyn Fn(i64) -> LocalTime,
    ) -> Result<ForgetPlan> {
        if opts.policy.is_empty() {
            return Err(Error::invalid(
                "no retention rule given: a policy must say what to keep",
            ));
        }
        let all = self.snapshots(ctx)?;
        let mut groups: BTreeMap<GroupKey, Vec<Snapshot>> = BTreeMap::new();
        for snap in all.into_iter().filter(|s| opts.filter.matches(s)) {
            groups
                .entry(GroupKey::of(&snap, opts.group_by))
                .or_default()
                .push(snap);
        }
        let groups = groups
            .into_iter()
            .map(|(key, snaps)| {
                let decisions = apply_retention(&snaps, &opts.policy, local);
                let mut by_id: HashMap<SnapshotId, Snapshot> =
                    snaps.into_iter().map(|s| (s.id, s)).collect();
                let decisions = decisions
                    .into_iter()
                    .filter_map(|d| Some((by_id.remove(&d.id)?, d)))
                    .collect();
                ForgetGroup { key, decisions }
            })
            .collect();
        Ok(ForgetPlan {
            groups,
            opts: opts.clone(),
        })
    }

    /// Removes what `plan` removes, under the exclusive lock. The plan is made again under
    /// the lock; if it then differs (a snapshot was saved or removed meanwhile), nothing is
    /// removed and the error says so. Returns the removed ids.
    pub fn forget(
        &self,
        ctx: &OpCtx<'_>,
        plan: &ForgetPlan,
        local: &dyn Fn(i64) -> LocalTime,
    ) -> Result<Vec<SnapshotId>> {
        let _lock = self.lock(LockMode::Exclusive, "forget", plan.opts.lock_wait)?;
        let again = self.plan_forget(ctx, &plan.opts, local)?;
        let removed = plan.removed();
        if again.removed() != removed {
            return Err(Error::invalid(
                "the snapshots changed while forget was planned; nothing was removed: run it again",
            ));
        }
        self.remove_snapshot_files(ctx, &removed)?;
        Ok(removed)
    }

    /// Removes the snapshots `ids` (resolved by the caller), under the exclusive lock.
    pub fn forget_snapshots(
        &self,
        ctx: &OpCtx<'_>,
        ids: &[SnapshotId],
        lock_wait: std::time::Duration,
    ) -> Result<()> {
        let _lock = self.lock(LockMode::Exclusive, "forget", lock_wait)?;
        self.remove_snapshot_files(ctx, ids)
    }

    fn remove_snapshot_files(&self, ctx: &OpCtx<'_>, ids: &[SnapshotId]) -> Result<()> {
        for id in ids {
            ctx.cancel.check()?;
            self.backend().delete(FileType::Snapshot, &id.to_hex())?;
        }
        Ok(())
    }
}
