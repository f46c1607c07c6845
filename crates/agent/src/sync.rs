//! Protocol version 7 (`docs/protocol.md`): an exec's EXIT before its
//! `sync()`, and SYNC_REQ.
//!
//! PROTOCOL.md has the agent `sync()` after every piped exec and send EXIT
//! once that is done, so an exec's files are on the guest's disks when it
//! ends. Inside a TCG guest that sync is a few tenths of a millisecond of
//! every exec. A client made with [`Client::with_deferred_sync`] asks an
//! agent that lists `sync` to send EXIT first and sync soon after
//! (`defer_sync` in EXEC_REQ; lohar syncs within 20 ms); whoever then
//! needs the disks to hold what the guest wrote (before a pause, a
//! snapshot, an image save) asks for a finished sync with
//! [`Client::sync`].
//!
//! The same module sends `stdin_closed` (version 7: the command's stdin
//! closed by the request, with no frame after it) only to an agent that
//! lists it, and closes stdin the old way for one that does not.
//!
//! What the agent lists is learnt from the first CAPS this client (or a
//! clone) makes; the reuse pool's check is enough.

use bhatti_proto::FrameType;
use bhatti_proto::messages::ExecRequest;

use crate::error::Result;
use crate::{Client, feature};

impl Client {
    /// Piped execs (kept ones too) get their EXIT before the agent's
    /// `sync()` when the agent serves that (feature `sync`); an older
    /// agent syncs first, as PROTOCOL.md says. The caller then owes the
    /// guest a [`Client::sync`] before anything that needs the disks to
    /// hold what its commands wrote. Clones share the setting.
    pub fn with_deferred_sync(mut self) -> Self {
        self.defer_sync = true;
        self
    }

    /// A clone that lets the agent sync before each EXIT, as PROTOCOL.md
    /// has it (for comparisons; the original keeps its setting).
    pub fn without_deferred_sync(&self) -> Self {
        Self {
            defer_sync: false,
            ..self.clone()
        }
    }

    /// Waits for a `sync()` inside the guest that started after this call
    /// (SYNC_REQ): everything written before it is on the guest's disks.
    /// `Ok(false)` without asking when the agent does not serve the
    /// request (a v1 agent, a lohar before version 7): such an agent
    /// synced before every exec's EXIT already.
    pub async fn sync(&self) -> Result<bool> {
        if !self.serves_sync().await? {
            return Ok(false);
        }
        let done = reply!(|c| c.expect(FrameType::SYNC_RESP, "sync").await.map(drop));
        self.unary(FrameType::SYNC_REQ, &[], done).await?;
        Ok(true)
    }

    /// Whether the agent serves SYNC_REQ.
    async fn serves_sync(&self) -> Result<bool> {
        self.serves(feature::SYNC).await
    }

    /// Whether the agent lists `feature`; asks it (CAPS) the first time
    /// this client or a clone needs to know.
    pub(crate) async fn serves(&self, feature: &str) -> Result<bool> {
        match self.known_caps.get() {
            Some(caps) => Ok(caps.has(feature)),
            None => Ok(self.caps().await?.has(feature)),
        }
    }

    /// `req` as this client sends it: with `defer_sync` when the client
    /// defers and the agent serves it, and without `stdin_closed` when the
    /// agent does not serve that (the caller then closes stdin itself:
    /// the returned flag). `None`: send `req` as it is.
    pub(crate) async fn prepare_exec(&self, req: &ExecRequest) -> (Option<ExecRequest>, bool) {
        let piped = !req.tty && req.session_id.is_none();
        let defer = self.defer_sync && piped;
        // Kept execs take `defer_sync` but not `stdin_closed`.
        let piped = piped && !req.keep;
        let closed = req.stdin_closed;
        if !defer && !closed {
            return (None, false);
        }
        // A failed CAPS (agent not up yet) uses no extension: the request
        // itself will fail, or run the v1 way.
        let serves = |f| async move { self.serves(f).await.unwrap_or(false) };
        let defer = defer && serves(feature::SYNC).await;
        let keep_closed = closed && piped && serves(feature::STDIN_CLOSED).await;
        let out = ExecRequest {
            defer_sync: defer,
            stdin_closed: keep_closed,
            ..req.clone()
        };
        (Some(out), closed && !keep_closed)
    }
}
