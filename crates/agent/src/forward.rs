//! Forward: [`Client::forward`] opens a tunnel to a TCP port inside the
//! guest.
//!
//! The handshake (AUTH, FWD_REQ, FWD_RESP) is read frame by frame straight
//! from the stream with exact-length reads, so not one byte of the raw
//! relay that follows is consumed by the client; the caller gets the stream
//! itself and can `shutdown` it to half-close.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bhatti_proto::messages::{ForwardRequest, StatusResponse, json_frame};
use bhatti_proto::{FORWARD_PORT, FrameType};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::Client;
use crate::connector::BoxStream;
use crate::error::{AgentFailure, Error, ErrorCode, Result};

impl Client {
    /// Connects the agent to `127.0.0.1:port` in the guest and returns the
    /// raw byte stream. A dial failure is [`Error::Agent`] with the dial
    /// error text (it contains `refused` for a closed port) and code
    /// [`ErrorCode::Other`]: FWD_RESP carries no code.
    pub async fn forward(&self, port: u16) -> Result<Tunnel> {
        let frame = json_frame(FrameType::FWD_REQ, &ForwardRequest { port })?;
        let mut c = self.open(FORWARD_PORT, frame.kind, &frame.payload).await?;
        let f = c.expect(FrameType::FWD_RESP, "forward").await?;
        let status: StatusResponse = c.decode("FWD_RESP", &f.payload)?;
        if status.is_ok() {
            Ok(Tunnel { stream: c.stream })
        } else {
            let msg = status.message.unwrap_or(status.status);
            Err(Error::Agent(AgentFailure::new(ErrorCode::Other, msg)))
        }
    }
}

/// An open tunnel: a raw byte stream to the guest port. `shutdown`
/// half-closes it; dropping it closes it.
pub struct Tunnel {
    stream: BoxStream,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tunnel")
    }
}

impl Tunnel {
    /// The underlying stream.
    pub fn into_inner(self) -> BoxStream {
        self.stream
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
