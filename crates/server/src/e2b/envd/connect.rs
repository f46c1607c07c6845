//! The Connect protocol (JSON codec), server side: unary calls and server
//! streams.
//!
//! - Unary: `POST /pkg.Service/Method`, `Content-Type: application/json`,
//!   the request message as the body; the reply is 200 with the message as
//!   JSON, or an error status (the spec's mapping, [`Code::http_status`])
//!   with `{"code": "not_found", "message": "…"}`.
//! - Server stream: `Content-Type: application/connect+json`; the body is
//!   one envelope (flags byte, 4-byte big-endian length, JSON). The reply
//!   is always 200 with a stream of envelopes; the last one has flag 0x02
//!   and carries `{}` or `{"error": {"code", "message"}}`.
//! - `Connect-Timeout-Ms` bounds a call ([`deadline`]): a unary call past
//!   it, or a stream still open, ends with `deadline_exceeded`.
//! - Compression is not offered (the SDK disables it both ways); a
//!   compressed envelope is refused.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::error::ApiError;

/// Envelope flag of the end-of-stream message.
const END_STREAM: u8 = 0x02;
/// Envelope flag of a compressed message.
const COMPRESSED: u8 = 0x01;
/// Longest request message.
pub const MAX_MESSAGE: usize = 1 << 20;

/// Connect error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Canceled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Unimplemented,
    Internal,
    Unavailable,
    Unauthenticated,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Canceled => "canceled",
            Self::Unknown => "unknown",
            Self::InvalidArgument => "invalid_argument",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::PermissionDenied => "permission_denied",
            Self::ResourceExhausted => "resource_exhausted",
            Self::FailedPrecondition => "failed_precondition",
            Self::Unimplemented => "unimplemented",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
            Self::Unauthenticated => "unauthenticated",
        }
    }

    /// The HTTP status of a unary error (the Connect spec's table).
    pub fn http_status(self) -> StatusCode {
        let s = match self {
            Self::Canceled => 499,
            Self::Unknown | Self::Internal => 500,
            Self::InvalidArgument | Self::FailedPrecondition => 400,
            Self::DeadlineExceeded => 504,
            Self::NotFound => 404,
            Self::AlreadyExists => 409,
            Self::PermissionDenied => 403,
            Self::ResourceExhausted => 429,
            Self::Unimplemented => 501,
            Self::Unavailable => 503,
            Self::Unauthenticated => 401,
        };
        StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The code for an HTTP status of the daemon's own errors.
    pub fn from_http(status: u16) -> Self {
        match status {
            400 | 411 => Self::InvalidArgument,
            401 => Self::Unauthenticated,
            403 => Self::PermissionDenied,
            404 => Self::NotFound,
            409 => Self::AlreadyExists,
            413 | 429 | 507 => Self::ResourceExhausted,
            422 => Self::FailedPrecondition,
            502 | 503 => Self::Unavailable,
            504 => Self::DeadlineExceeded,
            _ => Self::Internal,
        }
    }
}

/// An RPC's failure: a code and a message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct RpcError {
    pub code: Code,
    pub message: String,
}

impl RpcError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({"code": self.code.as_str(), "message": self.message})
    }
}

impl From<ApiError> for RpcError {
    fn from(e: ApiError) -> Self {
        Self::new(
            Code::from_http(e.status()),
            crate::error::shorten(&e.to_string()),
        )
    }
}

macro_rules! via_api_error {
    ($($t:ty),*) => {$(
        impl From<$t> for RpcError {
            fn from(e: $t) -> Self {
                ApiError::from(e).into()
            }
        }
    )*};
}
via_api_error!(
    crate::service::ServiceError,
    bhatti_engine::engine::EngineError,
    bhatti_agent::Error
);

impl IntoResponse for RpcError {
    /// The unary form of the error.
    fn into_response(self) -> Response {
        (self.code.http_status(), axum::Json(self.json())).into_response()
    }
}

/// The deadline `Connect-Timeout-Ms` sets, if any.
pub fn deadline(headers: &HeaderMap) -> Option<Instant> {
    let ms: u64 = headers
        .get("connect-timeout-ms")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Instant::now() + Duration::from_millis(ms))
}

/// How often a server stream pings while silent: the SDK's
/// `Keepalive-Ping-Interval` (seconds, 1-3600), else 50 s.
pub fn keepalive(headers: &HeaderMap) -> Duration {
    let secs = headers
        .get("keepalive-ping-interval")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(50, |s| s.clamp(1, 3600));
    Duration::from_secs(secs)
}

/// Decodes a unary request body.
pub fn unary_request<T: DeserializeOwned>(body: &[u8]) -> Result<T, RpcError> {
    let body = if body.is_empty() {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| RpcError::invalid(format!("bad request message: {e}")))
}

/// Decodes a server stream's request: one enveloped message.
pub fn stream_request<T: DeserializeOwned>(body: &[u8]) -> Result<T, RpcError> {
    if body.len() < 5 {
        return Err(RpcError::invalid("request envelope too short"));
    }
    if body[0] & COMPRESSED != 0 {
        return Err(RpcError::new(
            Code::Unimplemented,
            "compression is not supported",
        ));
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let msg = body
        .get(5..5 + len)
        .ok_or_else(|| RpcError::invalid("request envelope shorter than its length"))?;
    unary_request(msg)
}

/// Runs a unary call within its `Connect-Timeout-Ms` and replies.
pub async fn unary<T, F>(headers: &HeaderMap, call: F) -> Response
where
    T: Serialize,
    F: std::future::Future<Output = Result<T, RpcError>>,
{
    let r = match deadline(headers) {
        Some(at) => tokio::time::timeout_at(at, call)
            .await
            .unwrap_or_else(|_| Err(timed_out())),
        None => call.await,
    };
    unary_reply(r)
}

fn timed_out() -> RpcError {
    RpcError::new(
        Code::DeadlineExceeded,
        "the call's timeout (Connect-Timeout-Ms) passed",
    )
}

/// The reply to a method envd does not have.
pub async fn unknown_method() -> Response {
    RpcError::new(Code::Unimplemented, "no such method").into_response()
}

/// Splits a request body that arrives in chunks into envelopes (a
/// client stream).
#[derive(Debug, Default)]
pub struct Envelopes {
    buf: Vec<u8>,
}

impl Envelopes {
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete message, if one has arrived; `None` also for an
    /// end-of-stream envelope.
    pub fn take<T: DeserializeOwned>(&mut self) -> Result<Option<T>, RpcError> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_MESSAGE {
            return Err(RpcError::new(
                Code::ResourceExhausted,
                "message larger than 1 MiB",
            ));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let flags = self.buf[0];
        let msg: Vec<u8> = self.buf.drain(..5 + len).skip(5).collect();
        if flags & COMPRESSED != 0 {
            return Err(RpcError::new(
                Code::Unimplemented,
                "compression is not supported",
            ));
        }
        if flags & END_STREAM != 0 {
            return Ok(None);
        }
        unary_request(&msg).map(Some)
    }

    /// Whether bytes of an incomplete envelope are left.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// The reply of a client stream: one message, then the end of the
/// stream (or only the end, with the error).
pub fn client_stream_reply<T: Serialize>(r: Result<T, RpcError>) -> Response {
    let body = match r.and_then(|m| {
        serde_json::to_vec(&m).map_err(|e| RpcError::new(Code::Internal, e.to_string()))
    }) {
        Ok(json) => {
            let mut out = envelope(0, &json).to_vec();
            out.extend_from_slice(&end_stream(None));
            Body::from(out)
        }
        Err(e) => Body::from(end_stream(Some(&e))),
    };
    stream_response(body)
}

/// A unary reply.
pub fn unary_reply<T: Serialize>(r: Result<T, RpcError>) -> Response {
    match r.and_then(|m| {
        serde_json::to_vec(&m).map_err(|e| RpcError::new(Code::Internal, e.to_string()))
    }) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => e.into_response(),
    }
}

fn envelope(flags: u8, json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(5 + json.len());
    out.push(flags);
    out.extend_from_slice(&u32::try_from(json.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(json);
    Bytes::from(out)
}

/// The end-of-stream envelope.
fn end_stream(err: Option<&RpcError>) -> Bytes {
    let v = match err {
        None => serde_json::json!({}),
        Some(e) => serde_json::json!({"error": e.json()}),
    };
    envelope(END_STREAM, v.to_string().as_bytes())
}

/// A server stream's reply: `messages` enveloped as they come, cut at
/// `deadline` (`deadline_exceeded`), then the end-of-stream envelope (with
/// the first error, which also ends the stream). `keepalive` is sent after
/// every `every` of silence.
pub fn stream_reply<T, S>(
    messages: S,
    deadline: Option<Instant>,
    keepalive: Option<(T, Duration)>,
) -> Response
where
    T: Serialize + Clone + Send + 'static,
    S: Stream<Item = Result<T, RpcError>> + Send + 'static,
{
    let state = (Box::pin(messages), false);
    let body = futures_util::stream::unfold(state, move |(mut s, done)| {
        let keepalive = keepalive.clone();
        async move {
            if done {
                return None;
            }
            let next = next_or_timeout(&mut s, deadline, keepalive).await;
            let (bytes, done) = match next {
                Some(Ok(m)) => match serde_json::to_vec(&m) {
                    Ok(json) => (envelope(0, &json), false),
                    Err(e) => (
                        end_stream(Some(&RpcError::new(Code::Internal, e.to_string()))),
                        true,
                    ),
                },
                Some(Err(e)) => (end_stream(Some(&e)), true),
                None => (end_stream(None), true),
            };
            Some((Ok::<_, Infallible>(bytes), (s, done)))
        }
    });
    stream_response(Body::from_stream(body))
}

/// A stream that fails at once (an error before the first message).
pub fn stream_error(e: RpcError) -> Response {
    stream_response(Body::from(end_stream(Some(&e))))
}

fn stream_response(body: Body) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/connect+json")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(body)
        .unwrap_or_else(|e| RpcError::new(Code::Internal, e.to_string()).into_response())
}

/// The next message; a deadline that passes first is its error, and a
/// keepalive interval that passes first yields the keepalive message.
async fn next_or_timeout<T, S>(
    s: &mut std::pin::Pin<Box<S>>,
    deadline: Option<Instant>,
    keepalive: Option<(T, Duration)>,
) -> Option<Result<T, RpcError>>
where
    S: Stream<Item = Result<T, RpcError>>,
{
    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let until = deadline.unwrap_or(far);
    let (ping, every) = match keepalive {
        Some((m, every)) => (Some(m), every),
        None => (None, Duration::from_secs(365 * 24 * 3600)),
    };
    tokio::select! {
        m = s.next() => m,
        () = tokio::time::sleep_until(until) => Some(Err(timed_out())),
        () = tokio::time::sleep(every), if ping.is_some() => ping.map(Ok),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_roundtrip() {
        let e = envelope(0, br#"{"path":"/"}"#);
        assert_eq!(&e[..5], &[0, 0, 0, 0, 12]);
        let v: serde_json::Value = stream_request(&e).expect("decode");
        assert_eq!(v["path"], "/");
        assert!(stream_request::<serde_json::Value>(&e[..8]).is_err());
        assert_eq!(&end_stream(None)[..], &[2, 0, 0, 0, 2, b'{', b'}']);
        let err = end_stream(Some(&RpcError::new(Code::NotFound, "x")));
        let v: serde_json::Value = serde_json::from_slice(&err[5..]).expect("json");
        assert_eq!(v["error"]["code"], "not_found");
    }

    #[tokio::test]
    async fn unary_calls_end_at_their_timeout() {
        let mut h = HeaderMap::new();
        h.insert("connect-timeout-ms", "20".parse().expect("value"));
        let slow = async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(serde_json::json!({}))
        };
        let r = unary(&h, slow).await;
        assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
        let quick = async { Ok(serde_json::json!({"a": 1})) };
        assert_eq!(
            unary(&HeaderMap::new(), quick).await.status(),
            StatusCode::OK
        );
        assert_eq!(unknown_method().await.status(), StatusCode::NOT_IMPLEMENTED);
        assert_eq!(keepalive(&HeaderMap::new()), Duration::from_secs(50));
        h.insert("keepalive-ping-interval", "0".parse().expect("value"));
        assert_eq!(keepalive(&h), Duration::from_secs(1));
    }

    #[test]
    fn client_streams_split_into_messages() {
        let mut all = envelope(0, br#"{"a":1}"#).to_vec();
        all.extend_from_slice(&envelope(0, br#"{"a":2}"#));
        let mut e = Envelopes::default();
        e.push(&all[..7]);
        assert!(e.take::<serde_json::Value>().expect("partial").is_none());
        e.push(&all[7..]);
        let one: serde_json::Value = e.take().expect("one").expect("some");
        let two: serde_json::Value = e.take().expect("two").expect("some");
        assert_eq!((one["a"].as_i64(), two["a"].as_i64()), (Some(1), Some(2)));
        assert!(e.is_empty());
    }

    #[test]
    fn codes_map_to_the_spec_statuses() {
        assert_eq!(Code::NotFound.http_status(), 404);
        assert_eq!(Code::Unauthenticated.http_status(), 401);
        assert_eq!(Code::AlreadyExists.http_status(), 409);
        assert_eq!(Code::from_http(502), Code::Unavailable);
    }
}
