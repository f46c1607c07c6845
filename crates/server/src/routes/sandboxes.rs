//! Sandboxes: create, list, get, patch, delete, stop, start. Listing and
//! getting read the store only and never wake a VM.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post};
use bhatti_engine::engine::Engine;
use serde_json::{Value, json};

use super::{RouteDef, Verb, user};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiResult, AuthUser};
use crate::lifecycle::engine_id;
use crate::model::{CreateSandbox, PatchSandbox, SandboxView};
use crate::state::Shared;
use crate::users::valid_name;

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    vec![
        user(
            Verb::Post,
            "/sandboxes",
            "Create a sandbox",
            post(create::<E>),
        ),
        user(
            Verb::Get,
            "/sandboxes",
            "List sandboxes, newest first",
            get(list::<E>),
        ),
        user(
            Verb::Get,
            "/sandboxes/{id}",
            "Get a sandbox",
            get(show::<E>),
        ),
        user(
            Verb::Patch,
            "/sandboxes/{id}",
            "Rename a sandbox, set keep_hot or peers",
            patch(update::<E>),
        ),
        user(
            Verb::Delete,
            "/sandboxes/{id}",
            "Destroy a sandbox (volumes survive)",
            delete(destroy::<E>),
        ),
        user(
            Verb::Post,
            "/sandboxes/{id}/stop",
            "Stop: snapshot to disk, VM gone",
            post(stop::<E>),
        ),
        user(
            Verb::Post,
            "/sandboxes/{id}/start",
            "Start a stopped sandbox",
            post(start::<E>),
        ),
    ]
}

async fn create<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiJson(req): ApiJson<CreateSandbox>,
) -> ApiResult<(StatusCode, Json<SandboxView>)> {
    let sb = st.create_sandbox(&u, req).await?;
    Ok((StatusCode::CREATED, Json(SandboxView::from(&sb))))
}

async fn list<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
) -> ApiResult<Json<Vec<SandboxView>>> {
    let all = st.store.list_sandboxes(&u.id)?;
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
    if let Some(name) = &req.name {
        if !valid_name(name) {
            return Err(ApiError::BadRequest(format!(
                "invalid name {name:?}: 1-63 characters of [a-zA-Z0-9._-], starting alphanumeric"
            )));
        }
        st.store.rename_sandbox(&sb.id, name)?;
    }
    if let Some(k) = req.keep_hot {
        st.store.set_sandbox_keep_hot(&sb.id, k)?;
    }
    if let Some(p) = req.peers {
        st.engine.set_peers(&engine_id(&sb)?, p).await?;
        let mut spec = sb.spec.clone();
        if let Some(obj) = spec.as_object_mut() {
            obj.insert("peers".into(), Value::Bool(p));
        }
        st.store.set_sandbox_spec(&sb.id, &spec)?;
    }
    Ok(Json(SandboxView::from(&st.store.sandbox_by_id(&sb.id)?)))
}

async fn destroy<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let sb = st.find(&u, &id)?;
    st.destroy_sandbox(&sb).await?;
    Ok(Json(json!({"status": "destroyed"})))
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
