//! One agent connection: opening it (with AUTH when the client has a token),
//! receiving frames (unknown types skipped), the stdin/KILL/RESIZE writer
//! half of streaming operations and the reader task that turns frames into
//! [`Event`]s.
//!
//! Errors: an ERROR_CODE frame is remembered and attached to the ERROR
//! frame that follows it ([`AgentFailure`]); a v1 agent sends none, and
//! the failure's code is then [`ErrorCode::Other`].
//!
//! Concurrency: streaming operations split the stream with
//! `tokio::io::split`. The read half moves into one spawned reader task that
//! sends events over a bounded channel (so a slow consumer applies
//! backpressure to the agent); the write half is owned by an [`Input`] and
//! used through `&mut self`, so no lock is ever held across a network await.
//! Dropping the [`Events`] aborts the reader task; once both halves are
//! dropped the socket closes.

use bhatti_proto::frame::{self, Frame, FrameType};
use bhatti_proto::messages::{self, encode_resize};
use bhatti_proto::{ErrorCode, MAX_PAYLOAD_LEN, async_io};
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use std::sync::Arc;
use std::time::Duration;

use crate::connector::BoxStream;
use crate::error::{self, AgentFailure, Error, Result};
use crate::pool::{Pool, Rejoin};

/// Events queued between the reader task and the consumer. With frames of
/// at most 1 MiB this bounds a slow consumer's backlog to ~8 MiB per stream.
const EVENT_QUEUE: usize = 8;

/// An open connection whose request has been sent.
pub(crate) struct Conn {
    pub(crate) stream: BoxStream,
    /// Names the agent in log lines.
    pub(crate) peer: Arc<str>,
    /// Longest wait in [`Conn::recv`] for the agent's reply.
    pub(crate) reply_timeout: Duration,
    /// Opened with REUSE: may go back to the pool once its reply was read
    /// whole ([`crate::pool`]).
    pub(crate) reusable: bool,
    /// Some frame of the reply arrived (so the connection was alive).
    pub(crate) heard: bool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Conn")
    }
}

impl Conn {
    /// Sends AUTH (when `token` is set), REUSE (when `reuse`) and the
    /// request in one write.
    pub(crate) async fn start(
        mut stream: BoxStream,
        token: Option<&[u8]>,
        reuse: bool,
        kind: FrameType,
        payload: &[u8],
        peer: Arc<str>,
    ) -> Result<Self> {
        let mut buf = Vec::with_capacity(frame::HEADER_LEN * 3 + payload.len() + 64);
        if let Some(t) = token {
            frame::encode_into(&mut buf, FrameType::AUTH, t)?;
        }
        if reuse {
            frame::encode_into(&mut buf, FrameType::REUSE, &[])?;
        }
        frame::encode_into(&mut buf, kind, payload)?;
        stream.write_all(&buf).await?;
        Ok(Self {
            stream,
            peer,
            reply_timeout: crate::REPLY_TIMEOUT,
            reusable: reuse,
            heard: false,
        })
    }

    /// Sends the request on an idle reused connection (protocol version
    /// 6): no AUTH, no REUSE, they were sent when it opened.
    pub(crate) async fn resume(
        mut stream: BoxStream,
        kind: FrameType,
        payload: &[u8],
        peer: Arc<str>,
    ) -> Result<Self> {
        let f = frame::encode(kind, payload)?;
        stream.write_all(&f).await?;
        Ok(Self {
            stream,
            peer,
            reply_timeout: crate::REPLY_TIMEOUT,
            reusable: true,
            heard: false,
        })
    }

    /// The next frame of a known type; unknown types are skipped. The end
    /// of the stream is [`Error::Closed`] (`during` names the operation),
    /// an ERROR frame the agent's error.
    /// A silent agent fails it after `reply_timeout` (logged).
    pub(crate) async fn recv(&mut self, during: &'static str) -> Result<Frame> {
        let limit = self.reply_timeout;
        let r = tokio::time::timeout(limit, recv_known(&mut self.stream, during))
            .await
            .unwrap_or(Err(Error::Timeout(limit)));
        if matches!(&r, Ok(_) | Err(Error::Agent(_) | Error::AuthRefused(_))) {
            self.heard = true;
        }
        if let Err(Error::Timeout(t)) = &r {
            tracing::warn!(peer = %self.peer, during, "agent silent for {t:?}");
        }
        r.map_err(|e| self.note(during, e))
    }

    /// The next frame, which must be `kind`; an ERROR frame becomes
    /// [`Error::Agent`] (or [`Error::AuthRefused`]).
    pub(crate) async fn expect(&mut self, kind: FrameType, during: &'static str) -> Result<Frame> {
        let f = self.recv(during).await?;
        check_kind(f, kind).map_err(|e| self.note(during, e))
    }

    /// Decodes a JSON reply; a malformed one is a logged protocol error.
    pub(crate) fn decode<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        payload: &[u8],
    ) -> Result<T> {
        messages::decode_json(what, payload).map_err(|e| self.note(what, e.into()))
    }

    /// Logs `e` if it is a protocol violation (see [`error::note`]).
    pub(crate) fn note(&self, during: &str, e: Error) -> Error {
        error::note(&self.peer, during, e)
    }
}

/// Reads frames until one of a known type arrives. An ERROR frame is
/// returned as the agent's error, with the code of the ERROR_CODE frame
/// before it (if any).
pub(crate) async fn recv_known<R>(r: &mut R, during: &'static str) -> Result<Frame>
where
    R: tokio::io::AsyncRead + Unpin + ?Sized,
{
    let mut code = None;
    loop {
        match async_io::read_frame(r).await? {
            None => return Err(Error::Closed(during)),
            Some(f) if f.kind == FrameType::ERROR_CODE => {
                code = Some(ErrorCode::from_payload(&f.payload));
            }
            Some(f) if f.kind == FrameType::ERROR => {
                return Err(Error::from_agent(code, f.text()));
            }
            Some(f) if f.kind.is_known() => return Ok(f),
            Some(_) => continue,
        }
    }
}

/// `Ok(f)` when `f` is of type `kind`; the agent's error or a protocol
/// violation otherwise.
pub(crate) fn check_kind(f: Frame, kind: FrameType) -> Result<Frame> {
    if f.kind == kind {
        Ok(f)
    } else {
        Err(unexpected(f))
    }
}

/// The error for a frame the operation did not expect: an ERROR frame is
/// the agent's answer, anything else a protocol violation.
pub(crate) fn unexpected(f: Frame) -> Error {
    if f.kind == FrameType::ERROR {
        Error::from_agent(None, f.text())
    } else {
        Error::Protocol(format!("unexpected {} frame", f.kind))
    }
}

/// What a streaming operation (piped exec or TTY session) reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Output on stdout (for a TTY session: the terminal's output,
    /// including the scrollback replayed on attach).
    Stdout(Vec<u8>),
    /// Output on stderr (piped exec only).
    Stderr(Vec<u8>),
    /// The process exited (signal death is 128 + signal); for a session it
    /// also means this client was displaced by another attach.
    Exit(i32),
    /// The agent reported an error; nothing follows.
    Error(AgentFailure),
}

/// The host → agent half of a streaming operation.
pub struct Input {
    /// `None` only once dropped.
    w: Option<WriteHalf<BoxStream>>,
    buf: Vec<u8>,
    /// Set on a reused connection (protocol version 6): where this half
    /// goes when dropped, to be joined with the read half for the pool.
    rejoin: Option<Arc<Rejoin>>,
    /// The command's stdin is closed already ([`Input::close_stdin`] has
    /// nothing left to do).
    stdin_closed: bool,
}

impl Drop for Input {
    fn drop(&mut self) {
        if let (Some(r), Some(w)) = (self.rejoin.take(), self.w.take()) {
            r.give_write(w);
        }
    }
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Input")
    }
}

impl Input {
    /// Sends `data` to the process's stdin (split into frames as needed).
    pub async fn write_stdin(&mut self, data: &[u8]) -> Result<()> {
        for chunk in data.chunks(MAX_PAYLOAD_LEN) {
            self.send(FrameType::STDIN, chunk).await?;
        }
        Ok(())
    }

    /// Half-closes the connection, which closes a piped exec's stdin (v1's
    /// only way to end input): nothing (not even [`Input::kill`] or
    /// [`Input::signal`]) can be sent afterwards. On a kept exec
    /// ([`crate::Kept`]) it only detaches. See [`Input::end_stdin`]. On a
    /// reused connection (protocol version 6, whose agents all have
    /// `stdin_eof`) it sends the empty STDIN frame instead, so that the
    /// connection can serve another request.
    pub async fn close_stdin(&mut self) -> Result<()> {
        if self.stdin_closed {
            return Ok(());
        }
        if self.rejoin.is_some() {
            return self.end_stdin().await;
        }
        self.half()?.shutdown().await?;
        self.stdin_closed = true;
        Ok(())
    }

    /// Notes that the request itself closed the command's stdin
    /// (`stdin_closed`, protocol version 7).
    pub(crate) fn mark_stdin_closed(&mut self) {
        self.stdin_closed = true;
    }

    fn half(&mut self) -> Result<&mut WriteHalf<BoxStream>> {
        self.w
            .as_mut()
            .ok_or(Error::Closed("a streaming operation"))
    }

    /// Closes the process's stdin with an empty STDIN frame (protocol
    /// version 5, feature `stdin_eof`), keeping the connection open: KILL
    /// and SIGNAL still reach the command afterwards, and on a kept exec
    /// this is how stdin is closed at all. An agent without the feature
    /// ignores the frame (v1 writes nothing to the pipe), so check
    /// [`crate::Client::caps`] first and use [`Input::close_stdin`]
    /// otherwise.
    pub async fn end_stdin(&mut self) -> Result<()> {
        self.send(FrameType::STDIN, &[]).await?;
        self.stdin_closed = true;
        Ok(())
    }

    /// Sends KILL: SIGKILL to a piped exec's process group, SIGTERM to a
    /// TTY session's process group.
    pub async fn kill(&mut self) -> Result<()> {
        self.send(FrameType::KILL, &[]).await
    }

    /// Sends SIGNAL (protocol version 4): signal `signal` (e.g. 15 for
    /// SIGTERM, 2 SIGINT, 1 SIGHUP, 9 SIGKILL) to the process group of the
    /// piped exec or TTY session. A number outside 1..=64 is
    /// [`Error::InvalidRequest`]. An agent without the `signal` feature
    /// ([`crate::Client::caps`]) ignores the frame; the agent ignores a
    /// signal number it does not know.
    pub async fn signal(&mut self, signal: i32) -> Result<()> {
        if !(1..=64).contains(&signal) {
            return Err(Error::InvalidRequest(format!(
                "signal {signal}: not a signal number (1..=64)"
            )));
        }
        let payload = format!(r#"{{"signal":{signal}}}"#);
        self.send(FrameType::SIGNAL, payload.as_bytes()).await
    }

    /// Sets a TTY session's window size (ignored by piped execs).
    pub async fn resize(&mut self, rows: u16, cols: u16) -> Result<()> {
        self.send(FrameType::RESIZE, &encode_resize(rows, cols))
            .await
    }

    async fn send(&mut self, kind: FrameType, payload: &[u8]) -> Result<()> {
        self.buf.clear();
        frame::encode_into(&mut self.buf, kind, payload)?;
        let Some(w) = self.w.as_mut() else {
            return Err(Error::Closed("a streaming operation"));
        };
        w.write_all(&self.buf).await?;
        Ok(())
    }
}

/// The agent → host half of a streaming operation: events in arrival order.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Result<Event>>,
    task: JoinHandle<()>,
    done: bool,
}

impl Drop for Events {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Events {
    /// The next event; `Ok(None)` after [`Event::Exit`] or [`Event::Error`].
    /// A connection that ends before either is [`Error::Closed`].
    ///
    /// Cancel safe: events come from a channel filled by the reader task.
    pub async fn next(&mut self) -> Result<Option<Event>> {
        if self.done {
            return Ok(None);
        }
        match self.rx.recv().await {
            Some(Ok(ev)) => {
                if matches!(ev, Event::Exit(_) | Event::Error(_)) {
                    self.done = true;
                }
                Ok(Some(ev))
            }
            Some(Err(e)) => {
                self.done = true;
                Err(e)
            }
            None => {
                self.done = true;
                Err(Error::Closed("a streaming operation"))
            }
        }
    }

    /// Discards output until the exit code arrives; an ERROR frame becomes
    /// [`Error::Agent`].
    pub async fn wait(&mut self) -> Result<i32> {
        loop {
            match self.next().await? {
                Some(Event::Exit(code)) => return Ok(code),
                Some(Event::Error(f)) => return Err(Error::from_failure(f)),
                Some(_) => {}
                None => return Err(Error::Closed("a streaming operation")),
            }
        }
    }
}

/// Splits a started connection into its [`Input`] and [`Events`] halves.
/// With `pool` (a connection opened with REUSE) the halves go back to it
/// once the reply ended cleanly and the [`Input`] was dropped.
pub(crate) fn split_stream(c: Conn, pool: Option<&Arc<Pool>>) -> (Input, Events) {
    let (r, w) = tokio::io::split(c.stream);
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let rejoin = pool.filter(|_| c.reusable).map(Rejoin::new);
    let task = tokio::spawn(read_events(r, tx, c.peer, rejoin.clone()));
    (
        Input {
            w: Some(w),
            buf: Vec::new(),
            rejoin,
            stdin_closed: false,
        },
        Events {
            rx,
            task,
            done: false,
        },
    )
}

/// The reader task: frames → events until EXIT, ERROR, EOF or an error.
/// After EXIT or ERROR the read half goes to `rejoin`, if any.
async fn read_events(
    mut r: ReadHalf<BoxStream>,
    tx: mpsc::Sender<Result<Event>>,
    peer: Arc<str>,
    rejoin: Option<Arc<Rejoin>>,
) {
    let mut code = None;
    loop {
        let ev = match async_io::read_frame(&mut r).await {
            Ok(None) => return,
            Ok(Some(f)) => match frame_to_event(f, &mut code) {
                Ok(Some(ev)) => Ok(ev),
                Ok(None) => continue,
                Err(e) => Err(error::note(&peer, "a streaming operation", e)),
            },
            Err(e) => Err(error::note(&peer, "a streaming operation", e.into())),
        };
        if matches!(ev, Ok(Event::Exit(_) | Event::Error(_))) {
            if let Some(j) = rejoin {
                j.give_read(r);
            }
            let _ = tx.send(ev).await;
            return;
        }
        let last = ev.is_err();
        if tx.send(ev).await.is_err() || last {
            return;
        }
    }
}

/// Maps one frame to an event; `Ok(None)` for unknown (skipped) types and
/// for ERROR_CODE, whose code is kept in `code` for an ERROR right after it
/// (any other known frame in between drops it).
fn frame_to_event(f: Frame, code: &mut Option<ErrorCode>) -> Result<Option<Event>> {
    if f.kind.is_known() && f.kind != FrameType::ERROR {
        *code = None;
    }
    Ok(Some(match f.kind {
        FrameType::STDOUT => Event::Stdout(f.payload),
        FrameType::STDERR => Event::Stderr(f.payload),
        FrameType::EXIT => Event::Exit(messages::parse_exit(&f.payload)?),
        FrameType::ERROR_CODE => {
            *code = Some(ErrorCode::from_payload(&f.payload));
            return Ok(None);
        }
        FrameType::ERROR => Event::Error(AgentFailure::from_frame(code.take(), f.text())),
        k if !k.is_known() => return Ok(None),
        k => return Err(Error::Protocol(format!("unexpected {k} frame in a stream"))),
    }))
}
