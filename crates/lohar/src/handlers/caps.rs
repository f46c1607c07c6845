//! CAPS_REQ (protocol version 4): the agent's protocol version and
//! features ([`bhatti_proto::ext::Caps::current`]), so the host can check
//! before it sends a frame a v1 agent would refuse.

use std::sync::Arc;

use bhatti_proto::ext::Caps;
use bhatti_proto::frame::FrameType;

use crate::agent::Agent;
use crate::conn::{Conn, ConnError};

pub async fn handle(_agent: &Arc<Agent>, conn: Conn, _payload: &[u8]) -> Result<(), ConnError> {
    conn.writer
        .json(FrameType::CAPS_RESP, &Caps::current())
        .await
}
