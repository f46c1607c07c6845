//! `GET /health` and `GET /openapi.json` (both public).

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use bhatti_engine::engine::Engine;
use serde_json::{Value, json};

use super::{Access, RouteDef, Verb};
use crate::extract::ApiResult;
use crate::state::Shared;

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    vec![
        RouteDef {
            verb: Verb::Get,
            path: "/health",
            access: Access::Public,
            summary: "Daemon health: version, live sandboxes, uptime",
            handler: get(health::<E>),
        },
        RouteDef {
            verb: Verb::Get,
            path: "/openapi.json",
            access: Access::Public,
            summary: "This API as an OpenAPI 3.1 document",
            handler: get(openapi::<E>),
        },
    ]
}

async fn health<E: Engine>(State(st): State<Shared<E>>) -> ApiResult<Json<Value>> {
    let sandboxes = st.store.list_live_sandboxes()?.len();
    Ok(Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "sandboxes": sandboxes,
        "uptime": st.started.elapsed().as_secs(),
    })))
}

async fn openapi<E: Engine>() -> Json<Value> {
    Json(crate::openapi::document::<E>())
}
