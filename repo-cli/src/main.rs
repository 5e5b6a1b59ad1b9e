//! `cairn`: the command-line interface to Cairn backup repositories.
//!
//! A thin layer over `repo_core`: it parses flags, maps them onto the library's option structs,
//! shows progress and prints results as text or JSON (`--json`). Anything it does, the library
//! can do; this crate holds no repository logic.
//!
//! Code map: this file has the top-level clap structs, dispatch and the mapping from errors to
//! exit codes ([`exit_code`]); `commands/` has one file per command; `password.rs` finds the
//! password; `progress.rs` turns [`repo_core::ProgressEvent`]s into bars or JSON lines;
//! `output.rs` and `time.rs` format values for people and scripts.
//!
//! # Exit codes
//!
//! | code | meaning |
//! | ---- | ------- |
//! | 0    | success |
//! | 1    | fatal error, or `check` found problems, or `restore --verify` found differences |
//! | 2    | usage error (bad flags or arguments) |
//! | 3    | `backup` saved a snapshot but skipped unreadable files |
//! | 10   | no repository at the given path |
//! | 11   | the repository is locked by another process |
//! | 12   | wrong password (no key file opens with it) |
//! | 130  | interrupted (Ctrl-C) |
//!
//! # Password sources
//!
//! `--password-file FILE` (or `CAIRN_PASSWORD_FILE`; its first line), `--password-command CMD`
//! (or `CAIRN_PASSWORD_COMMAND`; run with `sh -c`, the first line of its output), the
//! `CAIRN_PASSWORD` variable, and otherwise a prompt when standard input is a terminal (`init`
//! asks twice). The first one present is used; giving both a file and a command is an error.
//!
//! # Hidden flags
//!
//! `--insecure-kdf` makes `init` use minimal Argon2id costs ([`repo_core::KdfParams::insecure_fast`])
//! so that tests run fast. It is hidden from `--help` on purpose: a repository made with it is
//! easy to brute-force. Never use it for real data.

mod commands;
mod output;
mod password;
mod progress;
mod time;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};

/// Success.
pub const EXIT_OK: u8 = 0;
/// Fatal error, or problems found by `check` or `restore --verify`.
pub const EXIT_FAILURE: u8 = 1;
/// Usage error (what clap exits with too).
pub const EXIT_USAGE: u8 = 2;
/// A backup saved its snapshot but skipped unreadable entries.
pub const EXIT_PARTIAL: u8 = 3;
/// No repository at the given location.
pub const EXIT_NO_REPOSITORY: u8 = 10;
/// The repository is locked.
pub const EXIT_LOCKED: u8 = 11;
/// Wrong password.
pub const EXIT_WRONG_PASSWORD: u8 = 12;
/// Interrupted by Ctrl-C.
pub const EXIT_INTERRUPTED: u8 = 130;

const AFTER_HELP: &str = "\
Exit codes:
  0    success
  1    fatal error; `check` found problems; `restore --verify` found differences
  2    usage error
  3    backup saved a snapshot but skipped unreadable files
  10   no repository at the given path
  11   repository locked by another process
  12   wrong password
  130  interrupted (Ctrl-C; press twice to stop at once)

Password, first found: --password-file FILE (CAIRN_PASSWORD_FILE) or --password-command CMD
(CAIRN_PASSWORD_COMMAND), the CAIRN_PASSWORD variable, else a prompt when stdin is a terminal.

Times (--time, --as-of): RFC 3339 (2024-05-01T12:00:00Z, 2024-05-01T14:00:00+02:00) or
\"YYYY-MM-DD[ HH:MM[:SS]]\", which is read as local time.

With --json, reporting commands print JSON on stdout; long operations print
{\"message_type\":\"status\"} lines while running and a {\"message_type\":\"summary\"} object at the end;
warnings go to stderr as {\"message_type\":\"error\"} lines. Errors are always one
`error: ...` line on stderr.

Text output escapes control characters, invalid UTF-8 and backslashes in names, hosts, tags and
errors (a\\nb, \\x1b[31m, \\xff, \\\\); --json gives them exactly.";

/// cairn: encrypted, deduplicating backups.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags every command accepts.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Repository location (a local directory).
    #[arg(
        short = 'r',
        long = "repo",
        env = "CAIRN_REPOSITORY",
        global = true,
        value_name = "PATH"
    )]
    pub repo: Option<PathBuf>,
    /// Read the repository location from the first line of FILE.
    #[arg(
        long,
        env = "CAIRN_REPOSITORY_FILE",
        global = true,
        value_name = "FILE",
        conflicts_with = "repo"
    )]
    pub repository_file: Option<PathBuf>,
    /// Read the password from the first line of FILE.
    #[arg(
        long,
        env = "CAIRN_PASSWORD_FILE",
        global = true,
        value_name = "FILE",
        hide_env_values = true
    )]
    pub password_file: Option<PathBuf>,
    /// Open the repository with the master key in FILE (from `cairn key export`) instead of
    /// a password.
    #[arg(
        long,
        env = "CAIRN_KEY_FILE",
        global = true,
        value_name = "FILE",
        conflicts_with_all = ["password_file", "password_command"]
    )]
    pub key_file: Option<PathBuf>,
    /// Run CMD with `sh -c` and use the first line of its output as the password.
    #[arg(
        long,
        env = "CAIRN_PASSWORD_COMMAND",
        global = true,
        value_name = "CMD",
        hide_env_values = true
    )]
    pub password_command: Option<String>,
    /// Cache directory [default: $XDG_CACHE_HOME/cairn or ~/.cache/cairn].
    #[arg(long, env = "CAIRN_CACHE_DIR", global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Do not use a local cache.
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Take no lock: lets restore, ls, snapshots, check, cat and the other reading commands
    /// work on a read-only repository (backup always locks).
    #[arg(long, global = true)]
    pub no_lock: bool,
    /// Print JSON instead of text (progress lines, summaries, listings).
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors and warnings (and, with --json, the final result).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// List what backup stores: each new or changed file (with -vv, unchanged ones too), also
    /// with --dry-run; with --json, one `verbose_status` line each. `restore --dry-run -v`
    /// lists what it would write.
    #[arg(
        short,
        long,
        global = true,
        action = clap::ArgAction::Count,
        conflicts_with = "quiet"
    )]
    pub verbose: u8,
    /// Upload at most KIB KiB/s to the repository (all transfers together).
    #[arg(
        long,
        global = true,
        value_name = "KIB",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub limit_upload: Option<u64>,
    /// Download at most KIB KiB/s from the repository.
    #[arg(
        long,
        global = true,
        value_name = "KIB",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub limit_download: Option<u64>,
    /// How long to wait for a conflicting lock, e.g. 30s or 5m (at most 36500 days).
    #[arg(
        long,
        global = true,
        value_name = "DURATION",
        default_value = "0s",
        value_parser = parse_lock_wait
    )]
    pub lock_wait: Duration,
    /// Hidden, tests only: `init` uses minimal key-derivation costs. Never use for real data.
    #[arg(long, global = true, hide = true)]
    pub insecure_kdf: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new repository.
    Init(commands::init::InitArgs),
    /// Back up files and directories into a new snapshot.
    Backup(commands::backup::BackupArgs),
    /// Restore a snapshot (or a path inside it) into a directory.
    Restore(commands::restore::RestoreArgs),
    /// Verify the repository's structure, and with --read-data all stored data.
    Check(commands::check::CheckArgs),
    /// List snapshots.
    Snapshots(commands::snapshots::SnapshotsArgs),
    /// List the files in a snapshot.
    Ls(commands::ls::LsArgs),
    /// Print a decrypted repository object.
    Cat(commands::cat::CatArgs),
    /// Show sizes and deduplication and compression ratios.
    Stats(commands::stats::StatsArgs),
    /// Show the differences between two snapshots.
    Diff(commands::diff::DiffArgs),
    /// Find files and directories by name or path pattern across snapshots.
    Find(commands::find::FindArgs),
    /// Remove stale locks (or all locks with --remove-all).
    Unlock(commands::unlock::UnlockArgs),
    /// Remove snapshots by id or by a retention policy (--keep-daily 7 ...).
    Forget(commands::forget::ForgetArgs),
    /// List, add, remove keys and change the password.
    Key(commands::key::KeyArgs),
    /// Print the version of cairn.
    Version,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(commands::meta::CompletionArgs),
    /// Write man pages (`--man DIR`).
    Generate(commands::meta::GenerateArgs),
}

/// Parses `--compression`: a zstd level (-7..=22, 0 stores data uncompressed) or one of
/// restic's names: `off` (0), `fastest` (1), `auto` (3, the default), `better` (9), `max` (19).
pub fn parse_compression(s: &str) -> Result<i32, String> {
    let level = match s.to_ascii_lowercase().as_str() {
        "off" => 0,
        "fastest" => 1,
        "auto" => 3,
        "better" => 9,
        "max" => 19,
        other => other.parse::<i32>().map_err(|_| {
            format!(
                "{s:?} is not a compression level: give -7..=22 or off, fastest, auto, better, max"
            )
        })?,
    };
    if !(-7..=22).contains(&level) {
        return Err(format!(
            "compression level {level} is outside -7..=22 (or give off, fastest, auto, better, max)"
        ));
    }
    Ok(level)
}

/// Parses `--lock-wait`: a humantime duration of at most [`repo_core::MAX_LOCK_WAIT`]
/// (longer ones overflow the clock; clap turns the error into a usage error, exit 2).
fn parse_lock_wait(s: &str) -> Result<Duration, String> {
    let wait = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if wait > repo_core::MAX_LOCK_WAIT {
        return Err(format!(
            "longer than the longest lock wait, {} days",
            repo_core::MAX_LOCK_WAIT.as_secs() / 86_400
        ));
    }
    Ok(wait)
}

/// An outcome that is not a `repo_core::Error` but has its own exit code.
#[derive(Debug)]
pub enum Failure {
    /// There is no repository at the location (exit 10).
    NoRepository(String),
    /// The command line cannot work (exit 2).
    Usage(String),
    /// The command ran and found problems (exit 1): `check`, `restore --verify`.
    Problems(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoRepository(m) | Self::Usage(m) | Self::Problems(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Failure {}

impl Command {
    /// The command's name, as typed.
    fn name(&self) -> &'static str {
        match self {
            Self::Init(_) => "init",
            Self::Backup(_) => "backup",
            Self::Restore(_) => "restore",
            Self::Check(_) => "check",
            Self::Snapshots(_) => "snapshots",
            Self::Ls(_) => "ls",
            Self::Cat(_) => "cat",
            Self::Stats(_) => "stats",
            Self::Diff(_) => "diff",
            Self::Find(_) => "find",
            Self::Unlock(_) => "unlock",
            Self::Forget(_) => "forget",
            Self::Key(_) => "key",
            Self::Version => "version",
            Self::Completion(_) => "completion",
            Self::Generate(_) => "generate",
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.name();
    let app = commands::App::new(cli.global);
    let result = match cli.command {
        Command::Init(a) => commands::init::run(&app, &a),
        Command::Backup(a) => commands::backup::run(&app, &a),
        Command::Restore(a) => commands::restore::run(&app, &a),
        Command::Check(a) => commands::check::run(&app, &a),
        Command::Snapshots(a) => commands::snapshots::run(&app, &a),
        Command::Ls(a) => commands::ls::run(&app, &a),
        Command::Cat(a) => commands::cat::run(&app, &a),
        Command::Stats(a) => commands::stats::run(&app, &a),
        Command::Diff(a) => commands::diff::run(&app, &a),
        Command::Find(a) => commands::find::run(&app, &a),
        Command::Unlock(a) => commands::unlock::run(&app, &a),
        Command::Forget(a) => commands::forget::run(&app, &a),
        Command::Key(a) => commands::key::run(&app, &a),
        Command::Version => commands::meta::version(&app),
        Command::Completion(a) => commands::meta::completion(Cli::command(), &a),
        Command::Generate(a) => commands::meta::generate(&app, Cli::command(), &a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) if is_broken_pipe(&err) => ExitCode::from(EXIT_OK),
        Err(err) => {
            let code = exit_code(&err);
            let mut line = format!("error: {}", one_line(&err));
            if let Some(hint) = hint(&err, command) {
                line.push_str("; ");
                line.push_str(&hint);
            }
            eprintln!("{line}");
            ExitCode::from(code)
        }
    }
}

/// The library error inside `err`, if any.
fn core_error(err: &anyhow::Error) -> Option<&repo_core::Error> {
    err.chain()
        .find_map(|e| e.downcast_ref::<repo_core::Error>())
}

/// Maps an error to the process exit code. The one place where exit codes are decided.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(f) = err.downcast_ref::<Failure>() {
        return match f {
            Failure::NoRepository(_) => EXIT_NO_REPOSITORY,
            Failure::Usage(_) => EXIT_USAGE,
            Failure::Problems(_) => EXIT_FAILURE,
        };
    }
    match core_error(err).map(repo_core::Error::kind) {
        Some(repo_core::ErrorKind::WrongSecret) => EXIT_WRONG_PASSWORD,
        Some(repo_core::ErrorKind::Locked) => EXIT_LOCKED,
        Some(repo_core::ErrorKind::Cancelled) => EXIT_INTERRUPTED,
        _ => EXIT_FAILURE,
    }
}

/// A short piece of advice appended to the error line of `cairn COMMAND`, where one helps.
fn hint(err: &anyhow::Error, command: &str) -> Option<String> {
    if let Some(Failure::NoRepository(_)) = err.downcast_ref::<Failure>() {
        return Some("create one with `cairn init -r PATH`, or check -r/CAIRN_REPOSITORY".into());
    }
    let core = core_error(err)?;
    if core.is_storage_full() {
        return Some(space_hint(core.kind(), command));
    }
    match core.kind() {
        repo_core::ErrorKind::WrongSecret => {
            Some("check CAIRN_PASSWORD, --password-file or --password-command".into())
        }
        repo_core::ErrorKind::Corrupt => Some("run `cairn check` to see what is damaged".into()),
        repo_core::ErrorKind::NothingToBackUp => Some(
            "check the paths and --exclude rules, or pass --allow-empty to save an empty snapshot"
                .into(),
        ),
        repo_core::ErrorKind::Locked => core.lock_holder().map(lock_hint),
        repo_core::ErrorKind::ReadOnly if command == "backup" => {
            Some("a backup needs write access to the repository".into())
        }
        repo_core::ErrorKind::ReadOnly => Some(format!(
            "to read it without locking, run `cairn --no-lock {command} ...`"
        )),
        _ => None,
    }
}

/// What to do about the lock `holder` that a command ran into. Plain `cairn unlock` removes
/// stale locks only: an unreadable lock, one dated far in the future, or a fresh one of
/// another host is not stale, and only `--remove-all` clears it.
fn lock_hint(holder: &repo_core::LockHolder) -> String {
    match &holder.lock {
        None => "nothing clears a lock that cannot be read: if no cairn process is using the repository, run `cairn unlock --remove-all`",
        Some(_) if holder.is_far_future() => {
            "plain `cairn unlock` will not remove it: if no cairn process is using the repository, run `cairn unlock --remove-all`"
        }
        Some(_) if !holder.on_this_host() => {
            "this host cannot tell whether that process still runs: if it is gone, run `cairn unlock --remove-all`"
        }
        Some(_) => "wait for it to finish, or raise --lock-wait",
    }
    .to_string()
}

/// What to do about a full file system: which one, what was left, and that a rerun completes.
fn space_hint(kind: repo_core::ErrorKind, command: &str) -> String {
    let (place, left) = match (kind, command) {
        (repo_core::ErrorKind::Backend, "backup") => {
            ("the repository's file system", "no snapshot was saved; ")
        }
        (repo_core::ErrorKind::Backend, _) => ("the repository's file system", ""),
        (_, "restore") => (
            "the restore target's file system",
            "files that were not completely written were removed; ",
        ),
        _ => ("that file system", ""),
    };
    format!("{left}free space on {place} (or raise its quota) and run `cairn {command}` again")
}

/// The error as one line: context first, down to the first library error (whose message
/// already includes its own cause). Messages quote names and paths that the repository or the
/// file system supplied, so the line is escaped for the terminal ([`output::escaped`]): a
/// newline or an escape sequence in a name shows as `\n` or `\x1b`, and the error stays one
/// line that cannot drive the terminal.
fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        parts.push(cause.to_string());
        if cause.downcast_ref::<repo_core::Error>().is_some() {
            break;
        }
    }
    output::escape(&parts.join(": "))
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    let pipe = Some(std::io::ErrorKind::BrokenPipe);
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>().map(std::io::Error::kind) == pipe
            // JSON written straight to stdout fails as a serde_json error around the EPIPE.
            || e.downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == pipe
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn lock_waits_past_the_limit_are_refused() {
        assert_eq!(parse_lock_wait("5m").unwrap(), Duration::from_secs(300));
        let max = repo_core::MAX_LOCK_WAIT.as_secs();
        assert!(parse_lock_wait(&format!("{max}s")).is_ok());
        for bad in [
            format!("{}s", max + 1),
            "18446744073709551615s".to_string(),
            "x".to_string(),
        ] {
            assert!(parse_lock_wait(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_kinds_map_to_documented_exit_codes() {
        let e = |k| anyhow::Error::new(repo_core::Error::new(k, "x"));
        assert_eq!(exit_code(&e(repo_core::ErrorKind::WrongSecret)), 12);
        assert_eq!(exit_code(&e(repo_core::ErrorKind::Locked)), 11);
        assert_eq!(exit_code(&e(repo_core::ErrorKind::Cancelled)), 130);
        assert_eq!(exit_code(&e(repo_core::ErrorKind::Corrupt)), 1);
        assert_eq!(exit_code(&e(repo_core::ErrorKind::NotFound)), 1);
        let nr = anyhow::Error::new(Failure::NoRepository("no repository at /x".into()));
        assert_eq!(exit_code(&nr), 10);
        let full = |kind| {
            let io = std::io::Error::from_raw_os_error(nix::libc::ENOSPC);
            let e = if kind == repo_core::ErrorKind::Backend {
                repo_core::Error::backend_io("write /r/data/ab/abcd", io)
            } else {
                repo_core::Error::io("write /t/file", io)
            };
            anyhow::Error::new(e)
        };
        let backup = full(repo_core::ErrorKind::Backend);
        assert_eq!(exit_code(&backup), EXIT_FAILURE);
        let h = hint(&backup, "backup").unwrap();
        assert!(h.contains("repository's file system"), "{h}");
        assert!(h.ends_with("run `cairn backup` again"), "{h}");
        let restore = full(repo_core::ErrorKind::Io);
        let h = hint(&restore, "restore").unwrap();
        assert!(h.contains("restore target's file system"), "{h}");
        assert!(h.contains("not completely written were removed"), "{h}");
        assert_eq!(hint(&e(repo_core::ErrorKind::Io), "restore"), None);
        let wrapped = e(repo_core::ErrorKind::Locked).context("open repository");
        assert_eq!(exit_code(&wrapped), 11);
        assert_eq!(one_line(&wrapped), "open repository: x");
        let hostile = anyhow::Error::new(repo_core::Error::new(
            repo_core::ErrorKind::NotFound,
            "/s/a\nb\x1b[31m\\: not found",
        ))
        .context("open \u{202e}x\r");
        assert_eq!(
            one_line(&hostile),
            r"open \u{202e}x\r: /s/a\nb\x1b[31m\\: not found"
        );
    }
}
