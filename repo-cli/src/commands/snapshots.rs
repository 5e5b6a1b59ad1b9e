//! `cairn snapshots`: list snapshots, oldest first, as a table or (`--json`) an array.
//!
//! Host names, tags and paths are escaped in the table ([`output::escaped`]), exact in JSON.
//! `--group-by host,paths,tags` lists each group under its own heading (in JSON, an array of
//! `{"group_key":{...},"snapshots":[...]}`); `--latest N` keeps the N newest of each group
//! (of each host and path set when no grouping is given, as restic does). On a terminal the
//! table fits its width: long hosts and tag lists are cut with `…`, paths wrap onto lines of
//! their own.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use anyhow::Result;
use clap::{Args, ValueEnum};
use repo_core::{GroupBy, GroupKey, Snapshot};
use serde_json::{json, Value};

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
    /// Only the N newest snapshots of each group (of each host and set of paths without
    /// --group-by).
    #[arg(long, value_name = "N")]
    pub latest: Option<usize>,
    /// Group by these fields, comma-separated: host, paths, tags.
    #[arg(long, value_name = "FIELDS", value_delimiter = ',')]
    pub group_by: Vec<GroupField>,
    /// One line per snapshot: no paths column.
    #[arg(short, long)]
    pub compact: bool,
}

/// A field snapshots can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GroupField {
    /// The host name.
    Host,
    /// The set of backed-up paths.
    Paths,
    /// The set of tags.
    Tags,
}

/// The library's grouping for the fields of `--group-by`.
pub fn group_by(fields: &[GroupField]) -> GroupBy {
    GroupBy {
        host: fields.contains(&GroupField::Host),
        paths: fields.contains(&GroupField::Paths),
        tags: fields.contains(&GroupField::Tags),
    }
}

/// The JSON `group_key` of a group: only the fields grouped by.
pub fn group_key_json(key: &GroupKey) -> Value {
    let mut m = serde_json::Map::new();
    if let Some(h) = &key.host {
        let _ = m.insert("hostname".into(), json!(h));
    }
    if let Some(p) = &key.paths {
        let paths: Vec<String> = p
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        let _ = m.insert("paths".into(), json!(paths));
    }
    if let Some(t) = &key.tags {
        let _ = m.insert("tags".into(), json!(t));
    }
    Value::Object(m)
}

/// A group for people: `host h, paths [/a, /b], tags [x]` (names escaped), or `all
/// snapshots` when nothing groups them.
pub fn group_heading(key: &GroupKey) -> String {
    let mut parts = Vec::new();
    if let Some(h) = &key.host {
        parts.push(format!("host {}", output::escape(h)));
    }
    if let Some(p) = &key.paths {
        let shown: Vec<String> = p.iter().map(|p| output::escaped(p).to_string()).collect();
        parts.push(format!("paths [{}]", shown.join(", ")));
    }
    if let Some(t) = &key.tags {
        parts.push(format!("tags [{}]", output::escape(&t.join(","))));
    }
    if parts.is_empty() {
        "all snapshots".to_string()
    } else {
        parts.join(", ")
    }
}

/// Runs `cairn snapshots`.
pub fn run(app: &App, args: &SnapshotsArgs) -> Result<u8> {
    let filter = args.filter.to_filter()?;
    let progress = CliProgress::new(&app.global, false);
    let repo = app.open()?;
    let snaps = select_snapshots(&repo, &app.ctx(&progress), &args.snapshots, &filter)?;
    let grouped = !args.group_by.is_empty();
    // `--latest` counts within groups; without --group-by, within each host and path set.
    let by = group_by(&args.group_by);
    let keep_by = if grouped { by } else { GroupBy::default() };
    let snaps = match args.latest {
        Some(n) => newest_of_each(snaps, keep_by, n),
        None => snaps,
    };
    let mut groups: BTreeMap<GroupKey, Vec<Snapshot>> = BTreeMap::new();
    for s in snaps {
        let key = if grouped {
            GroupKey::of(&s, by)
        } else {
            GroupKey::default()
        };
        groups.entry(key).or_default().push(s);
    }
    if app.global.json {
        if grouped {
            let list: Vec<Value> = groups
                .iter()
                .map(|(k, v)| {
                    let snaps: Vec<Value> = v.iter().map(output::snapshot_json).collect();
                    json!({"message_type": "snapshot_group", "group_key": group_key_json(k), "snapshots": snaps})
                })
                .collect();
            output::json_line(&list)?;
        } else {
            let list: Vec<Value> = groups
                .values()
                .flatten()
                .map(output::snapshot_json)
                .collect();
            output::json_line(&list)?;
        }
        return Ok(EXIT_OK);
    }
    let width = std::io::stdout()
        .is_terminal()
        .then(|| {
            console::Term::stdout()
                .size_checked()
                .map(|(_, w)| usize::from(w))
        })
        .flatten();
    let mut out = std::io::stdout().lock();
    if groups.is_empty() {
        table(&mut out, &[], args.compact, width)?;
    }
    let mut first = true;
    for (key, snaps) in &groups {
        if grouped {
            if !first {
                writeln!(out)?;
            }
            writeln!(out, "snapshots for {}:", group_heading(key))?;
        }
        first = false;
        table(&mut out, snaps, args.compact, width)?;
    }
    Ok(EXIT_OK)
}

/// The `n` newest snapshots of each group of `by`, oldest first (the order of `snaps`).
fn newest_of_each(snaps: Vec<Snapshot>, by: GroupBy, n: usize) -> Vec<Snapshot> {
    let mut seen: BTreeMap<GroupKey, usize> = BTreeMap::new();
    let mut kept: Vec<Snapshot> = snaps
        .into_iter()
        .rev()
        .filter(|s| {
            let count = seen.entry(GroupKey::of(s, by)).or_default();
            *count += 1;
            *count <= n
        })
        .collect();
    kept.reverse();
    kept
}

/// Cuts `s` to at most `max` characters, ending with `…` when cut.
fn fit(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// One table of snapshots, `width` the terminal's columns when stdout is one.
fn table(
    out: &mut dyn Write,
    snaps: &[Snapshot],
    compact: bool,
    width: Option<usize>,
) -> Result<()> {
    let header = ["ID", "Time", "Host", "Tags", "Paths"];
    let columns = if compact { 4 } else { 5 };
    let mut rows: Vec<[String; 4]> = snaps
        .iter()
        .map(|s| {
            [
                s.id.to_string(),
                time::format_local(s.meta.time_ns),
                output::escape(&s.meta.hostname),
                output::escape(&s.meta.tags.join(",")),
            ]
        })
        .collect();
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
    let mut widths: Vec<usize> = header.iter().take(4).map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let path_width = if compact {
        0
    } else {
        paths
            .iter()
            .flatten()
            .map(|p| p.chars().count())
            .max()
            .unwrap_or(0)
            .max(header[4].len())
    };
    // On a narrow terminal, host and tags give way (down to 12 columns each); the paths
    // column keeps at least 20 and its overflow simply runs on (paths are never cut).
    if let Some(term) = width {
        let fixed = widths[0] + widths[1] + 2 * columns;
        let want = if compact { 0 } else { path_width.clamp(5, 20) };
        let room = term.saturating_sub(fixed + want);
        while widths[2] + widths[3] > room && (widths[2] > 12 || widths[3] > 12) {
            if widths[3] >= widths[2] && widths[3] > 12 {
                widths[3] -= 1;
            } else {
                widths[2] -= 1;
            }
        }
        for row in &mut rows {
            row[2] = fit(&row[2], widths[2]);
            row[3] = fit(&row[3], widths[3]);
        }
    }
    let line = |out: &mut dyn Write, cells: [&str; 5]| -> std::io::Result<()> {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate().take(4) {
            text.push_str(&format!("{cell:<w$}  ", w = widths[i]));
        }
        if !compact {
            text.push_str(cells[4]);
        }
        writeln!(out, "{}", text.trim_end())
    };
    let mut rule_len = widths.iter().map(|w| w + 2).sum::<usize>() + path_width;
    if compact {
        rule_len -= 2;
    }
    if let Some(term) = width {
        rule_len = rule_len.min(term);
    }
    let rule = "-".repeat(rule_len);
    line(out, header)?;
    writeln!(out, "{rule}")?;
    for (row, paths) in rows.iter().zip(&paths) {
        let first = paths.first().map_or("", String::as_str);
        line(out, [&row[0], &row[1], &row[2], &row[3], first])?;
        if !compact {
            for p in paths.iter().skip(1) {
                line(out, ["", "", "", "", p])?;
            }
        }
    }
    writeln!(out, "{rule}")?;
    writeln!(
        out,
        "{}",
        output::count(snaps.len() as u64, "snapshot", "snapshots")
    )?;
    Ok(())
}
