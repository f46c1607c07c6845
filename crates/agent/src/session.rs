//! TTY sessions: [`Client::shell`] (new session), [`Client::attach`],
//! [`Client::list_sessions`], [`Client::kill_session`].
//!
//! A [`Session`] owns one connection: its first frame (SESSION_INFO) is
//! read before the handle is returned, then the read half goes to a reader
//! task (see [`crate::conn`]). Dropping the handle detaches — the process
//! keeps running in the guest and its output fills the scrollback, which
//! the next attach replays before any live output.

use std::collections::BTreeMap;

use bhatti_proto::messages::{self, ExecKillRequest, ExecRequest, SessionInfo, json_frame};
use bhatti_proto::{CONTROL_PORT, FrameType};

use crate::conn::{Events, Input, split_stream};
use crate::error::{Error, Result};
use crate::{Client, Event};

/// A new TTY session.
#[derive(Debug, Clone, Default)]
pub struct ShellOptions {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    /// Window size; the agent defaults to 24×80.
    pub rows: Option<u16>,
    pub cols: Option<u16>,
    /// Seconds a detached session may live; `None` or 0: forever.
    pub max_idle_sec: Option<i64>,
    /// Guest user the session runs as (a name or a numeric uid); `None`:
    /// the sandbox's default (root unless it sets `exec_user`). Extension
    /// "user" (`docs/protocol.md`): a v1 agent ignores it.
    pub user: Option<String>,
}

impl ShellOptions {
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    pub fn size(mut self, rows: u16, cols: u16) -> Self {
        self.rows = Some(rows);
        self.cols = Some(cols);
        self
    }

    pub fn max_idle_sec(mut self, secs: i64) -> Self {
        self.max_idle_sec = Some(secs);
        self
    }

    /// Runs the session as this guest user (see [`ShellOptions::user`]).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    pub(crate) fn request(&self) -> ExecRequest {
        ExecRequest {
            argv: self.argv.clone(),
            env: self.env.clone(),
            tty: true,
            rows: self.rows,
            cols: self.cols,
            cwd: self.cwd.clone(),
            session_id: None,
            max_idle_sec: self.max_idle_sec,
            user: self.user.clone(),
            ..ExecRequest::default()
        }
    }
}

/// An attached TTY session. Drop it to detach.
#[derive(Debug)]
pub struct Session {
    /// The SESSION_INFO the agent sent on attach.
    pub info: SessionInfo,
    /// Terminal input, resize, KILL (SIGTERM to the session's group).
    pub input: Input,
    /// Terminal output; [`Event::Exit`] when the process exits or when
    /// another client takes the session over.
    pub events: Events,
}

impl Session {
    /// The session's id (`s1`, `s2`, …, or `init`).
    pub fn id(&self) -> &str {
        &self.info.session_id
    }

    /// The next event (see [`Events::next`]).
    pub async fn next(&mut self) -> Result<Option<Event>> {
        self.events.next().await
    }

    /// Sends input to the terminal.
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.input.write_stdin(data).await
    }

    /// Sets the window size.
    pub async fn resize(&mut self, rows: u16, cols: u16) -> Result<()> {
        self.input.resize(rows, cols).await
    }

    /// Sends KILL (SIGTERM to the session's process group).
    pub async fn kill(&mut self) -> Result<()> {
        self.input.kill().await
    }

    /// Sends `signal` to the session's process group (protocol version
    /// 4, see [`Input::signal`]).
    pub async fn signal(&mut self, signal: i32) -> Result<()> {
        self.input.signal(signal).await
    }

    /// Waits for the exit code, discarding output.
    pub async fn wait(&mut self) -> Result<i32> {
        self.events.wait().await
    }

    /// Detaches (same as dropping the handle).
    pub fn detach(self) {}

    /// Splits into the two halves, to drive them from different tasks.
    pub fn into_split(self) -> (SessionInfo, Input, Events) {
        (self.info, self.input, self.events)
    }
}

impl Client {
    /// Starts a new TTY session and attaches to it.
    pub async fn shell(&self, opts: &ShellOptions) -> Result<Session> {
        self.start_session(&opts.request()).await
    }

    /// Attaches to an existing session; the first output event is the
    /// scrollback. Unknown id → [`Error::Agent`] `session not found`.
    pub async fn attach(&self, session_id: &str) -> Result<Session> {
        let req = ExecRequest {
            argv: Vec::new(),
            session_id: Some(session_id.to_owned()),
            ..ExecRequest::default()
        };
        self.start_session(&req).await
    }

    async fn start_session(&self, req: &ExecRequest) -> Result<Session> {
        let frame = json_frame(FrameType::EXEC_REQ, req)?;
        let mut c = self.open(CONTROL_PORT, frame.kind, &frame.payload).await?;
        let f = c.expect(FrameType::SESSION_INFO, "session start").await?;
        let info: SessionInfo = c.decode("SESSION_INFO", &f.payload)?;
        let (input, events) = split_stream(c, None);
        Ok(Session {
            info,
            input,
            events,
        })
    }

    /// Every registered session, exited ones not yet reaped included.
    pub async fn list_sessions(&self) -> Result<Vec<SessionInfo>> {
        self.unary_json(
            FrameType::EXEC_LIST_REQ,
            &[],
            FrameType::EXEC_LIST_RESP,
            "session list",
        )
        .await
    }

    /// SIGKILL to a session's process group. Unknown id →
    /// [`Error::Agent`] `session not found`.
    pub async fn kill_session(&self, session_id: &str) -> Result<()> {
        let req = ExecKillRequest {
            session_id: session_id.to_owned(),
        };
        let frame = json_frame(FrameType::EXEC_KILL, &req)?;
        let kill = reply!(|c| {
            let f = c.expect(FrameType::EXIT, "session kill").await?;
            let code =
                messages::parse_exit(&f.payload).map_err(|e| c.note("session kill", e.into()))?;
            match code {
                0 => Ok(()),
                code => Err(c.note(
                    "session kill",
                    Error::Protocol(format!(
                        "EXEC_KILL answered with exit code {code}, expected 0"
                    )),
                )),
            }
        });
        self.unary(frame.kind, &frame.payload, kill).await
    }
}
