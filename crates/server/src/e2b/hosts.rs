//! Per-sandbox hosts: `<port>-<sandbox id>.<domain>` (the SDK's
//! `get_host(port)`, and where the SDK sends sandbox requests when
//! `E2B_SANDBOX_URL` is not set). The domain is the daemon's
//! `public_domain`, else `localhost` (as for published ports), so
//! `http://8080-sb-….localhost:<daemon port>/` reaches port 8080 of a
//! sandbox from the host.
//!
//! A request whose `Host` names a live sandbox is given that sandbox's
//! `E2b-Sandbox-Id` and `E2b-Sandbox-Port` headers (replacing any the
//! client sent) and handed to the E2B face as it is: envd (port 49983)
//! or the port relay, each with its own token check. Any other host goes
//! on to the rest of the daemon (published ports, the API).

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use bhatti_store::sandboxes::Status;
use tower::ServiceExt;

use super::{SANDBOX_ID, SANDBOX_PORT};
use crate::routes::publish::name_of;
use crate::state::Shared;

/// `(port, sandbox id)` of a host's first label `<port>-<id>`.
pub fn parse_name(name: &str) -> Option<(u16, &str)> {
    let (port, id) = name.split_once('-')?;
    let digits = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    let port: u16 = port.parse().ok().filter(|p| digits && *p > 0)?;
    let tail = id.strip_prefix("sb-")?;
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    (!tail.is_empty() && tail.bytes().all(hex)).then_some((port, id))
}

/// The layer: per-sandbox hosts go to `e2b` (the face, [`super::service`]).
pub async fn route<E: Send + Sync + 'static>(
    State((st, e2b)): State<(Shared<E>, Router)>,
    mut req: Request,
    next: Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    let target = host
        .as_deref()
        .and_then(|h| name_of(h, st.domain()))
        .and_then(parse_name)
        .filter(|(_, id)| {
            st.store
                .sandbox_by_id(id)
                .is_ok_and(|sb| sb.status != Status::Destroyed)
        });
    let Some((port, id)) = target else {
        return next.run(req).await;
    };
    let (Ok(id), Ok(port)) = (
        HeaderValue::from_str(id),
        HeaderValue::from_str(&port.to_string()),
    ) else {
        return next.run(req).await;
    };
    req.headers_mut().insert(SANDBOX_ID, id);
    req.headers_mut().insert(SANDBOX_PORT, port);
    match e2b.oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_of_sandbox_ports() {
        assert_eq!(
            parse_name("49983-sb-1c72304e17cf133c"),
            Some((49983, "sb-1c72304e17cf133c"))
        );
        assert_eq!(parse_name("8080-sb-ab"), Some((8080, "sb-ab")));
        assert_eq!(parse_name("0-sb-ab"), None, "port 0");
        assert_eq!(parse_name("70000-sb-ab"), None, "not a port");
        assert_eq!(parse_name("web-1c72304e17cf1330"), None, "a published name");
        assert_eq!(parse_name("80-sb-"), None);
        assert_eq!(parse_name("80-sb-XY"), None);
        assert_eq!(parse_name("80-other"), None);
    }
}
