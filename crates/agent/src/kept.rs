//! Kept piped execs of protocol version 5 (`docs/protocol.md`):
//! [`Client::exec_kept`] starts one, [`Client::attach_kept`] reconnects
//! to one (its kept output replayed first), [`Client::list_kept`] lists
//! them. Only for an agent that lists `keep` in [`Client::caps`]: an
//! older agent runs an EXEC_REQ with `keep` as a plain exec (its first
//! frame is not KEPT_INFO: [`Error::Protocol`]) and refuses KEPT_ATTACH
//! and KEPT_LIST_REQ as unexpected frames.
//!
//! A [`Kept`] owns one connection: KEPT_INFO is read before the handle is
//! returned, then the stream is split like a piped exec's ([`Input`],
//! [`Events`]). On a kept exec the end of the host's stream only
//! detaches; the command's stdin closes on [`Input::end_stdin`] (an
//! empty STDIN frame), never on a half-close or a dropped handle.

use bhatti_proto::kept::{KeptAttachRequest, KeptInfo, KeptList};
use bhatti_proto::messages::{ExecRequest, json_frame};
use bhatti_proto::{CONTROL_PORT, FrameType};

use crate::conn::{Events, Input, split_stream};
use crate::error::{Error, Result};
use crate::{Client, Event};

/// A connection to a kept piped exec.
#[derive(Debug)]
pub struct Kept {
    /// KEPT_INFO as the agent sent it on this connection (`dropped`: the
    /// output bytes missing from the front of the replay).
    pub info: KeptInfo,
    pub input: Input,
    /// The replay (STDOUT/STDERR in the order the command wrote them, as
    /// far as the ring holds it), then live output, then the exit.
    pub events: Events,
}

impl Kept {
    /// The next event (see [`Events::next`]).
    pub async fn next(&mut self) -> Result<Option<Event>> {
        self.events.next().await
    }
}

impl Client {
    /// Starts `req` (a piped exec) as a kept command: `keep` is set, and
    /// `tag` (at most [`bhatti_proto::kept::MAX_TAG`] bytes) is echoed in
    /// its [`KeptInfo`].
    pub async fn exec_kept(&self, req: &ExecRequest) -> Result<Kept> {
        if req.session_id.is_some() || req.tty {
            return Err(Error::InvalidRequest(
                "exec_kept is for piped execs; TTY sessions are always kept".into(),
            ));
        }
        let req = ExecRequest {
            keep: true,
            ..req.clone()
        };
        // `defer_sync` when the client defers; `stdin_closed` is not for
        // kept execs: stdin is closed after the request instead.
        let (prepared, close_after) = self.prepare_exec(&req).await;
        let frame = json_frame(FrameType::EXEC_REQ, prepared.as_ref().unwrap_or(&req))?;
        let mut k = self
            .kept_stream(frame.kind, &frame.payload, "exec_kept")
            .await?;
        if close_after {
            k.input.end_stdin().await?;
        }
        Ok(k)
    }

    /// Attaches to kept command `id`; an unknown (or expired) id is
    /// [`Error::Agent`] with [`crate::ErrorCode::SessionNotFound`].
    pub async fn attach_kept(&self, id: &str) -> Result<Kept> {
        let req = KeptAttachRequest { id: id.to_owned() };
        let frame = json_frame(FrameType::KEPT_ATTACH, &req)?;
        self.kept_stream(frame.kind, &frame.payload, "attach_kept")
            .await
    }

    /// Every kept command the agent holds, oldest first.
    pub async fn list_kept(&self) -> Result<KeptList> {
        self.unary_json(
            FrameType::KEPT_LIST_REQ,
            &[],
            FrameType::KEPT_LIST_RESP,
            "list_kept",
        )
        .await
    }

    async fn kept_stream(
        &self,
        kind: FrameType,
        payload: &[u8],
        during: &'static str,
    ) -> Result<Kept> {
        let mut c = self.open(CONTROL_PORT, kind, payload).await?;
        let f = c.expect(FrameType::KEPT_INFO, during).await?;
        let info: KeptInfo = c.decode("KEPT_INFO", &f.payload)?;
        let (input, events) = split_stream(c, None);
        Ok(Kept {
            info,
            input,
            events,
        })
    }
}
