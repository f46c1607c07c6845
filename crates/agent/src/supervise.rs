//! A streaming piped exec run to a deadline ([`Supervised`]): past it, KILL
//! (SIGKILL to the command's process group) is sent once, and the output
//! that is still coming and the exit code (137) are delivered all the
//! same, marked [`Supervised::timed_out`]. [`Supervised::collect`] gathers
//! the whole run into an [`ExecResult`] with the same output cap as
//! [`Client::exec`](crate::Client::exec).
//!
//! Without a timeout the command's stdin is closed at once (a command
//! that reads stdin sees end of file); with one it stays open, because
//! KILL travels on the same half of the connection.
//!
//! # Threads, locks, I/O
//! Runs on the caller's task over the two halves of an [`ExecStream`]:
//! events come from its reader task's channel, KILL goes out on the
//! [`Input`]. No lock.

use std::time::Duration;

use tokio::time::Instant;

use crate::conn::{Event, Events, Input};
use crate::error::{Error, Result};
use crate::exec::{ExecResult, ExecStream, append_capped};

/// A running piped exec with an optional deadline.
#[derive(Debug)]
pub struct Supervised {
    input: Input,
    events: Events,
    deadline: Option<Instant>,
    timed_out: bool,
}

impl Supervised {
    /// Supervises `stream`; with `timeout`, the command is killed when it
    /// passes. Without one, stdin is closed now.
    pub async fn new(stream: ExecStream, timeout: Option<Duration>) -> Self {
        let (mut input, events) = stream.into_split();
        if timeout.is_none() {
            // Best effort: a command that already exited closed its side.
            let _ = input.close_stdin().await;
        }
        Self {
            input,
            events,
            deadline: timeout.map(|t| Instant::now() + t),
            timed_out: false,
        }
    }

    /// Whether the deadline passed and KILL was sent.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// The next event (see [`Events::next`]); past the deadline, KILL is
    /// sent once and the remaining events are still delivered.
    pub async fn next(&mut self) -> Result<Option<Event>> {
        loop {
            match self.deadline {
                Some(at) if !self.timed_out => {
                    match tokio::time::timeout_at(at, self.events.next()).await {
                        Ok(r) => return r,
                        Err(_) => {
                            self.timed_out = true;
                            let _ = self.input.kill().await;
                        }
                    }
                }
                _ => return self.events.next().await,
            }
        }
    }

    /// Runs to the exit code, keeping at most `cap` bytes of stdout and of
    /// stderr each (the rest is read and dropped, and the result says so).
    /// An ERROR from the agent is [`Error::Agent`]; a stream that ends
    /// without an exit code is [`Error::Closed`].
    pub async fn collect(mut self, cap: usize) -> Result<ExecResult> {
        let mut out = ExecResult::default();
        loop {
            match self.next().await? {
                Some(Event::Stdout(d)) => {
                    append_capped(&mut out.stdout, &mut out.stdout_truncated, &d, cap);
                }
                Some(Event::Stderr(d)) => {
                    append_capped(&mut out.stderr, &mut out.stderr_truncated, &d, cap);
                }
                Some(Event::Exit(code)) => {
                    out.exit_code = code;
                    out.timed_out = self.timed_out;
                    return Ok(out);
                }
                Some(Event::Error(f)) => return Err(Error::from_failure(f)),
                None => return Err(Error::Closed("exec")),
            }
        }
    }
}
