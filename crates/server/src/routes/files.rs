//! Files: `GET` (streamed body, `X-File-Size` always, `Content-Length`
//! only for a full read; `ls=true` lists a directory), `PUT` (streamed
//! upload, `Content-Length` required, at most 100 MiB, atomic in the
//! guest), `HEAD` (stat as headers). Neither direction holds a file in
//! daemon memory: bodies are copied frame by frame.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, head, put};
use bhatti_engine::engine::{Engine, ReadOptions};
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;
use tokio_util::io::{ReaderStream, StreamReader};

use super::{RouteDef, Verb, user};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery, ApiResult, AuthUser};
use crate::model::replies::Status;
use crate::openapi::replies::FileInfo;
use crate::service::validate::parse_mode;
use crate::state::Shared;

/// Largest upload.
pub const UPLOAD_LIMIT: u64 = 100 << 20;

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    vec![
        user(
            Verb::Get,
            "/sandboxes/{id}/files",
            "Read a file (path, offset, limit, max_bytes) or list a directory (ls=true)",
            get(read::<E>),
        )
        .query::<FileQuery>()
        .reply_raw(200, "application/octet-stream")
        .or_list::<FileInfo>("application/json")
        .header("X-File-Size", "Size of the file in bytes")
        .header("X-File-Mode", "Octal permission string, e.g. 0644"),
        user(
            Verb::Put,
            "/sandboxes/{id}/files",
            "Write a file atomically (raw body with Content-Length; mode)",
            put(write::<E>),
        )
        .query::<FileQuery>()
        .raw_body("application/octet-stream")
        .reply::<Status>(200),
        user(
            Verb::Head,
            "/sandboxes/{id}/files",
            "Stat a file: X-File-Size, X-File-Mode, X-File-IsDir",
            head(stat::<E>),
        )
        .query::<FileQuery>()
        .reply_empty(200)
        .header("X-File-Size", "Size in bytes")
        .header("X-File-Mode", "Octal permission string, e.g. 0644")
        .header("X-File-IsDir", "true for a directory"),
    ]
}

/// Query of every file route.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    #[param(pattern = "^/")]
    pub path: String,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
    #[param(minimum = 0)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub max_bytes: Option<i64>,
    #[serde(default, deserialize_with = "crate::model::v1::flag")]
    #[param(value_type = Option<bool>)]
    pub ls: bool,
    /// Octal permission string of a written file, default `0644`.
    #[param(pattern = "^0?[0-7]{1,4}$")]
    pub mode: Option<String>,
    /// Owner of a written file: a guest user name or uid (default: the
    /// sandbox's `user`, else `lohar`). The write itself is the agent's;
    /// reads, stat and listings take no user.
    #[param(pattern = "^[a-zA-Z0-9._][a-zA-Z0-9._-]{0,31}$")]
    pub user: Option<String>,
}

fn check_path(p: &str) -> ApiResult<&str> {
    if p.contains('\0') {
        return Err(ApiError::BadRequest(
            "path must not contain NUL bytes".into(),
        ));
    }
    if !p.starts_with('/') {
        return Err(ApiError::BadRequest(format!("path {p:?} must be absolute")));
    }
    Ok(p)
}

async fn read<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<FileQuery>,
) -> ApiResult<Response> {
    let path = check_path(&q.path)?;
    for (name, v) in [
        ("offset", q.offset),
        ("limit", q.limit),
        ("max_bytes", q.max_bytes),
    ] {
        if v.is_some_and(|v| v < 0) {
            return Err(ApiError::BadRequest(format!("{name} must be >= 0")));
        }
    }
    let (sb, eid) = st.live(&u, &id).await?;
    if q.ls {
        return Ok(Json(st.engine.ls(&eid, path).await?).into_response());
    }
    let opts = ReadOptions {
        offset: q.offset.filter(|v| *v > 0),
        limit: q.limit.filter(|v| *v > 0),
        max_bytes: q.max_bytes.filter(|v| *v > 0),
    };
    let full = opts == ReadOptions::default();
    let reader = st.engine.read_file(&eid, path, opts).await?;
    let size = reader.size();
    let mode = reader.mode().to_owned();
    let busy = st.activity.busy(&sb.id);
    let body = ReaderStream::new(reader).map(move |chunk| {
        let _keep = &busy;
        chunk
    });
    let mut resp = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("x-file-size", size)
        .header("x-file-mode", mode);
    if full {
        resp = resp.header(header::CONTENT_LENGTH, size);
    }
    resp.body(Body::from_stream(body))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

async fn write<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<FileQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Status>> {
    let path = check_path(&q.path)?;
    let owner = q.user.as_deref().filter(|u| !u.is_empty());
    if let Some(u) = owner {
        crate::service::validate::user(u)?;
    }
    let mode = match &q.mode {
        Some(m) => parse_mode(m).ok_or_else(|| {
            ApiError::BadRequest(format!("invalid mode {m:?} (octal, e.g. 0644)"))
        })?,
        None => 0o644,
    };
    let len = headers
        .get(header::CONTENT_LENGTH)
        .ok_or(ApiError::LengthRequired)?
        .to_str()
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| ApiError::BadRequest("invalid Content-Length".into()))?;
    if len > UPLOAD_LIMIT {
        return Err(ApiError::PayloadTooLarge(format!(
            "upload of {len} bytes is over the limit of {UPLOAD_LIMIT}"
        )));
    }
    let (sb, eid) = st.live(&u, &id).await?;
    let _busy = st.activity.busy(&sb.id);
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = StreamReader::new(stream);
    st.engine
        .write_file_as(&eid, path, mode, len, Box::new(reader), owner)
        .await?;
    Ok(Json(Status::OK))
}

async fn stat<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<FileQuery>,
) -> ApiResult<Response> {
    let path = check_path(&q.path)?;
    let (_, eid) = st.live(&u, &id).await?;
    let info = st.engine.stat(&eid, path).await?;
    Ok((
        StatusCode::OK,
        [
            ("x-file-size", info.size.to_string()),
            ("x-file-mode", info.mode.clone()),
            ("x-file-isdir", info.is_dir.to_string()),
        ],
    )
        .into_response())
}
