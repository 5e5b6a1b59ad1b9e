//! `cairn forget`: remove snapshots by id, or by a retention policy applied to each group of
//! snapshots (by host and paths unless `--group-by` says otherwise).
//!
//! The policy's rules are restic's ([`repo_core::RetentionPolicy`]); buckets are local days,
//! weeks, months and years (`--tz` picks the zone). `--dry-run` shows every snapshot with
//! keep or remove and the rules that kept it. A policy that would remove every snapshot of a
//! group is refused unless `--allow-empty`. Forget removes snapshot files only; the space they
//! alone used is reclaimed by prune.

use std::io::Write;

use anyhow::Result;
use clap::Args;
use repo_core::{ForgetOptions, RetentionPolicy, Snapshot};
use serde_json::{json, Value};

use super::snapshots::{group_by, group_heading, group_key_json, GroupField};
use super::{select_snapshots, App, FilterArgs};
use crate::progress::CliProgress;
use crate::{output, time, Failure, EXIT_OK};

/// Flags of `cairn forget`.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Snapshots to remove (ids or id prefixes); without them, the policy decides.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_last: u32,
    /// Keep the newest snapshot of each of the N most recent hours with one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_hourly: u32,
    /// Keep the newest snapshot of each of the N most recent days with one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_daily: u32,
    /// Keep the newest snapshot of each of the N most recent ISO weeks with one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_weekly: u32,
    /// Keep the newest snapshot of each of the N most recent months with one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_monthly: u32,
    /// Keep the newest snapshot of each of the N most recent years with one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_yearly: u32,
    /// Keep every snapshot taken within DURATION of the group's newest (1y2m3d4h: years of
    /// 365 days, months of 30; or "90 days").
    #[arg(long, value_name = "DURATION", value_parser = parse_span)]
    pub keep_within: Option<i64>,
    /// Within DURATION of the newest, keep the newest snapshot of each hour.
    #[arg(long, value_name = "DURATION", value_parser = parse_span)]
    pub keep_within_hourly: Option<i64>,
    /// Within DURATION of the newest, keep the newest snapshot of each day.
    #[arg(long, value_name = "DURATION", value_parser = parse_span)]
    pub keep_within_daily: Option<i64>,
    /// Within DURATION of the newest, keep the newest snapshot of each week.
    #[arg(long, value_name = "DURATION", value_parser = parse_span)]
    pub keep_within_weekly: Option<i64>,
    /// Within DURATION of the newest, keep the newest snapshot of each month.
    #[arg(long, value_name = "DURATION", value_parser = parse_span)]
    pub keep_within_monthly: Option<i64>,
    /// Within DURATION of the newest, keep the newest snapshot of each year.
    #[arg(long, value_name = "DURATION", value_parser = parse_span)]
    pub keep_within_yearly: Option<i64>,
    /// Keep snapshots with this tag (repeatable: any of them; `a,b`: both).
    #[arg(long, value_name = "TAG[,TAG...]")]
    pub keep_tag: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Group by these fields, comma-separated: host, paths, tags [default: host,paths].
    #[arg(long, value_name = "FIELDS", value_delimiter = ',')]
    pub group_by: Vec<GroupField>,
    /// The time zone of the days, weeks, months and years (an IANA name such as
    /// Europe/Berlin, or UTC) [default: the local zone].
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,
    /// Show what would be kept and removed, and why; remove nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Remove every snapshot of a group when the policy keeps none of them.
    #[arg(long)]
    pub allow_empty: bool,
}

/// Parses a `--keep-within` span: `1y2m3d4h` (any of the parts, in that order), or a
/// humantime duration ("90 days", "36h").
fn parse_span(s: &str) -> Result<i64, String> {
    const HOUR: i64 = 3_600_000_000_000;
    let compact = || -> Option<i64> {
        let mut total: i64 = 0;
        let mut digits = String::new();
        let mut any = false;
        for c in s.trim().chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let n: i64 = digits.parse().ok()?;
            digits.clear();
            let unit = match c {
                'y' => 365 * 24 * HOUR,
                'm' => 30 * 24 * HOUR,
                'd' => 24 * HOUR,
                'h' => HOUR,
                _ => return None,
            };
            total = total.checked_add(n.checked_mul(unit)?)?;
            any = true;
        }
        (any && digits.is_empty()).then_some(total)
    };
    if let Some(ns) = compact() {
        return Ok(ns);
    }
    humantime::parse_duration(s)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .ok_or_else(|| {
            format!("{s:?} is not a duration: write 1y2m3d4h (or parts of it) or \"90 days\"")
        })
}

/// Runs `cairn forget`.
pub fn run(app: &App, args: &ForgetArgs) -> Result<u8> {
    if let Some(zone) = &args.tz {
        time::set_zone(zone).map_err(|e| Failure::Usage(e.to_string()))?;
    }
    let policy = policy(args);
    let progress = CliProgress::new(&app.global, false);
    let repo = app.open()?;
    let ctx = app.ctx(&progress);
    if !args.snapshots.is_empty() {
        if !policy.is_empty() {
            return Err(Failure::Usage(
                "give snapshot ids or a policy (--keep-*), not both".into(),
            )
            .into());
        }
        let filter = args.filter.to_filter()?;
        let snaps = select_snapshots(&repo, &ctx, &args.snapshots, &filter)?;
        let ids: Vec<_> = snaps.iter().map(|s| s.id).collect();
        if !args.dry_run {
            repo.forget_snapshots(&ctx, &ids, app.global.lock_wait)?;
        }
        if app.global.json {
            let removed: Vec<Value> = snaps.iter().map(output::snapshot_json).collect();
            output::json_line(&json!({
                "message_type": "forget_result",
                "dry_run": args.dry_run,
                "removed": removed,
            }))?;
        } else if !app.global.quiet {
            let verb = if args.dry_run {
                "would remove"
            } else {
                "removed"
            };
            for s in &snaps {
                println!("{verb} snapshot {}", s.id);
            }
        }
        return Ok(EXIT_OK);
    }
    if policy.is_empty() {
        return Err(Failure::Usage(
            "no policy given: say what to keep (--keep-last, --keep-daily, --keep-within, ...) or name the snapshots to remove".into(),
        )
        .into());
    }
    let mut opts = ForgetOptions::default();
    opts.policy = policy;
    opts.filter = args.filter.to_filter()?;
    if !args.group_by.is_empty() {
        opts.group_by = group_by(&args.group_by);
    }
    opts.lock_wait = app.global.lock_wait;
    let plan = repo.plan_forget(&ctx, &opts, &time::local_time)?;
    let emptied: Vec<String> = plan
        .groups
        .iter()
        .filter(|g| g.emptied())
        .map(|g| group_heading(&g.key))
        .collect();
    if !emptied.is_empty() && !args.allow_empty {
        return Err(Failure::Usage(format!(
            "the policy keeps no snapshot of {}: nothing was removed; change the policy, or pass --allow-empty to remove them all",
            emptied.join("; ")
        ))
        .into());
    }
    let removed = if args.dry_run {
        plan.removed()
    } else {
        repo.forget(&ctx, &plan, &time::local_time)?
    };
    if app.global.json {
        let groups: Vec<Value> = plan
            .groups
            .iter()
            .map(|g| {
                let keep: Vec<Value> = g
                    .decisions
                    .iter()
                    .filter(|(_, d)| d.keep)
                    .map(|(s, d)| {
                        let mut v = output::snapshot_json(s);
                        if let Value::Object(m) = &mut v {
                            let _ = m.insert("reasons".into(), json!(d.reasons));
                        }
                        v
                    })
                    .collect();
                let remove: Vec<Value> = g
                    .decisions
                    .iter()
                    .filter(|(_, d)| !d.keep)
                    .map(|(s, _)| output::snapshot_json(s))
                    .collect();
                json!({
                    "message_type": "forget_group",
                    "dry_run": args.dry_run,
                    "group_key": group_key_json(&g.key),
                    "keep": keep,
                    "remove": remove,
                })
            })
            .collect();
        output::json_line(&groups)?;
        return Ok(EXIT_OK);
    }
    if app.global.quiet {
        return Ok(EXIT_OK);
    }
    let mut out = std::io::stdout().lock();
    for g in &plan.groups {
        writeln!(out, "{}", group_heading(&g.key))?;
        let kept: Vec<&(Snapshot, repo_core::RetentionDecision)> =
            g.decisions.iter().filter(|(_, d)| d.keep).collect();
        let gone: Vec<&(Snapshot, repo_core::RetentionDecision)> =
            g.decisions.iter().filter(|(_, d)| !d.keep).collect();
        writeln!(
            out,
            "keep {}:",
            output::count(kept.len() as u64, "snapshot", "snapshots")
        )?;
        for (s, d) in &kept {
            writeln!(
                out,
                "  {}  {}  {}",
                s.id,
                time::format_local(s.meta.time_ns),
                d.reasons.join(", ")
            )?;
        }
        let verb = if args.dry_run {
            "would remove"
        } else {
            "removed"
        };
        writeln!(
            out,
            "{verb} {}:",
            output::count(gone.len() as u64, "snapshot", "snapshots")
        )?;
        for (s, _) in &gone {
            writeln!(out, "  {}  {}", s.id, time::format_local(s.meta.time_ns))?;
        }
        writeln!(out)?;
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    writeln!(
        out,
        "{verb} {} in all; prune reclaims their space",
        output::count(removed.len() as u64, "snapshot", "snapshots")
    )?;
    Ok(EXIT_OK)
}

fn policy(args: &ForgetArgs) -> RetentionPolicy {
    let mut p = RetentionPolicy::default();
    p.last = args.keep_last;
    p.hourly = args.keep_hourly;
    p.daily = args.keep_daily;
    p.weekly = args.keep_weekly;
    p.monthly = args.keep_monthly;
    p.yearly = args.keep_yearly;
    p.within_ns = args.keep_within;
    p.within_hourly_ns = args.keep_within_hourly;
    p.within_daily_ns = args.keep_within_daily;
    p.within_weekly_ns = args.keep_within_weekly;
    p.within_monthly_ns = args.keep_within_monthly;
    p.within_yearly_ns = args.keep_within_yearly;
    p.tags = super::tag_groups(&args.keep_tag);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_in_restic_form_and_in_words() {
        const H: i64 = 3_600_000_000_000;
        assert_eq!(
            parse_span("1y2m3d4h"),
            Ok((365 * 24 + 60 * 24 + 3 * 24 + 4) * H)
        );
        assert_eq!(parse_span("36h"), Ok(36 * H));
        assert_eq!(parse_span("90 days"), Ok(90 * 24 * H));
        assert!(parse_span("3x").is_err());
        assert!(parse_span("7").is_err());
    }
}
