//! `cairn backup PATH...`: save files and directories as a new snapshot.
//!
//! Text output: a summary on stdout, each skipped entry as a `warning:` line on stderr, exit
//! code 3 when entries were skipped. JSON output: status lines while running, then one
//! `{"message_type":"summary",...}` object.

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use repo_core::{BackupOptions, BackupSummary, ParentSelection, SnapshotFilter};
use serde::Serialize;

use super::{split_tags, App};
use crate::progress::CliProgress;
use crate::{output, time, Failure, EXIT_OK, EXIT_PARTIAL};

/// Flags of `cairn backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Files and directories to back up. Symlinks in the directories above each path are
    /// resolved and the snapshot records the resolved path (with /lib -> usr/lib,
    /// /lib/os-release is stored as /usr/lib/os-release); a path naming a symlink stores the
    /// symlink, unless it ends with a slash (/var/run/ backs up the directory it points to).
    #[arg(
        value_name = "PATH",
        required_unless_present_any = ["files_from", "files_from_verbatim", "files_from_raw"]
    )]
    pub paths: Vec<PathBuf>,
    /// Also back up the paths listed in FILE, one per line; blank lines and lines starting
    /// with `#` are ignored, and leading and trailing white space is dropped (`-` reads
    /// standard input). Repeatable. Lines are paths, not patterns: nothing is expanded.
    #[arg(long, value_name = "FILE")]
    pub files_from: Vec<PathBuf>,
    /// Like --files-from, but each non-empty line is a path exactly as written.
    #[arg(long, value_name = "FILE")]
    pub files_from_verbatim: Vec<PathBuf>,
    /// Like --files-from, but paths are separated by NUL bytes (`find -print0`), any bytes.
    #[arg(long, value_name = "FILE")]
    pub files_from_raw: Vec<PathBuf>,
    /// Exclude entries matching a pattern (`*` within a name, `**` across directories;
    /// a leading `/` anchors it at the root, otherwise it matches at any depth; a trailing
    /// `/` matches directories only). Repeatable.
    #[arg(short = 'e', long = "exclude", value_name = "PATTERN")]
    pub excludes: Vec<String>,
    /// Like --exclude, ignoring case.
    #[arg(long = "iexclude", value_name = "PATTERN")]
    pub iexcludes: Vec<String>,
    /// Read exclude patterns from FILE, one per line; blank lines and lines starting with
    /// `#` are ignored. Repeatable.
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_files: Vec<PathBuf>,
    /// Exclude directories that contain a file named NAME. Repeatable.
    #[arg(long = "exclude-if-present", value_name = "NAME")]
    pub exclude_if_present: Vec<String>,
    /// Exclude directories holding a valid CACHEDIR.TAG.
    #[arg(long)]
    pub exclude_caches: bool,
    /// Exclude regular files larger than SIZE (bytes, or with a suffix k, m, g, t: powers of
    /// 1024, e.g. 500m).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub exclude_larger_than: Option<u64>,
    /// Stay on the file system of each backup path.
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Tag the snapshot (repeatable, or comma-separated).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Host name to record [default: this machine's].
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Free-form description of the snapshot.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub description: String,
    /// Compare against this snapshot instead of the latest one of the same host and paths.
    #[arg(long, value_name = "ID")]
    pub parent: Option<String>,
    /// Read every file, even those the parent snapshot says are unchanged.
    #[arg(long)]
    pub force: bool,
    /// Do everything except writing to the repository (with -v, list what would be stored).
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Save a snapshot even when every backup path is excluded or missing (it is empty).
    #[arg(long)]
    pub allow_empty: bool,
    /// Compression for this backup: a zstd level -7..=22, or off, fastest, auto, better, max
    /// [default: the repository's].
    #[arg(
        long,
        value_name = "LEVEL",
        allow_negative_numbers = true,
        value_parser = crate::parse_compression
    )]
    pub compression: Option<i32>,
    /// Target pack size for this backup in MiB, 1..=512 [default: the repository's].
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=512))]
    pub pack_size: Option<u64>,
    /// Files read at once, 1..=256 [default: one per core, at least 2]; 1 or 2 suit a
    /// spinning disk.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub read_concurrency: Option<u16>,
    /// Record this time instead of now (RFC 3339, "YYYY-MM-DD HH:MM:SS" local, or relative:
    /// "2 days ago", -3h), for imports.
    #[arg(long, value_name = "TIME", value_parser = time::parse, allow_hyphen_values = true)]
    pub time: Option<i64>,
}

/// Parses a size: bytes, or a number with a suffix k, m, g or t (powers of 1024; a trailing
/// `b`/`ib` is allowed: 10k, 10K, 10KiB).
fn parse_size(s: &str) -> Result<u64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let body = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (digits, shift) = match body.char_indices().last() {
        Some((i, 'k')) => (&body[..i], 10),
        Some((i, 'm')) => (&body[..i], 20),
        Some((i, 'g')) => (&body[..i], 30),
        Some((i, 't')) => (&body[..i], 40),
        _ => (body, 0),
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .ok_or_else(|| format!("{s:?} is not a size: give bytes or a number with k, m, g or t"))
}

/// The backup paths: those given, then those the `--files-from*` files list, in order.
fn backup_paths(args: &BackupArgs) -> Result<Vec<PathBuf>> {
    use std::os::unix::ffi::OsStrExt;
    let mut paths = args.paths.clone();
    let read = |file: &Path| -> Result<Vec<u8>> {
        if file == Path::new("-") {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut buf)
                .context("cannot read the list of paths from standard input")?;
            Ok(buf)
        } else {
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
        }
    };
    let as_path = |b: &[u8]| PathBuf::from(std::ffi::OsStr::from_bytes(b));
    for file in &args.files_from {
        let bytes = read(file)?;
        for line in bytes.split(|&b| b == b'\n') {
            let line = line.trim_ascii();
            if !line.is_empty() && !line.starts_with(b"#") {
                paths.push(as_path(line));
            }
        }
    }
    for file in &args.files_from_verbatim {
        let bytes = read(file)?;
        let bytes = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        for line in bytes.split(|&b| b == b'\n') {
            if !line.is_empty() {
                paths.push(as_path(line));
            }
        }
    }
    for file in &args.files_from_raw {
        let bytes = read(file)?;
        for name in bytes.split(|&b| b == 0) {
            if !name.is_empty() {
                paths.push(as_path(name));
            }
        }
    }
    if paths.is_empty() {
        return Err(
            Failure::Usage("no paths to back up: the --files-from lists are empty".into()).into(),
        );
    }
    Ok(paths)
}

/// Reads exclude patterns from a file: one per line, `#` comments and blank lines ignored.
fn read_exclude_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read exclude file {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// Runs `cairn backup`.
pub fn run(app: &App, args: &BackupArgs) -> Result<u8> {
    if app.global.no_lock && !args.dry_run {
        return Err(Failure::Usage(
            "backup writes to the repository and always takes a lock: drop --no-lock".into(),
        )
        .into());
    }
    let paths = backup_paths(args)?;
    let mut opts = BackupOptions::default();
    opts.excludes.clone_from(&args.excludes);
    for file in &args.exclude_files {
        opts.excludes.extend(read_exclude_file(file)?);
    }
    opts.iexcludes.clone_from(&args.iexcludes);
    opts.exclude_if_present.clone_from(&args.exclude_if_present);
    opts.exclude_caches = args.exclude_caches;
    opts.exclude_larger_than = args.exclude_larger_than;
    opts.one_file_system = args.one_file_system;
    opts.tags = split_tags(&args.tags);
    opts.hostname.clone_from(&args.host);
    opts.description.clone_from(&args.description);
    opts.force = args.force;
    opts.dry_run = args.dry_run;
    opts.allow_empty = args.allow_empty;
    opts.compression_level = args.compression;
    opts.pack_size = args.pack_size.map(|mib| mib << 20);
    opts.read_concurrency = args.read_concurrency.map(usize::from);
    opts.time_ns = args.time;
    opts.lock_wait = app.global.lock_wait;

    let progress = CliProgress::new(&app.global, true);
    opts.scan = progress.wants_totals();
    let repo = app.open_indexed(&progress)?;
    let ctx = app.ctx(&progress);
    if let Some(spec) = &args.parent {
        let parent = repo
            .find_snapshot(&ctx, spec, &SnapshotFilter::default())
            .context("--parent")?;
        opts.parent = ParentSelection::Id(parent.id);
    }
    let summary = repo.backup(&ctx, &paths, &opts)?;
    progress.finish();
    if app.global.json {
        print_json(&summary, args.dry_run)?;
    } else if !app.global.quiet {
        print_text(&summary)?;
    }
    Ok(if summary.skipped.is_empty() {
        EXIT_OK
    } else {
        EXIT_PARTIAL
    })
}

fn duration_seconds(summary: &BackupSummary) -> f64 {
    (summary.stats.finished_ns - summary.stats.started_ns).max(0) as f64 / 1e9
}

/// The `{"message_type":"summary"}` object of `backup --json`.
#[derive(Serialize)]
struct SummaryJson<'a> {
    message_type: &'static str,
    dry_run: bool,
    snapshot_id: Option<String>,
    parent_id: Option<String>,
    files_new: u64,
    files_changed: u64,
    files_unmodified: u64,
    dirs: u64,
    others: u64,
    bytes_read: u64,
    bytes_total: u64,
    bytes_added: u64,
    blobs_added: u64,
    errors_skipped: u64,
    duration_seconds: f64,
    skipped: Vec<SkippedJson<'a>>,
}

#[derive(Serialize)]
struct SkippedJson<'a> {
    path: Cow<'a, str>,
    error: &'a str,
}

fn print_json(summary: &BackupSummary, dry_run: bool) -> Result<()> {
    let s = &summary.stats;
    output::json_line(&SummaryJson {
        message_type: "summary",
        dry_run,
        snapshot_id: summary.snapshot.map(|id| id.to_hex()),
        parent_id: summary.parent.map(|id| id.to_hex()),
        files_new: s.files_new,
        files_changed: s.files_changed,
        files_unmodified: s.files_unmodified,
        dirs: s.dirs,
        others: s.others,
        bytes_read: s.bytes_read,
        bytes_total: s.bytes_total,
        bytes_added: s.bytes_added,
        blobs_added: s.blobs_added,
        errors_skipped: s.errors_skipped,
        duration_seconds: duration_seconds(summary),
        skipped: summary
            .skipped
            .iter()
            .map(|(path, error)| SkippedJson {
                path: path.to_string_lossy(),
                error,
            })
            .collect(),
    })
}

fn print_text(summary: &BackupSummary) -> Result<()> {
    let s = &summary.stats;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Files:     {} new, {} changed, {} unmodified",
        s.files_new, s.files_changed, s.files_unmodified
    )?;
    writeln!(out, "Dirs:      {}", s.dirs)?;
    if s.others > 0 {
        writeln!(out, "Others:    {}", s.others)?;
    }
    writeln!(
        out,
        "Read:      {} of {}",
        output::size(s.bytes_read),
        output::size(s.bytes_total)
    )?;
    writeln!(
        out,
        "Added:     {} stored in {} new blobs",
        output::size(s.bytes_added),
        s.blobs_added
    )?;
    writeln!(
        out,
        "Duration:  {}",
        output::seconds(duration_seconds(summary))
    )?;
    if !summary.skipped.is_empty() {
        writeln!(
            out,
            "Skipped:   {} unreadable entries (see the warnings)",
            summary.skipped.len()
        )?;
    }
    match (summary.snapshot, summary.parent) {
        (Some(id), Some(parent)) => writeln!(out, "snapshot {id} saved (parent {parent})")?,
        (Some(id), None) => writeln!(out, "snapshot {id} saved")?,
        (None, _) => writeln!(out, "dry run: no snapshot saved")?,
    }
    Ok(())
}
