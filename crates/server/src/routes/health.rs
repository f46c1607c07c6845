//! `GET /health` and `GET /openapi.json` (both public).

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use bhatti_engine::engine::Engine;
use serde_json::Value;

use super::{RouteDef, Verb, public};
use crate::extract::ApiResult;
use crate::model::replies::Health;
use crate::openapi::replies::OpenApiDocument;
use crate::state::Shared;

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    vec![
        public(
            Verb::Get,
            "/health",
            "Daemon health: version, live sandboxes, uptime",
            get(health::<E>),
        )
        .reply::<Health>(200),
        public(
            Verb::Get,
            "/openapi.json",
            "This API as an OpenAPI 3.1 document",
            get(openapi::<E>),
        )
        .reply::<OpenApiDocument>(200),
    ]
}

async fn health<E: Engine>(State(st): State<Shared<E>>) -> ApiResult<Json<Health>> {
    let sandboxes = st.store.count_all_live_sandboxes()?;
    Ok(Json(Health {
        sandboxes,
        status: "ok",
        uptime: crate::model::time::go_duration(st.started.elapsed()),
        version: env!("CARGO_PKG_VERSION"),
    }))
}

async fn openapi<E: Engine>() -> Json<Value> {
    Json(crate::openapi::document::<E>())
}

#[cfg(test)]
mod tests {
    use crate::daemon::DaemonEngine;

    /// `GET /openapi.json` is the one reply still built as a value (it is
    /// generated, not a struct): it has the fields `OpenApiDocument` says.
    #[test]
    fn the_document_has_the_fields_its_schema_names() {
        let d = crate::openapi::document::<DaemonEngine>();
        assert_eq!(d["openapi"], "3.1.0");
        for k in ["info", "paths", "components"] {
            assert!(d[k].is_object(), "{k} is not an object");
        }
    }
}
