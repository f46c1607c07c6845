//! Shared fixtures: a store in a fresh temp dir, a user, a sandbox.
#![allow(dead_code)]

use bhatti_store::sandboxes::{Sandbox, Status, Thermal};
use bhatti_store::users::{Limits, User};
use bhatti_store::{Store, StoreError};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: Store,
}

pub fn store() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("state.db")).expect("open");
    Fixture { dir, store }
}

pub fn user(store: &Store, name: &str) -> User {
    let u = User {
        id: format!("u-{name}"),
        name: name.into(),
        key_hash: format!("hash-{name}"),
        limits: Limits::default(),
        created_at: 100,
    };
    store.create_user(&u).expect("create user");
    u
}

pub fn sandbox(user_id: &str, id: &str, name: &str, created_at: i64) -> Sandbox {
    Sandbox {
        id: id.into(),
        user_id: user_id.into(),
        name: name.into(),
        status: Status::Running,
        thermal: Thermal::Hot,
        status_reason: None,
        ip: Some("10.0.0.2".into()),
        cpus: 1,
        memory_mb: 512,
        keep_hot: false,
        template_id: None,
        image: "minimal".into(),
        spec: serde_json::json!({"env": {"A": "1"}}),
        created_at,
        stopped_at: None,
        destroyed_at: None,
        labels: Default::default(),
        expires_at: None,
        on_expire: Default::default(),
    }
}

/// Inserts [`sandbox`]`(user_id, id, name, created_at)`.
pub fn insert_sandbox(store: &Store, user_id: &str, id: &str, name: &str, created_at: i64) {
    store
        .insert_sandbox(&sandbox(user_id, id, name, created_at))
        .expect("insert");
}

/// Asserts that `r` failed with [`StoreError::NotFound`].
#[track_caller]
pub fn not_found<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
}

/// Asserts that `r` failed with [`StoreError::Conflict`].
#[track_caller]
pub fn conflict<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
}
