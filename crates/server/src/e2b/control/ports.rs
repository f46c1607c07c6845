//! Sandbox requests for a guest port other than envd's: relayed to that
//! port in the guest by the native reverse proxy
//! ([`crate::routes::proxy::forward`]: HTTP/1.1 and WebSocket, streaming
//! both ways), path and query as they came (after `/e2b`).
//!
//! Authorization: the sandbox's traffic token (`e2b-traffic-access-token`,
//! what E2B asks for a sandbox whose public traffic is restricted) or its
//! envd access token (`X-Access-Token`); either is returned only to the
//! sandbox's owner by create, connect and get. bhatti always asks for one
//! (E2B lets unrestricted traffic in with none) because its relay is
//! reached at the daemon's address, next to the API, not on a public
//! sandbox host. Both token headers are removed before the request goes
//! to the guest, so a program in the guest never learns them.
//!
//! A paused (stopped) sandbox is not woken by traffic (E2B's default,
//! with no auto-resume): 502 saying it `was not found` running, which
//! the SDK reads as "not running". A port nothing listens on is 502
//! `port is not open`, E2B's wording.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bhatti_engine::engine::Engine;
use bhatti_store::sandboxes::Status;

use super::error::ErrorBody;
use crate::e2b::{
    ACCESS_TOKEN, ENVD_PORT, SANDBOX_ID, SANDBOX_PORT, SandboxAccessError, TRAFFIC_TOKEN,
    access_token, sandbox_of, sandbox_port, traffic_token,
};
use crate::error::ApiError;
use crate::routes::proxy;
use crate::state::Shared;

/// Why a relayed request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("sandbox {0} was not found")]
    NotFound(String),
    #[error("sandbox {0} is paused: it was not found running (connect to resume it)")]
    Paused(String),
    #[error("missing or wrong traffic or access token for sandbox {0}")]
    Unauthenticated(String),
    #[error("the sandbox is running but port is not open (port {port}: {detail})")]
    PortNotOpen { port: u16, detail: String },
    #[error(transparent)]
    Access(SandboxAccessError),
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl RelayError {
    fn status(&self) -> u16 {
        match self {
            Self::NotFound(_) | Self::Paused(_) | Self::PortNotOpen { .. } => 502,
            Self::Unauthenticated(_) => 401,
            Self::Access(SandboxAccessError::NoSandbox) => 400,
            Self::Access(_) => 500,
            Self::Api(e) => e.status(),
        }
    }
}

impl From<SandboxAccessError> for RelayError {
    fn from(e: SandboxAccessError) -> Self {
        match e {
            SandboxAccessError::NotFound(id) => Self::NotFound(id),
            SandboxAccessError::Unauthenticated(id) => Self::Unauthenticated(id),
            other => Self::Access(other),
        }
    }
}

impl IntoResponse for RelayError {
    fn into_response(self) -> Response {
        let code = self.status();
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
        let message = crate::error::shorten(&self.to_string());
        (status, axum::Json(ErrorBody { code, message })).into_response()
    }
}

/// The port relay.
pub fn router<E: Engine>() -> Router<Shared<E>> {
    Router::new().fallback(relay::<E>)
}

async fn relay<E: Engine>(State(st): State<Shared<E>>, req: Request) -> Response {
    match relay_to_guest(&st, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn relay_to_guest<E: Engine>(
    st: &Shared<E>,
    mut req: Request,
) -> Result<Response, RelayError> {
    let port = sandbox_port(req.headers()).unwrap_or(ENVD_PORT);
    let headers = req.headers();
    let (_, sb) = match sandbox_of(st, headers, TRAFFIC_TOKEN, traffic_token) {
        Err(SandboxAccessError::Unauthenticated(_)) => {
            sandbox_of(st, headers, ACCESS_TOKEN, access_token)?
        }
        other => other?,
    };
    if sb.status == Status::Stopped {
        return Err(RelayError::Paused(sb.id));
    }
    let (eid, woke) = proxy::wake(st, &sb).await?;
    for h in [TRAFFIC_TOKEN, ACCESS_TOKEN, SANDBOX_ID, SANDBOX_PORT] {
        req.headers_mut().remove(h);
    }
    let target = target(req.uri());
    match proxy::forward(st, &sb, &eid, port, target, req, woke).await {
        Ok(resp) => Ok(resp),
        Err(ApiError::BadGateway(detail)) => Err(RelayError::PortNotOpen { port, detail }),
        Err(e) => Err(e.into()),
    }
}

/// The guest request target: path and query as they came.
fn target(uri: &axum::http::Uri) -> String {
    let path = uri.path();
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_path_and_query() {
        let uri: axum::http::Uri = "/api/x?token=a&b=2".parse().expect("uri");
        assert_eq!(target(&uri), "/api/x?token=a&b=2");
        let uri: axum::http::Uri = "/".parse().expect("uri");
        assert_eq!(target(&uri), "/");
    }

    #[test]
    fn statuses_follow_e2b() {
        assert_eq!(RelayError::NotFound("x".into()).status(), 502);
        assert!(
            RelayError::Paused("x".into())
                .to_string()
                .contains("was not found")
        );
        let closed = RelayError::PortNotOpen {
            port: 8000,
            detail: "refused".into(),
        };
        assert!(closed.to_string().contains("port is not open (port 8000"));
        assert_eq!(RelayError::Unauthenticated("x".into()).status(), 401);
    }
}
