//! Templates (per user): named defaults for new sandboxes.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use bhatti_engine::engine::Engine;
use bhatti_engine::image::Tier;
use bhatti_store::templates::Template;
use serde::Deserialize;

use super::{RouteDef, Verb, user};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiResult, AuthUser};
use crate::keys;
use crate::model::replies::{Status, TemplateView};
use crate::model::{Mount, TemplateSpec};
use crate::service::validate::{self, Invalid};
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTemplate {
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
        i.parse::<Tier>()
            .map_err(|e| Invalid::Image(e.to_string()))?;
    }
    let spec = TemplateSpec {
        cpus: req.cpus,
        memory_mb: req.memory_mb,
        image: req.image,
        env: req.env,
        init: req.init,
        secrets: req.secrets,
        mounts: req.mounts,
    };
    validate::template(&spec)?;
    let t = Template {
        id: keys::new_id("t-").map_err(|e| ApiError::Internal(e.to_string()))?,
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
