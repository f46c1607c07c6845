//! Who calls the control plane: `X-API-Key` (what the E2B SDKs send) or
//! `Authorization: Bearer`, either one a bhatti API key, checked as the
//! native API checks it ([`crate::users::authenticate`]), then the
//! caller's rate limit ([`crate::ratelimit`]): a create is a create,
//! a read a read, anything else a write.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use bhatti_engine::engine::Engine;
use bhatti_store::users::User;

use super::error::ControlError;
use crate::ratelimit::Class;
use crate::state::Shared;

/// Header the E2B SDKs carry the API key in.
pub const API_KEY: &str = "x-api-key";

/// The authenticated caller of a control-plane request.
#[derive(Debug, Clone)]
pub struct Caller(pub User);

impl<E: Engine> FromRequestParts<Shared<E>> for Caller {
    type Rejection = ControlError;

    async fn from_request_parts(
        parts: &mut Parts,
        st: &Shared<E>,
    ) -> Result<Self, Self::Rejection> {
        let key = presented_key(parts).ok_or(ControlError::Unauthorized)?;
        let user = match crate::users::authenticate(&st.store, &key) {
            Ok(Some(u)) => u,
            Ok(None) => return Err(ControlError::Unauthorized),
            Err(e) => return Err(e.into()),
        };
        if let Err(limited) = st
            .limiter
            .check(&user.id, class_of(&parts.method, parts.uri.path()))
        {
            return Err(ControlError::RateLimited {
                message: limited.to_string(),
                retry_after: limited.retry_after,
            });
        }
        Ok(Caller(user))
    }
}

/// The key of a request: `X-API-Key`, else a Bearer `Authorization`.
fn presented_key(parts: &Parts) -> Option<String> {
    if let Some(v) = parts.headers.get(API_KEY) {
        return Some(v.to_str().ok()?.trim().to_owned());
    }
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim().to_owned())
}

/// Rate-limit class: a create boots a VM.
fn class_of(method: &Method, path: &str) -> Class {
    let path = path.trim_end_matches('/');
    if method == Method::POST && (path == "/sandboxes" || path == "/v2/sandboxes") {
        Class::Create
    } else if method == Method::GET || method == Method::HEAD {
        Class::Read
    } else {
        Class::Write
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut b = Request::builder().uri("/sandboxes");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request").into_parts().0
    }

    #[test]
    fn keys_come_from_x_api_key_or_bearer() {
        assert_eq!(
            presented_key(&parts(&[("X-API-Key", "bht_a")])).as_deref(),
            Some("bht_a")
        );
        assert_eq!(
            presented_key(&parts(&[("Authorization", "Bearer bht_b")])).as_deref(),
            Some("bht_b")
        );
        assert_eq!(presented_key(&parts(&[("Authorization", "Basic x")])), None);
        assert_eq!(presented_key(&parts(&[])), None);
    }

    #[test]
    fn creates_are_creates() {
        assert_eq!(class_of(&Method::POST, "/v2/sandboxes"), Class::Create);
        assert_eq!(class_of(&Method::POST, "/sandboxes/"), Class::Create);
        assert_eq!(class_of(&Method::GET, "/v2/sandboxes"), Class::Read);
        assert_eq!(class_of(&Method::POST, "/sandboxes/x/pause"), Class::Write);
        assert_eq!(class_of(&Method::DELETE, "/sandboxes/x"), Class::Write);
    }
}
