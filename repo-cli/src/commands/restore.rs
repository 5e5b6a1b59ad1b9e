//! `cairn restore SNAPSHOT[:SUBPATH] --target DIR`: write a snapshot, or a path inside it, into
//! a directory.
//!
//! The library plans first and then executes; `--dry-run` prints the plan (a summary, or with
//! `--json` the serialized plan) and writes nothing.

use std::borrow::Cow;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::{Args, ValueEnum};
use repo_core::{
    Indexed, OpCtx, Overwrite, Repository, RestoreOptions, RestorePlan, RestoreSummary, Snapshot,
};
use serde::Serialize;
use serde_json::{json, Value};

use super::{path_in_snapshot, App, AsOfArgs, FilterArgs};
use crate::progress::CliProgress;
use crate::{output, time, Failure, EXIT_OK, EXIT_PARTIAL};

/// What to do with files that already exist in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OverwriteArg {
    /// Replace them.
    Always,
    /// Replace them unless size and modification time already match.
    IfChanged,
    /// Keep them.
    Never,
}

impl From<OverwriteArg> for Overwrite {
    fn from(a: OverwriteArg) -> Self {
        match a {
            OverwriteArg::Always => Self::Always,
            OverwriteArg::IfChanged => Self::IfChanged,
            OverwriteArg::Never => Self::Never,
        }
    }
}

/// Flags of `cairn restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot id, id prefix or `latest`, optionally with `:SUBPATH` (a path inside the
    /// snapshot, e.g. `latest:/home/alice/docs`).
    #[arg(value_name = "SNAPSHOT[:SUBPATH]")]
    pub snapshot: String,
    /// Directory to restore into (created if missing).
    #[arg(short = 't', long, value_name = "DIR")]
    pub target: PathBuf,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub as_of: AsOfArgs,
    /// Restore only entries matching a pattern (paths inside the snapshot; the same patterns
    /// as backup --exclude, a trailing `/` matches directories only). Repeatable.
    #[arg(short = 'i', long = "include", value_name = "PATTERN")]
    pub includes: Vec<String>,
    /// Leave out entries matching a pattern, and what is below a matching directory.
    /// Repeatable.
    #[arg(short = 'e', long = "exclude", value_name = "PATTERN")]
    pub excludes: Vec<String>,
    /// Re-read every restored file and check it against the snapshot.
    #[arg(long)]
    pub verify: bool,
    /// What to do with files that already exist in the target.
    #[arg(long, value_enum, default_value_t = OverwriteArg::Always, value_name = "WHEN")]
    pub overwrite: OverwriteArg,
    /// Print what would be restored; write nothing. Lists every entry with `-v` or `--json`,
    /// and always the entries that would not be restored or would delete something.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Delete a non-empty directory that is where the snapshot has a file, symlink or special
    /// file. Without it such a directory is left alone and reported (exit code 3). Never
    /// deletes across a mount point or into another file system.
    #[arg(long)]
    pub delete_conflicting: bool,
}

/// The `{"message_type":"summary"}` object of `restore --json`.
#[derive(Serialize)]
struct SummaryJson<'a> {
    message_type: &'static str,
    snapshot_id: String,
    target: Cow<'a, str>,
    duration_seconds: f64,
    #[serde(flatten)]
    summary: &'a RestoreSummary,
}

/// The `{"message_type":"restore_plan"}` object of `restore --dry-run --json`.
#[derive(Serialize)]
struct PlanJson<'a> {
    message_type: &'static str,
    dry_run: bool,
    snapshot_id: String,
    target: Cow<'a, str>,
    #[serde(flatten)]
    plan: Value,
}

/// Runs `cairn restore`.
pub fn run(app: &App, args: &RestoreArgs) -> Result<u8> {
    let (spec, subpath) = match args.snapshot.split_once(':') {
        Some((spec, sub)) if !sub.is_empty() => (spec, Some(PathBuf::from(sub))),
        Some((spec, _)) => (spec, None),
        None => (args.snapshot.as_str(), None),
    };
    let mut filter = args.filter.to_filter()?;
    args.as_of.apply(&[spec], &mut filter)?;
    let mut opts = RestoreOptions::default();
    opts.subpath = subpath;
    opts.includes.clone_from(&args.includes);
    opts.excludes.clone_from(&args.excludes);
    opts.overwrite = args.overwrite.into();
    opts.verify = args.verify;
    opts.delete_conflicting = args.delete_conflicting;
    opts.lock_wait = app.global.lock_wait;

    let progress = CliProgress::new(&app.global, !args.dry_run);
    let repo = app.open_indexed(&progress)?;
    let ctx = app.ctx(&progress);
    let snapshot = repo.find_snapshot(&ctx, spec, &filter)?;
    if let Some(sub) = &opts.subpath {
        opts.subpath = Some(path_in_snapshot(&repo, &snapshot, sub)?.0);
    }
    let plan = repo.plan_restore(&ctx, &snapshot, &opts)?;
    if args.dry_run {
        progress.finish();
        return print_plan(app, &repo, &ctx, &snapshot, &plan, args);
    }
    let started = Instant::now();
    let summary = repo.restore(&ctx, &plan, &args.target)?;
    repo.report_cache_problem(&ctx);
    progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    for w in &summary.warnings {
        report(app, w);
    }
    for f in &summary.verify_failures {
        report(app, f);
    }
    for f in &summary.not_restored {
        report(app, f);
    }
    if app.global.json {
        output::json_line(&SummaryJson {
            message_type: "summary",
            snapshot_id: snapshot.id.to_hex(),
            target: args.target.to_string_lossy(),
            duration_seconds: seconds,
            summary: &summary,
        })?;
    } else if !app.global.quiet {
        print_text(&snapshot, &summary, args, seconds)?;
    }
    if !summary.verify_failures.is_empty() {
        return Err(Failure::Problems(format!(
            "verification failed: {} restored files differ from the snapshot",
            summary.verify_failures.len()
        ))
        .into());
    }
    if !summary.not_restored.is_empty() {
        if !app.global.json {
            eprintln!(
                "{} of the snapshot not restored (see the warnings above)",
                output::count(summary.not_restored.len() as u64, "entry", "entries")
            );
        }
        return Ok(EXIT_PARTIAL);
    }
    Ok(EXIT_OK)
}

/// A restore warning on stderr (text or JSON).
fn report(app: &App, message: &str) {
    if app.global.json {
        let line = json!({"message_type": "error", "item": "", "error": message, "skipped": false});
        eprintln!("{line}");
    } else {
        eprintln!("warning: {}", output::escape(message));
    }
}

fn print_plan(
    app: &App,
    repo: &Repository<Indexed>,
    ctx: &OpCtx<'_>,
    snapshot: &Snapshot,
    plan: &RestorePlan,
    args: &RestoreArgs,
) -> Result<u8> {
    let mut problems = 0u64;
    if app.global.json {
        let mut body = serde_json::to_value(plan)?;
        if let Value::Object(m) = &mut body {
            // The id is reported once, as `snapshot_id`.
            let _ = m.remove("snapshot");
        }
        let head = serde_json::to_string(&PlanJson {
            message_type: "restore_plan",
            dry_run: true,
            snapshot_id: plan.snapshot.to_hex(),
            target: args.target.to_string_lossy(),
            plan: body,
        })?;
        // One object, its `entries` streamed: a dry run of any size holds one entry at a time.
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        write!(out, "{},\"entries\":[", head.trim_end_matches('}'))?;
        let mut first = true;
        repo.dry_run_restore(ctx, plan, &args.target, &mut |e| {
            if matches!(e.action, "conflict" | "damaged") {
                problems += 1;
            }
            let sep = if first { "" } else { "," };
            first = false;
            let line = serde_json::to_string(e)
                .map_err(|err| repo_core::Error::internal(err.to_string()))?;
            write!(out, "{sep}{line}").map_err(|err| repo_core::Error::io("write stdout", err))
        })?;
        writeln!(out, "]}}")?;
        out.flush()?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "dry run: would restore snapshot {} of {} into {}",
            snapshot.id,
            time::format_local(snapshot.meta.time_ns),
            output::escaped_path(&args.target)
        )?;
        writeln!(
            out,
            "{} ({}), {}, {}, read from {}",
            output::count(plan.files, "file", "files"),
            output::size(plan.bytes),
            output::count(plan.dirs, "dir", "dirs"),
            output::count(plan.others, "other", "others"),
            output::count(plan.packs as u64, "pack", "packs")
        )?;
        let verbose = app.global.verbose > 0;
        repo.dry_run_restore(ctx, plan, &args.target, &mut |e| {
            let what = match e.action {
                "conflict" => "not restored: a non-empty directory is in the way (--delete-conflicting deletes it)",
                "delete-conflicting" => "would delete the non-empty directory in the way",
                "damaged" => "not restored: damaged in the snapshot (run `cairn check`)",
                action if verbose => {
                    let full = args.target.join(&e.path);
                    let path = output::escaped_path(&full);
                    let line = match (&e.link_to, e.kind) {
                        (Some(to), _) => format!("{action:<9} {path} (hard link to {})", output::escaped_path(&args.target.join(to))),
                        (None, "file") => format!("{action:<9} {path} ({})", output::size(e.size)),
                        (None, _) => format!("{action:<9} {path}"),
                    };
                    return writeln!(out, "{line}")
                        .map_err(|err| repo_core::Error::io("write stdout", err));
                }
                _ => return Ok(()),
            };
            if e.action != "delete-conflicting" {
                problems += 1;
            }
            writeln!(out, "{}: {what}", output::escaped_path(&args.target.join(&e.path)))
                .map_err(|err| repo_core::Error::io("write stdout", err))
        })?;
    }
    if problems > 0 {
        return Ok(EXIT_PARTIAL);
    }
    Ok(EXIT_OK)
}

fn print_text(
    snapshot: &Snapshot,
    summary: &RestoreSummary,
    args: &RestoreArgs,
    seconds: f64,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "restored snapshot {} into {}: {} ({}), {}, {} in {}",
        snapshot.id,
        output::escaped_path(&args.target),
        output::count(summary.files_restored, "file", "files"),
        output::size(summary.bytes_written),
        output::count(summary.dirs, "dir", "dirs"),
        output::count(summary.others, "other", "others"),
        output::seconds(seconds)
    )?;
    if summary.files_skipped > 0 {
        writeln!(
            out,
            "{} left alone (--overwrite)",
            output::count(summary.files_skipped, "existing file", "existing files")
        )?;
    }
    if args.verify {
        writeln!(
            out,
            "verified {}: {}",
            output::count(summary.files_verified, "file", "files"),
            if summary.verify_failures.is_empty() {
                "all match the snapshot".to_string()
            } else {
                format!("{} differ", summary.verify_failures.len())
            }
        )?;
    }
    Ok(())
}
