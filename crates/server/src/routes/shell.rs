//! `GET /sandboxes/{id}/ws`: an interactive shell over a WebSocket.
//!
//! The TTY session is opened (or attached) before the upgrade, so errors
//! are ordinary HTTP errors. After the upgrade, binary messages both ways
//! are terminal bytes, and a text `{"type":"resize","rows":R,"cols":C}`
//! resizes. A client that asks for control messages (`?control=1`) first
//! gets a text message `{"type":"session","session_id":…}`, and
//! `{"type":"exit",…}`/`{"type":"error",…}` at the end; a v1 client,
//! which prints every frame it receives, gets none of them (the end is
//! only the close frame, whose reason says how the shell ended). Any other text is typed in, except a text that is a control
//! message ([`classify`]: a JSON object with a `type`, or text starting
//! `{"type"`): one that is malformed or unknown (`{"type":"resize",
//! "cols":"x"}`, rows 0, cut short) is ignored and logged, never typed
//! into the shell; no error frame is sent, as a v1 client prints every
//! frame it receives. When the shell exits (or another client takes the
//! session over) the socket closes (after `{"type":"exit","exit_code":N}`
//! with `control`). Closing the socket only detaches: the shell keeps running and
//! its scrollback is replayed on the next attach. A ping every
//! [`PING_EVERY`] keeps idle connections through proxies.
//!
//! Which session: `?session=<sid>` attaches to that one; `?new=true`
//! always starts a new shell; otherwise the newest running shell that no
//! one is attached to is reattached, or a new one started. Each attach to
//! a running session counts in `bhatti_agent_reconnects_total{kind="session"}`
//! ([`crate::metrics`]).
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
use bhatti_agent::{Event, Input};
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
            "Interactive shell over WebSocket (session, new, token, rows, cols, control)",
            get(ws::<E>),
        )
        .query::<WsQuery>()
        .upgrade(),
    ]
}

/// Query of the shell route (`token` is read by the auth layer).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WsQuery {
    pub session: Option<String>,
    #[serde(default, deserialize_with = "crate::model::v1::flag")]
    #[param(value_type = Option<String>)]
    pub new: bool,
    /// Send the text control messages (`session`, `exit`, `error`):
    /// `1` or `true`. Off by default, for v1 clients.
    #[serde(default, deserialize_with = "crate::model::v1::flag")]
    #[param(value_type = Option<String>)]
    pub control: bool,
    pub token: Option<String>,
    #[param(minimum = 1)]
    pub rows: Option<u16>,
    #[param(minimum = 1)]
    pub cols: Option<u16>,
    /// The guest user of a new shell (a name or a uid); default: the
    /// sandbox's `user`, else root (v1). Ignored when attaching.
    #[param(pattern = "^[a-zA-Z0-9._][a-zA-Z0-9._-]{0,31}$")]
    pub user: Option<String>,
}

async fn ws<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<WsQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    if q.rows == Some(0) || q.cols == Some(0) {
        return Err(ApiError::BadRequest(
            "rows and cols must be at least 1".into(),
        ));
    }
    if let Some(u) = q.user.as_deref().filter(|u| !u.is_empty()) {
        crate::service::validate::user(u)?;
    }
    let upgrade = upgrade.map_err(|e| ApiError::BadRequest(format!("WebSocket upgrade: {e}")))?;
    let (sb, eid) = st.live(&u, &id).await?;
    let workdir = crate::service::images::workdir_of(&sb);
    let (session, reattached) = open(&*st.engine, &eid, &q, workdir).await?;
    if reattached {
        st.metrics.reattaches.inc();
    }
    let busy = st.activity.busy(&sb.id);
    let control = q.control;
    Ok(upgrade.on_upgrade(move |socket| bridge(socket, session, control, busy)))
}

/// Attaches to a session (`true`: a reattach), or opens a shell (in
/// `cwd`, the image's working directory, when there is one).
async fn open<E: Engine>(
    engine: &E,
    id: &SandboxId,
    q: &WsQuery,
    cwd: Option<String>,
) -> ApiResult<(Session, bool)> {
    if let Some(sid) = &q.session {
        return Ok((engine.attach(id, sid).await?, true));
    }
    if !q.new {
        let mut sessions = engine.list_sessions(id).await?;
        sessions.retain(|s| s.tty && s.running && !s.attached && s.session_id != "init");
        if let Some(s) = sessions.iter().max_by_key(|s| s.created_at) {
            match engine.attach(id, &s.session_id).await {
                Ok(sess) => return Ok((sess, true)),
                // It ended in between: start a new one.
                Err(e) => tracing::debug!(error = %e, "reattach failed"),
            }
        }
    }
    let mut opts = ShellOptions::new(SHELL);
    opts.cwd = cwd;
    if let (Some(r), Some(c)) = (q.rows, q.cols) {
        opts = opts.size(r, c);
    }
    if let Some(u) = q.user.as_deref().filter(|u| !u.is_empty()) {
        opts = opts.user(u);
    }
    Ok((engine.shell(id, opts).await?, false))
}

/// What a text message from the client is.
#[derive(Debug, PartialEq, Eq)]
enum Text<'a> {
    /// A well-formed resize.
    Resize { rows: u16, cols: u16 },
    /// A control message that is malformed or of an unknown type: why.
    BadControl(&'static str),
    /// Terminal input.
    Input(&'a str),
}

/// A resize as the client sends it.
#[derive(Debug, Deserialize)]
struct Resize {
    rows: u16,
    cols: u16,
}

/// Sorts a text message: a JSON object with a `type` member — or a text
/// that starts like one but is not valid JSON — is a control message
/// (never input); anything else is typed in.
fn classify(t: &str) -> Text<'_> {
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(t) else {
        let head: String = t.chars().filter(|c| !c.is_whitespace()).take(7).collect();
        return if head == r#"{"type""# {
            Text::BadControl("not valid JSON")
        } else {
            Text::Input(t)
        };
    };
    match obj.get("type") {
        None => Text::Input(t),
        Some(kind) if kind != "resize" => Text::BadControl("unknown type"),
        Some(_) => match serde_json::from_value::<Resize>(serde_json::Value::Object(obj)) {
            Ok(r) if r.rows > 0 && r.cols > 0 => Text::Resize {
                rows: r.rows,
                cols: r.cols,
            },
            Ok(_) => Text::BadControl("resize to zero rows or columns"),
            Err(_) => Text::BadControl("resize without integer rows and cols (1-65535)"),
        },
    }
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

    /// The close frame that ends the socket: its reason says how the
    /// shell ended (what a client without control messages learns).
    fn close(&self) -> Message {
        let reason = match self {
            Self::Session { .. } => String::new(),
            Self::Exit { exit_code } => format!("exit {exit_code}"),
            Self::Error { data } => {
                // A close reason is at most 123 bytes.
                let mut end = data.len().min(120);
                while !data.is_char_boundary(end) {
                    end -= 1;
                }
                data[..end].to_owned()
            }
        };
        Message::Close(Some(axum::extract::ws::CloseFrame {
            code: axum::extract::ws::close_code::NORMAL,
            reason: reason.into(),
        }))
    }
}

/// Ends the socket with `last`: sent as a text message first when the
/// client asked for control messages.
async fn finish(ws: &mut WebSocket, control: bool, last: Notice) {
    if control {
        let _ = ws.send(last.message()).await;
    }
    let _ = ws.send(last.close()).await;
}

/// Acts on a text message: resize, type it in, or ignore a malformed
/// control message (logged at `info` the first time on a connection,
/// then at `debug`, so that a client repeating it cannot flood the log).
async fn on_text(input: &mut Input, t: &str, ignored: &mut u64) -> bhatti_agent::Result<()> {
    match classify(t) {
        Text::Resize { rows, cols } => input.resize(rows, cols).await,
        Text::BadControl(why) => {
            *ignored += 1;
            let head = crate::service::validate::excerpt(t);
            if *ignored == 1 {
                tracing::info!(why, message = %head, "shell: control message ignored");
            } else {
                tracing::debug!(why, message = %head, n = *ignored, "shell: control message ignored");
            }
            Ok(())
        }
        Text::Input(s) => input.write_stdin(s.as_bytes()).await,
    }
}

async fn bridge(mut ws: WebSocket, session: Session, control: bool, _busy: BusyGuard) {
    let (info, mut input, mut events) = session.into_split();
    let hello = Notice::Session {
        session_id: info.session_id,
    };
    if control && ws.send(hello.message()).await.is_err() {
        return;
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut ignored = 0u64;
    loop {
        tokio::select! {
            msg = ws.recv() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if input.write_stdin(&b).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    if on_text(&mut input, t.as_str(), &mut ignored).await.is_err() {
                        break;
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
                    finish(&mut ws, control, Notice::Exit { exit_code: code }).await;
                    break;
                }
                Ok(Some(Event::Error(msg))) => {
                    finish(&mut ws, control, Notice::Error { data: msg.message }).await;
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

#[cfg(test)]
mod tests {
    use super::{Text, classify};

    #[test]
    fn control_messages_are_never_input() {
        assert_eq!(
            classify(r#"{"type":"resize","rows":41,"cols":97}"#),
            Text::Resize { rows: 41, cols: 97 }
        );
        for bad in [
            r#"{"type":"resize","cols":"x"}"#,
            r#"{"type":"resize","rows":24}"#,
            r#"{"type":"resize","rows":0,"cols":80}"#,
            r#"{"type":"resize","rows":-1,"cols":80}"#,
            r#"{"type":"resize","rows":70000,"cols":80}"#,
            r#"{"type":"resise","rows":24,"cols":80}"#,
            r#"{"type":7}"#,
            r#"{"type":"resize","rows":24,"#,
            r#" { "type" : "resize""#,
        ] {
            assert!(matches!(classify(bad), Text::BadControl(_)), "{bad}");
        }
        for input in ["ls -l\n", "{}", r#"{"a":1}"#, "[1,2]", "42", "\"type\"", ""] {
            assert_eq!(classify(input), Text::Input(input), "{input}");
        }
    }
}
