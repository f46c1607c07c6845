//! Volumes (per user): ext4 images that outlive sandboxes. The image file
//! is made (sparse) when a sandbox first mounts the volume; deleting a
//! volume mounted by a live sandbox is 409.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use bhatti_engine::engine::Engine;
use bhatti_store::volumes::Volume;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{RouteDef, Verb, user};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiResult, AuthUser};
use crate::keys;
use crate::lifecycle::volume_path;
use crate::state::{Shared, now_unix};
use crate::users::valid_name;

/// Size of a volume created without one.
pub const DEFAULT_SIZE_MB: u32 = 1024;

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    vec![
        user(Verb::Post, "/volumes", "Create a volume", post(create::<E>)),
        user(Verb::Get, "/volumes", "List volumes", get(list::<E>)),
        user(Verb::Get, "/volumes/{name}", "Get a volume", get(show::<E>)),
        user(
            Verb::Delete,
            "/volumes/{name}",
            "Delete a volume (409 while mounted)",
            delete(remove::<E>),
        ),
    ]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVolume {
    pub name: String,
    pub size_mb: Option<u32>,
}

fn view(v: &Volume) -> Value {
    json!({"id": v.id, "name": v.name, "size_mb": v.size_mb, "created_at": v.created_at})
}

async fn create<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiJson(req): ApiJson<CreateVolume>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if !valid_name(&req.name) {
        return Err(ApiError::BadRequest(format!(
            "invalid volume name {:?}",
            req.name
        )));
    }
    let size_mb = req.size_mb.unwrap_or(DEFAULT_SIZE_MB);
    if size_mb == 0 || size_mb > 1024 * 1024 {
        return Err(ApiError::BadRequest("size_mb must be 1-1048576".into()));
    }
    let id = keys::new_id("v-").map_err(|e| ApiError::Internal(e.to_string()))?;
    let v = Volume {
        path: volume_path(&st.settings.data_dir, &id)
            .to_string_lossy()
            .into_owned(),
        id,
        user_id: u.id.clone(),
        name: req.name,
        size_mb,
        created_at: now_unix(),
    };
    st.store.create_volume(&v)?;
    Ok((StatusCode::CREATED, Json(view(&v))))
}

async fn list<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
) -> ApiResult<Json<Vec<Value>>> {
    Ok(Json(
        st.store.list_volumes(&u.id)?.iter().map(view).collect(),
    ))
}

async fn show<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(view(&st.store.find_volume(&u.id, &name)?)))
}

async fn remove<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let v = st.store.delete_volume(&u.id, &name)?;
    match std::fs::remove_file(volume_path(&st.settings.data_dir, &v.id)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(volume = %v.id, error = %e, "removing volume image"),
    }
    Ok(Json(json!({"status": "deleted"})))
}
