//! Secrets (per user): values are encrypted with the daemon's age key
//! before they reach the store and are never returned; a sandbox gets a
//! secret as an environment variable of the same name only when its
//! create request (or template) names it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use bhatti_engine::engine::Engine;
use bhatti_store::secrets::SecretMeta;
use serde::Deserialize;

use super::{RouteDef, Verb, user};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiResult, AuthUser};
use crate::model::replies::{SecretView, Status};
use crate::model::time::rfc3339;
use crate::service::validate::valid_env_name;
use crate::state::{Shared, now_unix};

/// Largest secret value.
pub const MAX_VALUE: usize = 64 << 10;

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    vec![
        user(
            Verb::Post,
            "/secrets",
            "Create or replace a secret",
            post(upsert::<E>),
        )
        .body::<SecretBody>()
        .reply::<SecretView>(201),
        user(
            Verb::Get,
            "/secrets",
            "List secret names and dates",
            get(list::<E>),
        )
        .reply_list::<SecretView>(200),
        user(
            Verb::Delete,
            "/secrets/{name}",
            "Delete a secret",
            delete(remove::<E>),
        )
        .reply::<Status>(200),
    ]
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SecretBody {
    #[schema(pattern = "^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
    pub name: String,
    pub value: String,
}

async fn upsert<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiJson(req): ApiJson<SecretBody>,
) -> ApiResult<(StatusCode, Json<SecretView>)> {
    if !valid_env_name(&req.name) || req.name.len() > 128 {
        return Err(ApiError::BadRequest(format!(
            "invalid secret name {:?}: an environment variable name ([A-Za-z_][A-Za-z0-9_]*)",
            req.name
        )));
    }
    if req.value.len() > MAX_VALUE || req.value.contains('\0') {
        return Err(ApiError::BadRequest(format!(
            "secret values are at most {MAX_VALUE} bytes, without NUL"
        )));
    }
    let ct = st.secrets.encrypt(req.value.as_bytes())?;
    let saved = st.store.upsert_secret(&u.id, &req.name, &ct, now_unix())?;
    // v1 answers 201 whether the secret was new or replaced.
    Ok((StatusCode::CREATED, Json(view(saved))))
}

fn view(s: SecretMeta) -> SecretView {
    SecretView {
        created_at: rfc3339(s.created_at),
        name: s.name,
        updated_at: rfc3339(s.updated_at),
    }
}

async fn list<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
) -> ApiResult<Json<Vec<SecretView>>> {
    Ok(Json(
        st.store
            .list_secrets(&u.id)?
            .into_iter()
            .map(view)
            .collect(),
    ))
}

async fn remove<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Status>> {
    st.store.delete_secret(&u.id, &name)?;
    Ok(Json(Status::DELETED))
}
