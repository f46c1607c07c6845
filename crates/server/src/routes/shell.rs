//! `GET /sandboxes/{id}/ws`: an interactive shell over a WebSocket.
//!
//! The TTY session is opened (or attached) before the upgrade, so errors
//! are ordinary HTTP errors. After the upgrade: first a text message
//! `{"type":"session","session_id":…}`; then binary messages both ways are
//! terminal bytes, and a text `{"type":"resize","rows":R,"cols":C}`
//! resizes. When the shell exits (or another client takes the session
//! over) a text `{"type":"exit","exit_code":N}` is sent and the socket
//! closes. Closing the socket only detaches: the shell keeps running and
//! its scrollback is replayed on the next attach. A ping every
//! [`PING_EVERY`] keeps idle connections through proxies.
//!
//! Which session: `?session=<sid>` attaches to that one; `?new=true`
//! always starts a new shell; otherwise the newest running shell that no
//! one is attached to is reattached, or a new one started.
//!
//! # Threads, locks, I/O
//! One task per connection (axum's upgrade task) selects over the socket,
//! the session's events and the ping timer; it owns both halves of the
//! session, so nothing is shared or locked.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use bhatti_agent::Event;
use bhatti_engine::engine::{Engine, SandboxId, Session, ShellOptions};
use serde::{Deserialize, Serialize};

use super::{RouteDef, Verb, user};
use crate::activity::BusyGuard;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery, ApiResult, AuthUser};
use crate::model::replies::sorted_json;
use crate::state::Shared;

/// Keepalive ping interval.
pub const PING_EVERY: Duration = Duration::from_secs(20);

/// The shell a new session runs: bash when the image has it, else sh.
const SHELL: [&str; 3] = [
    "/bin/sh",
    "-c",
    "if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi",
];

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    vec![
        user(
            Verb::Get,
            "/sandboxes/{id}/ws",
            "Interactive shell over WebSocket (session, new, token, rows, cols)",
            get(ws::<E>),
        )
        .query::<WsQuery>()
        .upgrade(),
    ]
}

/// Query of the shell route (`token` is read by the auth layer).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WsQuery {
    pub session: Option<String>,
    #[serde(default)]
    pub new: bool,
    pub token: Option<String>,
    pub rows: Option<u16>,
    pub cols: Option<u16>,
}

async fn ws<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<WsQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let upgrade = upgrade.map_err(|e| ApiError::BadRequest(format!("WebSocket upgrade: {e}")))?;
    let (sb, eid) = st.live(&u, &id).await?;
    let session = open(&*st.engine, &eid, &q).await?;
    let busy = st.activity.busy(&sb.id);
    Ok(upgrade.on_upgrade(move |socket| bridge(socket, session, busy)))
}

async fn open<E: Engine>(engine: &E, id: &SandboxId, q: &WsQuery) -> ApiResult<Session> {
    if let Some(sid) = &q.session {
        return Ok(engine.attach(id, sid).await?);
    }
    if !q.new {
        let mut sessions = engine.list_sessions(id).await?;
        sessions.retain(|s| s.tty && s.running && !s.attached && s.session_id != "init");
        if let Some(s) = sessions.iter().max_by_key(|s| s.created_at) {
            match engine.attach(id, &s.session_id).await {
                Ok(sess) => return Ok(sess),
                // It ended in between: start a new one.
                Err(e) => tracing::debug!(error = %e, "reattach failed"),
            }
        }
    }
    let mut opts = ShellOptions::new(SHELL);
    if let (Some(r), Some(c)) = (q.rows, q.cols) {
        opts = opts.size(r, c);
    }
    Ok(engine.shell(id, opts).await?)
}

/// A text message from the client.
#[derive(Debug, Deserialize)]
struct Control {
    #[serde(rename = "type")]
    kind: String,
    rows: Option<u16>,
    cols: Option<u16>,
}

/// A text message to the client.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Notice {
    /// The first message: which session this is.
    Session { session_id: String },
    /// The shell exited (or another client took the session over).
    Exit { exit_code: i32 },
    /// The session failed.
    Error { data: String },
}

impl Notice {
    fn message(&self) -> Message {
        Message::Text(sorted_json(self).unwrap_or_default().into())
    }
}

async fn bridge(mut ws: WebSocket, session: Session, _busy: BusyGuard) {
    let (info, mut input, mut events) = session.into_split();
    let hello = Notice::Session {
        session_id: info.session_id,
    };
    if ws.send(hello.message()).await.is_err() {
        return;
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            msg = ws.recv() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if input.write_stdin(&b).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    match serde_json::from_str::<Control>(t.as_str()) {
                        Ok(c) if c.kind == "resize" => {
                            if let (Some(r), Some(cl)) = (c.rows, c.cols)
                                && input.resize(r, cl).await.is_err()
                            {
                                break;
                            }
                        }
                        // Text that is not a control message is input.
                        _ => {
                            if input.write_stdin(t.as_bytes()).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            },
            ev = events.next() => match ev {
                Ok(Some(Event::Stdout(d) | Event::Stderr(d))) => {
                    if ws.send(Message::Binary(d.into())).await.is_err() {
                        break;
                    }
                }
                Ok(Some(Event::Exit(code))) => {
                    let _ = ws.send(Notice::Exit { exit_code: code }.message()).await;
                    let _ = ws.send(Message::Close(None)).await;
                    break;
                }
                Ok(Some(Event::Error(msg))) => {
                    let _ = ws.send(Notice::Error { data: msg.message }.message()).await;
                    let _ = ws.send(Message::Close(None)).await;
                    break;
                }
                Ok(None) | Err(_) => {
                    let _ = ws.send(Message::Close(None)).await;
                    break;
                }
            },
            _ = ping.tick() => {
                if ws.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
        }
    }
    // Dropping `input` and `events` closes the agent connection: detach.
}
