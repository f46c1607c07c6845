//! Published ports: `POST/GET /sandboxes/{id}/publish`,
//! `DELETE /sandboxes/{id}/publish/{port}`, and [`host_routing`], the
//! layer that sends requests whose `Host` is `<alias>-<tag>.<public
//! domain>` to the published port with no API key (waking a cooled
//! sandbox; one its owner stopped answers 503 until started).
//!
//! Aliases are per user. `tag` is the owner's public tag (8 random hex
//! digits, the same for all of a user's aliases, made on their first
//! publish; see [`bhatti_store::published`]), so two users' aliases never
//! collide: publishing an alias another user has succeeds like publishing
//! an unused one, and nothing a user can ask tells them another user's
//! alias exists. A host name with an unknown alias or tag is a plain 404.
//! The guest agent's ports ([`AGENT_PORTS`]) cannot be published.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use bhatti_engine::engine::Engine;
use bhatti_store::published::{Published, TAG_LEN};
use serde::{Deserialize, Serialize};

use super::proxy::{AGENT_PORTS, forward, guest_target, user_port, wake};
use super::{RouteDef, Verb, user};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiResult, AuthUser};
use crate::model::replies::Unpublished;
use crate::state::{AppState, Shared, now_unix};

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    vec![
        user(
            Verb::Post,
            "/sandboxes/{id}/publish",
            "Publish a port at <alias>-<tag>.<public domain>, no API key needed there. \
             Aliases are per user (tag: the user's public tag), so another user's alias \
             never conflicts; the agent's ports 1024 and 1025 are refused (400)",
            post(publish::<E>),
        )
        .body::<PublishBody>()
        .reply::<PublishedView>(201),
        user(
            Verb::Get,
            "/sandboxes/{id}/publish",
            "List published ports",
            get(list::<E>),
        )
        .reply_list::<PublishedView>(200),
        user(
            Verb::Delete,
            "/sandboxes/{id}/publish/{port}",
            "Unpublish a port",
            delete(unpublish::<E>),
        )
        .param::<u16>("port")
        .reply::<Unpublished>(200),
    ]
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PublishBody {
    #[schema(minimum = 1, maximum = 65535)]
    pub port: u16,
    pub alias: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublishedView {
    pub alias: String,
    pub port: u16,
    pub url: String,
}

/// Longest alias: `<alias>-<tag>` is one DNS label (63 bytes at most).
pub const MAX_ALIAS_LEN: usize = 63 - 1 - TAG_LEN;

/// An alias: a DNS label of at most [`MAX_ALIAS_LEN`] bytes,
/// `[a-z0-9]([a-z0-9-]*[a-z0-9])?`.
pub fn valid_alias(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= MAX_ALIAS_LEN
        && a.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !a.starts_with('-')
        && !a.ends_with('-')
}

impl<E> AppState<E> {
    fn public_url(&self, alias: &str, tag: &str) -> String {
        match &self.settings.public_domain {
            Some(d) => format!("http://{alias}-{tag}.{d}/"),
            None => format!(
                "http://{alias}-{tag}.localhost:{}/",
                self.settings.listen_port
            ),
        }
    }

    pub(crate) fn domain(&self) -> &str {
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
    let port = user_port(body.port)?;
    let sb = st.find(&u, &id)?;
    let alias = match body.alias {
        Some(a) if !valid_alias(&a) => {
            return Err(ApiError::BadRequest(format!(
                "invalid alias {a:?}: 1-{MAX_ALIAS_LEN} of a-z, 0-9 and -, not at either end"
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
            let a = format!("{}-{port}", base.trim_matches('-'));
            a.chars()
                .take(MAX_ALIAS_LEN)
                .collect::<String>()
                .trim_matches('-')
                .to_owned()
        }
    };
    let tag = st.store.publish_port(&Published {
        user_id: u.id.clone(),
        alias: alias.clone(),
        sandbox_id: sb.id.clone(),
        port,
        created_at: now_unix(),
    })?;
    Ok((
        StatusCode::CREATED,
        Json(PublishedView {
            url: st.public_url(&alias, &tag),
            alias,
            port,
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
    let tag = st.store.publish_tag(&u.id)?.unwrap_or_default();
    Ok(Json(
        all.into_iter()
            .map(|p| PublishedView {
                url: st.public_url(&p.alias, &tag),
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
) -> ApiResult<Json<Unpublished>> {
    let port = super::proxy::parse_port(&port)?;
    let sb = st.find(&u, &id)?;
    st.store.unpublish_port(&sb.id, port)?;
    Ok(Json(Unpublished {
        port,
        status: "unpublished",
    }))
}

/// The public name (`<alias>-<tag>`) a request's `Host` names under
/// `domain`, if any.
pub fn name_of<'a>(host: &'a str, domain: &str) -> Option<&'a str> {
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

/// `(alias, tag)` of a public name `<alias>-<tag>`.
pub fn split_name(name: &str) -> Option<(&str, &str)> {
    let (alias, tag) = name.rsplit_once('-')?;
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    (valid_alias(alias) && tag.len() == TAG_LEN && tag.bytes().all(hex)).then_some((alias, tag))
}

/// Layer: requests for `<alias>-<tag>.<domain>` go to the published port.
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
    let Some(name) = host.as_deref().and_then(|h| name_of(h, st.domain())) else {
        return next.run(req).await;
    };
    match published(&st, name, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn published<E: Engine>(st: &AppState<E>, name: &str, req: Request) -> ApiResult<Response> {
    let nothing = || ApiError::Missing(format!("nothing is published as {name}"));
    let (alias, tag) = split_name(name).ok_or_else(nothing)?;
    let p = st
        .store
        .published_by_name(alias, tag)?
        .filter(|p| !AGENT_PORTS.contains(&p.port))
        .ok_or_else(nothing)?;
    let sb = st.store.sandbox_by_id(&p.sandbox_id)?;
    // A caller with an API key starts a stopped sandbox by using it (v1);
    // an anonymous visitor of a published port only wakes a cooled one,
    // never undoes its owner's stop.
    if sb.status == bhatti_store::sandboxes::Status::Stopped {
        return Err(ApiError::Unavailable(format!("{name} is stopped")));
    }
    let (eid, woke) = wake(st, &sb).await?;
    let target = guest_target(req.uri().path(), req.uri());
    forward(st, &sb, &eid, p.port, target, req, woke).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_hosts() {
        assert_eq!(name_of("web.example.com", "example.com"), Some("web"));
        assert_eq!(name_of("web.localhost:8080", "localhost"), Some("web"));
        assert_eq!(name_of("example.com", "example.com"), None);
        assert_eq!(name_of("a.b.example.com", "example.com"), None);
        assert_eq!(name_of("127.0.0.1:8080", "localhost"), None);
        assert!(
            valid_alias("web-1") && !valid_alias("-x") && !valid_alias("A") && !valid_alias("")
        );
        assert!(valid_alias(&"a".repeat(MAX_ALIAS_LEN)));
        assert!(!valid_alias(&"a".repeat(MAX_ALIAS_LEN + 1)));
        assert_eq!(split_name("my-web-0a1b2c3d"), Some(("my-web", "0a1b2c3d")));
        for bad in [
            "web",
            "web-0a1b2c3",
            "web-0A1B2C3D",
            "-0a1b2c3d",
            "web-0a1b2c3g",
        ] {
            assert_eq!(split_name(bad), None, "{bad}");
        }
    }
}
