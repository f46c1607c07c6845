//! Sandboxes whose create (boot, restore or fork) is still running. The
//! expiry task leaves them alone: a TTL shorter than a slow boot must not
//! destroy or stop a sandbox under its own create (which then failed with
//! a 500). A create's TTL counts from the moment the sandbox is ready
//! ([`AppState::restart_ttl`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use bhatti_engine::engine::Engine;
use bhatti_store::sandboxes::Sandbox;

use super::ServiceResult;
use crate::state::{AppState, now_unix};

/// The ids of sandboxes being created.
#[derive(Debug, Default, Clone)]
pub struct Creating(Arc<Mutex<HashSet<String>>>);

/// Marks one sandbox as being created until dropped.
#[derive(Debug)]
pub struct Held {
    set: Creating,
    id: String,
}

impl Creating {
    /// Marks `id` until the returned guard is dropped.
    pub fn hold(&self, id: &str) -> Held {
        self.lock().insert(id.to_owned());
        Held {
            set: self.clone(),
            id: id.to_owned(),
        }
    }

    /// Whether `id` is being created.
    pub fn contains(&self, id: &str) -> bool {
        self.lock().contains(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.set.lock().remove(&self.id);
    }
}

impl<E: Engine> AppState<E> {
    /// Moves a new sandbox's TTL to count from now: it was set at the
    /// reservation, and the boot took part of it.
    pub(super) fn restart_ttl(&self, row: &Sandbox) -> ServiceResult<()> {
        if let Some(at) = row.expires_at {
            let ttl = (at - row.created_at).max(0);
            self.store
                .set_sandbox_expiry(&row.id, Some(now_unix() + ttl), row.on_expire)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_until_dropped() {
        let c = Creating::default();
        let h = c.hold("a");
        assert!(c.contains("a") && !c.contains("b"));
        drop(h);
        assert!(!c.contains("a"));
    }
}
