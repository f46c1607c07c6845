//! The v1 WebSocket client: it authenticates with `?token=` (or the
//! `Authorization` header), writes keystrokes as binary frames, sends
//! `{"type":"resize","rows":R,"cols":C}` as text, and prints EVERY frame
//! it receives as terminal bytes. So no control message of ours
//! (`{"type":"session"…}`, `{"type":"exit"…}`) may reach it; a client
//! that asks with `?control=1` gets them. Sessions' `created_at` stays
//! Unix seconds.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use libtest_mimic::Failed;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{Rows, send};
use crate::shell::Ws;
use crate::support::{TestDaemon, TestResult, Timers, run};

const ROW: &str = "WebSocket /ws";

/// Connects to the sandbox `term`'s shell.
async fn connect(d: &TestDaemon, query: &str, header: bool) -> Result<Ws, Failed> {
    let url = format!(
        "{}/sandboxes/term/ws{query}",
        d.url.replace("http://", "ws://")
    );
    let mut req = url.into_client_request()?;
    if header {
        req.headers_mut()
            .insert("authorization", format!("Bearer {}", d.key).parse()?);
    }
    Ok(tokio_tungstenite::connect_async(req).await?.0)
}

/// Appends every frame's payload, as a v1 client prints it, until the
/// output contains `want` (or, with `want` empty, until the socket
/// closes). Returns whether that happened within 30 s.
async fn print_until(ws: &mut Ws, out: &mut Vec<u8>, want: &str) -> Result<bool, Failed> {
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if !want.is_empty() && String::from_utf8_lossy(out).contains(want) {
            return Ok(true);
        }
        let Ok(m) = tokio::time::timeout_at(end, ws.next()).await else {
            return Ok(false);
        };
        match m {
            Some(Ok(Message::Binary(b))) => out.extend_from_slice(&b),
            Some(Ok(Message::Text(t))) => out.extend_from_slice(t.as_bytes()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(want.is_empty()),
            Some(Ok(_)) => {}
        }
    }
}

fn has_control(out: &[u8]) -> bool {
    let s = String::from_utf8_lossy(out);
    s.contains(r#"{"type":"#) || s.contains(r#""session_id""#)
}

pub fn terminal_client() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let mut rows = Rows::default();
        d.create("term").await?;
        token_client(&d, &mut rows).await?;
        header_client(&d, &mut rows).await?;
        control_client(&d, &mut rows).await?;
        d.finish().await?;
        rows.done()
    })
}

/// `?token=`, new shell, echo, resize, exit: all frames are terminal bytes.
async fn token_client(d: &TestDaemon, rows: &mut Rows) -> TestResult {
    let mut ws = match connect(d, &format!("?token={}", d.key), false).await {
        Ok(ws) => ws,
        Err(e) => {
            rows.check(ROW, false, || format!("?token= upgrade: {e:?}"));
            return Ok(());
        }
    };
    let mut out = Vec::new();
    ws.send(Message::Binary(b"echo v1-$((6*7))\n".to_vec().into()))
        .await?;
    let ok = print_until(&mut ws, &mut out, "v1-42").await?;
    rows.check(ROW, ok, || {
        format!(
            "?token= shell: no `v1-42` in {:?}",
            String::from_utf8_lossy(&out)
        )
    });
    // A v1 shell runs as root.
    ws.send(Message::Binary(b"echo uid-$(id -u)-end\n".to_vec().into()))
        .await?;
    let ok = print_until(&mut ws, &mut out, "uid-0-end").await?;
    rows.check("users in the guest", ok, || {
        format!(
            "the shell must run as root: no `uid-0-end` in {:?}",
            String::from_utf8_lossy(&out)
        )
    });
    let resize = json!({"type": "resize", "rows": 33, "cols": 101}).to_string();
    ws.send(Message::Text(resize.into())).await?;
    ws.send(Message::Binary(b"stty size\n".to_vec().into()))
        .await?;
    let ok = print_until(&mut ws, &mut out, "33 101").await?;
    rows.check(ROW, ok, || {
        format!(
            "resize text frame: no `33 101` in {:?}",
            String::from_utf8_lossy(&out)
        )
    });
    sessions_dates(d, rows).await?;
    ws.send(Message::Binary(b"exit\n".to_vec().into())).await?;
    let closed = print_until(&mut ws, &mut out, "").await?;
    rows.check(ROW, closed, || "the socket stays open after `exit`".into());
    rows.check(ROW, !has_control(&out), || {
        format!(
            "a v1 client (no control=1) printed a control message: {:?}",
            String::from_utf8_lossy(&out)
        )
    });
    Ok(())
}

/// While a shell runs: `GET /sessions` lists it, `created_at` a number.
async fn sessions_dates(d: &TestDaemon, rows: &mut Rows) -> TestResult {
    let (s, v) = send(d, Method::GET, "/sandboxes/term/sessions", None).await?;
    let items = v.as_array().cloned().unwrap_or_default();
    rows.check("timestamps", s == 200 && !items.is_empty(), || {
        format!("sessions during a shell: {s} {v}")
    });
    for it in &items {
        rows.check("timestamps", it["created_at"].is_u64(), || {
            format!("a session's `created_at` stays Unix seconds: {it}")
        });
    }
    Ok(())
}

/// Header auth, no control=1: still only terminal bytes.
async fn header_client(d: &TestDaemon, rows: &mut Rows) -> TestResult {
    let mut ws = match connect(d, "", true).await {
        Ok(ws) => ws,
        Err(e) => {
            rows.check(ROW, false, || {
                format!("Authorization header upgrade: {e:?}")
            });
            return Ok(());
        }
    };
    let mut out = Vec::new();
    ws.send(Message::Binary(b"echo hdr-$((2+3))\n".to_vec().into()))
        .await?;
    let ok = print_until(&mut ws, &mut out, "hdr-5").await?;
    rows.check(ROW, ok && !has_control(&out), || {
        format!(
            "header auth: want `hdr-5` and no control message, got {:?}",
            String::from_utf8_lossy(&out)
        )
    });
    ws.send(Message::Binary(b"exit\n".to_vec().into())).await?;
    print_until(&mut ws, &mut out, "").await?;
    Ok(())
}

/// `?control=1`: the session message first, the exit message last.
async fn control_client(d: &TestDaemon, rows: &mut Rows) -> TestResult {
    let mut ws = match connect(d, "?control=1&new=true", true).await {
        Ok(ws) => ws,
        Err(e) => {
            rows.check(ROW, false, || format!("?control=1 upgrade: {e:?}"));
            return Ok(());
        }
    };
    let first = tokio::time::timeout(Duration::from_secs(30), ws.next()).await;
    let first: Value = match first {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str(&t).unwrap_or(Value::Null),
        other => json!(format!("{other:?}")),
    };
    rows.check(
        ROW,
        first["type"] == "session" && first["session_id"].is_string(),
        || format!("?control=1: the first frame must be {{\"type\":\"session\",\"session_id\"}}: {first}"),
    );
    ws.send(Message::Binary(b"exit 3\n".to_vec().into()))
        .await?;
    let mut exit = Value::Null;
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(end, ws.next()).await {
        if let Message::Text(t) = m {
            exit = serde_json::from_str(&t).unwrap_or(Value::Null);
            if exit["type"] == "exit" {
                break;
            }
        }
    }
    rows.check(
        ROW,
        exit["type"] == "exit" && exit["exit_code"] == 3,
        || format!("?control=1: want {{\"type\":\"exit\",\"exit_code\":3}}, got {exit}"),
    );
    Ok(())
}
