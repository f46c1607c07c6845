//! Reused control connections (protocol version 6, `docs/protocol.md`).
//!
//! A host that sends REUSE right after AUTH gets a connection that serves
//! request after request: after the reply to a *reusable* request ends,
//! the agent reads the next request from the same connection. Its frame
//! reader ([`Conn::split`]) reads the requests here, in the loop, and is
//! lent to each request's handler behind a mutex; the loop takes the next
//! request only once the handler (and anything it spawned) has let go of
//! it, so no frame meant for a running operation is ever read as a
//! request.
//!
//! Reusable: every unary request (its reply ends with one known frame or
//! an ERROR) and a piped exec that is not kept (its reply ends with EXIT
//! or an ERROR). TTY sessions, attaches, kept execs and watches own the
//! connection until they end, as on a one-request connection, and the
//! connection closes after them. So does any request whose reply was cut
//! (the peer went away, a frame could not be written).
//!
//! Between requests the agent skips STDIN, KILL, SIGNAL and RESIZE frames
//! (input that raced the end of an exec) and closes a connection that
//! stays idle for [`IDLE_LIMIT`] of guest time. It never closes a reused
//! connection after reading a request without answering it, so a host may
//! retry a request that got no reply byte on a fresh connection.

use std::sync::Arc;
use std::time::Duration;

use bhatti_proto::ErrorCode;
use bhatti_proto::frame::{Frame, FrameType};
use bhatti_proto::messages::ExecRequest;

use super::{ServeError, before_request, dispatch, is_control_request, report_boxed};
use crate::agent::Agent;
use crate::conn::{BoxStream, Conn};

/// How long a reused connection may wait for its next request.
pub const IDLE_LIMIT: Duration = Duration::from_secs(600);

/// Serves a reused connection until the host closes it, a request is not
/// reusable, or it idles past [`IDLE_LIMIT`].
pub async fn serve(agent: &Arc<Agent>, stream: BoxStream) -> Result<(), ServeError> {
    let (reader, writer) = Conn::split(stream);
    loop {
        let next = {
            let mut r = reader.lock().await;
            tokio::time::timeout(IDLE_LIMIT, r.recv()).await
        };
        let req = match next {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(()),
            Err(_) => {
                crate::debug!("reused connection idle for {IDLE_LIMIT:?}: closed");
                return Ok(());
            }
        };
        if is_late_input(req.kind) {
            continue;
        }
        if !is_control_request(req.kind) {
            let msg = format!("unexpected frame type 0x{:02x}", req.kind.0);
            writer.error(ErrorCode::UnexpectedFrame, &msg).await?;
            return Ok(());
        }
        before_request(agent, req.kind);
        let reusable = is_reusable(&req);
        let conn = Conn::lent(reader.clone().lock_owned().await, writer.clone());
        let res = dispatch(agent, conn, req).await;
        // An error with no code means the reply could not be written.
        let answered = match &res {
            Ok(()) => true,
            Err(e) => e.code().is_some(),
        };
        report_boxed(res, Some(&writer)).await?;
        // Something the handler spawned may still hold the reader.
        if !(reusable && answered) || reader.try_lock().is_err() {
            return Ok(());
        }
    }
}

/// Host → guest frames of a finished operation, skipped between requests.
fn is_late_input(kind: FrameType) -> bool {
    matches!(
        kind,
        FrameType::STDIN | FrameType::KILL | FrameType::SIGNAL | FrameType::RESIZE
    )
}

/// Whether the connection serves another request after this one's reply.
fn is_reusable(req: &Frame) -> bool {
    match req.kind {
        FrameType::WATCH_REQ | FrameType::KEPT_ATTACH => false,
        FrameType::EXEC_REQ => {
            // A request that does not parse gets an ERROR: reusable.
            serde_json::from_slice::<ExecRequest>(&req.payload)
                .map_or(true, |r| !r.tty && !r.keep && r.session_id.is_none())
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(json: &str) -> Frame {
        Frame::new(FrameType::EXEC_REQ, json.as_bytes().to_vec())
    }

    #[test]
    fn piped_execs_and_unary_requests_are_reusable() {
        assert!(is_reusable(&exec(r#"{"argv":["true"]}"#)));
        assert!(is_reusable(&exec("not json")));
        assert!(!is_reusable(&exec(r#"{"argv":["sh"],"tty":true}"#)));
        assert!(!is_reusable(&exec(r#"{"argv":["sh"],"keep":true}"#)));
        assert!(!is_reusable(&exec(r#"{"argv":[],"session_id":"s1"}"#)));
        assert!(!is_reusable(&Frame::new(FrameType::WATCH_REQ, Vec::new())));
        assert!(is_reusable(&Frame::new(
            FrameType::FILE_READ_REQ,
            Vec::new()
        )));
        assert!(is_late_input(FrameType::KILL) && !is_late_input(FrameType::EXEC_REQ));
    }
}
