//! `cairn find PATTERN...`: entries whose name or path matches a pattern, across snapshots.
//!
//! A pattern with a leading `/` matches whole paths inside the snapshot; otherwise it matches
//! at any depth (`*.conf`, `src/**/*.rs`); with a trailing `/` it matches directories only.

use std::io::Write;

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

use super::{select_snapshots, App, AsOfArgs, FilterArgs};
use crate::progress::CliProgress;
use crate::{output, time, EXIT_OK};

/// Flags of `cairn find`.
#[derive(Debug, Args)]
pub struct FindArgs {
    /// Patterns (`*` within a name, `**` across directories; a leading `/` anchors at the
    /// snapshot root; a trailing `/` matches directories only).
    #[arg(value_name = "PATTERN", required = true)]
    pub patterns: Vec<String>,
    /// Search only this snapshot (id, id prefix or `latest`; repeatable) [default: all].
    #[arg(short = 's', long = "snapshot", value_name = "ID")]
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub as_of: AsOfArgs,
}

/// Runs `cairn find`.
pub fn run(app: &App, args: &FindArgs) -> Result<u8> {
    let mut filter = args.filter.to_filter()?;
    let specs: Vec<&str> = args.snapshots.iter().map(String::as_str).collect();
    args.as_of.apply(&specs, &mut filter)?;
    let progress = CliProgress::new(&app.global, false);
    let repo = app.open_indexed(&progress)?;
    let ctx = app.ctx(&progress);
    let snaps = select_snapshots(&repo, &ctx, &args.snapshots, &filter)?;
    let found = repo.find(&ctx, &snaps, &args.patterns)?;
    if app.global.json {
        let groups: Vec<Value> = snaps
            .iter()
            .filter_map(|s| {
                let matches: Vec<Value> = found
                    .iter()
                    .filter(|(fs, _)| fs.id == s.id)
                    .map(|(_, e)| output::node_json(&e.node, Some(&e.path)))
                    .collect();
                (!matches.is_empty()).then(|| {
                    json!({
                        "message_type": "find_result",
                        "snapshot": s.id.to_hex(),
                        "time": time::format_rfc3339(s.meta.time_ns),
                        "hostname": s.meta.hostname,
                        "paths": s.paths_lossy(),
                        "matches": matches,
                    })
                })
            })
            .collect();
        output::json_line(&groups)?;
        return Ok(EXIT_OK);
    }
    let mut out = std::io::stdout().lock();
    let mut current = None;
    for (snap, entry) in &found {
        if current != Some(snap.id) {
            if current.is_some() {
                writeln!(out)?;
            }
            current = Some(snap.id);
            if !app.global.quiet {
                writeln!(
                    out,
                    "found in snapshot {} of [{}] at {}:",
                    snap.id,
                    output::snapshot_paths(snap),
                    time::format_local(snap.meta.time_ns)
                )?;
            }
        }
        writeln!(out, "{}", output::long_line(&entry.path, &entry.node))?;
    }
    Ok(EXIT_OK)
}
