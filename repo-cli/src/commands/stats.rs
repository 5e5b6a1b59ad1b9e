//! `cairn stats [SNAPSHOT...]`: restore size, stored size, and deduplication and compression
//! ratios over the given snapshots (default: every snapshot the filters accept).

use std::io::Write;

use anyhow::Result;
use clap::Args;

use super::{select_snapshots, App, FilterArgs};
use crate::progress::CliProgress;
use crate::{output, EXIT_OK};

/// Flags of `cairn stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Snapshots to count (ids, id prefixes or `latest`) [default: all].
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Runs `cairn stats`.
pub fn run(app: &App, args: &StatsArgs) -> Result<u8> {
    let filter = args.filter.to_filter()?;
    let progress = CliProgress::new(&app.global, false);
    let repo = app.open_indexed(&progress)?;
    let ctx = app.ctx(&progress);
    let snaps = select_snapshots(&repo, &ctx, &args.snapshots, &filter)?;
    let stats = repo.stats(&ctx, &snaps)?;
    if app.global.json {
        let mut v = serde_json::to_value(&stats)?;
        if let serde_json::Value::Object(m) = &mut v {
            let _ = m.insert("message_type".into(), "stats".into());
        }
        output::json_line(&v)?;
        return Ok(EXIT_OK);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "Snapshots:          {}", stats.snapshots)?;
    writeln!(out, "Files:              {}", stats.files)?;
    writeln!(
        out,
        "Restore size:       {}",
        output::size(stats.restore_size)
    )?;
    writeln!(out, "Unique blobs:       {}", stats.unique_blobs)?;
    writeln!(out, "Deduplicated size:  {}", output::size(stats.raw_size))?;
    writeln!(
        out,
        "Stored size:        {}",
        output::size(stats.stored_size)
    )?;
    writeln!(
        out,
        "Repository size:    {}",
        output::size(stats.repository_size)
    )?;
    writeln!(
        out,
        "Dedup ratio:        {}",
        output::ratio(stats.dedup_ratio)
    )?;
    writeln!(
        out,
        "Compression ratio:  {}",
        output::ratio(stats.compression_ratio)
    )?;
    Ok(EXIT_OK)
}
