//! `cairn diff SNAP1 SNAP2`: what changed from the first snapshot to the second.
//!
//! One line per change: `+ PATH` added, `- PATH` removed, `M PATH` content or type modified,
//! `U PATH` only metadata (mode, owner, times, xattrs) updated. Paths are escaped for the
//! terminal ([`output::escaped`]); in JSON they are exact (`path`, or `path_hex` when the path is
//! not UTF-8).

use std::io::Write;

use anyhow::Result;
use clap::Args;
use repo_core::{DiffKind, SnapshotFilter};
use serde_json::json;

use super::App;
use crate::progress::CliProgress;
use crate::{output, EXIT_OK};

/// Flags of `cairn diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older snapshot (id, id prefix or `latest`).
    #[arg(value_name = "SNAP1")]
    pub first: String,
    /// The newer snapshot.
    #[arg(value_name = "SNAP2")]
    pub second: String,
}

/// Runs `cairn diff`.
pub fn run(app: &App, args: &DiffArgs) -> Result<u8> {
    let progress = CliProgress::new(&app.global, false);
    let repo = app.open_indexed(&progress)?;
    let ctx = app.ctx(&progress);
    let all = SnapshotFilter::default();
    let a = repo.find_snapshot(&ctx, &args.first, &all)?;
    let b = repo.find_snapshot(&ctx, &args.second, &all)?;
    let changes = repo.diff(&ctx, &a, &b)?;
    let count = |k: DiffKind| changes.iter().filter(|c| c.kind == k).count();
    if app.global.json {
        output::json_line(&json!({
            "snapshot_a": a.id.to_hex(),
            "snapshot_b": b.id.to_hex(),
            "added": count(DiffKind::Added),
            "removed": count(DiffKind::Removed),
            "modified": count(DiffKind::Modified),
            "metadata": count(DiffKind::Metadata),
            "changes": changes.iter().map(output::diff_json).collect::<Vec<_>>(),
        }))?;
        return Ok(EXIT_OK);
    }
    let mut out = std::io::stdout().lock();
    for c in &changes {
        let mark = match c.kind {
            DiffKind::Added => '+',
            DiffKind::Removed => '-',
            DiffKind::Modified => 'M',
            DiffKind::Metadata => 'U',
        };
        writeln!(out, "{mark} {}", output::escaped(&c.path_bytes))?;
    }
    Ok(EXIT_OK)
}
