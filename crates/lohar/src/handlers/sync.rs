//! SYNC_REQ (protocol version 7): SYNC_RESP once a `sync()` that started
//! after the request arrived has finished, so everything the guest wrote
//! before it (a deferred exec's output files included) is on its disks.
//! The host asks before it pauses or snapshots the VM.

use std::sync::Arc;

use bhatti_proto::frame::FrameType;

use crate::agent::Agent;
use crate::conn::{Conn, ConnError};

/// The only failure: the connection (nothing to answer).
pub type Error = ConnError;

pub async fn handle(_agent: &Arc<Agent>, conn: Conn, _payload: &[u8]) -> Result<(), Error> {
    // Always a real sync, also in test mode with `LOHAR_EXEC_SYNC=0`: the
    // host asked for exactly that.
    crate::flush::sync().await;
    conn.writer.send(FrameType::SYNC_RESP, &[]).await
}
