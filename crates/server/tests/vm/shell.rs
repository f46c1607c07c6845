//! The WebSocket shell: auth by header or `?token=` (and refusal without
//! either), terminal I/O, resize, malformed control messages never typed
//! in, detach by disconnecting, reattach with the scrollback replayed,
//! sessions list and kill.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::support::{TestDaemon, TestResult, Timers, ensure, eventually, run};

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A shell socket that asks for control messages (`control=1`).
async fn connect(d: &TestDaemon, query: &str, header: bool) -> Result<Ws, WsError> {
    let sep = if query.is_empty() { "?" } else { "&" };
    let url = format!(
        "{}/sandboxes/sh/ws{query}{sep}control=1",
        d.url.replace("http://", "ws://")
    );
    let mut req = url.into_client_request()?;
    if header {
        let v = format!("Bearer {}", d.key)
            .parse()
            .map_err(|_| WsError::AttackAttempt)?;
        req.headers_mut().insert("authorization", v);
    }
    Ok(tokio_tungstenite::connect_async(req).await?.0)
}

/// The session id from the first message.
pub(crate) async fn hello(ws: &mut Ws) -> Result<String, libtest_mimic::Failed> {
    let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
        .await?
        .ok_or("closed before the session message")??;
    let v: Value = serde_json::from_str(m.to_text()?)?;
    ensure(v["type"] == "session", || format!("first message: {v}"))?;
    Ok(v["session_id"].as_str().unwrap_or_default().to_owned())
}

/// Reads terminal output until it contains `want`.
pub(crate) async fn read_until(ws: &mut Ws, want: &str) -> Result<String, libtest_mimic::Failed> {
    let mut seen = String::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen.contains(want) {
        let m = tokio::time::timeout_at(end, ws.next())
            .await
            .map_err(|_| format!("no {want:?} in {seen:?}"))?
            .ok_or_else(|| format!("closed; saw {seen:?}"))??;
        if let Message::Binary(b) = m {
            seen.push_str(&String::from_utf8_lossy(&b));
        }
    }
    Ok(seen)
}

pub fn websocket_shell() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        d.create("sh").await?;

        // No key: refused with 401 before any upgrade.
        match connect(&d, "", false).await {
            Err(WsError::Http(r)) => {
                ensure(r.status() == 401, || format!("status {}", r.status()))?
            }
            other => return Err(format!("unauthenticated upgrade: {:?}", other.map(|_| ())).into()),
        }
        match connect(&d, "?token=bht_wrong", false).await {
            Err(WsError::Http(r)) => {
                ensure(r.status() == 401, || format!("status {}", r.status()))?
            }
            other => return Err(format!("bad token: {:?}", other.map(|_| ())).into()),
        }

        // A terminal of zero rows is refused before the upgrade.
        match connect(&d, "?new=true&rows=0&cols=80", true).await {
            Err(WsError::Http(r)) => {
                ensure(r.status() == 400, || format!("status {}", r.status()))?
            }
            other => return Err(format!("rows=0: {:?}", other.map(|_| ())).into()),
        }

        // Header auth, I/O.
        let mut ws = connect(&d, "?new=true", true).await?;
        let sid = hello(&mut ws).await?;
        ws.send(Message::Binary(
            "echo mark-$((6*7))\n".as_bytes().to_vec().into(),
        ))
        .await?;
        read_until(&mut ws, "mark-42").await?;
        // Disconnect: detach only.
        ws.close(None).await?;
        drop(ws);
        let path = "/sandboxes/sh/sessions";
        eventually(Duration::from_secs(10), || async {
            let v = d.expect(d.req(Method::GET, path), 200).await?;
            let s = v
                .as_array()
                .and_then(|a| a.iter().find(|s| s["session_id"] == sid.as_str()).cloned());
            Ok(s.filter(|s| s["running"] == true && s["attached"] == false))
        })
        .await?;

        // Query-token auth, reattach: the scrollback comes first.
        let mut ws = connect(&d, &format!("?token={}&session={sid}", d.key), false).await?;
        let again = hello(&mut ws).await?;
        ensure(again == sid, || format!("reattached {again}, wanted {sid}"))?;
        read_until(&mut ws, "mark-42").await?;
        // Resize reaches the terminal.
        let resize = json!({"type": "resize", "rows": 41, "cols": 97}).to_string();
        ws.send(Message::Text(resize.into())).await?;
        ws.send(Message::Binary(b"stty size\n".to_vec().into()))
            .await?;
        read_until(&mut ws, "41 97").await?;
        malformed_control_is_not_typed(&mut ws).await?;
        drop(ws);

        // Without `session`, the detached shell is picked up again; `new`
        // starts another.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut ws = connect(&d, "", true).await?;
        let picked = hello(&mut ws).await?;
        ensure(picked == sid, || format!("picked {picked}, wanted {sid}"))?;
        drop(ws);
        let mut ws = connect(&d, "?new=true", true).await?;
        let other = hello(&mut ws).await?;
        ensure(other != sid, || "new=true reused the session".into())?;
        drop(ws);

        // Kill; unknown sessions are 404.
        d.expect(d.req(Method::DELETE, &format!("{path}/{sid}")), 200)
            .await?;
        d.expect(d.req(Method::DELETE, &format!("{path}/s999")), 404)
            .await?;
        d.finish().await
    })
}

/// Malformed or unknown control messages are dropped, not typed into the
/// shell (the terminal would echo them); other text is still input.
async fn malformed_control_is_not_typed(ws: &mut Ws) -> TestResult {
    let bad = [
        r#"{"type":"resize","cols":"xqbad1"}"#,
        r#"{"type":"resize","rows":24,"xqbad2":1}"#,
        r#"{"type":"resize","rows":0,"cols":80,"n":"xqbad3"}"#,
        r#"{"type":"xqbad4","rows":24,"cols":80}"#,
        r#"{"type":"resize","rows":24,"cols":"#,
    ];
    for m in bad {
        ws.send(Message::Text(m.into())).await?;
    }
    ws.send(Message::Text("echo txt-$((3*3))\n".into())).await?;
    let seen = read_until(ws, "txt-9").await?;
    ensure(!seen.contains("xqbad") && !seen.contains("resize"), || {
        format!("a control message was typed into the shell: {seen:?}")
    })?;
    // The last good size still holds.
    ws.send(Message::Binary(b"stty size\n".to_vec().into()))
        .await?;
    read_until(ws, "41 97").await?;
    Ok(())
}
