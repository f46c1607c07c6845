//! `GET /sandboxes/{id}/console?lines=N`: the last `N` lines (default
//! [`DEFAULT_LINES`], at most [`MAX_LINES`]) the guest printed on its
//! serial console — lohar's own lines (its start, its readiness), and
//! the kernel's warnings and errors (a panic, an oops: guests boot with
//! `quiet`, which keeps the kernel's informational lines off the
//! console, and the boot faster) — as
//! `text/plain`, read from the host's log of the console
//! ([`bhatti_engine::engine::Engine::console`]). It never wakes the
//! sandbox: a running, paused, cold or stopped sandbox shows its log as
//! it is. The log runs on across the sandbox's boots and restores (a
//! stop and start, a wake from cold); a sandbox made from a snapshot
//! (fork, clone, a pre-booted create) starts with only what its guest
//! printed since. No log, or an empty one, is an empty 200 body.
//!
//! The file read is the one the engine keeps in the sandbox's own
//! directory (nothing in the request names a path), opened without
//! following a symlink, and read from its end only.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bhatti_engine::engine::Engine;
use serde::Deserialize;

use super::{RouteDef, Verb, user};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery, ApiResult, AuthUser};
use crate::service::engine_id;
use crate::state::Shared;

/// Lines returned without `lines`.
pub const DEFAULT_LINES: u32 = 200;
/// Most lines one request may ask for.
pub const MAX_LINES: u32 = 10_000;

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    vec![
        user(
            Verb::Get,
            "/sandboxes/{id}/console",
            "The last lines of the guest's serial console (does not wake the sandbox)",
            get(console::<E>),
        )
        .query::<ConsoleQuery>()
        .reply_raw(200, "text/plain"),
    ]
}

/// Query of `GET /sandboxes/{id}/console`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsoleQuery {
    /// How many lines, from the end (default 200).
    #[param(minimum = 0, maximum = 10000)]
    pub lines: Option<u32>,
}

async fn console<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ConsoleQuery>,
) -> ApiResult<Response> {
    let lines = q.lines.unwrap_or(DEFAULT_LINES);
    if lines > MAX_LINES {
        return Err(ApiError::BadRequest(format!(
            "lines must be at most {MAX_LINES}, got {lines}"
        )));
    }
    let sb = st.find(&u, &id)?;
    let mut text = st.engine.console(&engine_id(&sb)?, lines as usize).await?;
    if !text.is_empty() {
        text.push('\n');
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}
