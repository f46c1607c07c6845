//! EXEC_REQ with `tty` (new session) or `session_id` (attach): relays one
//! client to a TTY session until the session exits, another client
//! displaces this one, or this client disconnects (detach; the process
//! keeps running).
//!
//! Tasks: this handler's loop (session output and end signal → socket;
//! frames → session, read in the loop), and a small
//! stdin task that writes to the PTY, so a program that does not read its
//! input can never stall the output relay.

use std::sync::Arc;

use bhatti_proto::frame::FrameType;
use bhatti_proto::messages::{ExecRequest, parse_resize};
use rustix::process::Signal;
use tokio::sync::mpsc;

use crate::agent::Agent;
use crate::children;
use crate::command;
use crate::conn::{Conn, ConnError};
use crate::env::Identity;
use crate::handlers::{ErrorCode, Reply, io_text, start_failure};
use crate::pty::{self, Master};
use crate::sessions::{Attached, Session, SessionError};
use crate::spawn;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("start: {0}")]
    Start(String),
    #[error(transparent)]
    User(#[from] crate::users::UserError),
    #[error(transparent)]
    Conn(#[from] ConnError),
}

impl Reply for Error {
    fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Session(e) => e.code(),
            Error::Start(_) => Some(ErrorCode::StartFailed),
            Error::User(e) => e.code(),
            Error::Conn(e) => e.code(),
        }
    }
}

/// Creates a TTY session for `req` and relays it to `conn`; it runs as
/// the user [`crate::run_as`] picks.
pub async fn create(agent: &Arc<Agent>, conn: Conn, req: ExecRequest) -> Result<(), Error> {
    let max_idle = req.max_idle_sec.unwrap_or(0);
    let id = agent.command_identity(req.user.as_deref())?;
    let (session, exit) = spawn_session(agent, &id, None, &req)?;
    let attached = session.attach(Some(max_idle));
    session.start(exit);
    relay(agent, conn, attached).await
}

/// Attaches `conn` to the session named by `req.session_id`.
pub async fn attach(agent: &Arc<Agent>, conn: Conn, req: ExecRequest) -> Result<(), Error> {
    let id = req.session_id.as_deref().unwrap_or_default();
    let session = agent.sessions.get(id).ok_or(SessionError::NotFound)?;
    let attached = session.attach(req.max_idle_sec);
    relay(agent, conn, attached).await
}

/// Starts the sandbox's init script as the session `init` (nobody
/// attached; its output collects in the scrollback), as the sandbox's
/// `exec_user`, else the sandbox user ([`Agent::init_identity`]).
pub fn start_init(agent: &Arc<Agent>, script: &str) -> Result<(), Error> {
    let req = ExecRequest::command(["/bin/sh", "-c", script]);
    let id = agent.init_identity()?;
    let (session, exit) = spawn_session(agent, &id, Some(crate::sessions::INIT_SESSION), &req)?;
    session.start(exit);
    Ok(())
}

fn spawn_session(
    agent: &Arc<Agent>,
    who: &Identity,
    id: Option<&str>,
    req: &ExecRequest,
) -> Result<(Arc<Session>, tokio::sync::oneshot::Receiver<i32>), Error> {
    let mut exit = None;
    let session = agent
        .sessions
        .create(id, |id| -> Result<Arc<Session>, Error> {
            let user_cmd =
                command::user_command(agent, who, &req.argv, &req.env, req.cwd.as_deref())
                    .map_err(|e| Error::Start(e.to_string()))?;
            let mut cmd = user_cmd.command();
            let pty = pty::open(req.rows_or_default(), req.cols_or_default())
                .map_err(|e| Error::Start(format!("pty: {}", io_text(&e))))?;
            if let Some(c) = &user_cmd.switch_to {
                // The user's terminal is the user's, as after a login.
                let _ =
                    rustix::fs::fchown(&pty.slave, Some(rustix::fs::Uid::from_raw(c.uid)), None);
            }
            pty::attach_child(&mut cmd, &pty.slave).map_err(|e| Error::Start(io_text(&e)))?;
            if agent.children_die_with_agent {
                command::die_with_agent(&mut cmd);
            }
            let creds = user_cmd.switch_to.as_ref();
            let spawned = children::spawn_with(|| {
                spawn::with_creds(creds, || {
                    let child = cmd.spawn()?;
                    let pid = child.id() as i32;
                    Ok((child, pid))
                })
            });
            let (child, rx) =
                spawned.map_err(|e| Error::Start(start_failure(&user_cmd.program, e)))?;
            // The child holds its own copies; ours must go so the master sees
            // EOF when the child's side closes.
            drop(cmd);
            drop(pty.slave);
            let master = Master::new(pty.master).map_err(|e| {
                // Nobody could ever talk to this process: end it.
                if let Some(pgid) = rustix::process::Pid::from_raw(child.id() as i32) {
                    let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
                }
                Error::Start(io_text(&e))
            })?;
            exit = Some(rx);
            // After setsid the child's pid is its process group id.
            Ok(Session::new(
                id,
                &req.argv,
                child.id() as i32,
                master,
                req.max_idle_sec.unwrap_or(0),
            ))
        })?;
    let exit = exit.ok_or_else(|| Error::Start("internal: no exit receiver".into()))?;
    Ok((session, exit))
}

async fn relay(agent: &Arc<Agent>, conn: Conn, mut attached: Attached) -> Result<(), Error> {
    let session = attached.session().clone();
    let (mut frames, writer) = conn.into_frames();
    writer.json(FrameType::SESSION_INFO, &attached.info).await?;
    if !attached.scrollback.is_empty() {
        writer
            .send(FrameType::STDOUT, &std::mem::take(&mut attached.scrollback))
            .await?;
    }
    if let Some(code) = attached.exited {
        writer.exit(code).await?;
        return Ok(());
    }
    let (stdin_tx, stdin_rx) = mpsc::channel::<Vec<u8>>(4);
    let stdin_task = tokio::spawn(feed_terminal(session.master.clone(), stdin_rx));
    let _abort_stdin = AbortOnDrop(stdin_task);
    let mut output_open = true;
    // Input waiting for room in the stdin queue. While it waits, no further
    // frames are read (back-pressure on this client), but output keeps
    // flowing, so a program that ignores its input cannot deadlock us.
    let mut pending: Option<Vec<u8>> = None;
    loop {
        tokio::select! {
            biased;
            code = &mut attached.end => {
                let Ok(code) = code else { return Ok(()) };
                while let Ok(chunk) = attached.output.try_recv() {
                    writer.send(FrameType::STDOUT, &chunk).await?;
                }
                writer.exit(code).await?;
                return Ok(());
            }
            chunk = attached.output.recv(), if output_open => match chunk {
                Some(chunk) => writer.send(FrameType::STDOUT, &chunk).await?,
                None => output_open = false,
            },
            permit = stdin_tx.reserve(), if pending.is_some() => {
                // When the terminal writer is gone, input is dropped.
                if let (Ok(permit), Some(buf)) = (permit, pending.take()) {
                    permit.send(buf);
                }
            }
            frame = frames.recv(), if pending.is_none() => {
                // Disconnect or half-close: detach (the guard in `attached`).
                let Some(frame) = frame else { return Ok(()) };
                agent.touch();
                match frame.kind {
                    FrameType::STDIN => pending = Some(frame.payload),
                    FrameType::RESIZE => {
                        if let Ok((rows, cols)) = parse_resize(&frame.payload) {
                            let _ = session.master.resize(rows, cols);
                        }
                    }
                    FrameType::KILL => session.signal(Signal::TERM),
                    FrameType::SIGNAL => {
                        if let Some(sig) = crate::handlers::parse_signal(&frame.payload) {
                            session.signal(sig);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

async fn feed_terminal(master: Arc<Master>, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(buf) = rx.recv().await {
        if let Err(e) = master.write_all(&buf).await {
            crate::debug!("pty write: {e}");
            return;
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
