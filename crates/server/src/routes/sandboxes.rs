//! Sandboxes: create, list, get, patch, delete, stop, start. Listing and
//! getting read the store only and never wake a VM.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, patch, post};
use bhatti_engine::engine::Engine;

use super::{RouteDef, Verb, user};
use crate::extract::{ApiJson, ApiPath, ApiResult, AuthUser};
use crate::model::replies::Status;
use crate::model::{CreateSandbox, PatchSandbox, SandboxView};
use crate::service::{ServiceError, idempotent, lifetime};
use crate::state::Shared;

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    vec![
        user(
            Verb::Post,
            "/sandboxes",
            "Create a sandbox",
            post(create::<E>),
        )
        .body::<CreateSandbox>()
        .request_header(
            "Idempotency-Key",
            "Makes the create happen at most once: a retry with the same key within 24 h returns the sandbox the first made (while it lives), with `Idempotent-Replayed: true`",
            "^[A-Za-z0-9._:-]{1,255}$",
        )
        .reply::<SandboxView>(201)
        .header(
            "Idempotent-Replayed",
            "`true` when an earlier create with the same Idempotency-Key made the sandbox",
        ),
        user(
            Verb::Get,
            "/sandboxes",
            "List sandboxes, newest first; `?label=KEY=VALUE` (repeatable) keeps those with every such label",
            get(list::<E>),
        )
        .reply_list::<SandboxView>(200),
        user(
            Verb::Get,
            "/sandboxes/{id}",
            "Get a sandbox",
            get(show::<E>),
        )
        .reply::<SandboxView>(200),
        user(
            Verb::Patch,
            "/sandboxes/{id}",
            "Rename a sandbox; set keep_hot, peers, its TTL or labels",
            patch(update::<E>),
        )
        .body::<PatchSandbox>()
        .reply::<SandboxView>(200),
        user(
            Verb::Delete,
            "/sandboxes/{id}",
            "Destroy a sandbox (volumes survive)",
            delete(destroy::<E>),
        )
        .reply::<Status>(200),
        user(
            Verb::Post,
            "/sandboxes/{id}/stop",
            "Stop: snapshot to disk, VM gone",
            post(stop::<E>),
        )
        .reply::<SandboxView>(200),
        user(
            Verb::Post,
            "/sandboxes/{id}/start",
            "Start a stopped sandbox",
            post(start::<E>),
        )
        .reply::<SandboxView>(200),
    ]
}

async fn create<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateSandbox>,
) -> ApiResult<(StatusCode, HeaderMap, Json<SandboxView>)> {
    let key = idempotent::from_headers(&headers).map_err(ServiceError::from)?;
    let once = st.create_sandbox_once(&u, req, key).await?;
    let view = SandboxView::from(&once.sandbox);
    Ok((StatusCode::CREATED, once.headers(), Json(view)))
}

async fn list<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    Query(query): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Vec<SandboxView>>> {
    let wanted = lifetime::label_filter(&query).map_err(ServiceError::from)?;
    let all = lifetime::with_labels(st.store.list_sandboxes(&u.id)?, &wanted);
    Ok(Json(all.iter().map(SandboxView::from).collect()))
}

async fn show<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<SandboxView>> {
    Ok(Json(SandboxView::from(&st.find(&u, &id)?)))
}

async fn update<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<PatchSandbox>,
) -> ApiResult<Json<SandboxView>> {
    let sb = st.find(&u, &id)?;
    Ok(Json(SandboxView::from(&st.update_sandbox(&sb, req).await?)))
}

async fn destroy<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Status>> {
    let sb = st.find(&u, &id)?;
    st.destroy_sandbox(&sb).await?;
    Ok(Json(Status::DESTROYED))
}

async fn stop<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<SandboxView>> {
    let sb = st.find(&u, &id)?;
    Ok(Json(SandboxView::from(&st.stop_sandbox(&sb).await?)))
}

async fn start<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<SandboxView>> {
    let sb = st.find(&u, &id)?;
    Ok(Json(SandboxView::from(&st.start_sandbox(&sb).await?)))
}
