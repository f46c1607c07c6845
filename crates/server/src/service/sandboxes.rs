//! Sandboxes after create: find (by id or name, the user's own only),
//! wake ([`AppState::live`], which every operation that needs the VM goes
//! through: ownership → engine state → touch → wake), destroy, stop,
//! start, update.
//!
//! Status as the store shows it: `running` (engine hot, warm or cold: the
//! engine wakes it on demand), `stopped` (the user's stop; as in v1, the
//! next call that needs its VM starts it, exactly like a cold wake),
//! `unknown` (the engine does not hold it: its VM was lost
//! without a snapshot; the reason is kept), `destroyed` (row kept for
//! audit, name free again). See [`crate::mirror`].

use bhatti_engine::engine::{Engine, EngineError, SandboxId};
use bhatti_engine::state::SandboxState;
use bhatti_store::sandboxes::{Sandbox, Thermal};
use bhatti_store::users::User;
use serde_json::Value;

use super::{ServiceError, ServiceResult, engine_id, validate};
use crate::model::PatchSandbox;
use crate::state::AppState;

impl<E: Engine> AppState<E> {
    /// A live sandbox of `user`, by id or name (another user's is not
    /// found). Served from the store's cache while no row has changed, so
    /// a rename, destroy or state change is seen by the next call.
    pub fn find(&self, user: &User, id_or_name: &str) -> ServiceResult<Sandbox> {
        Ok(self.store.find_sandbox(&user.id, id_or_name)?)
    }

    /// A sandbox whose VM is needed, made hot (a cold one is restored;
    /// many concurrent callers share one wake); the call counts as
    /// activity.
    pub async fn live(&self, user: &User, id_or_name: &str) -> ServiceResult<(Sandbox, SandboxId)> {
        let sb = self.find(user, id_or_name)?;
        let id = self.wake(&sb).await?;
        Ok((sb, id))
    }

    /// Makes a sandbox hot (see [`AppState::live`]): a cold one is
    /// restored and a stopped one started (v1: no call needs a start
    /// first); a lost one is an error that says why.
    pub async fn wake(&self, sb: &Sandbox) -> ServiceResult<SandboxId> {
        let id = engine_id(sb)?;
        // The engine's state decides (reading it never waits for a
        // lifecycle operation in progress); the row only gives the reason.
        let was = self.engine_state(sb, &id).await?;
        self.activity.touch(&sb.id);
        let start = std::time::Instant::now();
        if was == SandboxState::Stopped {
            match self.engine.start(&id).await {
                // Someone else started it meanwhile: it is running now.
                Ok(()) | Err(EngineError::State(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.engine.ensure_hot(&id).await?;
        if let Some(from) = crate::metrics::wake_from(was) {
            self.metrics.woke(from, start.elapsed());
        }
        if was != SandboxState::Hot || sb.thermal != Thermal::Hot {
            self.sync_state(&id).await?;
        }
        Ok(id)
    }

    /// The engine's state of a sandbox; one the engine does not hold is
    /// [`ServiceError::Unavailable`].
    async fn engine_state(&self, sb: &Sandbox, id: &SandboxId) -> ServiceResult<SandboxState> {
        match self.engine.status(id).await {
            Ok(info) => Ok(info.state),
            Err(EngineError::NotFound(_)) => Err(ServiceError::Unavailable {
                name: sb.name.clone(),
                reason: sb
                    .status_reason
                    .clone()
                    .unwrap_or_else(|| "state unknown".into()),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Destroys a sandbox: the VM and its files go; volumes stay. A
    /// sandbox the engine does not hold is only marked destroyed.
    pub async fn destroy_sandbox(&self, sb: &Sandbox) -> ServiceResult<()> {
        let id = engine_id(sb)?;
        match self.engine.destroy(&id).await {
            Ok(()) | Err(EngineError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        // The mirror marks it too; this makes the answer final at once.
        match self
            .store
            .mark_sandbox_destroyed(&sb.id, crate::state::now_unix())
        {
            Ok(()) | Err(bhatti_store::StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.activity.forget(&sb.id);
        self.events.destroyed(&sb.id);
        tracing::info!(sandbox = %sb.id, name = %sb.name, "destroyed");
        Ok(())
    }

    /// Stop: snapshot to disk, VM gone, RAM freed.
    pub async fn stop_sandbox(&self, sb: &Sandbox) -> ServiceResult<Sandbox> {
        let id = engine_id(sb)?;
        self.engine_state(sb, &id).await?;
        self.engine.stop(&id).await?;
        self.sync_state(&id).await?;
        Ok(self.store.sandbox_by_id(&sb.id)?)
    }

    /// Start: restore from the snapshot (a running sandbox is made hot).
    pub async fn start_sandbox(&self, sb: &Sandbox) -> ServiceResult<Sandbox> {
        let id = engine_id(sb)?;
        self.engine_state(sb, &id).await?;
        self.engine.start(&id).await?;
        self.sync_state(&id).await?;
        self.activity.touch(&sb.id);
        Ok(self.store.sandbox_by_id(&sb.id)?)
    }

    /// Renames a sandbox, sets `keep_hot`, lets it reach its owner's other
    /// sandboxes or not, sets its TTL or labels.
    pub async fn update_sandbox(&self, sb: &Sandbox, req: PatchSandbox) -> ServiceResult<Sandbox> {
        if let Some(name) = &req.name {
            validate::name(name)?;
        }
        self.update_lifetime(sb, req.ttl_sec, req.on_expire, req.labels.clone())?;
        if let Some(name) = &req.name {
            self.store.rename_sandbox(&sb.id, name)?;
            self.events.renamed(&sb.id, name);
        }
        if let Some(k) = req.keep_hot {
            self.store.set_sandbox_keep_hot(&sb.id, k)?;
        }
        if let Some(p) = req.peers {
            self.engine.set_peers(&engine_id(sb)?, p).await?;
            let mut spec = sb.spec.clone();
            if let Some(obj) = spec.as_object_mut() {
                obj.insert("peers".into(), Value::Bool(p));
            }
            self.store.set_sandbox_spec(&sb.id, &spec)?;
        }
        Ok(self.store.sandbox_by_id(&sb.id)?)
    }
}
