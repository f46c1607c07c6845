//! Reverse proxy: `ANY /sandboxes/{id}/proxy/{port}/{path…}` to
//! `localhost:{port}` inside the guest, through the agent's forward
//! channel ([`Engine::tunnel`]). HTTP/1.1 with streaming bodies both ways
//! (server-sent events pass through unbuffered) and WebSocket (any
//! `Upgrade`): after the guest answers 101 the two upgraded connections
//! are spliced. The API key is never forwarded: `Authorization` and a
//! `token` query parameter are removed. The sandbox is woken first; many
//! concurrent requests to a cold sandbox share one wake (engine), and a
//! request that woke it waits, within a bound, for the guest to answer
//! before it is sent: `upstream` retries what fails before its first
//! byte goes out, never what follows.
//!
//! The guest agent's own ports ([`AGENT_PORTS`]: control and forward) are
//! never proxied (nor published): they answer 400 before the sandbox is
//! woken, and [`forward`] refuses them whoever calls it.
//!
//! # Threads, locks, I/O
//! Per request: one tunnel (more while a woken guest comes up, one at a
//! time), one HTTP/1 client connection task driving it, and for upgrades
//! one splice task. No shared state.

mod upstream;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bhatti_engine::engine::{Engine, SandboxId};
use bhatti_engine::state::SandboxState;
use bhatti_proto::{CONTROL_PORT, FORWARD_PORT};
use bhatti_store::sandboxes::Sandbox;
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;

use super::{RouteDef, Verb, user};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiResult, AuthUser};
use crate::state::{AppState, Shared};

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    const SUMMARY: &str = "Reverse proxy (HTTP and WebSocket) to a port in the guest (not the agent's ports 1024 and 1025: 400)";
    [
        ("/sandboxes/{id}/proxy/{port}", any(root::<E>)),
        ("/sandboxes/{id}/proxy/{port}/", any(root::<E>)),
        ("/sandboxes/{id}/proxy/{port}/{*path}", any(rest::<E>)),
    ]
    .into_iter()
    .map(|(path, handler)| {
        user(Verb::Any, path, SUMMARY, handler)
            .param::<u16>("port")
            .any_body()
            .reply_any()
    })
    .collect()
}

/// The guest agent's control and forward ports: a user never reaches
/// them through the proxy or a published alias.
pub const AGENT_PORTS: [u16; 2] = [CONTROL_PORT, FORWARD_PORT];

/// A guest port from a path segment: 1-65535.
pub fn parse_port(s: &str) -> ApiResult<u16> {
    s.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid port {s:?}: expected 1-65535")))
}

/// `port` if the proxy may reach it: 1-65535 but not [`AGENT_PORTS`].
pub fn user_port(port: u16) -> ApiResult<u16> {
    if port == 0 {
        return Err(ApiError::BadRequest("port must be 1-65535".into()));
    }
    if AGENT_PORTS.contains(&port) {
        return Err(ApiError::BadRequest(format!(
            "port {port} is the guest agent's own port and cannot be proxied or published"
        )));
    }
    Ok(port)
}

async fn root<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath((id, port)): ApiPath<(String, String)>,
    req: Request,
) -> ApiResult<Response> {
    let port = user_port(parse_port(&port)?)?;
    let sb = st.find(&u, &id)?;
    let (eid, woke) = wake(&st, &sb).await?;
    let target = guest_target("", req.uri());
    forward(&st, &sb, &eid, port, target, req, woke).await
}

async fn rest<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath((id, port, path)): ApiPath<(String, String, String)>,
    req: Request,
) -> ApiResult<Response> {
    let port = user_port(parse_port(&port)?)?;
    let sb = st.find(&u, &id)?;
    let (eid, woke) = wake(&st, &sb).await?;
    let target = guest_target(&path, req.uri());
    forward(&st, &sb, &eid, port, target, req, woke).await
}

/// Makes `sb` hot ([`AppState::wake`]) and tells whether it was not hot
/// before: a request that woke it waits for the guest (`upstream`).
pub async fn wake<E: Engine>(st: &AppState<E>, sb: &Sandbox) -> ApiResult<(SandboxId, bool)> {
    let was_hot = match crate::service::engine_id(sb) {
        Ok(id) => st
            .engine
            .status(&id)
            .await
            .is_ok_and(|i| i.state == SandboxState::Hot),
        Err(_) => false,
    };
    let eid = st.wake(sb).await?;
    Ok((eid, !was_hot))
}

/// `/<path>?<query without token>`.
pub fn guest_target(path: &str, uri: &Uri) -> String {
    let mut t = format!("/{}", path.trim_start_matches('/'));
    if let Some(q) = uri.query() {
        let kept: Vec<&str> = q
            .split('&')
            .filter(|kv| !kv.starts_with("token=") && !kv.is_empty())
            .collect();
        if !kept.is_empty() {
            t.push('?');
            t.push_str(&kept.join("&"));
        }
    }
    t
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded as they are.
const HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Sends `req` to `port` in the sandbox as `target` and streams the
/// answer back. `woke`: the sandbox was not hot when the request came, so
/// a guest still coming up is waited for (`upstream`).
pub async fn forward<E: Engine>(
    st: &AppState<E>,
    sb: &Sandbox,
    eid: &SandboxId,
    port: u16,
    target: String,
    req: Request,
    woke: bool,
) -> ApiResult<Response> {
    let port = user_port(port)?;
    let busy = st.activity.busy(&sb.id);

    let upgrade = req.headers().contains_key(header::UPGRADE);
    let (mut parts, body) = req.into_parts();
    let client_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let original_host = parts.headers.get(header::HOST).cloned();
    let mut headers = parts.headers.clone();
    strip_hop(&mut headers, upgrade);
    headers.remove(header::AUTHORIZATION);
    if let Ok(h) = HeaderValue::from_str(&format!("localhost:{port}")) {
        headers.insert(header::HOST, h);
    }
    if let Some(h) = original_host {
        headers.insert(HeaderName::from_static("x-forwarded-host"), h);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    let mut out = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(target)
        .body(body)
        .map_err(|e| ApiError::BadRequest(format!("proxied request: {e}")))?;
    *out.headers_mut() = headers;

    let to = upstream::Target {
        st,
        name: &sb.name,
        eid,
        port,
        woke,
    };
    let mut resp = upstream::send(&to, out).await?;

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(ApiError::BadGateway(
                "the guest switched protocols on a request that cannot be upgraded".into(),
            ));
        };
        let server_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let _busy = busy;
            match tokio::try_join!(client_upgrade, server_upgrade) {
                Ok((c, s)) => {
                    let (mut c, mut s) = (TokioIo::new(c), TokioIo::new(s));
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut s).await;
                }
                Err(e) => tracing::debug!(error = %e, "proxy upgrade failed"),
            }
        });
        let (rparts, _) = resp.into_parts();
        return Ok(Response::from_parts(rparts, Body::empty()));
    }

    let (mut rparts, incoming) = resp.into_parts();
    strip_hop(&mut rparts.headers, false);
    let stream = http_body_util::BodyDataStream::new(incoming).map(move |chunk| {
        let _keep = &busy;
        chunk
    });
    Ok(Response::from_parts(rparts, Body::from_stream(stream)).into_response())
}

fn strip_hop(h: &mut axum::http::HeaderMap, keep_upgrade: bool) {
    let listed: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    for name in HOP.iter().map(|s| s.to_string()).chain(listed) {
        if keep_upgrade && (name == "upgrade" || name == "connection") {
            continue;
        }
        h.remove(name.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_targets() {
        assert_eq!(parse_port("8080").ok(), Some(8080));
        for bad in ["0", "65536", "-1", "http", ""] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
        assert_eq!(user_port(8080).ok(), Some(8080));
        for bad in [0, 1024, 1025] {
            assert!(
                matches!(user_port(bad), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
        let uri: Uri = "/x?a=1&token=bht_x&b=2".parse().expect("uri");
        assert_eq!(guest_target("api/v1", &uri), "/api/v1?a=1&b=2");
        let uri: Uri = "/x?token=k".parse().expect("uri");
        assert_eq!(guest_target("", &uri), "/");
    }
}
