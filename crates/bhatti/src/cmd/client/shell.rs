//! `bhatti shell NAME`: an interactive shell over the WebSocket route.
//!
//! Without `--session`/`--new` the daemon reattaches the newest running
//! shell nobody is attached to (its scrollback is replayed), else starts
//! one. On a terminal, stdin goes raw; `Ctrl+\` detaches (the shell keeps
//! running) and says how to reattach; SIGWINCH sends the new size. The
//! exit code of a shell that ends is forwarded. The client asks for the
//! daemon's text control messages (`control=1`: the session id first, the
//! exit code at the end), which v1 clients do not get. `--user` starts a
//! new shell as another guest user (`?user=`; ignored when attaching).
//!
//! # Threads and I/O
//! One std thread reads stdin (blocking) into a channel; the command's
//! current-thread runtime selects over that channel, the socket and the
//! SIGWINCH stream, and writes socket output to stdout (flushed per
//! message). Nothing is shared or locked.

use std::io::{IsTerminal, Read, Write};

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::args::Global;
use super::http::{HttpError, error_message};
use super::{Ctx, Outcome, terminal};

/// `Ctrl+\` (FS): detaches.
pub const DETACH_BYTE: u8 = 0x1c;

#[derive(Debug, Args)]
pub struct ShellArgs {
    /// Sandbox name or id
    pub sandbox: String,
    /// Attach to this session (see `bhatti ps`)
    #[arg(long, conflicts_with = "new")]
    pub session: Option<String>,
    /// Start a new shell even when one is running
    #[arg(long)]
    pub new: bool,
    /// Start a new shell as this guest user (a name in the guest's
    /// /etc/passwd, or a uid); ignored when attaching to a running one
    /// [default: the sandbox's user, else root]
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    #[command(flatten)]
    pub g: Global,
}

#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error("WebSocket: {0}")]
    Ws(String),
    #[error("the daemon did not start a session: {0}")]
    Handshake(String),
    #[error("shell failed: {0}")]
    Remote(String),
    #[error("terminal: {0}")]
    Terminal(#[source] std::io::Error),
}

pub async fn run(a: ShellArgs) -> anyhow::Result<Outcome> {
    let ctx = Ctx::new(&a.g)?;
    let mut url = ctx.api.url(&["sandboxes", &a.sandbox, "ws"]);
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    let _ = url.set_scheme(scheme);
    {
        let mut q = url.query_pairs_mut();
        // The `session`/`exit` text messages come only to clients that ask
        // (a v1 client prints every frame it gets as terminal bytes).
        q.append_pair("control", "1");
        if let Some(s) = &a.session {
            q.append_pair("session", s);
        }
        if a.new {
            q.append_pair("new", "true");
        }
        if let Some(u) = &a.user {
            q.append_pair("user", u);
        }
        if let Some((r, c)) = terminal::size() {
            q.append_pair("rows", &r.to_string());
            q.append_pair("cols", &c.to_string());
        }
    }
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| ShellError::Ws(e.to_string()))?;
    if let Some(t) = ctx.api.token()
        && let Ok(v) = HeaderValue::from_str(&format!("Bearer {t}"))
    {
        req.headers_mut().insert(AUTHORIZATION, v);
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .map_err(|e| connect_error(&ctx, e))?;

    let session_id = match ws.next().await {
        Some(Ok(Message::Text(t))) => serde_json::from_str::<Value>(t.as_str())
            .ok()
            .and_then(|v| {
                v.get("session_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .ok_or_else(|| ShellError::Handshake(t.to_string()))?,
        other => return Err(ShellError::Handshake(format!("{other:?}")).into()),
    };

    let tty = std::io::stdin().is_terminal();
    let raw = if tty {
        Some(terminal::RawMode::enable().map_err(ShellError::Terminal)?)
    } else {
        None
    };
    let end = bridge(&mut ws, tty).await;
    drop(raw);
    match end? {
        End::Detached => {
            let _ = ws.send(Message::Close(None)).await;
            eprintln!(
                "\r\ndetached from session {session_id}; it keeps running. Reattach with: \
                 bhatti shell {} (or --session {session_id})",
                a.sandbox
            );
            Ok(Outcome::Success)
        }
        End::Exited(code) => Ok(match code {
            0 => Outcome::Success,
            c => Outcome::Exit(i32::try_from(c.clamp(1, 255)).unwrap_or(1)),
        }),
        End::Closed => Ok(Outcome::Success),
    }
}

fn connect_error(ctx: &Ctx, e: tokio_tungstenite::tungstenite::Error) -> anyhow::Error {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Http(resp) => {
            let status = resp.status().as_u16();
            let body = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            HttpError::Api {
                status,
                message: error_message(status, &body),
            }
            .into()
        }
        E::Io(io) => HttpError::NotRunning {
            url: ctx.api.base().as_str().trim_end_matches('/').to_owned(),
            detail: io.to_string(),
        }
        .into(),
        other => ShellError::Ws(other.to_string()).into(),
    }
}

enum End {
    Detached,
    Exited(i64),
    Closed,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn bridge(ws: &mut Ws, tty: bool) -> anyhow::Result<End> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; 8192];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        .map_err(ShellError::Terminal)?;
    let mut stdin_open = true;
    let ws_err = |e: tokio_tungstenite::tungstenite::Error| ShellError::Ws(e.to_string());
    loop {
        tokio::select! {
            input = rx.recv(), if stdin_open => match input {
                Some(bytes) => {
                    let (data, detach) = match bytes.iter().position(|&b| b == DETACH_BYTE) {
                        Some(i) if tty => (&bytes[..i], true),
                        _ => (&bytes[..], false),
                    };
                    if !data.is_empty() {
                        ws.send(Message::Binary(data.to_vec().into())).await.map_err(ws_err)?;
                    }
                    if detach {
                        return Ok(End::Detached);
                    }
                }
                None => stdin_open = false,
            },
            _ = winch.recv() => {
                if let Some((rows, cols)) = terminal::size() {
                    let m = json!({"type": "resize", "rows": rows, "cols": cols}).to_string();
                    ws.send(Message::Text(m.into())).await.map_err(ws_err)?;
                }
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&b).and_then(|()| out.flush());
                }
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    match v.get("type").and_then(Value::as_str) {
                        Some("exit") => {
                            return Ok(End::Exited(v.get("exit_code").and_then(Value::as_i64).unwrap_or(0)));
                        }
                        Some("error") => {
                            let m = v.get("data").and_then(Value::as_str).unwrap_or("unknown error");
                            return Err(ShellError::Remote(m.to_owned()).into());
                        }
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(_))) | None => return Ok(End::Closed),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(ws_err(e).into()),
            },
        }
    }
}
