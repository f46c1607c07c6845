//! Sandbox requests for a guest port other than envd's: relayed to that
//! port in the guest.

use axum::Router;
use bhatti_engine::engine::Engine;

use crate::state::Shared;

/// The port relay.
pub fn router<E: Engine>() -> Router<Shared<E>> {
    Router::new()
}
