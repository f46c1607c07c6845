//! Sandbox lifetime (TTL) and labels.
//!
//! A TTL is stored as the instant it runs out (`expires_at`, unix
//! seconds) and what then happens (`on_expire`); the daemon's expiry task
//! asks for [`Store::expired_sandboxes`] and applies them. Because the
//! instant is stored, a TTL keeps running across daemon restarts, and an
//! expiry that fell while the daemon was down is applied when it starts.

use std::collections::BTreeMap;

use rusqlite::params;

use crate::sandboxes::{OnExpire, Sandbox, labels_json};
use crate::{Result, Store};

impl Store {
    /// Sets (or with `None` clears) when a live sandbox expires and what
    /// happens then.
    pub fn set_sandbox_expiry(
        &self,
        id: &str,
        expires_at: Option<i64>,
        on_expire: OnExpire,
    ) -> Result<()> {
        self.update_one(
            id,
            "expires_at = ?2, on_expire = ?3",
            params![id, expires_at, on_expire.as_str()],
        )
    }

    /// Replaces a live sandbox's labels.
    pub fn set_sandbox_labels(&self, id: &str, labels: &BTreeMap<String, String>) -> Result<()> {
        self.update_one(id, "labels = ?2", params![id, labels_json(labels)])
    }

    /// Live sandboxes whose TTL ran out at or before `now`, soonest first.
    pub fn expired_sandboxes(&self, now: i64) -> Result<Vec<Sandbox>> {
        self.query_sandboxes(
            "WHERE expires_at IS NOT NULL AND expires_at <= ?1 AND status != 'destroyed' \
             ORDER BY expires_at, id",
            params![now],
        )
    }
}
