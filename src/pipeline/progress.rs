//! Progress and messages on stderr: a bar (frames, fps, ETA) on a terminal,
//! a plain line every few seconds otherwise, nothing when quiet. Warnings are
//! printed unless quiet.

use std::cell::Cell;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How a job reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Report {
    /// Nothing at all (not even warnings).
    Quiet,
    /// A bar on a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Plain lines even on a terminal.
    Plain,
}

/// Progress of one job, in frames.
pub struct Progress {
    mode: Report,
    bar: Option<ProgressBar>,
    label: String,
    total: Cell<Option<u64>>,
    done: Cell<u64>,
    start: Instant,
    last_line: Cell<Instant>,
}

const LINE_EVERY: Duration = Duration::from_secs(2);

impl Progress {
    pub fn new(mode: Report, label: &str) -> Self {
        let bar = (mode == Report::Auto && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} frames {per_sec} ETA {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            b.set_prefix(label.to_string());
            b
        });
        let now = Instant::now();
        Self {
            mode,
            bar,
            label: label.to_string(),
            total: Cell::new(None),
            done: Cell::new(0),
            start: now,
            last_line: Cell::new(now),
        }
    }

    /// A reporter that prints nothing.
    pub fn quiet() -> Self {
        Self::new(Report::Quiet, "")
    }

    pub fn is_quiet(&self) -> bool {
        self.mode == Report::Quiet
    }

    /// Sets the expected number of output frames (an estimate).
    pub fn set_total(&self, total: Option<u64>) {
        self.total.set(total);
        if let (Some(b), Some(t)) = (&self.bar, total) {
            b.set_length(t);
        }
    }

    /// Output frames written so far.
    pub fn set_done(&self, done: u64) {
        self.done.set(done);
        if let Some(t) = self.total.get()
            && done > t
        {
            self.set_total(Some(done));
        }
        if let Some(b) = &self.bar {
            b.set_position(done);
        } else if self.mode != Report::Quiet && self.last_line.get().elapsed() >= LINE_EVERY {
            self.last_line.set(Instant::now());
            eprintln!("{}", self.line());
        }
    }

    fn line(&self) -> String {
        let done = self.done.get();
        let secs = self.start.elapsed().as_secs_f64().max(1e-6);
        let fps = done as f64 / secs;
        match self.total.get() {
            Some(t) if t > 0 => {
                let eta = if fps > 0.0 { (t.saturating_sub(done)) as f64 / fps } else { 0.0 };
                format!(
                    "{}: {done}/{t} frames ({:.0}%), {fps:.1} fps, ETA {eta:.0} s",
                    self.label,
                    100.0 * done as f64 / t as f64
                )
            }
            _ => format!("{}: {done} frames, {fps:.1} fps", self.label),
        }
    }

    /// A warning (printed unless quiet).
    pub fn warn(&self, msg: &str) {
        self.print(&format!("weft: warning: {msg}"));
    }

    /// A note about what was done (printed unless quiet).
    pub fn note(&self, msg: &str) {
        self.print(&format!("weft: {msg}"));
    }

    fn print(&self, msg: &str) {
        match (&self.bar, self.mode) {
            (_, Report::Quiet) => {}
            (Some(b), _) => b.suspend(|| eprintln!("{msg}")),
            (None, _) => eprintln!("{msg}"),
        }
    }

    /// Ends the bar (or prints a last plain line).
    pub fn finish(&self) {
        match (&self.bar, self.mode) {
            (_, Report::Quiet) => {}
            (Some(b), _) => b.finish_and_clear(),
            (None, _) => {
                self.total.set(Some(self.done.get()));
                eprintln!("{}", self.line())
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
