//! Volumes (per user): ext4 images that outlive sandboxes. The image file
//! is made (sparse) when a sandbox first mounts the volume; deleting a
//! volume mounted by a live sandbox is 409. Create is idempotent, as in
//! v1: a name the user already has answers 200 with that volume.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use bhatti_engine::engine::Engine;
use bhatti_store::volumes::Volume;
use serde::Deserialize;

use super::{RouteDef, Verb, user};
use crate::extract::{ApiJson, ApiPath, ApiResult, AuthUser};
use crate::model::replies::{Status, VolumeView};
use crate::model::time;
use crate::state::Shared;

/// Size of a volume created without one.
pub use crate::service::validate::DEFAULT_VOLUME_MB as DEFAULT_SIZE_MB;

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    vec![
        user(Verb::Post, "/volumes", "Create a volume", post(create::<E>))
            .body::<CreateVolume>()
            .reply::<VolumeView>(201)
            .or_status(200),
        user(Verb::Get, "/volumes", "List volumes", get(list::<E>)).reply_list::<VolumeView>(200),
        user(Verb::Get, "/volumes/{name}", "Get a volume", get(show::<E>)).reply::<VolumeView>(200),
        user(
            Verb::Delete,
            "/volumes/{name}",
            "Delete a volume (409 while mounted)",
            delete(remove::<E>),
        )
        .reply::<Status>(200),
    ]
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateVolume {
    #[schema(pattern = "^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$")]
    pub name: String,
    #[schema(minimum = 1, maximum = 1048576)]
    pub size_mb: Option<u32>,
}

fn view(v: &Volume) -> VolumeView {
    VolumeView {
        created_at: time::rfc3339(v.created_at),
        id: v.id.clone(),
        name: v.name.clone(),
        size_mb: v.size_mb,
    }
}

async fn create<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiJson(req): ApiJson<CreateVolume>,
) -> ApiResult<(StatusCode, Json<VolumeView>)> {
    let (v, created) = st.create_volume(&u, req.name, req.size_mb)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view(&v))))
}

async fn list<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
) -> ApiResult<Json<Vec<VolumeView>>> {
    Ok(Json(
        st.store.list_volumes(&u.id)?.iter().map(view).collect(),
    ))
}

async fn show<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<VolumeView>> {
    Ok(Json(view(&st.store.find_volume(&u.id, &name)?)))
}

async fn remove<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Status>> {
    st.delete_volume(&u, &name).await?;
    Ok(Json(Status::DELETED))
}
