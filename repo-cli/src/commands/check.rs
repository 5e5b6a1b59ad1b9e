//! `cairn check`: verify the repository's structure and, with `--read-data`, every stored byte.
//!
//! Exit 0 only when no problem was found; packs that no index lists are shown as notes (an
//! interrupted backup leaves them, and they harm nothing). Temporary files that a killed write
//! left (`data/ab/.tmp-…`) are warnings, even with `--quiet`: they are not damage (no snapshot
//! refers to them) and do not change the exit code, but they take space, so each is named with
//! its path and the command that removes it.

use std::io::Write;
use std::path::Path;

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
    // Check judges the repository, never the cache (spec/11-cache.md): opened without one,
    // nothing is read twice and no cache directory is made.
    let mut global = app.global.clone();
    global.no_cache = true;
    let app = &App {
        global,
        cancel: app.cancel.clone(),
    };
    let repo_path = app.repo_path()?;
    let ctx = app.ctx(&progress);
    let repo = app.open_indexed(&progress)?;
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
        print_text(&report, &repo_path, args.read_data, app.global.quiet)?;
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

fn print_text(report: &CheckReport, repo: &Path, read_data: bool, quiet: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if !quiet {
        writeln!(
            out,
            "checked {}, {}, {}, {}",
            output::count(report.snapshots, "snapshot", "snapshots"),
            output::count(report.trees, "tree", "trees"),
            output::count(report.packs, "pack", "packs"),
            output::count(report.blobs, "blob", "blobs")
        )?;
        if read_data {
            writeln!(
                out,
                "read {} ({})",
                output::count(report.packs_read, "pack", "packs"),
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
    for rel in &report.temporary_files {
        writeln!(out, "warning: {}", temporary_file_warning(repo, rel))?;
    }
    for p in &report.problems {
        writeln!(out, "{}", problem_line(p))?;
    }
    if report.is_clean() && !quiet {
        writeln!(out, "no problems found")?;
    }
    Ok(())
}

/// The warning about one temporary file (`rel` is relative to the repository at `repo`).
fn temporary_file_warning(repo: &Path, rel: &str) -> String {
    let path = repo.join(rel).to_string_lossy().into_owned();
    let (shown, how) = match shell_quote(&path) {
        Some(quoted) => (path, format!("remove it with `rm -- {quoted}`")),
        None => (
            path.escape_debug().to_string(),
            "remove it (its name holds control characters)".to_string(),
        ),
    };
    format!(
        "{shown} is a temporary file that an interrupted write left (a killed backup); no \
         snapshot refers to it: if no cairn command is writing to the repository, {how}"
    )
}

/// `s` quoted for a POSIX shell (single quotes, unless every character is plainly safe), or
/// `None` when it holds control characters, which no one-line command shows faithfully.
fn shell_quote(s: &str) -> Option<String> {
    if s.chars().any(char::is_control) {
        return None;
    }
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@%,".contains(c))
    {
        return Some(s.to_string());
    }
    Some(format!("'{}'", s.replace('\'', r"'\''")))
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
        Problem::FileSize {
            snapshot,
            path,
            size,
            content,
        } => format!(
            "snapshot {snapshot}, file {path}: size {size} but its content holds {content} bytes"
        ),
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
    fn removal_advice_quotes_hostile_names_for_the_shell() {
        assert_eq!(
            shell_quote("/r/data/ab/.tmp-x-1").unwrap(),
            "/r/data/ab/.tmp-x-1"
        );
        assert_eq!(
            shell_quote("/r/.tmp-$(rm -rf ~)").unwrap(),
            "'/r/.tmp-$(rm -rf ~)'"
        );
        assert_eq!(shell_quote("/r/.tmp-it's").unwrap(), r"'/r/.tmp-it'\''s'");
        assert_eq!(shell_quote("/r/.tmp-a\nb"), None);
        let w = temporary_file_warning(Path::new("/r"), ".tmp-a\u{1b}[2Jb");
        assert!(!w.contains('\u{1b}'), "{w}");
        assert!(w.contains("control characters"), "{w}");
    }

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
