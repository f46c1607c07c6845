//! EXEC_LIST_REQ: every registered session (running or exited, not yet
//! reaped) as EXEC_LIST_RESP, a JSON array (never null).

use std::sync::Arc;

use bhatti_proto::frame::FrameType;

use crate::agent::Agent;
use crate::conn::{Conn, ConnError};

/// The only failure: the connection (nothing to answer).
pub type Error = ConnError;

pub async fn handle(agent: &Arc<Agent>, conn: Conn, _payload: &[u8]) -> Result<(), Error> {
    let list = agent.sessions.list();
    conn.writer.json(FrameType::EXEC_LIST_RESP, &list).await?;
    Ok(())
}
