//! `cairn snapshots`: list snapshots, oldest first, as a table or (`--json`) an array.
//!
//! Host names, tags and paths are escaped in the table ([`output::escaped`]), exact in JSON.

use std::io::Write;

use anyhow::Result;
use clap::Args;
use serde_json::Value;

use super::{select_snapshots, App, FilterArgs};
use crate::progress::CliProgress;
use crate::{output, time, EXIT_OK};

/// Flags of `cairn snapshots`.
#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Only these snapshots (ids, id prefixes or `latest`).
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Runs `cairn snapshots`.
pub fn run(app: &App, args: &SnapshotsArgs) -> Result<u8> {
    let filter = args.filter.to_filter()?;
    let progress = CliProgress::new(&app.global, false);
    let repo = app.open()?;
    let snaps = select_snapshots(&repo, &app.ctx(&progress), &args.snapshots, &filter)?;
    if app.global.json {
        let list: Vec<Value> = snaps.iter().map(output::snapshot_json).collect();
        output::json_line(&list)?;
        return Ok(EXIT_OK);
    }
    let header = ["ID", "Time", "Host", "Tags", "Paths"];
    // One row per snapshot; extra paths continue on lines of their own.
    let rows: Vec<[String; 5]> = snaps
        .iter()
        .map(|s| {
            [
                s.id.to_string(),
                time::format_local(s.meta.time_ns),
                output::escape(&s.meta.hostname),
                output::escape(&s.meta.tags.join(",")),
                String::new(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()).take(4) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let paths: Vec<Vec<String>> = snaps
        .iter()
        .map(|s| {
            s.meta
                .paths
                .iter()
                .map(|p| output::escaped(p).to_string())
                .collect()
        })
        .collect();
    let path_width = paths
        .iter()
        .flatten()
        .map(|p| p.chars().count())
        .max()
        .unwrap_or(0)
        .max(header[4].len());
    let line = |out: &mut dyn Write, cells: [&str; 5]| -> std::io::Result<()> {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate().take(4) {
            text.push_str(&format!("{cell:<w$}  ", w = widths[i]));
        }
        text.push_str(cells[4]);
        writeln!(out, "{}", text.trim_end())
    };
    let rule = "-".repeat(widths.iter().take(4).map(|w| w + 2).sum::<usize>() + path_width);
    let mut out = std::io::stdout().lock();
    line(&mut out, header)?;
    writeln!(out, "{rule}")?;
    for (row, paths) in rows.iter().zip(&paths) {
        let first = paths.first().map_or("", String::as_str);
        line(&mut out, [&row[0], &row[1], &row[2], &row[3], first])?;
        for p in paths.iter().skip(1) {
            line(&mut out, ["", "", "", "", p])?;
        }
    }
    writeln!(out, "{rule}")?;
    writeln!(
        out,
        "{} snapshot{}",
        snaps.len(),
        if snaps.len() == 1 { "" } else { "s" }
    )?;
    Ok(EXIT_OK)
}
