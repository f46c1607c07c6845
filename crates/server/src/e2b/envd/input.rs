//! `process.Process/StreamInput`: a client stream whose first message
//! names the process (`start`; a kept command the daemon does not hold is
//! found again, see [`super::kept`]) and whose `data` messages go to its stdin
//! or PTY in order (`keepalive`s are skipped). The reply is one empty
//! message when the body ended cleanly, or the first error (an unknown
//! process, closed stdin, a malformed message). The stream is bounded by
//! its `Connect-Timeout-Ms`.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use bhatti_engine::engine::Engine;
use futures_util::StreamExt;

use super::Call;
use super::connect::{Code, Envelopes, RpcError, client_stream_reply};
use super::native::Agents;
use super::process_pb::{Empty, StreamInputRequest};
use super::procs::{Proc, Registry};
use crate::state::Shared;

pub async fn stream_input<E: Engine>(
    State(st): State<Shared<E>>,
    Extension(reg): Extension<Arc<Registry>>,
    Extension(agents): Extension<Arc<Agents>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let run = async {
        let call = Call::new(&st, &headers)?;
        feed(&call, &reg, &agents, body).await
    };
    let r = match super::connect::deadline(&headers) {
        Some(at) => tokio::time::timeout_at(at, run).await.unwrap_or_else(|_| {
            Err(RpcError::new(
                Code::DeadlineExceeded,
                "the call's timeout passed",
            ))
        }),
        None => run.await,
    };
    client_stream_reply(r)
}

/// Reads the body's messages and acts on each.
async fn feed<E: Engine>(
    call: &Call<E>,
    reg: &Arc<Registry>,
    agents: &Agents,
    body: Body,
) -> Result<Empty, RpcError> {
    let mut chunks = body.into_data_stream();
    let mut env = Envelopes::default();
    let mut proc: Option<Arc<Proc>> = None;
    loop {
        while let Some(msg) = env.take::<StreamInputRequest>()? {
            match msg {
                StreamInputRequest::Start(sel) => {
                    proc = Some(super::kept::find(call, reg, agents, &sel.process).await?);
                }
                StreamInputRequest::Data(d) => {
                    let p = proc
                        .as_ref()
                        .ok_or_else(|| RpcError::invalid("data before the start message"))?;
                    if p.stdin_closed.load(std::sync::atomic::Ordering::SeqCst) {
                        return Err(RpcError::new(Code::FailedPrecondition, "stdin is closed"));
                    }
                    let mut input = p.input.lock().await;
                    let w = input.as_mut().ok_or_else(|| {
                        RpcError::new(Code::FailedPrecondition, "stdin is closed")
                    })?;
                    w.write_stdin(d.input.bytes()).await?;
                }
                StreamInputRequest::Keepalive(_) => {}
            }
        }
        match chunks.next().await {
            Some(Ok(chunk)) => env.push(&chunk),
            Some(Err(e)) => return Err(RpcError::invalid(format!("reading the stream: {e}"))),
            None if env.is_empty() => return Ok(Empty {}),
            None => return Err(RpcError::invalid("the stream ended inside a message")),
        }
    }
}
