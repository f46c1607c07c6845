//! FWD_REQ on the forward port: dial `127.0.0.1:<port>` inside the guest,
//! answer FWD_RESP, and on success relay raw bytes both ways (no framing),
//! passing half-closes through, until both directions end.
//!
//! Takes the whole stream rather than a [`crate::conn::Conn`]: after the
//! handshake the connection is no longer framed. The frame reader never
//! reads past a frame, so no tunnel bytes are lost to it.
//!
//! The dial outlasts a server that is alive but slow to accept: a burst
//! of tunnels (the requests that waited for a cold sandbox to wake, all
//! at once) overflows a small listen backlog (busybox httpd: 9, Python's
//! `http.server`: 5), and the kernel drops the SYNs that find the accept
//! queue full. It would resend one only 1, 3, 7 and 15 s after the first,
//! so a queue that drained at 8 s was seen at 15 s, past the old 10 s
//! limit: a 502 for a server that was fine. [`dial`] starts a new connect
//! every [`DIAL_ATTEMPT`] instead (a fresh SYN), until [`DIAL_DEADLINE`].
//! A refused connect (nothing listening) still fails at once.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bhatti_proto::frame::FrameType;
use bhatti_proto::messages::{ForwardRequest, MessageError, StatusResponse, decode_json};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::agent::Agent;
use crate::conn::{BoxStream, ConnError};
use crate::handlers::{ErrorCode, Reply, io_text};

/// How long a dial may take in all.
const DIAL_DEADLINE: Duration = Duration::from_secs(30);

/// How long one connect attempt waits for the server's SYN-ACK before a
/// new attempt sends a fresh SYN.
const DIAL_ATTEMPT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Request(#[from] MessageError),
    #[error(transparent)]
    Conn(#[from] ConnError),
}

impl Reply for Error {
    fn code(&self) -> Option<ErrorCode> {
        // Every failure is answered inside `handle` (FWD_RESP error).
        None
    }
}

pub async fn handle(
    agent: &Arc<Agent>,
    mut stream: BoxStream,
    payload: &[u8],
) -> Result<(), Error> {
    let req: ForwardRequest = match decode_json("ForwardRequest", payload) {
        Ok(r) => r,
        Err(e) => {
            respond(&mut stream, &StatusResponse::error(e.to_string())).await?;
            return Err(e.into());
        }
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, req.port));
    let mut upstream = match dial(addr).await {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            let msg = format!("dial tcp {addr}: i/o timeout");
            return respond(&mut stream, &StatusResponse::error(msg)).await;
        }
        Err(e) => {
            let msg = format!("dial tcp {addr}: {}", io_text(&e));
            return respond(&mut stream, &StatusResponse::error(msg)).await;
        }
    };
    let _ = upstream.set_nodelay(true);
    respond(&mut stream, &StatusResponse::ok()).await?;
    // copy_bidirectional shuts down each write side when the other side's
    // read ends, which is exactly half-close pass-through.
    if let Err(e) = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await {
        crate::debug!("forward {addr}: {e}");
    }
    agent.touch();
    Ok(())
}

/// Connects to `addr`, one attempt per [`DIAL_ATTEMPT`] until
/// [`DIAL_DEADLINE`] (see the module doc); an attempt that fails (refused,
/// unreachable) ends the dial with its error.
async fn dial(addr: SocketAddr) -> io::Result<TcpStream> {
    let deadline = Instant::now() + DIAL_DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        // A timed-out attempt's socket is dropped: a SYN_SENT socket just
        // goes away, and the next attempt's SYN finds room sooner.
        if let Ok(res) =
            tokio::time::timeout(DIAL_ATTEMPT.min(left), TcpStream::connect(addr)).await
        {
            return res;
        }
    }
}

async fn respond<S: AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    resp: &StatusResponse,
) -> Result<(), Error> {
    let payload = serde_json::to_vec(resp).map_err(|e| ConnError::Io(std::io::Error::other(e)))?;
    bhatti_proto::async_io::write_frame(stream, FrameType::FWD_RESP, &payload)
        .await
        .map_err(ConnError::from)?;
    Ok(())
}
