//! `GET /metrics`: the daemon's Prometheus metrics ([`crate::metrics`])
//! in the Prometheus text format (0.0.4), or OpenMetrics when the
//! `Accept` header asks for `application/openmetrics-text`.
//!
//! Who may read it is the config's `metrics_auth`: `key` (default) asks
//! for any valid API key as `Authorization: Bearer`; `none` asks for
//! nothing (a scraper on a trusted network). The route is public in the
//! route table so that `none` can work; the handler checks the key.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bhatti_engine::engine::Engine;

use super::{RouteDef, Verb, public};
use crate::config::MetricsAuth;
use crate::error::ApiError;
use crate::extract::ApiResult;
use crate::state::Shared;

/// Media type of the OpenMetrics text format.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    vec![
        public(
            Verb::Get,
            "/metrics",
            "Prometheus metrics (API key required unless the daemon's metrics_auth is none)",
            get(metrics::<E>),
        )
        .reply_raw(200, "text/plain"),
    ]
}

/// Whether `headers` carry a valid API key.
fn authorised<E: Engine>(st: &Shared<E>, headers: &HeaderMap) -> ApiResult<bool> {
    let Some(key) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
    else {
        return Ok(false);
    };
    Ok(crate::users::authenticate(&st.store, key)?.is_some())
}

async fn metrics<E: Engine>(
    State(st): State<Shared<E>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if st.settings.metrics_auth == MetricsAuth::Key && !authorised(&st, &headers)? {
        return Err(ApiError::Unauthorized);
    }
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let internal = |e: crate::metrics::MetricsError| ApiError::Internal(e.to_string());
    let snap = crate::metrics::scrape(&st).await.map_err(internal)?;
    let body = st.metrics.render(snap, openmetrics).map_err(internal)?;
    let media = if openmetrics {
        OPENMETRICS
    } else {
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE
    };
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(media))],
        body,
    )
        .into_response())
}
