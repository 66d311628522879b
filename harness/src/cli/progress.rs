//! The live display of a run: phase, elapsed time, operations ok/fail/info, faults now active.
//!
//! On a terminal it is one indicatif spinner line redrawn in place; when stderr is not a
//! terminal (CI logs, pipes) it prints a plain line at every phase change and every few
//! seconds, so logs stay readable and still show progress.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Counters the clients and the nemesis update and the display reads.
#[derive(Debug, Default)]
pub struct Counters {
    pub ok: AtomicU64,
    pub fail: AtomicU64,
    pub info: AtomicU64,
    /// Faults started so far.
    pub faults: AtomicU64,
    /// Descriptions of the faults active right now.
    pub active: Mutex<Vec<String>>,
    phase: Mutex<String>,
}

impl Counters {
    pub fn set_active(&self, active: Vec<String>) {
        if let Ok(mut a) = self.active.lock() {
            *a = active;
        }
    }

    fn line(&self, elapsed: Duration) -> String {
        let phase = self.phase.lock().map(|p| p.clone()).unwrap_or_default();
        let active = self.active.lock().map(|a| a.join(", ")).unwrap_or_default();
        format!(
            "[{:>6.1}s] {:<18} ok {} fail {} info {} | faults {}{}",
            elapsed.as_secs_f64(),
            phase,
            self.ok.load(Ordering::Relaxed),
            self.fail.load(Ordering::Relaxed),
            self.info.load(Ordering::Relaxed),
            self.faults.load(Ordering::Relaxed),
            if active.is_empty() {
                String::new()
            } else {
                format!(" | now: {active}")
            }
        )
    }
}

/// The display. Dropping it stops the refresh task.
pub struct Progress {
    pub counters: Arc<Counters>,
    bar: Option<ProgressBar>,
    start: Instant,
    refresher: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts the display; `quiet` shows nothing.
    pub fn start(quiet: bool) -> Progress {
        let counters = Arc::new(Counters::default());
        let start = Instant::now();
        let tty = std::io::stderr().is_terminal();
        let bar = (tty && !quiet).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar
        });
        let refresher = if quiet {
            None
        } else {
            let counters = counters.clone();
            let bar = bar.clone();
            Some(tokio::spawn(async move {
                let mut last_plain = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let line = counters.line(start.elapsed());
                    match &bar {
                        Some(bar) => {
                            bar.set_message(line);
                            bar.tick();
                        }
                        None if last_plain.elapsed() >= Duration::from_secs(5) => {
                            eprintln!("{line}");
                            last_plain = Instant::now();
                        }
                        None => {}
                    }
                }
            }))
        };
        Progress {
            counters,
            bar,
            start,
            refresher,
        }
    }

    /// Enters a new phase; prints it as its own line.
    pub fn phase(&self, name: &str) {
        if let Ok(mut p) = self.counters.phase.lock() {
            *p = name.to_string();
        }
        self.println(&self.counters.line(self.start.elapsed()));
    }

    /// Prints a line above the spinner (or plainly).
    pub fn println(&self, line: &str) {
        if self.refresher.is_none() {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Stops the display.
    pub fn finish(&mut self) {
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
