//! [`repo_core::Progress`] for the terminal and for scripts.
//!
//! One [`CliProgress`] per command. It shows live progress in one of three ways:
//! - an indicatif bar on stderr when stderr is a terminal and neither `--quiet` nor `--json`
//!   is given: bytes done of the total, rate, files done of the total, an ETA once the totals
//!   are known (a backup's pre-scan finds them while it runs), and the file being read;
//! - with `--json` (and not `--quiet`), `{"message_type":"status",...}` lines on stdout: one
//!   when a phase begins, one every quarter of a second while it runs (from a ticker thread,
//!   so they come even while one large file is read or an upload waits), and one when it ends;
//! - nothing.
//!
//! Skipped entries and warnings are always reported on stderr, as `warning: PATH: REASON` lines
//! (just `warning: REASON` when the reason already names the path), escaped for the terminal
//! ([`output::escaped`]), or, with `--json`, as
//! `{"message_type":"error","item":PATH,"error":REASON,"skipped":BOOL}` lines.
//! With `-v`, each file a backup stores is listed on stdout (`new`/`changed`, and with `-vv`
//! `unchanged`), or with `--json` as `{"message_type":"verbose_status",...}` lines.
//!
//! The library calls [`Progress::event`] concurrently from worker threads: counters are
//! atomics, the bar is internally synchronised, and JSON lines are written under the stdout lock.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use repo_core::{EntryStatus, Phase, Progress, ProgressEvent};
use serde::Serialize;

use crate::{output, GlobalArgs};

const STATUS_INTERVAL: Duration = Duration::from_millis(250);
const UNKNOWN: u64 = u64::MAX;
/// Files being read that a status line names at most (a backup reads one per core).
const MAX_CURRENT: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Live {
    Nothing,
    Bar,
    JsonStatus,
}

/// Progress sink of one command.
pub struct CliProgress {
    state: Arc<State>,
    ticker: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

/// What the events update and the ticker shows.
struct State {
    live: Live,
    json: bool,
    verbose: u8,
    bar: Mutex<Option<ProgressBar>>,
    phase: Mutex<Option<Phase>>,
    phase_start: Mutex<Instant>,
    items_done: AtomicU64,
    bytes_done: AtomicU64,
    total_items: AtomicU64,
    total_bytes: AtomicU64,
    /// Files a backup is reading now, oldest first.
    current: Mutex<Vec<PathBuf>>,
}

/// One `{"message_type":"status"}` line.
#[derive(Serialize)]
struct Status {
    message_type: &'static str,
    phase: &'static str,
    seconds_elapsed: f64,
    files_done: u64,
    bytes_done: u64,
    total_files: Option<u64>,
    total_bytes: Option<u64>,
    percent_done: Option<f64>,
    seconds_remaining: Option<u64>,
    current_files: Vec<String>,
}

/// One `{"message_type":"error"}` line (a skipped entry or a warning).
#[derive(Serialize)]
struct ItemError<'a> {
    message_type: &'static str,
    item: &'a str,
    error: &'a str,
    skipped: bool,
}

/// One `{"message_type":"verbose_status"}` line: a file a backup stored.
#[derive(Serialize)]
struct VerboseStatus<'a> {
    message_type: &'static str,
    action: &'static str,
    item: &'a str,
    size: u64,
}

impl CliProgress {
    /// A sink for a command; `live` asks for bars or status lines where the flags allow them.
    pub fn new(global: &GlobalArgs, live: bool) -> Self {
        let mode = if !live || global.quiet {
            Live::Nothing
        } else if global.json {
            Live::JsonStatus
        } else if std::io::stderr().is_terminal() {
            Live::Bar
        } else {
            Live::Nothing
        };
        let state = Arc::new(State {
            live: mode,
            json: global.json,
            verbose: if global.quiet { 0 } else { global.verbose },
            bar: Mutex::new(None),
            phase: Mutex::new(None),
            phase_start: Mutex::new(Instant::now()),
            items_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            total_items: AtomicU64::new(UNKNOWN),
            total_bytes: AtomicU64::new(UNKNOWN),
            current: Mutex::new(Vec::new()),
        });
        let ticker = (mode != Live::Nothing).then(|| {
            let stop = Arc::new(AtomicBool::new(false));
            let (s, st) = (Arc::clone(&stop), Arc::clone(&state));
            let handle = std::thread::spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::park_timeout(STATUS_INTERVAL);
                    if !s.load(Ordering::Relaxed) {
                        st.tick();
                    }
                }
            });
            (stop, handle)
        });
        Self { state, ticker }
    }

    /// Whether a scan for totals is worth its cost (someone will see an ETA).
    pub fn wants_totals(&self) -> bool {
        self.state.live != Live::Nothing
    }

    /// Stops the live display and clears any bar (before a command prints its result).
    pub fn finish(&self) {
        if let Some((stop, handle)) = &self.ticker {
            stop.store(true, Ordering::Relaxed);
            handle.thread().unpark();
        }
        self.state.clear_bar();
    }
}

impl State {
    /// Runs `f` (which prints) without garbling the bar.
    fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        let guard = lock(&self.bar);
        match guard.as_ref() {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    fn clear_bar(&self) {
        if let Some(bar) = lock(&self.bar).take() {
            bar.finish_and_clear();
        }
    }

    fn start_phase(&self, phase: Phase, items: Option<u64>, bytes: Option<u64>) {
        {
            let mut current = lock(&self.phase);
            if phase == Phase::Scan && current.is_some() {
                // The pre-scan runs alongside the backup: its totals are the backup's.
                return;
            }
            *current = Some(phase);
        }
        *lock(&self.phase_start) = Instant::now();
        self.items_done.store(0, Ordering::Relaxed);
        self.bytes_done.store(0, Ordering::Relaxed);
        self.total_items
            .store(items.unwrap_or(UNKNOWN), Ordering::Relaxed);
        self.total_bytes
            .store(bytes.unwrap_or(UNKNOWN), Ordering::Relaxed);
        lock(&self.current).clear();
        match self.live {
            Live::Bar => {
                let bar = ProgressBar::new(bytes.unwrap_or(0));
                if bytes.is_some() && counts_bytes(phase) {
                    bar.set_style(bar_style());
                } else {
                    bar.set_style(spinner_style(counts_bytes(phase)));
                }
                bar.set_prefix(phase_label(phase));
                bar.enable_steady_tick(Duration::from_millis(120));
                if let Some(old) = lock(&self.bar).replace(bar) {
                    old.finish_and_clear();
                }
                self.update_message();
            }
            Live::JsonStatus => self.status_line(phase),
            Live::Nothing => {}
        }
    }

    fn set_totals(&self, items: u64, bytes: u64) {
        self.total_items.store(items, Ordering::Relaxed);
        self.total_bytes.store(bytes, Ordering::Relaxed);
        if let Some(bar) = lock(&self.bar).as_ref() {
            let phase = *lock(&self.phase);
            if phase.is_some_and(counts_bytes) {
                bar.set_length(bytes);
                bar.set_style(bar_style());
            }
        }
    }

    fn advance(&self, items: u64, bytes: u64) {
        let _ = self.items_done.fetch_add(items, Ordering::Relaxed);
        let _ = self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        if bytes > 0 {
            if let Some(bar) = lock(&self.bar).as_ref() {
                bar.inc(bytes);
            }
        }
    }

    fn finish_phase(&self, phase: Phase) {
        let mut current = lock(&self.phase);
        if *current != Some(phase) {
            // E.g. the end of a backup's pre-scan, which runs inside the backup phase.
            return;
        }
        if self.live == Live::JsonStatus {
            // The last line of a phase: what it did in the end.
            self.status_line(phase);
        }
        *current = None;
        drop(current);
        self.clear_bar();
    }

    fn file_started(&self, path: &Path) {
        if self.live == Live::Nothing {
            return;
        }
        let mut current = lock(&self.current);
        if current.len() == MAX_CURRENT {
            let _ = current.remove(0);
        }
        current.push(path.to_path_buf());
    }

    fn file_ended(&self, path: &Path) {
        if self.live == Live::Nothing {
            return;
        }
        let mut current = lock(&self.current);
        if let Some(i) = current.iter().position(|p| p == path) {
            let _ = current.remove(i);
        }
    }

    fn file_saved(&self, path: &Path, status: EntryStatus, bytes: u64) {
        self.file_ended(path);
        let wanted = match status {
            EntryStatus::Unchanged => self.verbose >= 2,
            _ => self.verbose >= 1,
        };
        if !wanted {
            return;
        }
        let item = path.to_string_lossy();
        let line = if self.json {
            serde_json::to_string(&VerboseStatus {
                message_type: "verbose_status",
                action: status.as_str(),
                item: &item,
                size: bytes,
            })
            .unwrap_or_default()
        } else {
            format!(
                "{:<9} {} ({})",
                status.as_str(),
                output::escape(&item),
                output::size(bytes)
            )
        };
        self.suspend(|| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        });
    }

    /// Every [`STATUS_INTERVAL`]: a status line, or the bar's message.
    fn tick(&self) {
        let Some(phase) = *lock(&self.phase) else {
            return;
        };
        match self.live {
            Live::JsonStatus => self.status_line(phase),
            Live::Bar => self.update_message(),
            Live::Nothing => {}
        }
    }

    fn update_message(&self) {
        let Some(bar) = lock(&self.bar).clone() else {
            return;
        };
        let done = self.items_done.load(Ordering::Relaxed);
        // Verify reports bytes only (its item count never advances).
        let unit = match *lock(&self.phase) {
            Some(Phase::Backup | Phase::Restore) => "files",
            Some(Phase::CheckData) => "packs",
            _ => return,
        };
        let mut msg = match self.total_items.load(Ordering::Relaxed) {
            UNKNOWN => format!("{done} {unit}"),
            total => format!("{done}/{total} {unit}"),
        };
        if let Some(path) = lock(&self.current).last() {
            msg.push_str("  ");
            msg.push_str(&output::escape(&path.to_string_lossy()));
        }
        bar.set_message(msg);
    }

    fn status_line(&self, phase: Phase) {
        let elapsed = lock(&self.phase_start).elapsed().as_secs_f64();
        let known = |v: u64| (v != UNKNOWN).then_some(v);
        let bytes_done = self.bytes_done.load(Ordering::Relaxed);
        let total_bytes = known(self.total_bytes.load(Ordering::Relaxed));
        let percent_done = total_bytes
            .filter(|&t| t > 0)
            .map(|t| ((bytes_done as f64 / t as f64).min(1.0) * 10_000.0).round() / 10_000.0);
        let seconds_remaining = match (total_bytes, bytes_done) {
            (Some(t), done) if done > 0 && elapsed > 0.0 => {
                let rate = done as f64 / elapsed;
                Some((t.saturating_sub(done) as f64 / rate).round() as u64)
            }
            _ => None,
        };
        let current_files = lock(&self.current)
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let status = Status {
            message_type: "status",
            phase: phase_name(phase),
            seconds_elapsed: (elapsed * 1000.0).round() / 1000.0,
            files_done: self.items_done.load(Ordering::Relaxed),
            bytes_done,
            total_files: known(self.total_items.load(Ordering::Relaxed)),
            total_bytes,
            percent_done,
            seconds_remaining,
            current_files,
        };
        if let Ok(line) = serde_json::to_string(&status) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        }
    }

    fn report(&self, path: &Path, reason: &str, skipped: bool) {
        if skipped {
            self.file_ended(path);
        }
        let path = path.to_string_lossy();
        let line = if self.json {
            serde_json::to_string(&ItemError {
                message_type: "error",
                item: &path,
                error: reason,
                skipped,
            })
            .unwrap_or_default()
        } else {
            warning_line(&path, reason)
        };
        self.suspend(|| eprintln!("{line}"));
    }
}

/// The text line of a warning about `path` (lossy text), escaped for the terminal.
fn warning_line(path: &str, reason: &str) -> String {
    if reason.contains(path) {
        // Library messages usually name the path already ("open /x: permission denied").
        format!("warning: {}", output::escape(reason))
    } else {
        format!(
            "warning: {}: {}",
            output::escape(path),
            output::escape(reason)
        )
    }
}

impl Progress for CliProgress {
    fn event(&self, event: &ProgressEvent<'_>) {
        let s = &self.state;
        match event {
            ProgressEvent::PhaseStarted {
                phase,
                total_items,
                total_bytes,
            } => s.start_phase(*phase, *total_items, *total_bytes),
            ProgressEvent::Totals { items, bytes, .. } => s.set_totals(*items, *bytes),
            ProgressEvent::Advanced { items, bytes, .. } => s.advance(*items, *bytes),
            ProgressEvent::FileStarted { path } => s.file_started(path),
            ProgressEvent::FileSaved {
                path,
                status,
                bytes,
            } => s.file_saved(path, *status, *bytes),
            ProgressEvent::Skipped { path, error } => s.report(path, &error.to_string(), true),
            ProgressEvent::Warning { path, message } => s.report(path, message, false),
            ProgressEvent::PhaseFinished { phase } => s.finish_phase(*phase),
            _ => {}
        }
    }
}

impl Drop for CliProgress {
    fn drop(&mut self) {
        self.finish();
        if let Some((_, handle)) = self.ticker.take() {
            let _ = handle.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn counts_bytes(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::Backup | Phase::Restore | Phase::Verify | Phase::CheckData
    )
}

/// Phase names in JSON status lines.
fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Scan => "scan",
        Phase::Backup => "backup",
        Phase::Restore => "restore",
        Phase::Verify => "verify",
        Phase::CheckStructure => "check_structure",
        Phase::CheckData => "check_data",
        Phase::LoadIndex => "load_index",
        _ => "other",
    }
}

fn phase_label(phase: Phase) -> &'static str {
    match phase {
        Phase::Scan => "scanning",
        Phase::Backup => "backup",
        Phase::Restore => "restore",
        Phase::Verify => "verify",
        Phase::CheckStructure => "checking structure",
        Phase::CheckData => "reading data",
        Phase::LoadIndex => "loading index",
        _ => "working",
    }
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        // Two lines, so the first fits 80 columns: the counts and the file being read go
        // below, cut to the terminal's width.
        "{prefix:>7} [{elapsed_precise}] [{bar:20}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}\n        {wide_msg}",
    )
    .expect("valid progress template")
    .progress_chars("=> ")
}

fn spinner_style(bytes: bool) -> ProgressStyle {
    let template = if bytes {
        "{spinner} {prefix} [{elapsed_precise}] {binary_bytes} {binary_bytes_per_sec} {wide_msg}"
    } else {
        "{spinner} {prefix} [{elapsed_precise}]"
    };
    ProgressStyle::with_template(template).expect("valid progress template")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_lines_are_escaped_and_name_the_path_once() {
        assert_eq!(
            warning_line("/s/a\nb", "socket not backed up"),
            r"warning: /s/a\nb: socket not backed up"
        );
        assert_eq!(
            warning_line("/s/\u{1b}[5m", "open /s/\u{1b}[5m: permission denied"),
            r"warning: open /s/\x1b[5m: permission denied"
        );
    }
}
