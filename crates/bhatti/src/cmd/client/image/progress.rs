//! Progress of an import on stderr: on a terminal an `indicatif` bar (the
//! upload's bytes, then the job's phase with its bytes when it reports a
//! total, a spinner when not); otherwise one line per upload and per
//! phase change, so logs stay short; nothing with `--json`.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::human_bytes;

#[derive(Debug)]
pub struct Progress {
    mode: Mode,
    bar: Option<ProgressBar>,
    phase: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Quiet,
    Lines,
    Bar,
}

fn bytes_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner} {msg:12} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

impl Progress {
    pub fn new(json: bool) -> Progress {
        let mode = if json {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        };
        Progress {
            mode,
            bar: None,
            phase: String::new(),
        }
    }

    /// The bar (or spinner) of one phase, replacing the last one.
    fn bar(&mut self, msg: &str, total: Option<u64>) -> ProgressBar {
        if let Some(old) = self.bar.take() {
            old.finish_and_clear();
        }
        let pb = match total {
            Some(t) => ProgressBar::new(t).with_style(bytes_style()),
            None => ProgressBar::new_spinner().with_style(spinner_style()),
        };
        pb.set_message(msg.to_owned());
        pb.enable_steady_tick(Duration::from_millis(120));
        self.bar = Some(pb.clone());
        pb
    }

    /// A phase without bytes (e.g. `starting`).
    pub fn phase(&mut self, phase: &str) {
        self.job(&serde_json::json!({"phase": phase}));
    }

    /// An upload of `what` (`len` bytes when known) begins; the bar to
    /// advance as bytes go out (`None` when there is none to show).
    pub fn upload(&mut self, what: &str, len: Option<u64>) -> Option<ProgressBar> {
        match self.mode {
            Mode::Quiet => None,
            Mode::Lines => {
                let size = len
                    .map(|n| format!(" ({})", human_bytes(n)))
                    .unwrap_or_default();
                eprintln!("uploading {what}{size}");
                None
            }
            Mode::Bar => Some(self.bar("uploading", len)),
        }
    }

    /// The upload is over (sent or failed).
    pub fn uploaded(&mut self) {
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
    }

    /// A job object as polled: a new phase starts a new bar or line; the
    /// same phase moves its bar.
    pub fn job(&mut self, job: &Value) {
        let phase = job["phase"]
            .as_str()
            .or_else(|| job["state"].as_str())
            .unwrap_or("working")
            .to_owned();
        let done = job["bytes_done"].as_u64();
        let total = job["bytes_total"].as_u64().filter(|t| *t > 0);
        if phase != self.phase {
            self.phase.clone_from(&phase);
            match self.mode {
                Mode::Quiet => {}
                Mode::Lines => {
                    let size = total
                        .map(|t| format!(" ({})", human_bytes(t)))
                        .unwrap_or_default();
                    eprintln!("{phase}{size}");
                }
                Mode::Bar => {
                    self.bar(&phase, total);
                }
            }
        }
        if let Some(pb) = &self.bar {
            if let Some(t) = total
                && pb.length() != Some(t)
            {
                pb.set_length(t);
                pb.set_style(bytes_style());
            }
            if let Some(d) = done {
                pb.set_position(d);
                if total.is_none() && d > 0 {
                    pb.set_message(format!("{phase} {}", human_bytes(d)));
                }
            }
        }
    }

    /// Clears whatever bar is showing.
    pub fn finish(&mut self) {
        self.uploaded();
    }
}
