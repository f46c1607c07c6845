//! envd's HTTP API: `GET /files` (download), `POST /files` (upload),
//! `GET /health`.
//!
//! - Download: `?path=&username=`; the body streams from the agent's read
//!   (`Content-Length` set); a missing file is 404, a directory 400.
//!   `Accept-Encoding` is not honoured (identity is always acceptable).
//! - Upload: `application/octet-stream` with `?path=` (streamed straight
//!   to the agent when `Content-Length` is given), or `multipart/form-data`
//!   with one or more `file` parts (the target is `?path=` for a single
//!   part, else each part's file name). The agent's write needs the size
//!   first, so a body of unknown length (multipart parts, chunked octet
//!   streams, gzip bodies: `Content-Encoding: gzip`, octet-stream only) is
//!   spooled to a file under the daemon's data dir ([`super::spool`]),
//!   never held in memory. Each file is at most [`UPLOAD_LIMIT`]. The
//!   reply lists `{name, type: "file", path}` per file.
//! - Errors are JSON `{"code": <status>, "message": "…"}` as envd sends
//!   them.
//! - Health: 204 while the sandbox exists (no token needed), 502 `… was
//!   not found` otherwise (the SDK reads that as "not running").

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bhatti_engine::engine::{Engine, FileSource, ReadOptions, SandboxId};
use bhatti_store::sandboxes::Status;
use futures_util::{Stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio_util::io::{ReaderStream, StreamReader};

use super::connect::{Code, RpcError};
use super::spool::Spool;
use super::{Call, users};
use crate::state::Shared;

/// Largest file one upload may write.
pub const UPLOAD_LIMIT: u64 = crate::routes::files::UPLOAD_LIMIT;

/// The query of `/files`.
#[derive(Debug, Deserialize)]
pub struct FilesQuery {
    pub path: Option<String>,
    pub username: Option<String>,
}

/// One written file.
#[derive(Debug, Serialize)]
pub struct Written {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    path: String,
}

/// An error in envd's HTTP form.
struct HttpError(RpcError);

impl From<RpcError> for HttpError {
    fn from(e: RpcError) -> Self {
        Self(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = match self.0.code {
            Code::FailedPrecondition => StatusCode::BAD_REQUEST,
            Code::ResourceExhausted => StatusCode::INSUFFICIENT_STORAGE,
            c => c.http_status(),
        };
        let body = serde_json::json!({"code": status.as_u16(), "message": self.0.message});
        (status, Json(body)).into_response()
    }
}

/// The call and the user the query names (it wins over the header).
fn call_of<E: Engine>(
    st: &Shared<E>,
    headers: &HeaderMap,
    q: &FilesQuery,
) -> Result<Call<E>, RpcError> {
    let mut call = Call::new(st, headers)?;
    if let Some(u) = users::checked(q.username.as_deref().unwrap_or_default())? {
        call.user = Some(u);
    }
    Ok(call)
}

async fn resolved<E: Engine>(
    call: &Call<E>,
    eid: &SandboxId,
    path: Option<&str>,
) -> Result<String, RpcError> {
    let p = path
        .filter(|p| !p.is_empty())
        .ok_or_else(|| RpcError::invalid("path is required"))?;
    users::resolve(&call.st, &call.sb, eid, call.user.as_deref(), p).await
}

pub async fn download<E: Engine>(
    State(st): State<Shared<E>>,
    headers: HeaderMap,
    Query(q): Query<FilesQuery>,
) -> Response {
    let run = async {
        let call = call_of(&st, &headers, &q)?;
        let eid = call.wake().await?;
        let path = resolved(&call, &eid, q.path.as_deref()).await?;
        let reader = st
            .engine
            .read_file(&eid, &path, ReadOptions::default())
            .await
            .map_err(|e| {
                let e = RpcError::from(e);
                match e.code {
                    Code::NotFound => {
                        RpcError::new(Code::NotFound, format!("path '{path}' does not exist"))
                    }
                    _ => e,
                }
            })?;
        let size = reader.size();
        let busy = st.activity.busy(&call.sb.id);
        let body = ReaderStream::with_capacity(reader, 64 << 10).map(move |chunk| {
            let _keep = &busy;
            chunk
        });
        Response::builder()
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, size)
            .body(Body::from_stream(body))
            .map_err(|e| RpcError::new(Code::Internal, e.to_string()))
    };
    run.await.unwrap_or_else(|e| HttpError(e).into_response())
}

pub async fn upload<E: Engine>(
    State(st): State<Shared<E>>,
    Query(q): Query<FilesQuery>,
    req: Request,
) -> Response {
    let run = async {
        let headers = req.headers().clone();
        let call = call_of(&st, &headers, &q)?;
        let gzip = gzip_of(&headers)?;
        let ctype = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let eid = call.wake().await?;
        let _busy = st.activity.busy(&call.sb.id);
        if ctype.starts_with("application/octet-stream") {
            let path = resolved(&call, &eid, q.path.as_deref()).await?;
            let len = content_length(&headers)?;
            let body = req
                .into_body()
                .into_data_stream()
                .map_err(std::io::Error::other);
            if gzip {
                write_gzip(&call, &eid, &path, body).await?;
            } else {
                write(&call, &eid, &path, body, len).await?;
            }
            return Ok(vec![written(path)]);
        }
        if gzip {
            return Err(RpcError::invalid(
                "gzip is only taken with application/octet-stream",
            ));
        }
        if ctype.starts_with("multipart/") {
            return multipart(&call, &eid, q.path.as_deref(), req).await;
        }
        Err(RpcError::invalid(format!(
            "unsupported content type {ctype:?}, expected multipart/form-data or application/octet-stream"
        )))
    };
    match run.await {
        Ok(files) => Json(files).into_response(),
        Err(e) => HttpError(e).into_response(),
    }
}

/// Whether the body is gzip (`Content-Encoding`); other codings are
/// refused.
fn gzip_of(headers: &HeaderMap) -> Result<bool, RpcError> {
    let Some(v) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(false);
    };
    match v
        .to_str()
        .unwrap_or("?")
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "" | "identity" => Ok(false),
        "gzip" | "x-gzip" => Ok(true),
        e => Err(RpcError::invalid(format!(
            "unsupported Content-Encoding {e:?} (gzip or identity)"
        ))),
    }
}

fn written(path: String) -> Written {
    Written {
        name: path.rsplit('/').next().unwrap_or_default().to_owned(),
        kind: "file",
        path,
    }
}

fn content_length(headers: &HeaderMap) -> Result<Option<u64>, RpcError> {
    let Some(v) = headers.get(header::CONTENT_LENGTH) else {
        return Ok(None);
    };
    let n = v
        .to_str()
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| RpcError::invalid("invalid Content-Length"))?;
    Ok(Some(n))
}

async fn multipart<E: Engine>(
    call: &Call<E>,
    eid: &SandboxId,
    path: Option<&str>,
    req: Request,
) -> Result<Vec<Written>, RpcError> {
    let mut form = axum::extract::Multipart::from_request(req, &())
        .await
        .map_err(|e| RpcError::invalid(e.body_text()))?;
    let mut out: Vec<Written> = Vec::new();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| RpcError::invalid(e.body_text()))?
    {
        if field.name() != Some("file") {
            continue;
        }
        let name = path
            .filter(|p| !p.is_empty())
            .or(field.file_name())
            .map(str::to_owned);
        let target = resolved(call, eid, name.as_deref()).await?;
        if out.iter().any(|w| w.path == target) {
            return Err(RpcError::invalid(format!(
                "you cannot upload multiple files to the same path '{target}' in one upload request"
            )));
        }
        let body = field.map_err(std::io::Error::other);
        write_spooled(call, eid, &target, body).await?;
        out.push(written(target));
    }
    Ok(out)
}

/// Writes `body` to `path` in the guest: straight through when its length
/// is known, else spooled first.
async fn write<E, S>(
    call: &Call<E>,
    eid: &SandboxId,
    path: &str,
    body: S,
    len: Option<u64>,
) -> Result<(), RpcError>
where
    E: Engine,
    S: Stream<Item = std::io::Result<axum::body::Bytes>> + Send + Unpin + 'static,
{
    match len {
        Some(n) => {
            check_size(n)?;
            let owner = call.user.as_deref();
            let src: FileSource = Box::new(StreamReader::new(body));
            call.st
                .engine
                .write_file_as(eid, path, 0o644, n, src, owner)
                .await?;
            Ok(())
        }
        None => write_spooled(call, eid, path, body).await,
    }
}

/// Spools `body` to the host's disk, then writes it to `path`.
async fn write_spooled<E, S>(
    call: &Call<E>,
    eid: &SandboxId,
    path: &str,
    body: S,
) -> Result<(), RpcError>
where
    E: Engine,
    S: Stream<Item = std::io::Result<axum::body::Bytes>> + Unpin,
{
    let spool = Spool::fill(&call.st.settings.data_dir, body).await?;
    write_spool(call, eid, path, &spool).await
}

/// Writes a spooled body to `path`.
async fn write_spool<E: Engine>(
    call: &Call<E>,
    eid: &SandboxId,
    path: &str,
    spool: &Spool,
) -> Result<(), RpcError> {
    let f = tokio::fs::File::open(&spool.path)
        .await
        .map_err(|e| RpcError::new(Code::Internal, format!("reading the spooled upload: {e}")))?;
    let owner = call.user.as_deref();
    call.st
        .engine
        .write_file_as(eid, path, 0o644, spool.len, Box::new(f), owner)
        .await?;
    Ok(())
}

/// Decompresses a gzip body (spooled twice), then writes it to `path`.
async fn write_gzip<E, S>(
    call: &Call<E>,
    eid: &SandboxId,
    path: &str,
    body: S,
) -> Result<(), RpcError>
where
    E: Engine,
    S: Stream<Item = std::io::Result<axum::body::Bytes>> + Unpin,
{
    let dir = &call.st.settings.data_dir;
    let plain = Spool::fill(dir, body).await?.gunzip(dir).await?;
    write_spool(call, eid, path, &plain).await
}

fn check_size(n: u64) -> Result<(), RpcError> {
    if n > UPLOAD_LIMIT {
        return Err(RpcError::new(
            Code::ResourceExhausted,
            format!("upload of {n} bytes is over the limit of {UPLOAD_LIMIT}"),
        ));
    }
    Ok(())
}

pub async fn health<E: Engine>(State(st): State<Shared<E>>, headers: HeaderMap) -> Response {
    let id = headers
        .get(super::super::SANDBOX_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim();
    match st.store.sandbox_by_id(id) {
        Ok(sb) if sb.status != Status::Destroyed => StatusCode::NO_CONTENT.into_response(),
        _ => {
            let body =
                serde_json::json!({"code": 502, "message": format!("sandbox {id} was not found")});
            (StatusCode::BAD_GATEWAY, Json(body)).into_response()
        }
    }
}
