//! `cairn check`: verify the repository's structure and, with `--read-data`, every stored byte.
//!
//! Exit 0 only when no problem was found; packs that no index lists are shown as notes (an
//! interrupted backup leaves them, and they harm nothing).

use std::io::Write;

use anyhow::Result;
use clap::Args;
use repo_core::{CheckOptions, CheckReport, Problem};
use serde::Serialize;

use super::App;
use crate::progress::CliProgress;
use crate::{output, Failure, EXIT_OK};

/// Flags of `cairn check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also download every pack and verify every blob in it.
    #[arg(long)]
    pub read_data: bool,
}

/// The `{"message_type":"summary"}` object of `check --json`.
#[derive(Serialize)]
struct SummaryJson<'a> {
    message_type: &'static str,
    clean: bool,
    #[serde(flatten)]
    report: &'a CheckReport,
}

/// Runs `cairn check`.
pub fn run(app: &App, args: &CheckArgs) -> Result<u8> {
    let progress = CliProgress::new(&app.global, true);
    let repo = app.open_indexed(&progress)?;
    let ctx = app.ctx(&progress);
    let mut opts = CheckOptions::default();
    opts.read_data = args.read_data;
    opts.lock_wait = app.global.lock_wait;
    let report = repo.check(&ctx, &opts)?;
    progress.finish();
    if app.global.json {
        output::json_line(&SummaryJson {
            message_type: "summary",
            clean: report.is_clean(),
            report: &report,
        })?;
    } else {
        print_text(&report, args.read_data, app.global.quiet)?;
    }
    if report.is_clean() {
        Ok(EXIT_OK)
    } else {
        Err(Failure::Problems(format!(
            "check found {} problem{}",
            report.problems.len(),
            if report.problems.len() == 1 { "" } else { "s" }
        ))
        .into())
    }
}

fn print_text(report: &CheckReport, read_data: bool, quiet: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if !quiet {
        writeln!(
            out,
            "checked {} snapshots, {} trees, {} packs, {} blobs",
            report.snapshots, report.trees, report.packs, report.blobs
        )?;
        if read_data {
            writeln!(
                out,
                "read {} packs ({})",
                report.packs_read,
                output::size(report.bytes_read)
            )?;
        }
        for pack in &report.unreferenced_packs {
            writeln!(
                out,
                "note: pack {} is not referenced by any index (left by an interrupted backup; harmless)",
                output::escape(pack)
            )?;
        }
    }
    for p in &report.problems {
        writeln!(out, "{}", problem_line(p))?;
    }
    if report.is_clean() && !quiet {
        writeln!(out, "no problems found")?;
    }
    Ok(())
}

/// The `problem:` line of `p`, escaped for the terminal: problems quote paths and names from
/// the snapshot.
fn problem_line(p: &Problem) -> String {
    format!("problem: {}", output::escape(&describe(p)))
}

/// One line about a problem.
fn describe(p: &Problem) -> String {
    match p {
        Problem::KeyFile { name, error } => format!("key file {name}: {error}"),
        Problem::IndexFile { name, error } => format!("index file {name}: {error}"),
        Problem::MissingPack { pack } => format!("pack {pack} is listed in the index but missing"),
        Problem::PackSize {
            pack,
            expected,
            found,
        } => format!("pack {pack} is {found} bytes, the index says {expected}"),
        Problem::Snapshot { snapshot, error } => format!("snapshot {snapshot}: {error}"),
        Problem::Tree {
            snapshot,
            path,
            tree,
            error,
        } => format!("snapshot {snapshot}, directory {path} (tree {tree}): {error}"),
        Problem::MissingBlob {
            snapshot,
            path,
            blob,
        } => format!("snapshot {snapshot}, file {path}: blob {blob} is not in the index"),
        Problem::PackData { pack, error } => format!("pack {pack}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_lines_escape_paths() {
        let p = Problem::MissingBlob {
            snapshot: "1234abcd".into(),
            path: "/s/a\nproblem: forged\x1b[2J".into(),
            blob: "beef".into(),
        };
        assert_eq!(
            problem_line(&p),
            r"problem: snapshot 1234abcd, file /s/a\nproblem: forged\x1b[2J: blob beef is not in the index"
        );
    }
}
