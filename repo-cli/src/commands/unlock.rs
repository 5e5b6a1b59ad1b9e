//! `cairn unlock`: remove stale locks (of processes that are gone, or not refreshed for 30
//! minutes), or with `--remove-all` every lock.

use std::io::Write;

use anyhow::Result;
use clap::Args;
use repo_core::Unlock;
use serde_json::json;

use super::App;
use crate::{output, EXIT_OK};

/// Flags of `cairn unlock`.
#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Remove every lock, including those of running processes. Use only when sure that no
    /// other cairn process is using the repository.
    #[arg(long)]
    pub remove_all: bool,
}

/// Runs `cairn unlock`.
pub fn run(app: &App, args: &UnlockArgs) -> Result<u8> {
    let repo = app.open()?;
    let which = if args.remove_all {
        Unlock::All
    } else {
        Unlock::Stale
    };
    let removed = repo.unlock(which)?;
    if app.global.json {
        output::json_line(&json!({"message_type": "unlocked", "removed": removed}))?;
    } else if !app.global.quiet {
        let what = if args.remove_all { "" } else { "stale " };
        writeln!(
            std::io::stdout().lock(),
            "removed {removed} {what}lock{}",
            if removed == 1 { "" } else { "s" }
        )?;
    }
    Ok(EXIT_OK)
}
