//! Listeners, connection limit, auth and dispatch.
//!
//! Tasks: one accept loop per listener (control and forward, each on Unix
//! sockets in test mode, TCP and optionally vsock in a VM); one task per
//! accepted connection. A connection first takes a permit of the shared
//! connection semaphore (over the limit: ERROR and close), then passes
//! auth (first frame AUTH within [`AUTH_DEADLINE`], constant-time compare),
//! then reads its one request frame and runs the matching handler, which
//! owns the connection until the operation ends. A control connection
//! whose first frame after AUTH is REUSE (protocol version 6) serves
//! request after request instead ([`reuse`]).
//!
//! A connection authenticated before an identify ([`crate::identify`])
//! replaced the token belonged to the parent sandbox's host: when the token
//! changes, its socket is shut down both ways (through a duplicate of its
//! descriptor taken at accept): the handler sees a disconnect and ends as
//! it would then (a TTY session detaches, a piped exec's child keeps
//! running), and a peer that can still be reached sees the close (in a
//! re-identified VM it cannot: the guest's address changed first).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use bhatti_proto::ErrorCode;
use bhatti_proto::frame::{Frame, FrameType};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, watch};

use crate::agent::Agent;
use crate::conn::{BoxStream, Conn, ConnError};
use crate::handlers::{self, Reply};

/// Time a client has to send its AUTH frame.
pub const AUTH_DEADLINE: Duration = Duration::from_secs(5);

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Control,
    Forward,
}

/// A listening socket of any transport.
#[derive(Debug)]
pub enum Listener {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
    Vsock(crate::vsock::VsockListener),
}

impl Listener {
    /// Transport name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Listener::Unix(_) => "unix",
            Listener::Tcp(_) => "tcp",
            Listener::Vsock(_) => "vsock",
        }
    }

    /// The next connection, with a duplicate of its socket descriptor
    /// (`None` if `dup` failed) to shut it down by (see the module doc).
    async fn accept(&self) -> std::io::Result<(BoxStream, Option<OwnedFd>)> {
        let (stream, fd): (BoxStream, _) = match self {
            Listener::Unix(l) => {
                let s = l.accept().await?.0;
                let fd = dup(&s);
                (Box::new(s), fd)
            }
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                let _ = s.set_nodelay(true);
                let fd = dup(&s);
                (Box::new(s), fd)
            }
            Listener::Vsock(l) => {
                let s = l.accept().await?;
                let fd = dup(&s);
                (Box::new(s), fd)
            }
        };
        Ok((stream, fd))
    }
}

fn dup(s: &impl AsFd) -> Option<OwnedFd> {
    rustix::io::fcntl_dupfd_cloexec(s, 0)
        .map_err(|e| crate::log!("dup of a connection: {e}"))
        .ok()
}

/// Serves `listeners` until the process ends.
pub async fn serve(agent: Arc<Agent>, listeners: Vec<(Port, Listener)>) {
    let permits = Arc::new(Semaphore::new(agent.limits.max_connections));
    let mut tasks = tokio::task::JoinSet::new();
    for (port, listener) in listeners {
        let agent = agent.clone();
        let permits = permits.clone();
        tasks.spawn(accept_loop(agent, port, listener, permits));
    }
    while tasks.join_next().await.is_some() {}
}

async fn accept_loop(agent: Arc<Agent>, port: Port, listener: Listener, permits: Arc<Semaphore>) {
    loop {
        let (stream, closer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                crate::log!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let agent = agent.clone();
        let permit = permits.clone().try_acquire_owned();
        tokio::spawn(async move {
            let mut stream = stream;
            let Ok(_permit) = permit else {
                let msg = format!(
                    "too many connections (limit {})",
                    agent.limits.max_connections
                );
                let _ = write_error(&mut stream, ErrorCode::LimitReached, &msg).await;
                return;
            };
            if let Err(e) = connection(&agent, port, stream, closer).await {
                crate::debug!("connection ended: {e}");
            }
        });
    }
}

/// Why a connection ended before a handler took it over.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Conn(#[from] ConnError),
    #[error("closed before the first frame")]
    Closed,
    #[error("auth failed")]
    Auth,
}

async fn connection(
    agent: &Arc<Agent>,
    port: Port,
    mut stream: BoxStream,
    closer: Option<OwnedFd>,
) -> Result<(), ServeError> {
    let Some((first, mut token)) = authenticate(agent, &mut stream).await? else {
        return Err(ServeError::Closed);
    };
    let work = handle(agent, port, stream, first);
    tokio::pin!(work);
    tokio::select! {
        res = &mut work => return res,
        Ok(()) = token.changed() => {}
    }
    // An identify replaced the token: this connection was the parent's.
    crate::debug!("closing a connection authenticated before an identify");
    if let Some(fd) = &closer {
        let _ = rustix::net::shutdown(fd, rustix::net::Shutdown::Both);
    }
    work.await
}

async fn handle(
    agent: &Arc<Agent>,
    port: Port,
    mut stream: BoxStream,
    first: Frame,
) -> Result<(), ServeError> {
    if (port, first.kind) == (Port::Control, FrameType::REUSE) {
        return reuse::serve(agent, stream).await;
    }
    before_request(agent, first.kind);
    match (port, first.kind) {
        (Port::Forward, FrameType::FWD_REQ) => {
            report(
                handlers::forward::handle(agent, stream, &first.payload).await,
                None,
            )
            .await
        }
        (Port::Control, kind) if is_control_request(kind) => {
            let conn = Conn::new(stream);
            let writer = conn.writer.clone();
            let res = dispatch(agent, conn, first).await;
            report_boxed(res, Some(&writer)).await
        }
        (_, kind) => {
            let msg = format!("unexpected frame type 0x{:02x}", kind.0);
            write_error(&mut stream, ErrorCode::UnexpectedFrame, &msg).await?;
            Ok(())
        }
    }
}

/// What every request does first.
fn before_request(agent: &Agent, kind: FrameType) {
    // A request is what a wake leads to: it sees the time the host sees,
    // not the time the VM stopped at.
    if let Some(rtc) = &agent.rtc {
        rtc.catch_up();
    }
    // The host's idle poll, and its sync before a pause, must not count
    // as activity.
    if !matches!(kind, FrameType::ACTIVITY_REQ | FrameType::SYNC_REQ) {
        agent.touch();
    }
}

fn is_control_request(kind: FrameType) -> bool {
    matches!(
        kind,
        FrameType::EXEC_REQ
            | FrameType::EXEC_LIST_REQ
            | FrameType::EXEC_KILL
            | FrameType::ACTIVITY_REQ
            | FrameType::FILE_READ_REQ
            | FrameType::FILE_WRITE_REQ
            | FrameType::FILE_STAT_REQ
            | FrameType::FILE_LS_REQ
            | FrameType::CAPS_REQ
            | FrameType::MKDIR_REQ
            | FrameType::MOVE_REQ
            | FrameType::REMOVE_REQ
            | FrameType::STAT2_REQ
            | FrameType::LS2_REQ
            | FrameType::WATCH_REQ
            | FrameType::KEPT_LIST_REQ
            | FrameType::KEPT_ATTACH
            | FrameType::SYNC_REQ
    )
}

/// Either handler error type, boxed for reporting.
type HandlerResult = Result<(), Box<dyn ReplyError>>;

/// A handler error: displayable, reportable.
pub trait ReplyError: Reply + std::fmt::Debug + Send {}
impl<T: Reply + std::fmt::Debug + Send> ReplyError for T {}

fn boxed<E: ReplyError + 'static>(r: Result<(), E>) -> HandlerResult {
    r.map_err(|e| Box::new(e) as Box<dyn ReplyError>)
}

async fn dispatch(agent: &Arc<Agent>, conn: Conn, req: Frame) -> HandlerResult {
    use handlers::*;
    let p = &req.payload;
    match req.kind {
        FrameType::EXEC_REQ => boxed(exec::dispatch(agent, conn, p).await),
        FrameType::EXEC_LIST_REQ => boxed(session_list::handle(agent, conn, p).await),
        FrameType::EXEC_KILL => boxed(session_kill::handle(agent, conn, p).await),
        FrameType::ACTIVITY_REQ => boxed(activity::handle(agent, conn, p).await),
        FrameType::FILE_READ_REQ => boxed(file_read::handle(agent, conn, p).await),
        FrameType::FILE_WRITE_REQ => boxed(file_write::handle(agent, conn, p).await),
        FrameType::FILE_STAT_REQ => boxed(file_stat::handle(agent, conn, p).await),
        FrameType::FILE_LS_REQ => boxed(file_ls::handle(agent, conn, p).await),
        FrameType::CAPS_REQ => boxed(caps::handle(agent, conn, p).await),
        FrameType::MKDIR_REQ => boxed(fsops::mkdir(agent, conn, p).await),
        FrameType::MOVE_REQ => boxed(fsops::mv(agent, conn, p).await),
        FrameType::REMOVE_REQ => boxed(fsops::remove(agent, conn, p).await),
        FrameType::STAT2_REQ => boxed(fsops::stat2(agent, conn, p).await),
        FrameType::LS2_REQ => boxed(ls2::handle(agent, conn, p).await),
        FrameType::WATCH_REQ => boxed(watch::handle(agent, conn, p).await),
        FrameType::KEPT_LIST_REQ => boxed(kept::list(agent, conn, p).await),
        FrameType::KEPT_ATTACH => boxed(kept::attach(agent, conn, p).await),
        FrameType::SYNC_REQ => boxed(sync::handle(agent, conn, p).await),
        // Filtered by `is_control_request`.
        _ => Ok(()),
    }
}

async fn report<E: ReplyError + 'static>(
    res: Result<(), E>,
    writer: Option<&crate::conn::FrameWriter>,
) -> Result<(), ServeError> {
    report_boxed(boxed(res), writer).await
}

async fn report_boxed(
    res: HandlerResult,
    writer: Option<&crate::conn::FrameWriter>,
) -> Result<(), ServeError> {
    let Err(e) = res else { return Ok(()) };
    match (e.code(), writer) {
        (Some(code), Some(w)) => w.error(code, &e.to_string()).await?,
        (Some(_), None) => {}
        (None, _) => crate::debug!("handler: {e}"),
    }
    Ok(())
}

/// The token a connection authenticated with; `changed()` fires when an
/// identify replaces it.
type TokenWatch = watch::Receiver<Option<Vec<u8>>>;

/// Reads the first frame, enforcing auth when a token is configured.
/// Returns the request frame (the one after AUTH) with the token it was
/// checked against, or `None` on a clean close.
async fn authenticate<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    agent: &Agent,
    stream: &mut S,
) -> Result<Option<(Frame, TokenWatch)>, ServeError> {
    let mut token = agent.token();
    if token.borrow().is_none() {
        // No token: an AUTH frame is accepted and skipped.
        let first = read(stream).await?;
        let req = match first {
            Some(f) if f.kind == FrameType::AUTH => read(stream).await?,
            other => other,
        };
        return Ok(req.map(|f| (f, token)));
    }
    let first = tokio::time::timeout(AUTH_DEADLINE, read(stream)).await;
    // Checked against the token current when the frame arrived, which the
    // receiver then counts as seen.
    let ok = matches!(&first, Ok(Ok(Some(f))) if f.kind == FrameType::AUTH
        && constant_time_eq(&f.payload, token.borrow_and_update().as_deref().unwrap_or_default()));
    if !ok {
        if !matches!(first, Ok(Ok(None))) {
            write_error(stream, ErrorCode::AuthRequired, "auth required").await?;
        }
        return Err(ServeError::Auth);
    }
    Ok(read(stream).await?.map(|f| (f, token)))
}

async fn read<S: AsyncRead + Unpin + ?Sized>(stream: &mut S) -> Result<Option<Frame>, ServeError> {
    Ok(bhatti_proto::async_io::read_frame(stream)
        .await
        .map_err(ConnError::from)?)
}

/// Sends ERROR_CODE + ERROR in one write (see [`bhatti_proto::error_code`]).
async fn write_error<S: AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    code: ErrorCode,
    msg: &str,
) -> Result<(), ConnError> {
    use tokio::io::AsyncWriteExt;
    let buf = bhatti_proto::error_code::encode_error(code, msg)?;
    stream.write_all(&buf).await?;
    Ok(())
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

mod reuse;

#[cfg(test)]
mod hostile_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_matches_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
