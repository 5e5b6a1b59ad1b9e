//! The commands, one module each, and what they share: [`App`] (global flags, opening the
//! repository, Ctrl-C handling) and the snapshot filter flags.

pub mod backup;
pub mod cat;
pub mod check;
pub mod diff;
pub mod find;
pub mod init;
pub mod ls;
pub mod restore;
pub mod snapshots;
pub mod stats;
pub mod unlock;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use repo_core::{
    Backend, CancelToken, Indexed, LocalBackend, OpCtx, OpenOptions, Opened, Repository, Snapshot,
    SnapshotFilter,
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
        self.global.repo.clone().ok_or_else(|| {
            Failure::Usage("no repository given: use -r PATH or set CAIRN_REPOSITORY".to_string())
                .into()
        })
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
    /// Only snapshots with this tag (repeatable, or comma-separated).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
}

impl FilterArgs {
    /// The library filter.
    pub fn to_filter(&self) -> Result<SnapshotFilter> {
        let mut f = SnapshotFilter::default();
        f.hosts.clone_from(&self.hosts);
        f.tags = split_tags(&self.tags);
        for p in &self.paths {
            let abs =
                std::path::absolute(p).with_context(|| format!("invalid path {}", p.display()))?;
            f.paths
                .push(std::os::unix::ffi::OsStrExt::as_bytes(abs.as_os_str()).to_vec());
        }
        Ok(f)
    }
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
    fn tags_split_on_commas() {
        let raw = vec!["a,b".to_string(), " c ".to_string(), ",".to_string()];
        assert_eq!(split_tags(&raw), vec!["a", "b", "c"]);
    }
}
