//! Operator user management: what `bhatti user create|list|delete|rotate-key`
//! does, directly on the store in the data dir (no daemon needed).

use bhatti_store::users::{Limits, User};
use bhatti_store::{Store, StoreError};

use crate::keys::{self, RandomError};

/// Why a user operation failed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("invalid user name {0:?}: 1-63 characters of [a-zA-Z0-9._-], starting alphanumeric")]
    InvalidName(String),
    #[error("invalid limits: {0}")]
    InvalidLimits(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// A user that was just created or re-keyed, with the plaintext key that
/// is shown exactly once.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub user: User,
    pub key: String,
}

pub use crate::service::validate::valid_name;

/// Creates a user with `limits` and returns its key.
pub fn create(store: &Store, name: &str, limits: Limits, now: i64) -> Result<IssuedKey, UserError> {
    if !valid_name(name) {
        return Err(UserError::InvalidName(name.into()));
    }
    if limits.max_sandboxes == 0 || limits.max_cpus == 0 || limits.max_memory_mb < 64 {
        return Err(UserError::InvalidLimits(
            "max sandboxes and CPUs must be at least 1, memory at least 64 MB".into(),
        ));
    }
    let key = keys::generate_key()?;
    let user = User {
        id: keys::new_id("u-")?,
        name: name.into(),
        key_hash: keys::hash_key(&key),
        limits,
        created_at: now,
    };
    store.create_user(&user)?;
    Ok(IssuedKey { user, key })
}

/// Issues a new key for `name`; the old key stops working at once.
pub fn rotate_key(store: &Store, name: &str) -> Result<IssuedKey, UserError> {
    let key = keys::generate_key()?;
    store.rotate_user_key(name, &keys::hash_key(&key))?;
    Ok(IssuedKey {
        user: store.user_by_name(name)?,
        key,
    })
}

/// The user a presented API key belongs to, if any.
pub fn authenticate(store: &Store, key: &str) -> Result<Option<User>, StoreError> {
    if !keys::is_well_formed(key) {
        return Ok(None);
    }
    store.user_by_key_hash(&keys::hash_key(key))
}
