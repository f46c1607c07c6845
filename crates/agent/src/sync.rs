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
//! Whether the agent lists `sync` is learnt from the first CAPS this client
//! (or a clone) makes; the reuse pool's check is enough.

use std::sync::atomic::{AtomicU8, Ordering};

use bhatti_proto::FrameType;
use bhatti_proto::ext::Caps;
use bhatti_proto::messages::ExecRequest;

use crate::error::Result;
use crate::{Client, feature};

/// Whether the agent serves SYNC_REQ and `defer_sync`: 0 not known yet,
/// [`SERVED`] or [`REFUSED`]. Shared by clones.
#[derive(Debug, Default)]
pub(crate) struct SyncSupport(AtomicU8);

const SERVED: u8 = 1;
const REFUSED: u8 = 2;

impl SyncSupport {
    fn get(&self) -> Option<bool> {
        match self.0.load(Ordering::Relaxed) {
            SERVED => Some(true),
            REFUSED => Some(false),
            _ => None,
        }
    }

    /// Notes what a CAPS_RESP (or a v1 agent's refusal) said.
    pub(crate) fn learn(&self, caps: &Caps) {
        let v = if caps.has(feature::SYNC) {
            SERVED
        } else {
            REFUSED
        };
        self.0.store(v, Ordering::Relaxed);
    }
}

impl Client {
    /// Piped execs without `keep` get their EXIT before the agent's
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

    /// Whether the agent serves SYNC_REQ; asks it (CAPS) the first time.
    async fn serves_sync(&self) -> Result<bool> {
        match self.sync_support.get() {
            Some(served) => Ok(served),
            None => Ok(self.caps().await?.has(feature::SYNC)),
        }
    }

    /// `req` as this client sends it: with `defer_sync` when the client
    /// defers and the agent serves it. `None`: send `req` as it is.
    pub(crate) async fn deferring(&self, req: &ExecRequest) -> Option<ExecRequest> {
        if !self.defer_sync || req.keep || req.tty || req.session_id.is_some() {
            return None;
        }
        // A failed CAPS (agent not up yet) defers nothing: the request
        // itself will fail or sync the old way.
        let served = self.serves_sync().await.unwrap_or(false);
        served.then(|| ExecRequest {
            defer_sync: true,
            ..req.clone()
        })
    }
}
