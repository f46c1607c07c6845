//! A streaming piped exec run to a deadline ([`Supervised`]): past it, KILL
//! (SIGKILL to the command's process group) is sent once, and the output
//! that is still coming and the exit code (137) are delivered all the
//! same, marked [`Supervised::timed_out`]. The deadline holds even when the
//! agent goes silent: if the exit code has not come [`KILL_GRACE`] after
//! the deadline (a wedged guest, a hostile agent), the run gives up with
//! [`Error::Timeout`] and the connection is dropped. [`Supervised::collect`] gathers
//! the whole run into an [`ExecResult`] with the same output cap as
//! [`Client::exec`](crate::Client::exec).
//!
//! Without a timeout the command's stdin is closed at once (a command
//! that reads stdin sees end of file). With one, [`Supervised`] leaves
//! stdin as it is, because on a v1 agent closing it is a half-close after
//! which KILL cannot be sent; a caller that wants it closed says so in the
//! request (`stdin_closed`), as `POST /exec` does, and
//! [`Client::exec_stream`](crate::Client::exec_stream) closes it in a way
//! that keeps KILL working wherever the agent allows.
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

/// How long after the deadline the killed command's last output and exit
/// code may take before the run gives up with [`Error::Timeout`].
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// A running piped exec with an optional deadline.
#[derive(Debug)]
pub struct Supervised {
    input: Input,
    events: Events,
    /// The deadline and the timeout it came from.
    deadline: Option<(Instant, Duration)>,
    grace: Duration,
    timed_out: bool,
    /// The grace passed too and [`Error::Timeout`] was returned.
    gave_up: bool,
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
            deadline: timeout.map(|t| (Instant::now() + t, t)),
            grace: KILL_GRACE,
            timed_out: false,
            gave_up: false,
        }
    }

    /// Replaces [`KILL_GRACE`] (tests, callers with their own budget).
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Whether the deadline passed and KILL was sent.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// The next event (see [`Events::next`]); past the deadline, KILL is
    /// sent once and the remaining events are still delivered until the
    /// grace ends, then [`Error::Timeout`] (once; `Ok(None)` after).
    pub async fn next(&mut self) -> Result<Option<Event>> {
        let Some((at, limit)) = self.deadline else {
            return self.events.next().await;
        };
        if self.gave_up {
            return Ok(None);
        }
        if !self.timed_out {
            if let Ok(r) = tokio::time::timeout_at(at, self.events.next()).await {
                return r;
            }
            self.timed_out = true;
            // Bounded too: an agent that stopped reading cannot block it.
            let _ = tokio::time::timeout_at(at + self.grace, self.input.kill()).await;
        }
        match tokio::time::timeout_at(at + self.grace, self.events.next()).await {
            Ok(r) => r,
            Err(_) => {
                self.gave_up = true;
                Err(Error::Timeout(limit + self.grace))
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
