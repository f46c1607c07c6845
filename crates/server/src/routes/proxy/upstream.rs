//! Sending a proxied request to a guest port: open a tunnel (the agent's
//! forward channel), start an HTTP/1 client connection over it, send.
//!
//! A sandbox the request had to wake is still coming up when its wake
//! returns: the engine resumes the VM and returns, and the first burst of
//! requests finds a guest that has not yet run. Every step before the
//! request's first byte goes upstream may then fail for a reason that
//! says nothing about the user's server, and is retried, for at most
//! [`WAKE_GRACE`] with a short backoff ([`backoff`]):
//! - the agent is unreachable or closed the connection before answering
//!   (transport error: refused, unreachable, reset) or refused it for
//!   being over its connection limit;
//! - the agent could not dial the guest port (refused, timed out): the
//!   server may not have accepted yet;
//! - hyper handed the request back unsent (the connection closed before
//!   the request was written).
//!
//! A request whose first byte was sent is never replayed (its body may
//! have been consumed): whatever happens after that is the answer. A
//! sandbox that was already hot gets no retries: a closed port there is
//! the user's 502 at once.

use std::time::Duration;

use axum::body::Body;
use backon::{BackoffBuilder, ExponentialBuilder};
use bhatti_agent::ErrorCode;
use bhatti_engine::engine::{Engine, EngineError, SandboxId};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::error::{AgentError, ApiError};
use crate::extract::ApiResult;
use crate::state::AppState;

/// How long requests that woke a sandbox keep retrying before the guest
/// answers.
pub const WAKE_GRACE: Duration = Duration::from_secs(10);

/// The pauses between attempts: 50 ms doubling to 1 s, with jitter so a
/// burst does not retry in lockstep.
fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(1))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Where a request goes, and whether the sandbox had to be woken for it.
pub struct Target<'a, E: Engine> {
    pub st: &'a AppState<E>,
    pub name: &'a str,
    pub eid: &'a SandboxId,
    pub port: u16,
    /// The sandbox was not hot when the request came: retry (module doc).
    pub woke: bool,
}

/// Why one attempt failed, and whether another may be made.
struct Failure {
    error: ApiError,
    retry: bool,
}

/// Sends `req` (see the module doc for what is retried) and returns the
/// guest's answer.
pub async fn send<E: Engine>(
    t: &Target<'_, E>,
    mut req: hyper::Request<Body>,
) -> ApiResult<hyper::Response<Incoming>> {
    let deadline = Instant::now() + WAKE_GRACE;
    let mut pauses = backoff();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let failure = match connect(t).await {
            Ok(mut sender) => match sender.try_send_request(req).await {
                Ok(resp) => return Ok(resp),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => {
                        req = unsent;
                        Failure {
                            error: bad_gateway(t.port, e.error()),
                            retry: true,
                        }
                    }
                    None => return Err(bad_gateway(t.port, e.error())),
                },
            },
            Err(f) => f,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if !(t.woke && failure.retry) || left.is_zero() {
            if attempts > 1 {
                tracing::warn!(sandbox = t.name, port = t.port, attempts, error = %failure.error,
                    "proxied request failed after retries while the sandbox woke");
            }
            return Err(failure.error);
        }
        tracing::debug!(sandbox = t.name, port = t.port, attempts, error = %failure.error,
            "guest not answering yet after a wake; retrying");
        let pause = pauses.next().unwrap_or(Duration::from_secs(1));
        tokio::time::sleep(pause.min(left)).await;
    }
}

/// A tunnel to the guest port and an HTTP/1 client connection over it
/// (its connection task spawned, upgrades enabled).
async fn connect<E: Engine>(t: &Target<'_, E>) -> Result<SendRequest<Body>, Failure> {
    let tunnel =
        t.st.engine
            .tunnel(t.eid, t.port)
            .await
            .map_err(|e| classify(t.port, t.name, e))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tunnel))
        .await
        .map_err(|e| Failure {
            error: bad_gateway(t.port, &e),
            retry: true,
        })?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "proxied connection ended");
        }
    });
    Ok(sender)
}

/// A failure to open the tunnel: nothing of the request was sent yet.
fn classify(port: u16, name: &str, e: EngineError) -> Failure {
    match e {
        // The agent dialled the port and failed (refused, timed out) or
        // is over its connection limit.
        EngineError::Agent(AgentError::Agent(f)) => Failure {
            retry: true,
            error: if f.code == ErrorCode::LimitReached {
                ApiError::from(AgentError::Agent(f))
            } else {
                ApiError::BadGateway(format!(
                    "port {port} in sandbox {name} did not accept the connection: {}",
                    f.message
                ))
            },
        },
        // The agent itself is not answering yet.
        EngineError::Agent(a @ (AgentError::Transport(_) | AgentError::Closed(_))) => Failure {
            error: ApiError::from(a),
            retry: true,
        },
        other => Failure {
            error: other.into(),
            retry: false,
        },
    }
}

fn bad_gateway(port: u16, e: &hyper::Error) -> ApiError {
    ApiError::BadGateway(format!("guest port {port}: {e}"))
}

#[cfg(test)]
mod tests {
    use bhatti_agent::AgentFailure;

    use super::*;

    fn agent(code: ErrorCode, msg: &str) -> EngineError {
        EngineError::Agent(AgentError::Agent(AgentFailure::new(code, msg)))
    }

    #[test]
    fn what_is_retried() {
        let refused = classify(
            8080,
            "web",
            agent(
                ErrorCode::Other,
                "dial tcp 127.0.0.1:8080: connection refused",
            ),
        );
        assert!(refused.retry);
        assert!(matches!(&refused.error, ApiError::BadGateway(m)
            if m.contains("port 8080 in sandbox web") && m.contains("refused")));
        let full = classify(8080, "web", agent(ErrorCode::LimitReached, "too many"));
        assert!(full.retry && matches!(full.error, ApiError::TooManyRequests(_)));
        for io in [
            std::io::ErrorKind::ConnectionRefused,
            std::io::ErrorKind::HostUnreachable,
            std::io::ErrorKind::ConnectionReset,
        ] {
            let e = EngineError::Agent(AgentError::Transport(io.into()));
            let f = classify(8080, "web", e);
            assert!(
                f.retry && matches!(f.error, ApiError::BadGateway(_)),
                "{io:?}"
            );
        }
        let closed = classify(
            8080,
            "web",
            EngineError::Agent(AgentError::Closed("forward")),
        );
        assert!(closed.retry);
        // A deadline, a missing sandbox: the answer, at once.
        let late = EngineError::Agent(AgentError::Timeout(Duration::from_secs(1)));
        assert!(!classify(8080, "web", late).retry);
        let id: SandboxId = "sb-0123456789abcdef".parse().expect("id");
        assert!(!classify(8080, "web", EngineError::NotFound(id)).retry);
    }

    #[test]
    fn backoff_is_short_and_bounded() {
        let pauses: Vec<Duration> = backoff().take(12).collect();
        assert_eq!(pauses.len(), 12, "never runs out");
        assert!(pauses[0] <= Duration::from_millis(100), "{pauses:?}");
        assert!(
            pauses.iter().all(|p| *p <= Duration::from_secs(2)),
            "{pauses:?}"
        );
    }
}
