//! Snapshots and fork (extensions over v1): take a named snapshot of a
//! sandbox, list, get and delete snapshots (the caller's own; another
//! user's is 404), and fork a sandbox into children. A sandbox is made
//! from a snapshot by `POST /sandboxes` with `snapshot` ([`super::sandboxes`]).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use bhatti_engine::engine::Engine;

use super::{RouteDef, Verb, user};
use crate::extract::{ApiJson, ApiPath, ApiResult, AuthUser};
use crate::model::SandboxView;
use crate::model::snapshots::{CreateSnapshot, ForkReply, ForkSandbox, SnapshotView};
use crate::service::{ServiceError, lifetime};
use crate::state::Shared;

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    vec![
        user(
            Verb::Post,
            "/sandboxes/{id}/snapshots",
            "Take a named snapshot of a sandbox (a running one pauses briefly and runs on)",
            post(create::<E>),
        )
        .body::<CreateSnapshot>()
        .reply::<SnapshotView>(201),
        user(
            Verb::Get,
            "/snapshots",
            "List snapshots, newest first; `?label=KEY=VALUE` (repeatable) keeps those with every such label",
            get(list::<E>),
        )
        .reply_list::<SnapshotView>(200),
        user(
            Verb::Get,
            "/snapshots/{name}",
            "Get a snapshot (status `broken` with a problem when it cannot be restored)",
            get(show::<E>),
        )
        .reply::<SnapshotView>(200),
        user(
            Verb::Delete,
            "/snapshots/{name}",
            "Delete a snapshot (sandboxes made from it stay)",
            delete(remove::<E>),
        )
        .reply_empty(204),
        user(
            Verb::Post,
            "/sandboxes/{id}/fork",
            "Fork a sandbox: children restored from one snapshot taken now, all or none",
            post(fork::<E>),
        )
        .body::<ForkSandbox>()
        .reply::<ForkReply>(201),
    ]
}

async fn create<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<CreateSnapshot>,
) -> ApiResult<(StatusCode, Json<SnapshotView>)> {
    let view = st.create_snapshot(&u, &id, req).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn list<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    Query(query): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Vec<SnapshotView>>> {
    let wanted = lifetime::label_filter(&query).map_err(ServiceError::from)?;
    Ok(Json(st.list_snapshots(&u, &wanted).await?))
}

async fn show<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<SnapshotView>> {
    Ok(Json(st.snapshot_view(&u, &name).await?))
}

async fn remove<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    st.delete_snapshot(&u, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn fork<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ForkSandbox>,
) -> ApiResult<(StatusCode, Json<ForkReply>)> {
    let children = st.fork_sandbox(&u, &id, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(ForkReply {
            sandboxes: children.iter().map(SandboxView::from).collect(),
        }),
    ))
}
