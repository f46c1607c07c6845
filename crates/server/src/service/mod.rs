//! The service layer: what a user can do with sandboxes and volumes,
//! whatever face asked (the HTTP routes, the CLI's operator commands, the
//! coming E2B API). Operations are methods on
//! [`AppState`](crate::state::AppState) that take plain
//! values (a [`User`](bhatti_store::users::User), request structs of
//! [`crate::model`]) and return [`ServiceResult`]; the faces only parse
//! their transport into those values and turn [`ServiceError`] into their
//! own errors (HTTP: [`crate::error::ApiError`], whose `status` is the one
//! status mapping).
//!
//! - [`sandboxes`]: find, wake, destroy, stop, start, update;
//! - [`create`]: create, reserved in one store transaction;
//! - [`plan`]: a create request merged with its template and validated;
//! - [`validate`]: every input rule, once;
//! - [`volumes`]: volumes outside a create;
//! - [`lifetime`]: TTLs (and the task that applies them) and labels;
//! - [`snapshots`]: named snapshots (take, list, get, delete);
//! - [`restore`]: sandboxes made from a snapshot, and fork;
//! - [`images`]: users' images (list, get, delete, save a sandbox's disk,
//!   what a create's `image` names); [`import`]: import jobs.
//!
//! The engine owns a sandbox's state and files: the service asks the
//! engine (including to delete a volume's file) and never touches the
//! engine's files itself; the store's copy of the state is written by
//! [`crate::mirror`].
//!
//! # Threads, locks, I/O
//! Store calls are short and synchronous; engine calls are awaited with no
//! lock of ours held, except `create_lock`, which serialises a create's
//! quota check and its store transaction (never the VM boot).

pub mod create;
pub mod creating;
pub mod idempotent;
pub mod images;
pub mod import;
pub mod lifetime;
pub mod plan;
pub mod restore;
pub mod sandboxes;
pub mod snapshots;
pub mod validate;
pub mod volumes;

use bhatti_engine::engine::{EngineError, SandboxId};
use bhatti_store::StoreError;
use bhatti_store::sandboxes::Sandbox;

pub use validate::Invalid;

use crate::keys::RandomError;
use crate::secrets::SecretError;

/// Why a service operation failed. [`crate::error::ApiError`] maps each
/// variant to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request breaks an input rule.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("sandbox limit reached ({have}/{max})")]
    Quota { have: u32, max: u32 },
    #[error(
        "storage quota reached: your snapshots and images take {used_mb} MB of {max_mb} MB; delete some (bhatti snapshot rm NAME, bhatti image rm NAME)"
    )]
    Storage { used_mb: u64, max_mb: u32 },
    #[error("secret {0} not found")]
    NoSecret(String),
    /// The engine does not hold the sandbox (its VM was lost).
    #[error("sandbox {name} is unavailable: {reason}; only delete is possible")]
    Unavailable { name: String, reason: String },
    #[error("stored {what} is corrupt: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// Result of service operations.
pub type ServiceResult<T> = Result<T, ServiceError>;

/// A sandbox's engine id (store ids are made to be valid engine ids).
pub fn engine_id(sb: &Sandbox) -> ServiceResult<SandboxId> {
    sb.id.parse().map_err(|e| ServiceError::Corrupt {
        what: "sandbox id",
        detail: format!("{}: {e}", sb.id),
    })
}
