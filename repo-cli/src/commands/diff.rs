//! `cairn diff SNAP1 SNAP2`: what changed from the first snapshot to the second.
//!
//! One line per change: `+ PATH` added, `- PATH` removed, `M PATH` content or type modified,
//! `U PATH` only metadata (mode, owner, times, xattrs) updated. Paths are escaped for the
//! terminal ([`output::escaped`]); in JSON they are exact (`path`, or `path_hex` when the path is
//! not UTF-8).

use std::io::Write;

use anyhow::Result;
use clap::Args;
use repo_core::{DiffKind, NodeKind, SnapshotFilter};
use serde_json::json;

use super::{App, AsOfArgs};
use crate::progress::CliProgress;
use crate::{output, time, Failure, EXIT_OK};

/// Flags of `cairn diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older snapshot (id, id prefix or `latest`).
    #[arg(value_name = "SNAP1")]
    pub first: String,
    /// The newer snapshot.
    #[arg(value_name = "SNAP2")]
    pub second: String,
    /// With `latest` as SNAP1, SNAP2 or both: each picks the newest snapshot at or before its
    /// time (`--as-of` once for SNAP1, twice for SNAP1 then SNAP2, e.g. `cairn diff latest
    /// latest --as-of yesterday --as-of now`).
    #[arg(
        long = "as-of",
        value_name = "TIME",
        value_parser = crate::time::parse_until,
        allow_hyphen_values = true,
        num_args = 1,
        action = clap::ArgAction::Append
    )]
    pub as_of: Vec<i64>,
}

/// Runs `cairn diff`.
pub fn run(app: &App, args: &DiffArgs) -> Result<u8> {
    let progress = CliProgress::new(&app.global, false);
    let repo = app.open_indexed(&progress)?;
    let ctx = app.ctx(&progress);
    if args.as_of.len() > 2 {
        return Err(
            Failure::Usage("--as-of is given at most twice: for SNAP1, then SNAP2".into()).into(),
        );
    }
    let pick = |spec: &str, as_of: Option<i64>| {
        let mut filter = SnapshotFilter::default();
        AsOfArgs { as_of }.apply(&[spec], &mut filter)?;
        anyhow::Ok(repo.find_snapshot(&ctx, spec, &filter)?)
    };
    // One time applies to SNAP1 and, when SNAP2 is also `latest`, is not reused for it: the
    // newest snapshot now is what SNAP2 = `latest` means.
    let a = pick(&args.first, args.as_of.first().copied())?;
    let b = pick(&args.second, args.as_of.get(1).copied())?;
    let report = repo.diff_report(&ctx, &a, &b)?;
    let changes = &report.entries;
    let count = |k: DiffKind| changes.iter().filter(|c| c.kind == k).count();
    // (new, removed, changed) of files, directories and other entries.
    let mut tally = [[0u64; 3]; 3];
    for c in changes {
        let row = match c.node_kind {
            NodeKind::File => 0,
            NodeKind::Dir => 1,
            _ => 2,
        };
        let col = match c.kind {
            DiffKind::Added => 0,
            DiffKind::Removed => 1,
            _ => 2,
        };
        tally[row][col] += 1;
    }
    if app.global.json {
        let sums = |row: [u64; 3]| json!({"new": row[0], "removed": row[1], "changed": row[2]});
        output::json_line(&json!({
            "message_type": "diff",
            "snapshot_a": a.id.to_hex(),
            "snapshot_b": b.id.to_hex(),
            "added": count(DiffKind::Added),
            "removed": count(DiffKind::Removed),
            "modified": count(DiffKind::Modified),
            "metadata": count(DiffKind::Metadata),
            "files": sums(tally[0]),
            "dirs": sums(tally[1]),
            "others": sums(tally[2]),
            "bytes_added": report.bytes_added,
            "bytes_removed": report.bytes_removed,
            "changes": changes.iter().map(output::diff_json).collect::<Vec<_>>(),
        }))?;
        return Ok(EXIT_OK);
    }
    let mut out = std::io::stdout().lock();
    if !app.global.quiet {
        writeln!(
            out,
            "comparing snapshot {} ({}) to snapshot {} ({}):\n",
            a.id,
            time::format_local(a.meta.time_ns),
            b.id,
            time::format_local(b.meta.time_ns)
        )?;
    }
    for c in changes {
        let mark = match c.kind {
            DiffKind::Added => '+',
            DiffKind::Removed => '-',
            DiffKind::Modified => 'M',
            DiffKind::Metadata => 'U',
        };
        writeln!(out, "{mark} {}", output::escaped(&c.path_bytes))?;
    }
    if app.global.quiet {
        return Ok(EXIT_OK);
    }
    if changes.is_empty() {
        writeln!(out, "no differences")?;
    }
    writeln!(
        out,
        "\n+ added, - removed, M content or type changed, U metadata changed only\n"
    )?;
    let [f, d, o] = tally;
    writeln!(
        out,
        "Files:    {} new, {} removed, {} changed",
        f[0], f[1], f[2]
    )?;
    writeln!(out, "Dirs:     {} new, {} removed", d[0], d[1])?;
    writeln!(
        out,
        "Others:   {} new, {} removed, {} changed",
        o[0], o[1], o[2]
    )?;
    writeln!(out, "Added:    {}", output::size(report.bytes_added))?;
    writeln!(out, "Removed:  {}", output::size(report.bytes_removed))?;
    Ok(EXIT_OK)
}
