//! The E2B-compatible face: the unmodified E2B SDKs (Python and JS `e2b`
//! 2.x) drive bhatti sandboxes with `E2B_API_URL` and `E2B_SANDBOX_URL`
//! set to `<daemon>/e2b` and `E2B_API_KEY` set to a bhatti API key.
//!
//! Everything is served under `/e2b` ([`service`]), split by one header:
//!
//! | request                               | goes to                                   |
//! |---------------------------------------|-------------------------------------------|
//! | no `E2b-Sandbox-Id`                   | the control plane ([`control`]): `/sandboxes`, `/v2/sandboxes`, … with `X-API-Key` |
//! | `E2b-Sandbox-Id`, port 49983 (envd)   | the in-daemon envd ([`envd`]): Connect-JSON RPCs, `/files`, `/health`, with the sandbox's `X-Access-Token` |
//! | `E2b-Sandbox-Id`, another port        | that port in the guest ([`control::ports`]) |
//!
//! The port comes from `E2b-Sandbox-Port` (absent: envd). Two more ways
//! in, for what the SDK builds without `/e2b`: per-sandbox hosts
//! `<port>-<id>.<domain>` ([`hosts`]) and signed file URLs at `/files`
//! ([`signed`]); both end in the same face.
//!
//! There is no envd process in the guest: the daemon answers envd's
//! RPCs itself over the lohar agent protocol, so every bhatti image (and
//! any imported OCI image) is an E2B template as it is.
//!
//! Tokens ([`access_token`]) are derived from the daemon's secret key and
//! the sandbox id, so they survive a daemon restart and are never stored.

pub mod control;
pub mod envd;
pub mod hosts;
pub mod signed;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderMap;
use bhatti_engine::engine::Engine;
use bhatti_store::StoreError;
use bhatti_store::sandboxes::{Sandbox, Status};
use bhatti_store::users::User;
use tower::ServiceExt;

use crate::keys;
use crate::state::Shared;

/// Header naming the sandbox of a sandbox request.
pub const SANDBOX_ID: &str = "e2b-sandbox-id";
/// Header naming the guest port of a sandbox request.
pub const SANDBOX_PORT: &str = "e2b-sandbox-port";
/// Header carrying a sandbox's envd access token.
pub const ACCESS_TOKEN: &str = "x-access-token";
/// Header carrying a sandbox's traffic access token (user ports).
pub const TRAFFIC_TOKEN: &str = "e2b-traffic-access-token";
/// The port envd listens on in an E2B sandbox.
pub const ENVD_PORT: u16 = 49983;

/// The whole face, to be nested at `/e2b`.
pub fn service<E: Engine>(state: Shared<E>) -> Router {
    let control = control::router::<E>().with_state(state.clone());
    let envd = envd::router::<E>(&state).with_state(state.clone());
    let ports = control::ports::router::<E>().with_state(state);
    Router::new().fallback(move |req: Request| {
        let target = match sandbox_port(req.headers()) {
            None => control.clone(),
            Some(ENVD_PORT) => envd.clone(),
            Some(_) => ports.clone(),
        };
        async move {
            match target.oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        }
    })
}

/// The port a sandbox request is for: `None` for a control-plane request
/// (no sandbox header); envd's port when the header is absent or not a
/// port (envd then answers with a clear error if it matters).
pub fn sandbox_port(headers: &HeaderMap) -> Option<u16> {
    headers.get(SANDBOX_ID)?;
    Some(
        headers
            .get(SANDBOX_PORT)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(ENVD_PORT),
    )
}

/// A sandbox's envd access token (`envdAccessToken`): 64 hex digits.
pub fn access_token<E>(st: &Shared<E>, sandbox_id: &str) -> String {
    bhatti_proto::token::hex(&st.secrets.mac("e2b envd access", sandbox_id))
}

/// A sandbox's traffic access token (`trafficAccessToken`).
pub fn traffic_token<E>(st: &Shared<E>, sandbox_id: &str) -> String {
    bhatti_proto::token::hex(&st.secrets.mac("e2b traffic access", sandbox_id))
}

/// Why a sandbox request was refused.
#[derive(Debug, thiserror::Error)]
pub enum SandboxAccessError {
    #[error("missing E2b-Sandbox-Id header")]
    NoSandbox,
    #[error("sandbox {0} not found")]
    NotFound(String),
    #[error("missing or wrong access token for sandbox {0}")]
    Unauthenticated(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The sandbox a sandbox request names and its owner, when `token` (the
/// request's header of that name) is the sandbox's token made by `mint`
/// ([`access_token`] or [`traffic_token`]). A destroyed sandbox is not
/// found; the comparison is constant-time.
pub fn sandbox_of<E>(
    st: &Shared<E>,
    headers: &HeaderMap,
    token: &str,
    mint: fn(&Shared<E>, &str) -> String,
) -> Result<(User, Sandbox), SandboxAccessError> {
    let id = headers
        .get(SANDBOX_ID)
        .and_then(|v| v.to_str().ok())
        .ok_or(SandboxAccessError::NoSandbox)?
        .trim();
    let sb = match st.store.sandbox_by_id(id) {
        Ok(sb) if sb.status != Status::Destroyed => sb,
        Ok(_) | Err(StoreError::NotFound(_)) => {
            return Err(SandboxAccessError::NotFound(id.to_owned()));
        }
        Err(e) => return Err(e.into()),
    };
    let presented = headers
        .get(token)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !keys::ct_eq(presented, &mint(st, &sb.id)) {
        return Err(SandboxAccessError::Unauthenticated(sb.id));
    }
    let user = st.store.user_by_id(&sb.user_id)?;
    Ok((user, sb))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn requests_split_by_the_sandbox_header() {
        let mut h = HeaderMap::new();
        assert_eq!(sandbox_port(&h), None, "control plane");
        h.insert(SANDBOX_ID, HeaderValue::from_static("sb-1"));
        assert_eq!(sandbox_port(&h), Some(ENVD_PORT));
        h.insert(SANDBOX_PORT, HeaderValue::from_static("8080"));
        assert_eq!(sandbox_port(&h), Some(8080));
        h.insert(SANDBOX_PORT, HeaderValue::from_static("nope"));
        assert_eq!(sandbox_port(&h), Some(ENVD_PORT));
    }

    #[test]
    fn macs_are_keyed_and_separate_contexts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = crate::secrets::SecretBox::load_or_create(&dir.path().join("a")).expect("a");
        let b = crate::secrets::SecretBox::load_or_create(&dir.path().join("b")).expect("b");
        assert_eq!(a.mac("x", "sb-1"), a.mac("x", "sb-1"), "recomputable");
        assert_ne!(a.mac("x", "sb-1"), b.mac("x", "sb-1"), "keyed");
        assert_ne!(a.mac("x", "sb-1"), a.mac("y", "sb-1"), "per context");
        assert_ne!(a.mac("x", "sb-1"), a.mac("x", "sb-2"), "per sandbox");
    }
}
