//! `cairn ls SNAPSHOT [PATH]`: list the entries of a snapshot, by default the whole tree under
//! PATH (like restic).
//!
//! Text: one path per line, or `-l` lines with permissions, owner, group, size, local mtime
//! and path, names escaped ([`output::escaped`]) so that each entry is one line. JSON: one object per line, first `{"message_type":"snapshot",...}`, then
//! `{"message_type":"node","path":...,...}` for each entry.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{ArgAction, Args};
use repo_core::{Node, NodeKind};
use serde_json::{json, Value};

use super::{path_in_snapshot, App, AsOfArgs, FilterArgs};
use crate::progress::CliProgress;
use crate::{output, time, EXIT_OK};

/// Flags of `cairn ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Snapshot id, id prefix or `latest`.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: String,
    /// Path inside the snapshot to list [default: all of it].
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// Long format: permissions, owner, group, size, modification time.
    #[arg(short = 'l', long)]
    pub long: bool,
    /// Descend into subdirectories (`--recursive=false` lists one level).
    #[arg(
        long,
        value_name = "BOOL",
        default_value_t = true,
        action = ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        require_equals = true
    )]
    pub recursive: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub as_of: AsOfArgs,
}

/// Runs `cairn ls`.
pub fn run(app: &App, args: &LsArgs) -> Result<u8> {
    let mut filter = args.filter.to_filter()?;
    args.as_of.apply(&[&args.snapshot], &mut filter)?;
    let progress = CliProgress::new(&app.global, false);
    let repo = app.open_indexed(&progress)?;
    let ctx = app.ctx(&progress);
    let snap = repo.find_snapshot(&ctx, &args.snapshot, &filter)?;
    let (start, node) = match &args.path {
        Some(p) => path_in_snapshot(&repo, &snap, p)?,
        None => {
            let root = PathBuf::from("/");
            let node = repo.node_at(&snap.meta.tree, &root)?;
            (root, node)
        }
    };
    let mut out = std::io::stdout().lock();
    let json = app.global.json;
    let long = args.long;
    let print = |out: &mut dyn Write, path: &Path, node: &Node| -> Result<()> {
        if json {
            let mut v = output::node_json(node, Some(path));
            if let Value::Object(m) = &mut v {
                let _ = m.insert("message_type".into(), json!("node"));
            }
            serde_json::to_writer(&mut *out, &v)?;
            writeln!(out)?;
        } else if long {
            writeln!(out, "{}", output::long_line(path, node))?;
        } else {
            writeln!(out, "{}", output::escaped_path(path))?;
        }
        Ok(())
    };
    if json {
        let mut v = output::snapshot_json(&snap);
        if let Value::Object(m) = &mut v {
            let _ = m.insert("message_type".into(), json!("snapshot"));
        }
        serde_json::to_writer(&mut out, &v)?;
        writeln!(out)?;
    } else if !app.global.quiet {
        writeln!(
            out,
            "snapshot {} of [{}] at {}:",
            snap.id,
            output::snapshot_paths(&snap),
            time::format_local(snap.meta.time_ns)
        )?;
    }
    let is_root = start.parent().is_none();
    if !is_root {
        print(&mut out, &start, &node)?;
    }
    if let (NodeKind::Dir, Some(subtree)) = (node.kind, node.subtree) {
        let recursive = args.recursive;
        let mut failed: Option<anyhow::Error> = None;
        let walked = repo.walk_tree(&subtree, &start, &mut |e| {
            if let Err(err) = print(&mut out, &e.path, &e.node) {
                failed = Some(err);
                return Err(repo_core::Error::cancelled());
            }
            ctx.cancel.check()?;
            Ok(recursive)
        });
        if let Some(err) = failed {
            return Err(err);
        }
        walked?;
    }
    Ok(EXIT_OK)
}
