//! The local terminal: raw mode for the shell (restored on drop), the
//! window size, and a prompt with echo off. All through rustix termios on
//! stdin; no unsafe code.

use std::io::{BufRead, Write};

use rustix::termios::{self, LocalModes, OptionalActions, Termios};

/// Puts stdin's terminal in raw mode until dropped.
#[derive(Debug)]
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    pub fn enable() -> std::io::Result<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(&stdin, OptionalActions::Flush, &raw)?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// The terminal size of stdout (else stdin) as (rows, cols).
pub fn size() -> Option<(u16, u16)> {
    let ws = termios::tcgetwinsize(std::io::stdout())
        .or_else(|_| termios::tcgetwinsize(std::io::stdin()))
        .ok()?;
    (ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Prints `prompt` on stderr and reads one line from stdin with echo off.
pub fn prompt_hidden(prompt: &str) -> std::io::Result<String> {
    let stdin = std::io::stdin();
    let saved = termios::tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    termios::tcsetattr(&stdin, OptionalActions::Now, &quiet)?;
    let mut line = String::new();
    let res = stdin.lock().read_line(&mut line);
    let _ = termios::tcsetattr(&stdin, OptionalActions::Now, &saved);
    eprintln!();
    res.map(|_| line)
}

/// Prints `prompt` (showing `default`) and reads one line; empty → default.
pub fn prompt(prompt: &str, default: &str) -> std::io::Result<String> {
    if default.is_empty() {
        eprint!("{prompt}: ");
    } else {
        eprint!("{prompt} [{default}]: ");
    }
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let line = line.trim();
    Ok(if line.is_empty() { default } else { line }.to_owned())
}
