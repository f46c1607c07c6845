//! envd, answered by the daemon: the Connect-JSON RPCs of
//! `process.Process` and `filesystem.Filesystem`, `/files` and `/health`,
//! for the sandbox named by `E2b-Sandbox-Id`, authenticated by its
//! `X-Access-Token` ([`super::sandbox_of`]).

use axum::Router;
use bhatti_engine::engine::Engine;

use crate::state::Shared;

/// envd's routes.
pub fn router<E: Engine>() -> Router<Shared<E>> {
    Router::new()
}
