//! EXEC_REQ: dispatch (attach / empty argv / TTY / piped) and piped exec.
//!
//! With `keep` (protocol version 5) the started command is handed to
//! [`kept`] instead, which serves this connection as its first attached
//! one.
//!
//! Piped exec tasks: two output pumps (stdout, stderr → STDOUT/STDERR
//! frames through the connection's one [`FrameWriter`]), a stdin feeder
//! (bounded channel → child stdin; started by the first non-empty STDIN
//! frame, so an exec without input never registers its stdin pipe), and
//! this handler's loop, which reads host frames (STDIN, KILL, SIGNAL —
//! protocol version 4, any named signal) and waits
//! for the reaper's exit status. The
//! child is in its own process group; KILL and SIGNAL signal the whole
//! group. A host
//! disconnect closes the child's stdin but does not kill it: the pumps keep
//! draining (and discarding) output so the child can finish.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use bhatti_proto::frame::FrameType;
use bhatti_proto::messages::{ExecRequest, MessageError, decode_json};
use rustix::process::{Pid, Signal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};

use crate::agent::Agent;
use crate::children::{self, ExitCode};
use crate::command;
use crate::conn::{Conn, ConnError, FrameBuf, FrameWriter, Frames};
use crate::handlers::{ErrorCode, Reply, kept, session, start_failure};
use crate::spawn;

/// Output read per frame, at most.
const OUTPUT_CHUNK: usize = 64 * 1024;
/// Output read per frame at first: most commands print little, and a
/// zeroed 64 KiB buffer per pipe is measurable per exec under TCG. A read
/// that fills it switches the pump to [`OUTPUT_CHUNK`].
const FIRST_CHUNK: usize = 4 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Request(#[from] MessageError),
    #[error("empty argv")]
    EmptyArgv,
    #[error("start: {0}")]
    Start(String),
    #[error(transparent)]
    User(#[from] crate::users::UserError),
    #[error(transparent)]
    Session(#[from] session::Error),
    #[error(transparent)]
    Kept(#[from] kept::Error),
    #[error(transparent)]
    Conn(#[from] ConnError),
}

impl Reply for Error {
    fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Request(e) => e.code(),
            Error::EmptyArgv => Some(ErrorCode::InvalidRequest),
            Error::Start(_) => Some(ErrorCode::StartFailed),
            Error::User(e) => e.code(),
            Error::Session(e) => e.code(),
            Error::Kept(e) => e.code(),
            Error::Conn(e) => e.code(),
        }
    }
}

/// Routes an EXEC_REQ as PROTOCOL.md orders it.
pub async fn dispatch(agent: &Arc<Agent>, conn: Conn, payload: &[u8]) -> Result<(), Error> {
    let req: ExecRequest = decode_json("ExecRequest", payload)?;
    if req.session_id.is_some() {
        return Ok(session::attach(agent, conn, req).await?);
    }
    if req.argv.is_empty() {
        return Err(Error::EmptyArgv);
    }
    if req.tty {
        return Ok(session::create(agent, conn, req).await?);
    }
    handle(agent, conn, req).await
}

/// Piped exec of `req` (non-empty argv, no TTY), as the user
/// [`crate::run_as`] picks.
pub async fn handle(agent: &Arc<Agent>, conn: Conn, req: ExecRequest) -> Result<(), Error> {
    if req.keep {
        agent
            .kept
            .check(req.tag.as_deref())
            .map_err(kept::Error::from)?;
    }
    let id = agent.command_identity(req.user.as_deref())?;
    let cmd = command::user_command(agent, &id, &req.argv, &req.env, req.cwd.as_deref())
        .map_err(|e| Error::Start(e.to_string()))?;
    let cwd = cmd.cwd.as_ref().map(|d| d.display().to_string());
    let program = cmd.program.clone();
    let stdin_null = req.stdin_null;
    // On a spawner thread (see `crate::spawner`): concurrent execs spawn
    // in parallel, and the runtime's thread never stalls in the vfork.
    let spawned = crate::spawner::run(move || {
        children::spawn_with(|| {
            spawn::spawn_piped(&cmd, stdin_null).map(|(pid, io)| ((pid, io), pid))
        })
    })
    .await
    .ok_or_else(|| Error::Start("the spawner thread failed".into()))?;
    let ((pid, stdio), exit) = spawned.map_err(|e| Error::Start(start_failure(&program, e)))?;
    if req.keep {
        let spec = crate::kept::Spec {
            pid,
            argv: req.argv,
            cwd,
            tag: req.tag,
            user: req.user,
        };
        let defer = req.defer_sync;
        return Ok(kept::start(agent, conn, spec, stdio, exit, defer).await?);
    }
    let pgid = Pid::from_raw(pid);
    let (defer_sync, req_stdin_closed) = (req.defer_sync, req.stdin_closed);

    let (mut frames, writer) = conn.into_frames();
    let out = tokio::spawn(pump(
        agent.clone(),
        stdio.stdout,
        FrameType::STDOUT,
        writer.clone(),
    ));
    let err = tokio::spawn(pump(
        agent.clone(),
        stdio.stderr,
        FrameType::STDERR,
        writer.clone(),
    ));
    // `stdin_closed`, `stdin_null` (version 7): the child reads end of
    // file at once.
    let mut stdin = match (stdio.stdin, req_stdin_closed) {
        (Some(fd), false) => Stdin::Unopened(fd),
        // Closed here and now: a value left in `stdio` would stay open.
        (fd, _) => {
            drop(fd);
            Stdin::Closed
        }
    };
    let (code, input_open) = relay_input(agent, &mut frames, exit, &mut stdin, pgid).await;
    if let Stdin::Feeding(_, feeder) = stdin {
        feeder.abort();
    }

    // Drain the output; KILL still reaches what is left of the group (a
    // background job holding the pipes open).
    let drained = async {
        let _ = out.await;
        let _ = err.await;
    };
    drain(&mut frames, input_open, drained, pgid).await;
    // The sync PROTOCOL.md orders before EXIT, or right after it when the
    // host asked for that (`defer_sync`, version 7).
    let (before, after) = match (agent.sync_after_exec, defer_sync) {
        (false, _) => (false, false),
        (true, defer) => (!defer, defer),
    };
    if before {
        crate::flush::sync().await;
    }
    let sent = writer.exit(code).await;
    if after {
        crate::flush::start_sync();
    }
    sent?;
    agent.touch();
    Ok(())
}

/// The child's stdin as the host has used it so far.
#[derive(Debug)]
pub enum Stdin {
    /// No input yet: the pipe's write end, not registered anywhere.
    Unopened(OwnedFd),
    /// Input flows through the feeder task.
    Feeding(mpsc::Sender<Vec<u8>>, tokio::task::JoinHandle<()>),
    /// Closed: the child sees end of file once the feeder has written
    /// what it was given.
    Closed,
}

impl Stdin {
    /// Passes `data` on to the child, starting the feeder on first use.
    pub async fn send(&mut self, data: Vec<u8>) {
        if let Stdin::Unopened(_) = self
            && let Stdin::Unopened(fd) = std::mem::replace(self, Stdin::Closed)
        {
            let (tx, rx) = mpsc::channel::<Vec<u8>>(4);
            *self = Stdin::Feeding(tx, tokio::spawn(feed_stdin(fd, rx)));
        }
        if let Stdin::Feeding(tx, _) = self
            && tx.send(data).await.is_err()
        {
            self.close();
        }
    }

    /// Closes the child's stdin (after what the feeder still holds):
    /// dropping the sender ends the feeder once its queue is written, and
    /// dropping an unopened write end closes it at once.
    pub fn close(&mut self) {
        *self = Stdin::Closed;
    }
}

/// Relays host frames (STDIN, KILL) to the child until it exits. Returns
/// the exit code and whether the host's side is still open. The child's
/// stdin closes on an empty STDIN frame, a half-close or disconnect, or
/// at the latest when the handler returns.
async fn relay_input(
    agent: &Agent,
    frames: &mut Frames,
    mut exit: oneshot::Receiver<ExitCode>,
    stdin: &mut Stdin,
    pgid: Option<Pid>,
) -> (ExitCode, bool) {
    let mut input_open = true;
    let code = loop {
        tokio::select! {
            code = &mut exit => break code.unwrap_or(-1),
            frame = frames.recv(), if input_open => match frame {
                // Half-close or disconnect: the child's stdin closes.
                None => {
                    input_open = false;
                    stdin.close();
                }
                Some(f) => {
                    agent.touch();
                    match f.kind {
                        FrameType::STDIN if f.payload.is_empty() => stdin.close(),
                        FrameType::STDIN => stdin.send(f.payload).await,
                        FrameType::KILL => kill_group(pgid),
                        FrameType::SIGNAL => signal_group(pgid, &f.payload),
                        _ => {}
                    }
                }
            },
        }
    };
    (code, input_open)
}

/// Waits for `drained` while still passing KILL on to the process group.
async fn drain(
    frames: &mut Frames,
    mut input_open: bool,
    drained: impl Future<Output = ()>,
    pgid: Option<Pid>,
) {
    tokio::pin!(drained);
    loop {
        tokio::select! {
            () = &mut drained => break,
            frame = frames.recv(), if input_open => match frame {
                None => input_open = false,
                Some(f) if f.kind == FrameType::KILL => kill_group(pgid),
                Some(f) if f.kind == FrameType::SIGNAL => signal_group(pgid, &f.payload),
                Some(_) => {}
            },
        }
    }
}

pub fn kill_group(pgid: Option<Pid>) {
    if let Some(pgid) = pgid {
        let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
    }
}

/// SIGNAL (protocol version 4): the frame's signal to the process group.
pub fn signal_group(pgid: Option<Pid>, payload: &[u8]) {
    if let (Some(pgid), Some(sig)) = (pgid, crate::handlers::parse_signal(payload)) {
        let _ = rustix::process::kill_process_group(pgid, sig);
    }
}

/// Relays one output pipe as frames of `kind`. After the host is gone it
/// keeps reading (and discarding) so the child never blocks on a full pipe.
/// Output delivered to a connected host counts as activity (a long build
/// streaming its log keeps the sandbox hot).
async fn pump(agent: Arc<Agent>, fd: OwnedFd, kind: FrameType, writer: FrameWriter) {
    let mut rx = match nonblocking(fd).and_then(pipe::Receiver::from_owned_fd_unchecked) {
        Ok(rx) => rx,
        Err(e) => {
            crate::log!("exec: output pipe: {e}");
            return;
        }
    };
    let mut buf = FrameBuf::new(FIRST_CHUNK);
    let mut cap = FIRST_CHUNK;
    let mut host = true;
    loop {
        let n = match rx.read(buf.payload_mut()).await {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                crate::debug!("exec: read output: {e}");
                return;
            }
        };
        if host {
            if writer.send_encoded(buf.finish(kind, n)).await.is_err() {
                host = false;
            } else {
                agent.touch();
            }
        }
        if n == cap && cap < OUTPUT_CHUNK {
            cap = OUTPUT_CHUNK;
            buf = FrameBuf::new(cap);
        }
    }
}

async fn feed_stdin(fd: OwnedFd, mut rx: mpsc::Receiver<Vec<u8>>) {
    let Ok(mut tx) = nonblocking(fd).and_then(pipe::Sender::from_owned_fd_unchecked) else {
        return;
    };
    while let Some(buf) = rx.recv().await {
        if tx.write_all(&buf).await.is_err() {
            return;
        }
    }
}

/// Makes the agent's end of a stdio pipe non-blocking, for tokio. One
/// `fcntl`: the end was made by `pipe2` with no status flags, and tokio's
/// checked constructors would add an `fstat` and an `F_GETFL` per pipe.
pub fn nonblocking(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK)?;
    Ok(fd)
}
