//! The E2B control plane: sandbox lifecycle in E2B's JSON (camelCase,
//! [`model`]), authenticated by `X-API-Key` (a bhatti API key, [`auth`]),
//! errors as `{"code", "message"}` ([`error`]). Paths are relative to
//! `/e2b`, as the SDK builds them from `E2B_API_URL`:
//!
//! | route | does |
//! |-------|------|
//! | `POST /sandboxes`, `POST /v2/sandboxes` | create (201): `templateID` ([`template`]), `timeout` → TTL, `autoPause` → stop instead of destroy at the timeout, `metadata` → labels, `envVars` → env |
//! | `GET /v2/sandboxes` | list: metadata, state, time and template filters, pages ([`list`]) |
//! | `GET /sandboxes` | list the running ones (older SDKs) |
//! | `GET /sandboxes/{id}` | detail, with the envd access token |
//! | `DELETE /sandboxes/{id}` | kill = destroy (204) |
//! | `POST /sandboxes/{id}/timeout` | a new timeout from now (204) |
//! | `POST /sandboxes/{id}/refreshes` | keep alive for `duration` (204) |
//! | `POST /sandboxes/{id}/pause` | stop (204; 409 when paused) |
//! | `POST /sandboxes/{id}/resume` | start (201; 409 when running) |
//! | `POST /sandboxes/{id}/connect`, `POST /v2/sandboxes/{id}/connect` | 200 when running, else start, 201 |
//! | `GET /sandboxes/{id}/metrics`, `GET /sandboxes/metrics` | samples from the usage history, else one taken now ([`metrics`]) |
//!
//! Sandbox ids are bhatti's. Snapshots, forks, templates builds, volumes,
//! logs and network updates of E2B are not served (404).

pub mod auth;
pub mod error;
pub mod list;
pub mod metrics;
pub mod model;
pub mod ports;
pub mod sandboxes;
pub mod template;

use axum::Router;
use axum::extract::Request;
use axum::routing::{get, post};
use bhatti_engine::engine::Engine;

use self::error::ControlError;
use crate::state::Shared;

/// The envd version the control plane advertises (`envdVersion`): the
/// one whose features the daemon's envd serves ([`crate::e2b::envd`]).
/// The SDK gates features on it (`e2b/envd/versions.py`); see there for
/// why it is this version.
pub use crate::e2b::envd::ENVD_VERSION;

/// The control-plane routes (paths relative to `/e2b`).
pub fn router<E: Engine>() -> Router<Shared<E>> {
    use self::sandboxes as s;
    Router::new()
        .route("/sandboxes", post(s::create::<E>).get(s::list_v1::<E>))
        .route("/v2/sandboxes", post(s::create::<E>).get(s::list_v2::<E>))
        .route("/sandboxes/metrics", get(metrics::many::<E>))
        .route("/sandboxes/{id}", get(s::get::<E>).delete(s::kill::<E>))
        .route("/sandboxes/{id}/timeout", post(s::timeout::<E>))
        .route("/sandboxes/{id}/refreshes", post(s::refresh::<E>))
        .route("/sandboxes/{id}/pause", post(s::pause::<E>))
        .route("/sandboxes/{id}/resume", post(s::resume::<E>))
        .route("/sandboxes/{id}/connect", post(s::connect::<E>))
        .route("/v2/sandboxes/{id}/connect", post(s::connect::<E>))
        .route("/sandboxes/{id}/metrics", get(metrics::one::<E>))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn no_route(req: Request) -> ControlError {
    ControlError::NoRoute(format!("{} {}", req.method(), req.uri().path()))
}

async fn method_not_allowed() -> ControlError {
    ControlError::MethodNotAllowed
}
