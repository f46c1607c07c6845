//! The axum application: the router built from [`crate::routes::table`],
//! and the layers every request passes, outermost first:
//!
//! 1. request id (`x-request-id`, taken from the client or made here) and
//!    a tracing span per request carrying it;
//! 2. per-sandbox E2B hosts (`<port>-<sandbox id>.<domain>` go to the E2B
//!    face, [`crate::e2b::hosts`]), then published-port routing by `Host`
//!    (`<alias>-<tag>.<public domain>` goes to the sandbox's port with no
//!    API key; see [`crate::routes::publish`]);
//! 3. the JSON body limit (1 MiB; file uploads check their own);
//! 4. on user routes: authentication (Bearer key; `?token=`, percent-decoded,
//!    only on a WebSocket upgrade or an event stream — browsers set no
//!    headers on either) and the per-user rate limit. The key's
//!    user comes from the store's cache while no row has changed (one
//!    `PRAGMA data_version`, no query; a key rotated or deleted by the
//!    operator CLI from another process fails on the next request: see
//!    `bhatti_store::cache`).
//!
//! The web UI ([`crate::ui`]) is public: static files at `/ui/`.
//!
//! Every request is counted and timed by its matched route template
//! ([`crate::metrics::track`], outermost, so auth failures and published
//! ports count too). Unknown routes and methods get JSON errors like
//! everything else.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use bhatti_engine::engine::Engine;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::extract::AuthUser;
use crate::ratelimit::Class;
use crate::routes::{Access, table};
use crate::state::Shared;

/// Largest JSON body.
pub const JSON_LIMIT: usize = 1 << 20;

/// The whole application over `state`.
pub fn router<E: Engine>(state: Shared<E>) -> Router {
    let mut public: Router<Shared<E>> = Router::new();
    let mut private: Router<Shared<E>> = Router::new();
    for r in table::<E>() {
        match r.access {
            Access::Public => public = public.route(r.path, r.handler),
            Access::User => private = private.route(r.path, r.handler),
        }
    }
    let private = private.route_layer(middleware::from_fn_with_state(state.clone(), auth::<E>));
    let request_id = axum::http::HeaderName::from_static("x-request-id");
    let e2b = crate::e2b::service(state.clone());
    let signed = axum::routing::get(crate::e2b::signed::files::<E>)
        .post(crate::e2b::signed::files::<E>)
        .with_state((state.clone(), e2b.clone()));
    public
        .merge(private)
        .merge(crate::ui::router())
        .nest_service("/e2b", e2b.clone())
        .route_service("/files", signed)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::routes::publish::host_routing::<E>,
        ))
        .layer(middleware::from_fn_with_state(
            (state.clone(), e2b),
            crate::e2b::hosts::route::<E>,
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path())
        }))
        .layer(SetRequestIdLayer::new(request_id, Counter::default()))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track::<E>,
        ))
        .layer(middleware::from_fn(close_after_refusal))
        .with_state(state)
}

/// An error reply to a request that sent a body says `Connection: close`.
/// The handler may have refused it without reading the body (a bad
/// signature, a name taken before an upload), and hyper then closes the
/// connection after the reply: a client that reused it for its next
/// request would see that request cut ("server disconnected without
/// sending a response"). Told, it opens a new one.
async fn close_after_refusal(req: Request, next: Next) -> Response {
    let headers = req.headers();
    let sent_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|n| n > 0);
    let mut resp = next.run(req).await;
    let status = resp.status();
    if sent_body && (status.is_client_error() || status.is_server_error()) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Request ids `r<start>-<n>`: unique within a daemon run.
#[derive(Debug, Clone, Default)]
struct Counter(Arc<AtomicU64>);

impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("r{n:x}"))
            .ok()
            .map(RequestId::new)
    }
}

async fn not_found(req: Request) -> ApiError {
    ApiError::Missing(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Whether the request asks for a WebSocket upgrade.
pub fn is_websocket_upgrade(req: &Request) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Whether the request asks for Server-Sent Events (`GET /events` from
/// a browser's `EventSource`).
fn is_event_stream(req: &Request) -> bool {
    req.method() == Method::GET
        && req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"))
}

/// The API key of a request: `Authorization: Bearer`, or `?token=` on a
/// WebSocket upgrade or an event stream only.
fn presented_key(req: &Request) -> Option<String> {
    if let Some(v) = req.headers().get(header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, key) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| key.trim().to_owned());
    }
    if !is_websocket_upgrade(req) && !is_event_stream(req) {
        return None;
    }
    Query::<TokenQuery>::try_from_uri(req.uri()).ok()?.0.token
}

/// The `?token=` of a WebSocket upgrade, percent-decoded; other query
/// parameters are the handler's.
#[derive(Debug, serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Rate-limit class of a request: a create, a fork and a snapshot
/// (each boots VMs or writes a VM's memory) are creates.
fn class_of(req: &Request) -> Class {
    let m = req.method();
    let path = req.uri().path().trim_end_matches('/');
    let heavy = || {
        let parts: Vec<&str> = path.split('/').collect();
        matches!(parts.as_slice(), ["", "sandboxes", _, "fork" | "snapshots"])
    };
    if m == Method::POST && (path == "/sandboxes" || heavy()) {
        Class::Create
    } else if m == Method::GET || m == Method::HEAD {
        Class::Read
    } else {
        Class::Write
    }
}

async fn auth<E: Engine>(State(st): State<Shared<E>>, mut req: Request, next: Next) -> Response {
    let Some(key) = presented_key(&req) else {
        return ApiError::Unauthorized.into_response();
    };
    let user = match crate::users::authenticate(&st.store, &key) {
        Ok(Some(u)) => u,
        Ok(None) => return ApiError::Unauthorized.into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    if let Err(limited) = st.limiter.check(&user.id, class_of(&req)) {
        let secs = limited.retry_after.as_secs().max(1);
        let mut resp = ApiError::TooManyRequests(limited.to_string()).into_response();
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    req.extensions_mut().insert(AuthUser(user));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    fn upgrade(uri: &str) -> Request {
        Request::builder()
            .uri(uri)
            .header(header::UPGRADE, "websocket")
            .body(Body::empty())
            .expect("request")
    }

    #[test]
    fn query_token_is_percent_decoded_and_only_on_upgrades() {
        let key = |uri: &str| presented_key(&upgrade(uri));
        assert_eq!(key("/s/x/ws?token=bh_abc").as_deref(), Some("bh_abc"));
        assert_eq!(
            key("/s/x/ws?rows=3&token=bh%5Fa%2Fb%3D&cols=4").as_deref(),
            Some("bh_a/b=")
        );
        assert_eq!(key("/s/x/ws?rows=3"), None);
        let plain = Request::builder()
            .uri("/s/x/ws?token=bh_abc")
            .body(Body::empty())
            .expect("request");
        assert_eq!(presented_key(&plain), None, "not an upgrade");
    }

    #[test]
    fn event_streams_take_a_query_token() {
        let req = |m: Method, accept: &str| {
            Request::builder()
                .method(m)
                .uri("/events?token=bh_abc")
                .header(header::ACCEPT, accept)
                .body(Body::empty())
                .expect("request")
        };
        let es = req(Method::GET, "text/event-stream");
        assert_eq!(presented_key(&es).as_deref(), Some("bh_abc"));
        assert_eq!(presented_key(&req(Method::GET, "application/json")), None);
        assert_eq!(presented_key(&req(Method::POST, "text/event-stream")), None);
    }

    #[test]
    fn creates_forks_and_snapshots_are_creates() {
        let class = |m: Method, uri: &str| {
            let req = Request::builder()
                .method(m)
                .uri(uri)
                .body(Body::empty())
                .expect("request");
            class_of(&req)
        };
        assert_eq!(class(Method::POST, "/sandboxes"), Class::Create);
        assert_eq!(class(Method::POST, "/sandboxes/web/fork"), Class::Create);
        assert_eq!(
            class(Method::POST, "/sandboxes/web/snapshots/"),
            Class::Create
        );
        assert_eq!(class(Method::POST, "/sandboxes/web/exec"), Class::Write);
        assert_eq!(
            class(Method::POST, "/sandboxes/web/proxy/80/fork"),
            Class::Write
        );
        assert_eq!(class(Method::GET, "/snapshots"), Class::Read);
        assert_eq!(class(Method::DELETE, "/snapshots/s"), Class::Write);
    }
}
