//! Piped exec: [`Client::exec`] (buffered, with an output cap and a
//! timeout) and [`Client::exec_stream`] (events as they arrive, stdin,
//! KILL).
//!
//! The buffered form runs on the caller's task: the request is written,
//! then stdin (if any) is written while the output is read, on the two
//! halves of the stream joined in one future — no task, no lock. The
//! streaming form hands the read half to a reader task (see [`crate::conn`]).

use std::collections::BTreeMap;
use std::time::Duration;

use bhatti_proto::messages::{self, ExecRequest, json_frame};
use bhatti_proto::{FrameType, async_io};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::conn::{self, Conn, Events, Input, recv_known, split_stream};
use crate::error::{self, Error, Result};
use crate::{Client, Event, feature};

/// How long the best-effort KILL after a timeout may take.
const KILL_GRACE: Duration = Duration::from_secs(1);

/// A buffered piped exec.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub argv: Vec<String>,
    /// Request environment (wins over the sandbox env and the defaults).
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    /// Bytes for stdin. When set, they are sent and stdin is closed (so
    /// `cat` ends); when `None`, stdin stays open until the command exits,
    /// which keeps KILL available for the timeout.
    pub stdin: Option<Vec<u8>>,
    /// Keep at most this many bytes of stdout and of stderr each; the rest
    /// is read and dropped, and [`ExecResult`] says so.
    pub output_cap: Option<usize>,
    /// On expiry the process group gets KILL (when stdin is still open) and
    /// the call returns [`Error::Timeout`].
    pub timeout: Option<Duration>,
    /// Guest user to run as (a name from the guest's `/etc/passwd` or a
    /// numeric uid); `None`: the sandbox's default (root unless the
    /// sandbox sets `exec_user`). Extension "user" (`docs/protocol.md`):
    /// a v1 agent ignores it and runs the command as root.
    pub user: Option<String>,
}

impl ExecOptions {
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

    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    pub fn output_cap(mut self, bytes: usize) -> Self {
        self.output_cap = Some(bytes);
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// Runs the command as this guest user (see [`ExecOptions::user`]).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    fn request(&self) -> ExecRequest {
        ExecRequest {
            argv: self.argv.clone(),
            env: self.env.clone(),
            cwd: self.cwd.clone(),
            user: self.user.clone(),
            ..ExecRequest::default()
        }
    }
}

/// What a buffered exec collected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecResult {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Stdout exceeded the output cap; the first `cap` bytes are kept.
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// The deadline passed and the command was killed
    /// ([`crate::Supervised`]; [`Client::exec`] reports a deadline as
    /// [`Error::Timeout`] instead).
    pub timed_out: bool,
}

/// A running piped exec: [`Input`] for stdin and KILL, [`Events`] for
/// output and the exit code. Dropping it closes the connection (the
/// process keeps running, with its stdin closed).
#[derive(Debug)]
pub struct ExecStream {
    pub input: Input,
    pub events: Events,
}

impl ExecStream {
    /// The next event (see [`Events::next`]).
    pub async fn next(&mut self) -> Result<Option<Event>> {
        self.events.next().await
    }

    /// Splits into the two halves, to drive them from different tasks.
    pub fn into_split(self) -> (Input, Events) {
        (self.input, self.events)
    }
}

impl Client {
    /// Runs a command to completion and collects its output.
    pub async fn exec(&self, opts: ExecOptions) -> Result<ExecResult> {
        let req = opts.request();
        let req = self.prepare_exec(&req).await.0.unwrap_or(req);
        let frame = json_frame(FrameType::EXEC_REQ, &req)?;
        let cap = opts.output_cap.unwrap_or(usize::MAX);
        let stdin = opts.stdin.as_deref();
        let Some(limit) = opts.timeout else {
            let run = reply!(|c| run_exec(&mut c, stdin, cap, None).await);
            return self.unary(frame.kind, &frame.payload, run).await;
        };
        let deadline = tokio::time::Instant::now() + limit;
        let run = reply!(|c| run_exec(&mut c, stdin, cap, Some((deadline, limit))).await);
        // The deadline inside covers the command; this one the connection
        // too, with room for the KILL after it.
        tokio::time::timeout_at(
            deadline + KILL_GRACE,
            self.unary(frame.kind, &frame.payload, run),
        )
        .await
        .map_err(|_| Error::Timeout(limit))?
    }

    /// Starts a command and returns its streams as they arrive.
    pub async fn exec_stream(&self, req: &ExecRequest) -> Result<ExecStream> {
        if req.session_id.is_some() || req.tty {
            return Err(Error::InvalidRequest(
                "exec_stream is for piped execs; use shell/attach for TTY sessions".into(),
            ));
        }
        let (prepared, close_after) = self.prepare_exec(req).await;
        let sent = prepared.as_ref().unwrap_or(req);
        let frame = json_frame(FrameType::EXEC_REQ, sent)?;
        // A kept exec owns its connection (protocol version 6).
        let (c, pool) = if req.keep {
            let c = self.open(bhatti_proto::CONTROL_PORT, frame.kind, &frame.payload);
            (c.await?, None)
        } else {
            self.open_streamed(frame.kind, &frame.payload).await?
        };
        let (mut input, events) = split_stream(c, pool);
        if sent.stdin_closed {
            input.mark_stdin_closed();
        } else if close_after {
            // An agent without `stdin_closed`: closed at once the old way,
            // by an empty STDIN frame where the agent has `stdin_eof` (so
            // KILL and SIGNAL still reach the command), else (a v1 agent)
            // by a half-close.
            if self.serves(feature::STDIN_EOF).await.unwrap_or(false) {
                input.end_stdin().await?;
            } else {
                input.close_stdin().await?;
            }
        }
        Ok(ExecStream { input, events })
    }
}

/// Runs a buffered exec on `c` (its request sent) until EXIT or the
/// deadline, which KILLs the command and is [`Error::Timeout`].
async fn run_exec(
    c: &mut Conn,
    stdin: Option<&[u8]>,
    cap: usize,
    deadline: Option<(tokio::time::Instant, Duration)>,
) -> Result<ExecResult> {
    let mut heard = false;
    let reused = c.reusable;
    let (mut r, mut w) = tokio::io::split(&mut c.stream);
    let run = run_buffered(&mut r, &mut w, stdin, cap, reused, &mut heard);
    let res = match deadline {
        None => run.await,
        Some((at, limit)) => match tokio::time::timeout_at(at, run).await {
            Ok(res) => res,
            Err(_) => {
                // Best effort: fails harmlessly when stdin was half-closed.
                let kill = async_io::write_frame(&mut w, FrameType::KILL, &[]);
                let _ = tokio::time::timeout(KILL_GRACE, kill).await;
                Err(Error::Timeout(limit))
            }
        },
    };
    drop((r, w));
    c.heard = heard;
    if matches!(res, Err(Error::Timeout(_))) {
        // The rest of the output and EXIT are still to come.
        c.reusable = false;
    }
    res.map_err(|e| error::note(&c.peer, "exec", e))
}

/// Writes `stdin` (then ends it: a half-close, or an empty STDIN frame on
/// a reused connection) while reading output until EXIT.
async fn run_buffered<R, W>(
    r: &mut R,
    w: &mut W,
    stdin: Option<&[u8]>,
    cap: usize,
    reused: bool,
    heard: &mut bool,
) -> Result<ExecResult>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let write = async {
        if let Some(data) = stdin {
            for chunk in data.chunks(bhatti_proto::MAX_PAYLOAD_LEN) {
                async_io::write_frame(w, FrameType::STDIN, chunk).await?;
            }
            if reused {
                async_io::write_frame(w, FrameType::STDIN, &[]).await?;
            } else {
                w.shutdown().await?;
            }
        }
        Ok::<(), Error>(())
    };
    let (_written, read) = tokio::join!(write, collect_output(r, cap, heard));
    // A write error (the command exited without reading its stdin) does
    // not matter once the exit code is known; a read error does.
    read
}

/// Reads STDOUT/STDERR until EXIT; ERROR becomes [`Error::Agent`].
/// `heard` is set by the first frame.
async fn collect_output<R>(r: &mut R, cap: usize, heard: &mut bool) -> Result<ExecResult>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut out = ExecResult::default();
    loop {
        let f = recv_known(r, "exec").await;
        *heard |= matches!(&f, Ok(_) | Err(Error::Agent(_) | Error::AuthRefused(_)));
        let f = f?;
        match f.kind {
            FrameType::STDOUT => {
                append_capped(&mut out.stdout, &mut out.stdout_truncated, &f.payload, cap);
            }
            FrameType::STDERR => {
                append_capped(&mut out.stderr, &mut out.stderr_truncated, &f.payload, cap);
            }
            FrameType::EXIT => {
                out.exit_code = messages::parse_exit(&f.payload)?;
                return Ok(out);
            }
            _ => return Err(conn::unexpected(f)),
        }
    }
}

/// Appends what fits under `cap` of `data` to `buf`; `truncated` once
/// anything did not fit.
pub(crate) fn append_capped(buf: &mut Vec<u8>, truncated: &mut bool, data: &[u8], cap: usize) {
    let room = cap.saturating_sub(buf.len());
    if data.len() > room {
        *truncated = true;
    }
    buf.extend_from_slice(&data[..data.len().min(room)]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ShellOptions;

    #[test]
    fn user_goes_into_the_request_only_when_named() {
        let plain =
            json_frame(FrameType::EXEC_REQ, &ExecOptions::new(["id"]).request()).expect("encode");
        assert_eq!(plain.payload, br#"{"argv":["id"]}"#);
        let as_lohar = ExecOptions::new(["id"]).user("lohar").request();
        let f = json_frame(FrameType::EXEC_REQ, &as_lohar).expect("encode");
        assert_eq!(f.payload, br#"{"argv":["id"],"user":"lohar"}"#);
        let shell = ShellOptions::new(["sh"]).user("1000").request();
        assert_eq!((shell.tty, shell.user.as_deref()), (true, Some("1000")));
    }
}
