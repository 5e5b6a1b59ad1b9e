//! The optional pre-scan: counts files and bytes under the backup paths so progress can show
//! totals and an ETA.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::dirfd::{self, DirStack, OPEN_WINDOW};
use super::Excluder;
use crate::format::tree::NodeKind;
use crate::progress::{OpCtx, Phase, ProgressEvent};

/// Counts files and bytes under the sources for the progress ETA.
pub(super) fn scan(
    ctx: &OpCtx<'_>,
    stop: &dyn Fn() -> bool,
    excluder: &Excluder,
    roots: &[PathBuf],
) {
    ctx.progress.event(&ProgressEvent::PhaseStarted {
        phase: Phase::Scan,
        total_items: None,
        total_bytes: None,
    });
    let mut counter = ScanCounter {
        ctx,
        stop,
        items: 0,
        bytes: 0,
        last: std::time::Instant::now(),
    };
    if let Ok(mut dirs) = DirStack::new(OPEN_WINDOW) {
        for root in roots {
            if stop() {
                return;
            }
            let names: Vec<&[u8]> = root
                .components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n.as_bytes()),
                    _ => None,
                })
                .collect();
            let Some((last, above)) = names.split_last() else {
                // `/` itself: each of its entries.
                let entries = dirs.top().and_then(|d| dirfd::list(d).ok());
                for name in entries.unwrap_or_default() {
                    let path = Path::new("/").join(OsStr::from_bytes(&name));
                    counter.tree(excluder, &mut dirs, path, &name);
                }
                continue;
            };
            let depth = dirs.depth();
            let reached = above.iter().all(|name| {
                let meta = dirs.top().and_then(|d| dirfd::lstat_at(d, name).ok());
                meta.is_some_and(|m| m.kind == NodeKind::Dir && dirs.enter(name, &m).is_ok())
            });
            if reached {
                counter.tree(excluder, &mut dirs, root.clone(), last);
            }
            while dirs.depth() > depth {
                dirs.leave();
            }
        }
    }
    counter.report();
    ctx.progress
        .event(&ProgressEvent::PhaseFinished { phase: Phase::Scan });
}

/// Files and bytes counted by [`scan`] so far.
struct ScanCounter<'s, 'r> {
    ctx: &'s OpCtx<'r>,
    stop: &'s dyn Fn() -> bool,
    items: u64,
    bytes: u64,
    last: std::time::Instant,
}

impl ScanCounter<'_, '_> {
    fn report(&mut self) {
        self.ctx.progress.event(&ProgressEvent::Totals {
            phase: Phase::Scan,
            items: self.items,
            bytes: self.bytes,
        });
        self.last = std::time::Instant::now();
    }

    /// Counts the regular files at and below `name` of the current directory (`path` is
    /// its path), depth first with an explicit stack, through descriptors as the walker does.
    fn tree(&mut self, excluder: &Excluder, dirs: &mut DirStack, path: PathBuf, name: &[u8]) {
        let base = dirs.depth();
        // The directories entered, with their paths and the entries not yet counted.
        let mut pending: Vec<(PathBuf, std::vec::IntoIter<Vec<u8>>)> = Vec::new();
        self.visit(excluder, dirs, &mut pending, path, name);
        while !(self.stop)() {
            let Some((dir, entries)) = pending.last_mut() else {
                break;
            };
            let next = entries.next().map(|n| (dir.join(OsStr::from_bytes(&n)), n));
            match next {
                Some((child, n)) => self.visit(excluder, dirs, &mut pending, child, &n),
                None => {
                    let _ = pending.pop();
                    dirs.leave();
                }
            }
        }
        while dirs.depth() > base {
            dirs.leave();
        }
    }

    fn visit(
        &mut self,
        excluder: &Excluder,
        dirs: &mut DirStack,
        pending: &mut Vec<(PathBuf, std::vec::IntoIter<Vec<u8>>)>,
        path: PathBuf,
        name: &[u8],
    ) {
        if excluder.excluded_before_stat(&path) {
            return;
        }
        let Some(meta) = dirs.top().and_then(|d| dirfd::lstat_at(d, name).ok()) else {
            return;
        };
        if excluder.excluded_after_stat(&path, meta.kind, meta.size) {
            return;
        }
        if meta.kind == NodeKind::File {
            self.items += 1;
            self.bytes += meta.size;
        } else if meta.kind == NodeKind::Dir && dirs.enter(name, &meta).is_ok() {
            let names = dirs
                .top()
                .filter(|d| !excluder.excluded_dir(d))
                .and_then(|d| dirfd::list(d).ok());
            match names {
                Some(names) => pending.push((path, names.into_iter())),
                None => dirs.leave(),
            }
        }
        if self.last.elapsed().as_millis() > 250 {
            self.report();
        }
    }
}
