//! `cairn key list|add|remove|passwd`: the passwords of a repository, each a key file that
//! wraps the same master key. The new password comes from `--new-password-file`,
//! `CAIRN_NEW_PASSWORD` or a prompt (asked twice).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use repo_core::{FileType, KdfParams, KeyId};
use serde_json::json;

use super::App;
use crate::{output, password, time, EXIT_OK};

/// Flags of `cairn key`.
#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub action: KeyAction,
}

/// What to do with keys.
#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// List the key files (the one in use is marked).
    List,
    /// Add a password.
    Add(NewPassword),
    /// Remove a key file (not the one in use, never the last).
    Remove {
        /// The key's id or id prefix.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Change the password in use: the new key file is written before the old is removed.
    Passwd(NewPassword),
    /// Print the master key for safe keeping (docs/key-export.md): with it, `--key-file`
    /// opens the repository without any password, so store it like the password itself.
    Export,
}

/// Where the new password comes from.
#[derive(Debug, Args)]
pub struct NewPassword {
    /// Read the new password from the first line of FILE.
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
}

/// Runs `cairn key`.
pub fn run(app: &App, args: &KeyArgs) -> Result<u8> {
    let repo = app.open()?;
    let kdf = if app.global.insecure_kdf {
        KdfParams::insecure_fast()
    } else {
        KdfParams::default()
    };
    match &args.action {
        KeyAction::List => {
            let keys = repo.keys()?;
            if app.global.json {
                let list: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({
                            "message_type": "key",
                            "id": k.id.to_hex(),
                            "current": k.current,
                            "created": time::format_rfc3339(k.created_unix.saturating_mul(1_000_000_000)),
                        })
                    })
                    .collect();
                output::json_line(&list)?;
            } else {
                for k in &keys {
                    println!(
                        "{} {}  {}",
                        if k.current { "*" } else { " " },
                        k.id,
                        time::format_local(k.created_unix.saturating_mul(1_000_000_000))
                    );
                }
            }
        }
        KeyAction::Add(new) => {
            let password = password::read_new(new.new_password_file.as_deref())?;
            let id = repo.add_key(&password, kdf)?;
            say(app, "key_added", &id, "added key")?;
        }
        KeyAction::Remove { id } => {
            let id = KeyId(repo.find_file(FileType::Key, id)?);
            repo.remove_key(&id, app.global.lock_wait)?;
            say(app, "key_removed", &id, "removed key")?;
        }
        KeyAction::Export => {
            let key = repo.export_master_key();
            let repo_id = repo_core::Id(repo.config().repo_id).to_hex();
            let text = zeroize::Zeroizing::new(serde_json::to_string_pretty(&json!({
                "cairn_master_key": 1,
                "repository": repo_id,
                "key": output::hex(key.as_slice()),
            }))?);
            println!("{}", text.as_str());
        }
        KeyAction::Passwd(new) => {
            let password = password::read_new(new.new_password_file.as_deref())?;
            let id = repo.change_password(&password, kdf, app.global.lock_wait)?;
            say(
                app,
                "password_changed",
                &id,
                "password changed; the new key is",
            )?;
        }
    }
    Ok(EXIT_OK)
}

fn say(app: &App, message_type: &str, id: &KeyId, text: &str) -> Result<()> {
    if app.global.json {
        output::json_line(&json!({"message_type": message_type, "id": id.to_hex()}))?;
    } else if !app.global.quiet {
        println!("{text} {id}");
    }
    Ok(())
}
