//! `POST /sandboxes/{id}/exec`: buffered JSON, or NDJSON streaming with
//! `Accept: application/x-ndjson` — one event per line, each written to
//! the response as soon as the agent sends it.
//!
//! Both forms run over the agent's streaming exec, supervised by
//! [`bhatti_agent::Supervised`] (deadline, KILL, output cap). With `timeout_sec` the
//! process's stdin stays open so that KILL (SIGKILL to its process group)
//! can be sent when the deadline passes; the exit code is then 137 and
//! the result says `timed_out`. Without it, stdin is closed at once (a
//! command reading stdin sees end of file).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bhatti_agent::{Event, Supervised};
use bhatti_engine::engine::{Engine, ExecRequest};
use bytes::Bytes;
use serde::Deserialize;

use super::{RouteDef, Verb, user};
use crate::activity::BusyGuard;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiResult, AuthUser};
use crate::model::replies::{ExecEvent, ExecResult, sorted_json};
use crate::service::validate;
use crate::state::Shared;

/// Most output a buffered exec keeps per stream.
pub const OUTPUT_CAP: usize = 16 << 20;
/// Longest `timeout_sec`.
pub const MAX_TIMEOUT_SEC: u64 = 24 * 3600;

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    vec![
        user(
            Verb::Post,
            "/sandboxes/{id}/exec",
            "Run a command: buffered JSON, or NDJSON events with Accept: application/x-ndjson",
            post(exec::<E>),
        )
        .body::<ExecBody>()
        .reply::<ExecResult>(200)
        .or_stream::<ExecEvent>("application/x-ndjson"),
    ]
}

/// The request body. The command's stdin is closed: a program that reads
/// it sees end of file at once.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ExecBody {
    #[schema(min_items = 1)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    /// Seconds until the command's process group is killed (exit code
    /// 137, `timed_out`).
    #[schema(minimum = 1, maximum = 86400)]
    pub timeout_sec: Option<u64>,
    /// The guest user to run as (a name or a uid); default: the
    /// sandbox's `user`, else root (v1).
    #[schema(pattern = "^[a-zA-Z0-9._][a-zA-Z0-9._-]{0,31}$")]
    #[serde(default, deserialize_with = "crate::model::v1::blank_is_none")]
    pub user: Option<String>,
}

impl ExecBody {
    fn validate(&self) -> ApiResult<()> {
        if self.cmd.is_empty() || self.cmd[0].is_empty() {
            return Err(ApiError::BadRequest("cmd must name a program".into()));
        }
        let nul = |s: &String| s.contains('\0');
        if self.cmd.iter().any(nul)
            || self.env.values().any(nul)
            || self.cwd.as_ref().is_some_and(nul)
        {
            return Err(ApiError::BadRequest(
                "cmd, env and cwd must not contain NUL bytes".into(),
            ));
        }
        validate::env(self.env.keys())?;
        if let Some(u) = &self.user {
            validate::user(u)?;
        }
        if self
            .timeout_sec
            .is_some_and(|t| t == 0 || t > MAX_TIMEOUT_SEC)
        {
            return Err(ApiError::BadRequest(format!(
                "timeout_sec must be 1-{MAX_TIMEOUT_SEC}"
            )));
        }
        Ok(())
    }
}

async fn exec<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ExecBody>,
) -> ApiResult<Response> {
    body.validate()?;
    let (sb, eid) = st.live(&u, &id).await?;
    let busy = st.activity.busy(&sb.id);
    let req = ExecRequest {
        argv: body.cmd,
        env: body.env,
        cwd: body.cwd.or_else(|| crate::service::images::workdir_of(&sb)),
        user: body.user,
        // The API has no stdin: the command reads end of file, with or
        // without a timeout. The request says so itself, which spares
        // the guest a frame and leaves the connection open for the KILL
        // of a timeout (protocol version 7; the client falls back).
        stdin_closed: true,
        ..ExecRequest::default()
    };
    let start = std::time::Instant::now();
    let stream = st.engine.exec_stream(&eid, req).await?;
    let run = Supervised::new(stream, body.timeout_sec.map(Duration::from_secs)).await;
    if wants_ndjson(&headers) {
        return Ok(streaming(run, busy));
    }
    let r = run.collect(OUTPUT_CAP).await?;
    st.metrics.exec(start.elapsed());
    drop(busy);
    Ok(Json(ExecResult {
        exit_code: r.exit_code,
        stderr: String::from_utf8_lossy(&r.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&r.stdout).into_owned(),
        timed_out: r.timed_out,
        truncated: r.stdout_truncated || r.stderr_truncated,
    })
    .into_response())
}

fn wants_ndjson(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"))
}

/// Streaming state: the run, and partial UTF-8 sequences held back so
/// that a character split across two frames is not mangled.
struct Stream {
    run: Supervised,
    out: Vec<u8>,
    err: Vec<u8>,
    done: bool,
    _busy: BusyGuard,
}

impl Stream {
    /// The next line of the stream; the last one (exit or error) sets
    /// `done`.
    async fn event(&mut self) -> ExecEvent {
        let ev = match self.run.next().await {
            Ok(Some(Event::Stdout(d))) => ExecEvent::Stdout {
                data: take_utf8(&mut self.out, &d),
            },
            Ok(Some(Event::Stderr(d))) => ExecEvent::Stderr {
                data: take_utf8(&mut self.err, &d),
            },
            Ok(Some(Event::Exit(exit_code))) => ExecEvent::Exit {
                exit_code,
                timed_out: self.run.timed_out(),
            },
            Ok(Some(Event::Error(msg))) => ExecEvent::Error { data: msg.message },
            Ok(None) => ExecEvent::Error {
                data: "the agent ended the stream without an exit code".into(),
            },
            Err(e) => ExecEvent::Error {
                data: e.to_string(),
            },
        };
        self.done = matches!(ev, ExecEvent::Exit { .. } | ExecEvent::Error { .. });
        ev
    }
}

fn streaming(run: Supervised, busy: BusyGuard) -> Response {
    let state = Stream {
        run,
        out: Vec::new(),
        err: Vec::new(),
        done: false,
        _busy: busy,
    };
    let body = futures_util::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        let ev = s.event().await;
        let mut line = sorted_json(&ev).unwrap_or_default();
        line.push('\n');
        Some((Ok::<_, Infallible>(Bytes::from(line)), s))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(body))
        .unwrap_or_else(|e| ApiError::Internal(e.to_string()).into_response())
}

/// Appends `data` to `carry` and returns the longest complete UTF-8 prefix
/// (invalid bytes replaced), keeping an incomplete trailing sequence.
pub fn take_utf8(carry: &mut Vec<u8>, data: &[u8]) -> String {
    carry.extend_from_slice(data);
    let keep = match std::str::from_utf8(carry) {
        Err(e) if e.error_len().is_none() => carry.len() - e.valid_up_to(),
        _ => 0,
    };
    let tail = carry.split_off(carry.len() - keep);
    let s = String::from_utf8_lossy(carry).into_owned();
    *carry = tail;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_chunks_is_kept_whole() {
        let mut c = Vec::new();
        let bytes = "héllo".as_bytes();
        assert_eq!(take_utf8(&mut c, &bytes[..2]), "h");
        assert_eq!(take_utf8(&mut c, &bytes[2..]), "éllo");
        assert!(c.is_empty());
        assert_eq!(take_utf8(&mut c, b"a\xffb"), "a\u{fffd}b");
    }
}
