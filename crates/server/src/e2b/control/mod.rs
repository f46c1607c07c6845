//! The E2B control plane: sandbox lifecycle in E2B's JSON (camelCase),
//! authenticated by `X-API-Key` (a bhatti API key).

pub mod ports;

use axum::Router;
use bhatti_engine::engine::Engine;

use crate::state::Shared;

/// The control-plane routes (paths relative to `/e2b`).
pub fn router<E: Engine>() -> Router<Shared<E>> {
    Router::new()
}
