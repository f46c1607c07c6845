//! Templates (per user): named defaults for new sandboxes.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use bhatti_engine::engine::Engine;
use bhatti_store::templates::Template;
use serde::Deserialize;

use super::{RouteDef, Verb, user};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiResult, AuthUser};
use crate::keys;
use crate::model::replies::{Status, TemplateView};
use crate::model::{Mount, TemplateSpec};
use crate::service::validate;
use crate::state::{Shared, now_unix};

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    vec![
        user(
            Verb::Post,
            "/templates",
            "Create a template",
            post(create::<E>),
        )
        .body::<CreateTemplate>()
        .reply::<TemplateView>(201),
        user(Verb::Get, "/templates", "List templates", get(list::<E>))
            .reply_list::<TemplateView>(200),
        user(
            Verb::Get,
            "/templates/{id}",
            "Get a template (by id or name)",
            get(show::<E>),
        )
        .reply::<TemplateView>(200),
        user(
            Verb::Delete,
            "/templates/{id}",
            "Delete a template",
            delete(remove::<E>),
        )
        .reply::<Status>(200),
    ]
}

/// `POST /templates`: our fields and v1's (`id`, `engine`,
/// `disk_size_mb`, `userdata`, `labels`, mounts as
/// `{volume_name, target, auto_create}`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateTemplate {
    /// The template's id, when the client chooses it (v1); generated
    /// otherwise.
    #[schema(pattern = "^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$")]
    #[serde(default, deserialize_with = "crate::model::v1::blank_is_none")]
    pub id: Option<String>,
    #[schema(pattern = "^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$")]
    pub name: String,
    #[schema(minimum = 1)]
    pub cpus: Option<u32>,
    #[schema(minimum = 64)]
    pub memory_mb: Option<u32>,
    pub image: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub init: Option<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// v1: kept and shown; this daemon's engine runs the sandboxes.
    pub engine: Option<String>,
    /// v1: the root disk's size in MB of sandboxes made from it (at least
    /// the image's; a create's own `disk_size_mb` wins); `0`: the image's.
    #[schema(minimum = 0, maximum = 1048576)]
    pub disk_size_mb: Option<u32>,
    /// v1's boot script: the `init` script when `init` is not given.
    pub userdata: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The guest user of sandboxes made from it (see `CreateSandbox`).
    #[serde(default, deserialize_with = "crate::model::v1::blank_is_none")]
    pub user: Option<String>,
}

/// A stored template as the API shows it; a spec that does not parse is
/// a corrupt row (500), as when a sandbox is created from it.
fn view(t: &Template) -> Result<TemplateView, ApiError> {
    let spec: TemplateSpec = serde_json::from_value(t.spec.clone())
        .map_err(|e| ApiError::Internal(format!("stored template {}: {e}", t.id)))?;
    Ok(TemplateView::new(t, spec))
}

async fn create<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiJson(req): ApiJson<CreateTemplate>,
) -> ApiResult<(StatusCode, Json<TemplateView>)> {
    validate::name(&req.name)?;
    if let Some(i) = &req.image {
        // One of the caller's images, or a tier.
        st.resolve_image(&u, i)?;
    }
    let spec = TemplateSpec {
        cpus: req.cpus,
        memory_mb: req.memory_mb,
        image: req.image,
        env: req.env,
        init: req.init.or(req.userdata),
        secrets: req.secrets,
        mounts: req.mounts,
        engine: req.engine,
        disk_size_mb: req.disk_size_mb,
        labels: req.labels,
        user: req.user,
    };
    validate::template(&spec)?;
    let id = match req.id {
        Some(id) => {
            validate::name(&id)?;
            id
        }
        None => keys::new_id("t-").map_err(|e| ApiError::Internal(e.to_string()))?,
    };
    let t = Template {
        id,
        user_id: u.id.clone(),
        name: req.name,
        spec: serde_json::to_value(&spec).map_err(|e| ApiError::Internal(e.to_string()))?,
        created_at: now_unix(),
    };
    st.store.create_template(&t)?;
    Ok((StatusCode::CREATED, Json(TemplateView::new(&t, spec))))
}

async fn list<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
) -> ApiResult<Json<Vec<TemplateView>>> {
    let rows = st.store.list_templates(&u.id)?;
    Ok(Json(rows.iter().map(view).collect::<Result<_, _>>()?))
}

async fn show<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<TemplateView>> {
    Ok(Json(view(&st.store.find_template(&u.id, &id)?)?))
}

async fn remove<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Status>> {
    st.store.delete_template(&u.id, &id)?;
    Ok(Json(Status::DELETED))
}
