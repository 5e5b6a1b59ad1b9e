//! The commands, one module each, and what they share: [`App`] (global flags, opening the
//! repository, Ctrl-C handling) and the snapshot filter flags.

pub mod backup;
pub mod cat;
pub mod check;
pub mod diff;
pub mod find;
pub mod forget;
pub mod init;
pub mod key;
pub mod ls;
pub mod meta;
pub mod restore;
pub mod snapshots;
pub mod stats;
pub mod unlock;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use repo_core::{
    Backend, CancelToken, Indexed, LocalBackend, Node, OpCtx, OpenOptions, Opened, Repository,
    Snapshot, SnapshotFilter,
};

use repo_core::Progress;

use crate::password::{self, Purpose};
use crate::progress::CliProgress;
use crate::{Failure, GlobalArgs, EXIT_INTERRUPTED};

/// What every command gets: the global flags and the cancellation token that Ctrl-C trips.
pub struct App {
    /// Global flags.
    pub global: GlobalArgs,
    /// Cancelled by the first Ctrl-C.
    pub cancel: CancelToken,
}

impl App {
    /// Wraps the global flags.
    pub fn new(global: GlobalArgs) -> Self {
        Self {
            global,
            cancel: CancelToken::new(),
        }
    }

    /// Installs the Ctrl-C handler: the first press cancels the operation (it stops at the
    /// next check, leaving the repository consistent), the second exits at once with 130.
    pub fn handle_interrupts(&self) {
        static PRESSES: AtomicU32 = AtomicU32::new(0);
        let cancel = self.cancel.clone();
        let quiet = self.global.quiet;
        let _ = ctrlc::set_handler(move || {
            if PRESSES.fetch_add(1, Ordering::SeqCst) == 0 {
                cancel.cancel();
                if !quiet {
                    eprintln!("\ninterrupted: stopping (press Ctrl-C again to exit at once)");
                }
            } else {
                std::process::exit(i32::from(EXIT_INTERRUPTED));
            }
        });
    }

    /// The repository path from `-r` or `CAIRN_REPOSITORY`.
    pub fn repo_path(&self) -> Result<PathBuf> {
        if let (None, Some(file)) = (&self.global.repo, &self.global.repository_file) {
            let text = std::fs::read(file)
                .with_context(|| format!("cannot read the repository file {}", file.display()))?;
            let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
            let first = first.strip_suffix(b"\r").unwrap_or(first);
            if first.is_empty() {
                return Err(Failure::Usage(format!(
                    "the repository file {} is empty: its first line is the repository location",
                    file.display()
                ))
                .into());
            }
            let given = PathBuf::from(std::ffi::OsStr::from_bytes(first));
            return local_location(&given).map_err(|m| Failure::Usage(m).into());
        }
        let given = self.global.repo.as_deref().ok_or_else(|| {
            Failure::Usage(
                "no repository given: use -r PATH, --repository-file FILE or set CAIRN_REPOSITORY"
                    .to_string(),
            )
        })?;
        local_location(given).map_err(|m| Failure::Usage(m).into())
    }

    /// The cache directory to use: `Ok(None)` with `--no-cache`, `Err` with the reason when
    /// there is no place for one (the command then runs without a cache, with a warning).
    pub fn cache_dir(&self) -> Result<Option<PathBuf>, &'static str> {
        if self.global.no_cache {
            return Ok(None);
        }
        if let Some(dir) = &self.global.cache_dir {
            return Ok(Some(dir.clone()));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".cache"))
            })
            .ok_or("no cache directory: neither XDG_CACHE_HOME nor HOME is set; going on without a cache (give one with --cache-dir)")?;
        Ok(Some(base.join("cairn")))
    }

    /// An operation context with `progress` and this app's cancellation token.
    pub fn ctx<'a>(&'a self, progress: &'a CliProgress) -> OpCtx<'a> {
        OpCtx::new(progress, &self.cancel)
    }

    /// Opens the repository (asking for the password as needed).
    pub fn open(&self) -> Result<Repository<Opened>> {
        let path = self.repo_path()?;
        let local = LocalBackend::new(&path);
        refuse_non_directory(&path)?;
        if !local.is_repository() {
            return Err(
                Failure::NoRepository(format!("no repository at {}", path.display())).into(),
            );
        }
        let secret = password::read(&self.global, Purpose::Open)?;
        self.handle_interrupts();
        let backend: Arc<dyn Backend> = Arc::new(local);
        let mut opts = OpenOptions::default();
        // Warnings of opening (a cache that cannot be used) go through the usual sink, once.
        let warnings = CliProgress::new(&self.global, false);
        opts.cache_dir = self.cache_dir().unwrap_or_else(|reason| {
            warnings.event(&repo_core::ProgressEvent::Warning {
                path: std::path::Path::new(""),
                message: reason,
            });
            None
        });
        opts.no_lock = self.global.no_lock;
        opts.limit_upload = self.global.limit_upload.map(|k| k.saturating_mul(1024));
        opts.limit_download = self.global.limit_download.map(|k| k.saturating_mul(1024));
        let repo = Repository::open(backend, &secret, &opts).map_err(|e| {
            if e.kind() == repo_core::ErrorKind::NoRepository {
                anyhow::Error::new(Failure::NoRepository(e.to_string()))
            } else {
                anyhow::Error::new(e)
            }
        })?;
        repo.report_cache_problem(&self.ctx(&warnings));
        Ok(repo)
    }

    /// Opens the repository and loads its index.
    pub fn open_indexed(&self, progress: &CliProgress) -> Result<Repository<Indexed>> {
        let repo = self.open()?;
        Ok(repo.into_indexed(&self.ctx(progress))?)
    }
}

/// `--host`, `--path` and `--tag`: which snapshots a command considers.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Only snapshots from this host (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only snapshots that include this backed-up path (repeatable).
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Only snapshots with this tag. As in restic: repeated means any of them (`--tag a --tag b`:
    /// a or b), comma-separated means all of them (`--tag a,b`: a and b).
    #[arg(long = "tag", value_name = "TAG[,TAG...]")]
    pub tags: Vec<String>,
}

impl FilterArgs {
    /// The library filter.
    pub fn to_filter(&self) -> Result<SnapshotFilter> {
        let mut f = SnapshotFilter::default();
        f.hosts.clone_from(&self.hosts);
        f.tags = tag_groups(&self.tags);
        for p in &self.paths {
            let abs =
                std::path::absolute(p).with_context(|| format!("invalid path {}", p.display()))?;
            f.paths
                .push(std::os::unix::ffi::OsStrExt::as_bytes(abs.as_os_str()).to_vec());
        }
        Ok(f)
    }
}

/// `--as-of TIME`, for the commands that pick snapshots (restore, ls, diff, find).
#[derive(Debug, Clone, Default, Args)]
pub struct AsOfArgs {
    /// With `latest` (or, for find, the snapshots searched): the newest snapshot at or before
    /// TIME: RFC 3339, "YYYY-MM-DD[ HH:MM[:SS]]" in local time, or relative (yesterday,
    /// "2 days ago", -3h). A time to the second means the end of that second (likewise a
    /// minute, a day), so a time copied from `snapshots` picks that snapshot.
    #[arg(
        long,
        value_name = "TIME",
        value_parser = crate::time::parse_until,
        allow_hyphen_values = true
    )]
    pub as_of: Option<i64>,
}

impl AsOfArgs {
    /// Adds the time to `filter`; a usage error when one of `specs` names a snapshot by id
    /// (an id picks its snapshot whatever the time).
    pub fn apply(&self, specs: &[&str], filter: &mut SnapshotFilter) -> Result<()> {
        let Some(t) = self.as_of else {
            return Ok(());
        };
        if let Some(id) = specs.iter().find(|s| **s != "latest") {
            return Err(Failure::Usage(format!(
                "--as-of picks among snapshots: use it with `latest`, not the snapshot id {}",
                crate::output::escape(id)
            ))
            .into());
        }
        filter.as_of_ns = Some(t);
        Ok(())
    }
}

/// A repository location that exists but is not a directory (a file, a device) is no
/// repository and cannot become one: say so, rather than "no repository here, run init".
pub fn refuse_non_directory(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => anyhow::bail!(
            "{} is a file, not a repository directory: point -r at the directory that holds the repository (or at a new path for `cairn init`)",
            path.display()
        ),
        _ => Ok(()),
    }
}

/// A path given on the command line, inside `snap`: an absolute path as it is; a relative one
/// against the current directory when the snapshot has it there (`cairn ls latest data/docs`
/// from the directory that was backed up), else against the snapshot's root. Not found: an
/// error that names the nearest path the snapshot has (raw: the error line is escaped where
/// it is printed).
pub fn path_in_snapshot(
    repo: &Repository<Indexed>,
    snap: &Snapshot,
    given: &Path,
) -> Result<(PathBuf, Node)> {
    let root = &snap.meta.tree;
    let mut tried = Vec::new();
    if given.is_relative() {
        if let Ok(cwd) = std::env::current_dir() {
            tried.push(cwd.join(given));
        }
    }
    tried.push(Path::new("/").join(given));
    for path in &tried {
        match repo.node_at(root, path) {
            Ok(node) => return Ok((path.clone(), node)),
            Err(e) if e.kind() == repo_core::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    let nearest = repo.nearest_stored_path(root, &tried[0])?;
    let looked = tried
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" or ");
    anyhow::bail!(
        "{looked}: not in snapshot {}; the nearest stored path is {}",
        snap.id,
        nearest.display()
    )
}

/// Schemes of remote repository locations (restic's, and the ones Cairn will have).
const REMOTE_SCHEMES: &[&str] = &[
    "s3", "sftp", "rest", "b2", "azure", "gs", "swift", "rclone", "http", "https", "ssh",
];

/// The local directory a repository location names: `/path`, `./path`, `local:path`. A location
/// with a remote scheme (`s3:...`, `sftp:...`) is refused rather than taken as a local folder of
/// that name; a local path that starts with such a word is written `./s3:...` or `local:s3:...`.
pub fn local_location(given: &std::path::Path) -> std::result::Result<PathBuf, String> {
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(given.as_os_str());
    if let Some(rest) = bytes.strip_prefix(b"local:") {
        return Ok(PathBuf::from(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(rest),
        ));
    }
    let scheme = bytes
        .iter()
        .position(|&b| b == b':')
        .map(|at| &bytes[..at])
        .filter(|s| !s.is_empty() && !s.contains(&b'/'));
    if let Some(scheme) = scheme {
        let word = String::from_utf8_lossy(scheme).to_ascii_lowercase();
        if REMOTE_SCHEMES.contains(&word.as_str()) || bytes[scheme.len()..].starts_with(b"://") {
            return Err(format!(
                "repository location {:?}: {word}: repositories are not supported by this version \
                 of cairn, only local directories (a local path that starts with \"{word}:\" is \
                 written ./{word}:... or local:{word}:...)",
                crate::output::escape(&given.to_string_lossy())
            ));
        }
    }
    Ok(given.to_path_buf())
}

/// Filter groups from `--tag` flags: one group per flag, its comma-separated tags all required;
/// a snapshot passes when it has every tag of one group.
pub fn tag_groups(raw: &[String]) -> Vec<Vec<String>> {
    raw.iter()
        .map(|v| split_tags(std::slice::from_ref(v)))
        .filter(|g| !g.is_empty())
        .collect()
}

/// Tags from repeated and comma-separated flags, trimmed, without empties.
pub fn split_tags(raw: &[String]) -> Vec<String> {
    raw.iter()
        .flat_map(|t| t.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// The snapshots matching `filter`, or those named by `specs` (ids, prefixes, `latest`).
pub fn select_snapshots<S: Send + Sync>(
    repo: &Repository<S>,
    ctx: &OpCtx<'_>,
    specs: &[String],
    filter: &SnapshotFilter,
) -> Result<Vec<Snapshot>> {
    let all = repo.snapshots(ctx)?;
    if specs.is_empty() {
        return Ok(all.into_iter().filter(|s| filter.matches(s)).collect());
    }
    let mut out: Vec<Snapshot> = Vec::new();
    for spec in specs {
        let snap = repo_core::select_snapshot(&all, spec, filter)?;
        if !out.iter().any(|s| s.id == snap.id) {
            out.push(snap.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_locations_are_refused_and_local_ones_kept() {
        for remote in [
            "s3:host/bucket",
            "s3:https://host:9000/bucket/prefix",
            "sftp:user@host:/srv/repo",
            "rest:http://host:8000/",
            "b2:bucket:path",
            "azure:container/x",
            "gs:bucket",
            "swift:c",
            "rclone:remote:path",
            "SFTP:host:/x",
            "ftp://host/repo",
        ] {
            let err = local_location(std::path::Path::new(remote)).unwrap_err();
            assert!(err.contains("not supported"), "{remote}: {err}");
            assert!(err.contains("local:"), "{remote}: {err}");
        }
        for (given, local) in [
            ("/srv/repo", "/srv/repo"),
            ("./s3:x", "./s3:x"),
            ("local:s3:x", "s3:x"),
            ("local:/a", "/a"),
            ("repo", "repo"),
            ("dir/with:colon", "dir/with:colon"),
            ("backup:2024", "backup:2024"),
        ] {
            assert_eq!(
                local_location(std::path::Path::new(given)).unwrap(),
                PathBuf::from(local),
                "{given}"
            );
        }
    }

    #[test]
    fn tags_split_on_commas() {
        let raw = vec!["a,b".to_string(), " c ".to_string(), ",".to_string()];
        assert_eq!(split_tags(&raw), vec!["a", "b", "c"]);
        assert_eq!(
            tag_groups(&raw),
            vec![
                vec!["a".to_string(), "b".to_string()],
                vec!["c".to_string()]
            ]
        );
    }
}
