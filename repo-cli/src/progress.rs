//! [`repo_core::Progress`] for the terminal and for scripts.
//!
//! One [`CliProgress`] per command. It shows live progress in one of three ways:
//! - an indicatif bar on stderr when stderr is a terminal and neither `--quiet` nor `--json`
//!   is given (bytes, rate, files, and an ETA once totals are known);
//! - with `--json` (and not `--quiet`), `{"message_type":"status",...}` lines on stdout, at most
//!   four per second;
//! - nothing.
//!
//! Skipped entries and warnings are always reported on stderr, as `warning: PATH: REASON` lines
//! (just `warning: REASON` when the reason already names the path), escaped for the terminal
//! ([`output::escaped`]), or, with `--json`, as
//! `{"message_type":"error","item":PATH,"error":REASON,"skipped":BOOL}` lines.
//!
//! The library calls [`Progress::event`] concurrently from worker threads: counters are
//! atomics, the bar is internally synchronised, and JSON lines are written under the stdout lock.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use repo_core::{Phase, Progress, ProgressEvent};
use serde::Serialize;

use crate::{output, GlobalArgs};

const STATUS_INTERVAL: Duration = Duration::from_millis(250);
const UNKNOWN: u64 = u64::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Live {
    Nothing,
    Bar,
    JsonStatus,
}

/// Progress sink of one command.
pub struct CliProgress {
    live: Live,
    json: bool,
    bar: Mutex<Option<ProgressBar>>,
    phase: Mutex<Option<Phase>>,
    phase_start: Mutex<Instant>,
    last_status: Mutex<Instant>,
    items_done: AtomicU64,
    bytes_done: AtomicU64,
    total_items: AtomicU64,
    total_bytes: AtomicU64,
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
}

/// One `{"message_type":"error"}` line (a skipped entry or a warning).
#[derive(Serialize)]
struct ItemError<'a> {
    message_type: &'static str,
    item: &'a str,
    error: &'a str,
    skipped: bool,
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
        let now = Instant::now();
        Self {
            live: mode,
            json: global.json,
            bar: Mutex::new(None),
            phase: Mutex::new(None),
            phase_start: Mutex::new(now),
            last_status: Mutex::new(now.checked_sub(STATUS_INTERVAL).unwrap_or(now)),
            items_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            total_items: AtomicU64::new(UNKNOWN),
            total_bytes: AtomicU64::new(UNKNOWN),
        }
    }

    /// Whether a scan for totals is worth its cost (someone will see an ETA).
    pub fn wants_totals(&self) -> bool {
        self.live != Live::Nothing
    }

    /// Runs `f` (which prints to stderr) without garbling the bar.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        let guard = lock(&self.bar);
        match guard.as_ref() {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Clears any bar (before a command prints its result).
    pub fn finish(&self) {
        if let Some(bar) = lock(&self.bar).take() {
            bar.finish_and_clear();
        }
    }

    fn start_phase(&self, phase: Phase, items: Option<u64>, bytes: Option<u64>) {
        *lock(&self.phase) = Some(phase);
        *lock(&self.phase_start) = Instant::now();
        self.items_done.store(0, Ordering::Relaxed);
        self.bytes_done.store(0, Ordering::Relaxed);
        self.total_items
            .store(items.unwrap_or(UNKNOWN), Ordering::Relaxed);
        self.total_bytes
            .store(bytes.unwrap_or(UNKNOWN), Ordering::Relaxed);
        if self.live != Live::Bar {
            return;
        }
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
        self.update_message();
        self.maybe_status();
    }

    fn advance(&self, items: u64, bytes: u64) {
        let _ = self.items_done.fetch_add(items, Ordering::Relaxed);
        let _ = self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        if let Some(bar) = lock(&self.bar).as_ref() {
            bar.inc(bytes);
        }
        if items > 0 {
            self.update_message();
        }
        self.maybe_status();
    }

    fn finish_phase(&self, phase: Phase) {
        let mut current = lock(&self.phase);
        if *current != Some(phase) {
            // E.g. the end of a backup's pre-scan, which runs inside the backup phase.
            return;
        }
        *current = None;
        drop(current);
        self.finish();
    }

    fn update_message(&self) {
        if self.live != Live::Bar {
            return;
        }
        if let Some(bar) = lock(&self.bar).as_ref() {
            let done = self.items_done.load(Ordering::Relaxed);
            // Restore and verify report bytes only (their item counts never advance).
            let unit = match *lock(&self.phase) {
                Some(Phase::Backup) => "files",
                Some(Phase::CheckData) => "packs",
                _ => return,
            };
            let msg = match self.total_items.load(Ordering::Relaxed) {
                UNKNOWN => format!("{done} {unit}"),
                total => format!("{done}/{total} {unit}"),
            };
            bar.set_message(msg);
        }
    }

    fn maybe_status(&self) {
        if self.live != Live::JsonStatus {
            return;
        }
        let Ok(mut last) = self.last_status.try_lock() else {
            return;
        };
        if last.elapsed() < STATUS_INTERVAL {
            return;
        }
        *last = Instant::now();
        drop(last);
        let Some(phase) = *lock(&self.phase) else {
            return;
        };
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
        };
        if let Ok(line) = serde_json::to_string(&status) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        }
    }

    fn report(&self, path: &Path, reason: &str, skipped: bool) {
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
        match event {
            ProgressEvent::PhaseStarted {
                phase,
                total_items,
                total_bytes,
            } => self.start_phase(*phase, *total_items, *total_bytes),
            ProgressEvent::Totals { items, bytes, .. } => self.set_totals(*items, *bytes),
            ProgressEvent::Advanced { items, bytes, .. } => self.advance(*items, *bytes),
            ProgressEvent::Skipped { path, error } => self.report(path, &error.to_string(), true),
            ProgressEvent::Warning { path, message } => self.report(path, message, false),
            ProgressEvent::PhaseFinished { phase } => self.finish_phase(*phase),
            _ => {}
        }
    }
}

impl Drop for CliProgress {
    fn drop(&mut self) {
        self.finish();
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
        "{prefix:>7} [{elapsed_precise}] [{wide_bar}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
    )
    .expect("valid progress template")
    .progress_chars("=> ")
}

fn spinner_style(bytes: bool) -> ProgressStyle {
    let template = if bytes {
        "{spinner} {prefix} [{elapsed_precise}] {binary_bytes} {binary_bytes_per_sec} {msg}"
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
