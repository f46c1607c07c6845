//! Forward: [`Client::forward`] opens a tunnel to a TCP port inside the
//! guest.
//!
//! The handshake (AUTH, FWD_REQ, FWD_RESP) is read frame by frame straight
//! from the stream with exact-length reads, so not one byte of the raw
//! relay that follows is consumed by the client; the caller gets the stream
//! itself and can `shutdown` it to half-close.

use bhatti_proto::messages::{self, ForwardRequest, StatusResponse, json_frame};
use bhatti_proto::{FORWARD_PORT, FrameType};

use crate::Client;
use crate::connector::BoxStream;
use crate::error::{Error, Result};

impl Client {
    /// Connects the agent to `127.0.0.1:port` in the guest and returns the
    /// raw byte stream. A dial failure is [`Error::Agent`] with the dial
    /// error text (it contains `refused` for a closed port).
    pub async fn forward(&self, port: u16) -> Result<BoxStream> {
        let frame = json_frame(FrameType::FWD_REQ, &ForwardRequest { port })?;
        let mut c = self.open(FORWARD_PORT, frame.kind, &frame.payload).await?;
        let f = c.expect(FrameType::FWD_RESP, "forward").await?;
        let status: StatusResponse = messages::decode_json("FWD_RESP", &f.payload)?;
        if status.is_ok() {
            Ok(c.stream)
        } else {
            Err(Error::Agent(status.message.unwrap_or(status.status)))
        }
    }
}
