//! Kept piped execs (protocol version 5): starting one (EXEC_REQ with
//! `keep`, from [`super::exec`]), KEPT_ATTACH, KEPT_LIST_REQ, and the
//! loop that serves every connection attached to one.
//!
//! Tasks per kept command: two output pumps (pipe → [`KeptCmd::output`])
//! and an exit task (the reaper's status, the pumps drained, `sync()`,
//! [`KeptCmd::finish`]); none of them belongs to a connection. Per
//! attached connection: a writer task (its channel → the socket) and the
//! handler's loop, which reads the host's frames: STDIN (an empty one
//! closes the command's stdin), KILL, SIGNAL. The end of the host's stream
//! (half-close or disconnect) detaches the connection and nothing else;
//! the command's stdin stays open for the next one.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use bhatti_proto::MAX_PAYLOAD_LEN;
use bhatti_proto::frame::{Frame, FrameType};
use bhatti_proto::kept::{KeptAttachRequest, KeptList};
use bhatti_proto::messages::{MessageError, decode_json};
use rustix::process::Pid;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use crate::agent::Agent;
use crate::children::ExitCode;
use crate::conn::{Conn, ConnError};
use crate::handlers::exec::{Stdin, kill_group, nonblocking, signal_group};
use crate::handlers::{ErrorCode, Reply};
use crate::kept::{Attached, KeptCmd, KeptError, Msg, Spec};
use crate::spawn::Stdio;

/// Output read per chunk at first, and at most.
const FIRST_CHUNK: usize = 4 * 1024;
const OUTPUT_CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Request(#[from] MessageError),
    #[error(transparent)]
    Kept(#[from] KeptError),
    #[error(transparent)]
    Conn(#[from] ConnError),
}

impl Reply for Error {
    fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Request(e) => e.code(),
            Error::Kept(KeptError::TooMany(_)) => Some(ErrorCode::LimitReached),
            Error::Kept(KeptError::NotFound(_)) => Some(ErrorCode::SessionNotFound),
            Error::Kept(KeptError::TagTooLong(_)) => Some(ErrorCode::InvalidRequest),
            Error::Conn(e) => e.code(),
        }
    }
}

/// Registers a started piped exec as a kept command and serves `conn` as
/// its first attached connection. `defer_sync` (version 7): its EXIT goes
/// out before the sync, as for a piped exec.
pub async fn start(
    agent: &Arc<Agent>,
    conn: Conn,
    spec: Spec,
    stdio: Stdio,
    exit: oneshot::Receiver<ExitCode>,
    defer_sync: bool,
) -> Result<(), Error> {
    let stdin = stdio.stdin.map_or(Stdin::Closed, Stdin::Unopened);
    let cmd = agent.kept.add(spec, stdin);
    // Attached before the pumps start: nothing is missed.
    let attached = cmd.attach();
    let out = tokio::spawn(pump(
        agent.clone(),
        cmd.clone(),
        stdio.stdout,
        FrameType::STDOUT,
    ));
    let err = tokio::spawn(pump(
        agent.clone(),
        cmd.clone(),
        stdio.stderr,
        FrameType::STDERR,
    ));
    let (a, c) = (agent.clone(), cmd.clone());
    tokio::spawn(async move {
        let code = exit.await.unwrap_or(-1);
        // Background jobs holding the output pipes keep the drain going;
        // KILL and SIGNAL still reach their group meanwhile.
        let _ = out.await;
        let _ = err.await;
        let sync = a.sync_after_exec;
        if sync && !defer_sync {
            crate::flush::sync().await;
        }
        c.finish(code).await;
        if sync && defer_sync {
            crate::flush::start_sync();
        }
    });
    serve(agent, conn, &cmd, attached).await
}

/// KEPT_ATTACH: KEPT_INFO, the replay, then live output and the exit.
pub async fn attach(agent: &Arc<Agent>, conn: Conn, payload: &[u8]) -> Result<(), Error> {
    let req: KeptAttachRequest = decode_json("KeptAttachRequest", payload)?;
    let cmd = agent.kept.get(&req.id)?;
    let attached = cmd.attach();
    serve(agent, conn, &cmd, attached).await
}

/// KEPT_LIST_REQ: every kept command, oldest first; the oldest are left
/// out (and `truncated` set) when the list would not fit one frame.
pub async fn list(agent: &Arc<Agent>, conn: Conn, _payload: &[u8]) -> Result<(), Error> {
    let mut list = KeptList {
        commands: agent.kept.list(),
        truncated: false,
    };
    loop {
        let json = serde_json::to_vec(&list).unwrap_or_default();
        if json.len() <= MAX_PAYLOAD_LEN || list.commands.is_empty() {
            conn.writer.send(FrameType::KEPT_LIST_RESP, &json).await?;
            return Ok(());
        }
        list.commands.remove(0);
        list.truncated = true;
    }
}

/// Serves one attached connection until the command's exit is sent, the
/// host's stream ends, or the connection is dropped for stalling.
async fn serve(
    agent: &Arc<Agent>,
    conn: Conn,
    cmd: &Arc<KeptCmd>,
    a: Attached,
) -> Result<(), Error> {
    let (mut frames, writer) = conn.into_frames();
    writer.json(FrameType::KEPT_INFO, &a.info).await?;
    for (kind, data) in &a.replay {
        for chunk in data.chunks(MAX_PAYLOAD_LEN) {
            writer.send(*kind, chunk).await?;
        }
    }
    let Some(mut live) = a.live else {
        writer.exit(a.info.exit_code.unwrap_or(-1)).await?;
        return Ok(());
    };
    let w = writer.clone();
    let mut out = tokio::spawn(async move {
        while let Some(m) = live.recv().await {
            match m {
                Msg::Frame(f) => {
                    if w.send_encoded(&f).await.is_err() {
                        return;
                    }
                }
                Msg::Exit(code) => {
                    let _ = w.exit(code).await;
                    return;
                }
            }
        }
    });
    loop {
        tokio::select! {
            _ = &mut out => return Ok(()),
            frame = frames.recv() => match frame {
                None => {
                    out.abort();
                    return Ok(());
                }
                Some(f) => {
                    agent.touch();
                    input(cmd, f).await;
                }
            },
        }
    }
}

/// One frame from an attached host.
async fn input(cmd: &KeptCmd, f: Frame) {
    let running = cmd.exit_code().is_none();
    match f.kind {
        FrameType::STDIN if f.payload.is_empty() => {
            cmd.stdin.lock().await.close();
            cmd.stdin_closed();
        }
        FrameType::STDIN => cmd.stdin.lock().await.send(f.payload).await,
        // Never to a group whose pid may have been reused.
        FrameType::KILL if running => kill_group(Pid::from_raw(cmd.pid)),
        FrameType::SIGNAL if running => signal_group(Pid::from_raw(cmd.pid), &f.payload),
        _ => {}
    }
}

/// Relays one output pipe into the command's ring and its attached
/// connections until end of file.
async fn pump(agent: Arc<Agent>, cmd: Arc<KeptCmd>, fd: OwnedFd, kind: FrameType) {
    let mut rx = match nonblocking(fd).and_then(pipe::Receiver::from_owned_fd_unchecked) {
        Ok(rx) => rx,
        Err(e) => {
            crate::log!("kept exec: output pipe: {e}");
            return;
        }
    };
    let mut buf = vec![0u8; FIRST_CHUNK];
    loop {
        let n = match rx.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                crate::debug!("kept exec: read output: {e}");
                return;
            }
        };
        if cmd.output(kind, &buf[..n]).await {
            agent.touch();
        }
        if n == buf.len() && buf.len() < OUTPUT_CHUNK {
            buf = vec![0u8; OUTPUT_CHUNK];
        }
    }
}
