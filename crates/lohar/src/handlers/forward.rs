//! FWD_REQ on the forward port: dial `127.0.0.1:<port>` inside the guest,
//! answer FWD_RESP, and on success relay raw bytes both ways (no framing),
//! passing half-closes through, until both directions end.
//!
//! Takes the whole stream rather than a [`crate::conn::Conn`]: after the
//! handshake the connection is no longer framed. The frame reader never
//! reads past a frame, so no tunnel bytes are lost to it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bhatti_proto::frame::FrameType;
use bhatti_proto::messages::{ForwardRequest, MessageError, StatusResponse, decode_json};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use crate::agent::Agent;
use crate::conn::{BoxStream, ConnError};
use crate::handlers::{Reply, io_text};

/// How long a dial may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Request(#[from] MessageError),
    #[error(transparent)]
    Conn(#[from] ConnError),
}

impl Reply for Error {
    fn reply(&self) -> bool {
        // Every failure is answered inside `handle` (FWD_RESP error).
        false
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
    let dialed = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr)).await;
    let mut upstream = match dialed {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let msg = format!("dial tcp {addr}: {}", io_text(&e));
            return respond(&mut stream, &StatusResponse::error(msg)).await;
        }
        Err(_) => {
            let msg = format!("dial tcp {addr}: i/o timeout");
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
