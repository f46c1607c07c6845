//! ACTIVITY_REQ: when the host last did something, and how many sessions
//! run and are attached (the host's idle detection reads this).

use std::sync::Arc;

use bhatti_proto::frame::FrameType;
use bhatti_proto::messages::ActivityInfo;

use crate::agent::Agent;
use crate::conn::{Conn, ConnError};

/// The only failure: the connection (nothing to answer).
pub type Error = ConnError;

pub async fn handle(agent: &Arc<Agent>, conn: Conn, _payload: &[u8]) -> Result<(), Error> {
    let (active, attached) = agent.sessions.counts();
    let info = ActivityInfo {
        last_activity_unix: agent.last_activity(),
        active_sessions: active,
        attached_sessions: attached,
    };
    conn.writer.json(FrameType::ACTIVITY_RESP, &info).await?;
    Ok(())
}
