//! Commands about cairn itself, which need no repository: `version`, `completion SHELL` (a
//! completion script on stdout) and `generate --man DIR` (man pages), the last two from the
//! same clap definitions as the parser, so they never disagree with it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use clap_complete::Shell;
use serde_json::json;

use super::App;
use crate::{output, EXIT_OK};

/// Flags of `cairn completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: ShellArg,
}

/// Shells with completion scripts.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ShellArg {
    /// bash: `cairn completion bash > /etc/bash_completion.d/cairn`.
    Bash,
    /// zsh: write `_cairn` into a directory of `$fpath`.
    Zsh,
    /// fish: `cairn completion fish > ~/.config/fish/completions/cairn.fish`.
    Fish,
    /// elvish.
    Elvish,
    /// PowerShell.
    Powershell,
}

impl From<ShellArg> for Shell {
    fn from(s: ShellArg) -> Self {
        match s {
            ShellArg::Bash => Shell::Bash,
            ShellArg::Zsh => Shell::Zsh,
            ShellArg::Fish => Shell::Fish,
            ShellArg::Elvish => Shell::Elvish,
            ShellArg::Powershell => Shell::PowerShell,
        }
    }
}

/// Flags of `cairn generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Write man pages into DIR: cairn.1 and one cairn-COMMAND.1 per command.
    #[arg(long, value_name = "DIR", required = true)]
    pub man: PathBuf,
}

/// Runs `cairn version`.
pub fn version(app: &App) -> Result<u8> {
    let version = env!("CARGO_PKG_VERSION");
    if app.global.json {
        output::json_line(&json!({
            "message_type": "version",
            "version": version,
            "target": format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
        }))?;
    } else {
        println!("cairn {version}");
    }
    Ok(EXIT_OK)
}

/// Runs `cairn completion SHELL` for the command line `cli`.
pub fn completion(mut cli: clap::Command, args: &CompletionArgs) -> Result<u8> {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(Shell::from(args.shell), &mut cli, "cairn", &mut out);
    out.flush()?;
    Ok(EXIT_OK)
}

/// Runs `cairn generate --man DIR` for the command line `cli`.
pub fn generate(app: &App, cli: clap::Command, args: &GenerateArgs) -> Result<u8> {
    std::fs::create_dir_all(&args.man).with_context(|| format!("create {}", args.man.display()))?;
    let mut written = Vec::new();
    write_page(&args.man, &cli, "cairn", &mut written)?;
    for sub in cli.get_subcommands() {
        let name = format!("cairn-{}", sub.get_name());
        let page = sub.clone().name(name.clone());
        write_page(&args.man, &page, &name, &mut written)?;
    }
    if app.global.json {
        let files: Vec<String> = written
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        output::json_line(&json!({"message_type": "generated", "man_pages": files}))?;
    } else if !app.global.quiet {
        println!(
            "wrote {} into {}",
            output::count(written.len() as u64, "man page", "man pages"),
            output::escaped_path(&args.man)
        );
    }
    Ok(EXIT_OK)
}

fn write_page(
    dir: &Path,
    cmd: &clap::Command,
    name: &str,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    let path = dir.join(format!("{name}.1"));
    let mut bytes = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut bytes)?;
    std::fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))?;
    written.push(path);
    Ok(())
}
