//! Published ports: `POST/GET /sandboxes/{id}/publish`,
//! `DELETE /sandboxes/{id}/publish/{port}`, and [`host_routing`], the
//! layer that sends requests whose `Host` is `<alias>.<public domain>` to
//! the published port with no API key (waking the sandbox).

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use bhatti_engine::engine::Engine;
use bhatti_store::published::Published;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::proxy::{forward, guest_target};
use super::{RouteDef, Verb, user};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiResult, AuthUser};
use crate::state::{AppState, Shared, now_unix};

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    vec![
        user(
            Verb::Post,
            "/sandboxes/{id}/publish",
            "Publish a port at <alias>.<public domain> (no API key needed there)",
            post(publish::<E>),
        ),
        user(
            Verb::Get,
            "/sandboxes/{id}/publish",
            "List published ports",
            get(list::<E>),
        ),
        user(
            Verb::Delete,
            "/sandboxes/{id}/publish/{port}",
            "Unpublish a port",
            delete(unpublish::<E>),
        ),
    ]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    pub port: u16,
    pub alias: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PublishedView {
    pub alias: String,
    pub port: u16,
    pub url: String,
}

/// A DNS label: `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`.
pub fn valid_alias(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= 63
        && a.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !a.starts_with('-')
        && !a.ends_with('-')
}

impl<E> AppState<E> {
    fn public_url(&self, alias: &str) -> String {
        match &self.settings.public_domain {
            Some(d) => format!("http://{alias}.{d}/"),
            None => format!("http://{alias}.localhost:{}/", self.settings.listen_port),
        }
    }

    fn domain(&self) -> &str {
        self.settings
            .public_domain
            .as_deref()
            .unwrap_or("localhost")
    }
}

async fn publish<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PublishBody>,
) -> ApiResult<(StatusCode, Json<PublishedView>)> {
    if body.port == 0 {
        return Err(ApiError::BadRequest("port must be 1-65535".into()));
    }
    let sb = st.find(&u, &id)?;
    let alias = match body.alias {
        Some(a) if !valid_alias(&a) => {
            return Err(ApiError::BadRequest(format!(
                "invalid alias {a:?}: a DNS label of a-z, 0-9 and -"
            )));
        }
        Some(a) => a,
        None => {
            let base: String = sb
                .name
                .to_ascii_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            let a = format!("{}-{}", base.trim_matches('-'), body.port);
            a.chars()
                .take(63)
                .collect::<String>()
                .trim_matches('-')
                .to_owned()
        }
    };
    st.store.publish_port(&Published {
        alias: alias.clone(),
        sandbox_id: sb.id.clone(),
        port: body.port,
        created_at: now_unix(),
    })?;
    Ok((
        StatusCode::CREATED,
        Json(PublishedView {
            url: st.public_url(&alias),
            alias,
            port: body.port,
        }),
    ))
}

async fn list<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<PublishedView>>> {
    let sb = st.find(&u, &id)?;
    let all = st.store.list_published(&sb.id)?;
    Ok(Json(
        all.into_iter()
            .map(|p| PublishedView {
                url: st.public_url(&p.alias),
                alias: p.alias,
                port: p.port,
            })
            .collect(),
    ))
}

async fn unpublish<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath((id, port)): ApiPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    let port = super::proxy::parse_port(&port)?;
    let sb = st.find(&u, &id)?;
    st.store.unpublish_port(&sb.id, port)?;
    Ok(Json(json!({"status": "unpublished", "port": port})))
}

/// The alias a request's `Host` names under `domain`, if any.
pub fn alias_of<'a>(host: &'a str, domain: &str) -> Option<&'a str> {
    let host = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let alias = host.strip_suffix(domain)?.strip_suffix('.')?;
    (!alias.is_empty() && !alias.contains('.')).then_some(alias)
}

/// Layer: requests for `<alias>.<domain>` go to the published port.
pub async fn host_routing<E: Engine>(
    State(st): State<Shared<E>>,
    req: Request,
    next: Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.to_ascii_lowercase());
    let Some(alias) = host.as_deref().and_then(|h| alias_of(h, st.domain())) else {
        return next.run(req).await;
    };
    match published(&st, alias, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn published<E: Engine>(st: &AppState<E>, alias: &str, req: Request) -> ApiResult<Response> {
    let p = st
        .store
        .published_by_alias(alias)?
        .ok_or_else(|| ApiError::Missing(format!("nothing is published as {alias}")))?;
    let sb = st.store.sandbox_by_id(&p.sandbox_id)?;
    let eid = st.wake(&sb).await?;
    let target = guest_target(req.uri().path(), req.uri());
    forward(st, &sb, &eid, p.port, target, req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_from_hosts() {
        assert_eq!(alias_of("web.example.com", "example.com"), Some("web"));
        assert_eq!(alias_of("web.localhost:8080", "localhost"), Some("web"));
        assert_eq!(alias_of("example.com", "example.com"), None);
        assert_eq!(alias_of("a.b.example.com", "example.com"), None);
        assert_eq!(alias_of("127.0.0.1:8080", "localhost"), None);
        assert!(
            valid_alias("web-1") && !valid_alias("-x") && !valid_alias("A") && !valid_alias("")
        );
    }
}
