//! EXEC_KILL: SIGKILL to a session's process group, then EXIT 0. The
//! session leaves the registry (it is reaped from the list); a client
//! still attached gets its EXIT when the process dies.

use std::sync::Arc;

use bhatti_proto::messages::{ExecKillRequest, MessageError, decode_json};
use rustix::process::Signal;

use crate::agent::Agent;
use crate::conn::{Conn, ConnError};
use crate::handlers::{ErrorCode, Reply};
use crate::sessions::SessionError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Request(#[from] MessageError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Conn(#[from] ConnError),
}

impl Reply for Error {
    fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Request(e) => e.code(),
            Error::Session(e) => e.code(),
            Error::Conn(e) => e.code(),
        }
    }
}

pub async fn handle(agent: &Arc<Agent>, conn: Conn, payload: &[u8]) -> Result<(), Error> {
    let req: ExecKillRequest = decode_json("ExecKillRequest", payload)?;
    let session = agent
        .sessions
        .remove(&req.session_id)
        .ok_or(SessionError::NotFound)?;
    if session.is_running() {
        session.signal(Signal::KILL);
    }
    conn.writer.exit(0).await?;
    Ok(())
}
