//! Idempotent creates: a create that carries a key (the `Idempotency-Key`
//! header of `POST /sandboxes` and of E2B's create) makes at most one
//! sandbox per user and key, so a client that retries after a timeout or a
//! dropped connection gets the sandbox its first attempt made instead of a
//! second one.
//!
//! The key is kept in the sandbox's stored spec from the moment its row is
//! reserved, so the rule holds across daemon restarts. A create with a key
//! waits for another in flight with the same key (a per-key async lock),
//! then returns the sandbox that one made, if it made one. A key names
//! a sandbox for [`WINDOW`] seconds and while the sandbox lives: after it
//! is destroyed, or once the window has passed, the same key creates a
//! new one. The body of a retry is not compared with the first's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use bhatti_engine::engine::Engine;
use bhatti_store::sandboxes::Sandbox;
use bhatti_store::users::User;

use super::ServiceResult;
use super::validate::Invalid;
use crate::model::CreateSandbox;
use crate::state::{AppState, now_unix};

/// How long a key names its sandbox (24 hours, as common APIs keep them).
pub const WINDOW: i64 = 24 * 3600;
/// Longest key.
pub const MAX_KEY: usize = 255;

/// The lock of one (user, key).
type KeyLock = tokio::sync::Mutex<()>;

/// The per-(user, key) locks of creates in flight.
#[derive(Debug, Default)]
pub struct Keys {
    locks: Mutex<HashMap<(String, String), Weak<KeyLock>>>,
}

impl Keys {
    /// The lock of `key` for `user` (made when no create holds it; the
    /// entries of finished creates are dropped on the way).
    fn lock(&self, user: &str, key: &str) -> Arc<KeyLock> {
        let mut map = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, w| w.strong_count() > 0);
        let slot = (user.to_owned(), key.to_owned());
        if let Some(l) = map.get(&slot).and_then(Weak::upgrade) {
            return l;
        }
        let l = Arc::new(KeyLock::new(()));
        map.insert(slot, Arc::downgrade(&l));
        l
    }
}

/// Checks a key: 1-255 characters of `[A-Za-z0-9._:-]` (E2B's SDK sends
/// lowercase letters, digits and hyphens; a UUID fits).
pub fn checked(key: &str) -> Result<(), Invalid> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Invalid::IdempotencyKey(super::validate::excerpt(key)))
    }
}

/// The request header that carries the key.
pub const HEADER: &str = "idempotency-key";
/// The response header that says the sandbox came from an earlier create
/// with the key (`true`).
pub const REPLAYED: &str = "idempotent-replayed";

/// The key of a request's [`HEADER`], if any.
pub fn from_headers(headers: &axum::http::HeaderMap) -> Result<Option<&str>, Invalid> {
    headers
        .get(HEADER)
        .map(|v| {
            v.to_str()
                .map_err(|_| Invalid::IdempotencyKey(String::from_utf8_lossy(v.as_bytes()).into()))
        })
        .transpose()
}

/// What a create with a key gave: the sandbox, and whether an earlier
/// create with the key made it (a replay).
#[derive(Debug)]
pub struct Once {
    pub sandbox: Sandbox,
    pub replayed: bool,
}

impl Once {
    /// The response headers that say what [`Once::replayed`] says.
    pub fn headers(&self) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        if self.replayed {
            h.insert(REPLAYED, axum::http::HeaderValue::from_static("true"));
        }
        h
    }
}

impl<E: Engine> AppState<E> {
    /// [`AppState::create_sandbox`], at most once per user and `key`
    /// (none: a plain create).
    pub async fn create_sandbox_once(
        &self,
        user: &User,
        mut req: CreateSandbox,
        key: Option<&str>,
    ) -> ServiceResult<Once> {
        let Some(key) = key else {
            let sandbox = self.create_sandbox(user, req).await?;
            return Ok(Once {
                sandbox,
                replayed: false,
            });
        };
        checked(key)?;
        let lock = self.idempotency.lock(&user.id, key);
        let _held = lock.lock().await;
        if let Some(sandbox) = self.made_with_key(user, key)? {
            return Ok(Once {
                sandbox,
                replayed: true,
            });
        }
        req.idempotency_key = Some(key.to_owned());
        let sandbox = self.create_sandbox(user, req).await?;
        Ok(Once {
            sandbox,
            replayed: false,
        })
    }

    /// The user's live sandbox a create with `key` made within [`WINDOW`].
    fn made_with_key(&self, user: &User, key: &str) -> ServiceResult<Option<Sandbox>> {
        let since = now_unix() - WINDOW;
        Ok(self.store.list_sandboxes(&user.id)?.into_iter().find(|sb| {
            sb.created_at >= since
                && sb.spec.get("idempotency_key").and_then(|k| k.as_str()) == Some(key)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        for good in ["a", "0f8fad5b-d9cb-469f-a165-70867728950e", "A.b_c:d-e"] {
            assert!(checked(good).is_ok(), "{good}");
        }
        let long = "k".repeat(MAX_KEY + 1);
        for bad in ["", "has space", "slash/", "ünï", long.as_str()] {
            assert!(checked(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_lock_per_user_and_key_while_held() {
        let keys = Keys::default();
        let a = keys.lock("u1", "k");
        assert!(Arc::ptr_eq(&a, &keys.lock("u1", "k")));
        assert!(!Arc::ptr_eq(&a, &keys.lock("u2", "k")));
        assert!(!Arc::ptr_eq(&a, &keys.lock("u1", "other")));
        drop(a);
        // Unheld locks are dropped from the map.
        let _b = keys.lock("u1", "k");
        assert_eq!(keys.locks.lock().expect("map").len(), 1);
    }
}
