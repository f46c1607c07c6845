//! The store's copy of sandbox state, kept equal to the engine's.
//!
//! The engine owns a sandbox's state and publishes every change as a
//! [`StateEvent`] numbered by one counter ([`Engine::subscribe`]). This
//! module is the only code that writes status × thermal of a sandbox the
//! engine holds: [`run`], one task that applies every event, and
//! [`AppState::sync_state`], which a request calls after its own engine
//! operation so that its response already shows the new state. Both write
//! through [`bhatti_store::Store::mirror_sandbox_state`], which keeps the
//! state of the highest `seq`: whatever order the task and the requests
//! write in, the store ends with the engine's latest state.
//!
//! | engine    | store status | thermal |
//! |-----------|--------------|---------|
//! | Hot       | running      | hot     |
//! | Warm      | running      | warm    |
//! | Cold      | running      | cold    |
//! | Stopped   | stopped      | cold    |
//! | Destroyed | destroyed    | —       |
//!
//! `unknown` (the engine does not hold the sandbox) is written by recovery
//! alone.
//!
//! Every event mirrored is also handed to the live event hub
//! ([`crate::events`]), which publishes each change once, in `seq` order.
//!
//! # Threads, locks, I/O
//! One task, woken by the engine's broadcast channel; each event is one
//! short store update. If the task falls behind the channel's backlog it
//! re-reads every sandbox from the engine ([`Engine::list`], which never
//! waits for a sandbox lock) and mirrors that.

use std::sync::Arc;

use bhatti_engine::engine::{Engine, SandboxId, StateEvent};
use bhatti_engine::state::SandboxState;
use bhatti_store::sandboxes::{Status, Thermal};
use bhatti_store::{Store, StoreError};
use tokio::sync::broadcast::error::RecvError;

use crate::state::{AppState, now_unix};

/// How the store shows an engine state (`None`: destroyed).
pub fn store_state(state: SandboxState) -> Option<(Status, Thermal)> {
    match state {
        SandboxState::Hot => Some((Status::Running, Thermal::Hot)),
        SandboxState::Warm => Some((Status::Running, Thermal::Warm)),
        SandboxState::Cold => Some((Status::Running, Thermal::Cold)),
        SandboxState::Stopped => Some((Status::Stopped, Thermal::Cold)),
        SandboxState::Destroyed => None,
    }
}

/// Writes one engine state into the store; `false` when the store already
/// had a newer one (or the row is gone).
pub fn apply(store: &Store, ev: &StateEvent) -> Result<bool, StoreError> {
    match store_state(ev.state) {
        Some((status, thermal)) => store.mirror_sandbox_state(
            ev.id.as_str(),
            status,
            thermal,
            ev.seq,
            ev.note.as_deref(),
            now_unix(),
        ),
        None => match store.mark_sandbox_destroyed(ev.id.as_str(), now_unix()) {
            Ok(()) => Ok(true),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        },
    }
}

impl<E: Engine> AppState<E> {
    /// [`apply`], then tells the event hub.
    pub fn mirror(&self, ev: &StateEvent) -> Result<bool, StoreError> {
        let applied = apply(&self.store, ev);
        let row = self.store.sandbox_by_id(ev.id.as_str()).ok();
        self.events.engine_state(ev, row.as_ref());
        applied
    }

    /// Mirrors the engine's current state of one sandbox into the store
    /// (read-your-writes for a request that just changed it). A sandbox
    /// the engine does not hold is left as the store has it.
    pub async fn sync_state(&self, id: &SandboxId) -> Result<(), StoreError> {
        // `status` never waits for the sandbox lock: it answers with the
        // last published state.
        match self.engine.status(id).await {
            Ok(info) => self.mirror(&info.event()).map(drop),
            Err(_) => Ok(()),
        }
    }

    /// Mirrors every sandbox the engine holds.
    pub async fn sync_all(&self) {
        for info in self.engine.list().await {
            let ev = info.event();
            if let Err(e) = self.mirror(&ev) {
                tracing::warn!(sandbox = %ev.id, error = %e, "mirroring state");
            }
        }
    }
}

/// Applies every engine event to the store until `stop` resolves.
pub async fn run<E: Engine>(
    state: Arc<AppState<E>>,
    mut events: tokio::sync::broadcast::Receiver<StateEvent>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let ev = tokio::select! {
            _ = &mut stop => return,
            ev = events.recv() => ev,
        };
        match ev {
            Ok(ev) => {
                if let Err(e) = state.mirror(&ev) {
                    tracing::warn!(sandbox = %ev.id, error = %e, "mirroring state");
                }
            }
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "state mirror fell behind; re-reading the engine"
                );
                state.sync_all().await;
            }
            Err(RecvError::Closed) => return,
        }
    }
}
