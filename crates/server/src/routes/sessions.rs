//! TTY sessions of a sandbox: list, kill.

use axum::Json;
use axum::extract::State;
use axum::routing::{delete, get};
use bhatti_engine::engine::{Engine, SessionInfo};

use super::{RouteDef, Verb, user};
use crate::extract::{ApiPath, ApiResult, AuthUser};
use crate::model::replies::Killed;
use crate::openapi::replies;
use crate::state::Shared;

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    vec![
        user(
            Verb::Get,
            "/sandboxes/{id}/sessions",
            "List TTY sessions",
            get(list::<E>),
        )
        .reply_list::<replies::SessionInfo>(200),
        user(
            Verb::Delete,
            "/sandboxes/{id}/sessions/{sid}",
            "Kill a TTY session",
            delete(kill::<E>),
        )
        .reply::<Killed>(200),
    ]
}

async fn list<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<SessionInfo>>> {
    let (_, eid) = st.live(&u, &id).await?;
    Ok(Json(st.engine.list_sessions(&eid).await?))
}

async fn kill<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath((id, sid)): ApiPath<(String, String)>,
) -> ApiResult<Json<Killed>> {
    let (_, eid) = st.live(&u, &id).await?;
    st.engine.kill_session(&eid, &sid).await?;
    Ok(Json(Killed {
        session_id: sid,
        status: "killed",
    }))
}
