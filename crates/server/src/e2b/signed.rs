//! Signed file URLs: the SDK's `download_url` and `upload_url`.
//!
//! The SDK builds them by joining `/files` onto the sandbox URL, which
//! drops the `/e2b` path, and they carry no sandbox id, only
//! `path`, `username`, `signature` and `signature_expiration`. So the
//! daemon serves `GET` and `POST /files` at its root: the signature is
//! `v1_` + unpadded base64 of SHA-256 of
//! `path:operation:user:access token[:expiration]` (operation `read` for
//! a download, `write` for an upload; `user` empty when none), and the
//! sandbox is the live one whose access token ([`super::access_token`])
//! makes it. The request then goes to envd's `/files` of that sandbox
//! with that token, as if the client had sent it. An expired, missing or
//! matching-no-sandbox signature is 401.
//!
//! Checking costs one HMAC and one SHA-256 per live sandbox (all users':
//! the URL names no user), microseconds for hundreds of sandboxes.

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use tower::ServiceExt;

use super::{ACCESS_TOKEN, SANDBOX_ID, SANDBOX_PORT, access_token};
use crate::keys;
use crate::state::{Shared, now_unix};

/// The query of a signed URL (other parameters are envd's).
#[derive(Debug, serde::Deserialize)]
struct Signed {
    path: Option<String>,
    username: Option<String>,
    signature: Option<String>,
    signature_expiration: Option<i64>,
}

/// The signature the SDK computes for these fields and `token`.
pub fn signature(path: &str, op: &str, user: &str, token: &str, exp: Option<i64>) -> String {
    let raw = match exp {
        None => format!("{path}:{op}:{user}:{token}"),
        Some(e) => format!("{path}:{op}:{user}:{token}:{e}"),
    };
    let digest = Sha256::digest(raw.as_bytes());
    format!(
        "v1_{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

fn refuse(message: &str) -> Response {
    let body = serde_json::json!({"code": 401, "message": message});
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

/// `GET`/`POST /files` at the daemon's root.
pub async fn files<E: Send + Sync + 'static>(
    State((st, e2b)): State<(Shared<E>, Router)>,
    mut req: Request,
) -> Response {
    let Ok(Query(q)) = Query::<Signed>::try_from_uri(req.uri()) else {
        return refuse("a signed file URL needs path and signature parameters");
    };
    let Some(sig) = q.signature.as_deref() else {
        return refuse("this URL is not signed: use the sandbox URL with an access token");
    };
    if q.signature_expiration.is_some_and(|e| e < now_unix()) {
        return refuse("the signature has expired");
    }
    let op = if req.method() == Method::POST {
        "write"
    } else {
        "read"
    };
    let (path, user) = (
        q.path.as_deref().unwrap_or(""),
        q.username.as_deref().unwrap_or(""),
    );
    let sandboxes = match st.store.list_live_sandboxes() {
        Ok(s) => s,
        Err(e) => return crate::error::ApiError::from(e).into_response(),
    };
    let found = sandboxes.into_iter().find_map(|sb| {
        let token = access_token(&st, &sb.id);
        let want = signature(path, op, user, &token, q.signature_expiration);
        keys::ct_eq(sig, &want).then_some((sb.id, token))
    });
    let Some((id, token)) = found else {
        return refuse(
            "the signature matches no sandbox (wrong, or for another path, user or operation)",
        );
    };
    let (Ok(id), Ok(token)) = (HeaderValue::from_str(&id), HeaderValue::from_str(&token)) else {
        return refuse("bad sandbox id");
    };
    let headers = req.headers_mut();
    headers.remove(SANDBOX_PORT);
    headers.insert(SANDBOX_ID, id);
    headers.insert(ACCESS_TOKEN, token);
    match e2b.oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SDK's own value (`e2b.sandbox.signature.get_signature`, 2.63.0)
    /// for these inputs.
    #[test]
    fn matches_the_sdk() {
        assert_eq!(
            signature("/tmp/a.txt", "read", "", "tok", None),
            "v1_tRlsooM2hvGDgtWWsmSPYkbHGF1tnIIlZnLHK/9lpTk"
        );
        assert_eq!(
            signature("/tmp/a.txt", "write", "root", "tok", Some(1_900_000_000)),
            "v1_2TUtFSWbeaEZ7eTyKjwCpx+TL21cJLEmIzJM2hJsUWo"
        );
    }
}
