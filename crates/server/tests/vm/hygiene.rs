//! Connection hygiene of the daemon's listener, on loopback: 300
//! slowloris sockets (a request head a byte at a time), a few silent ones
//! and a few unauthenticated requests trickling their body are all closed
//! by the server within seconds, while authenticated
//! requests made meanwhile, on pooled and on fresh connections, succeed; a
//! kept-alive connection serves requests with pauses between them and is
//! closed once left idle; and requests whose head is in are never cut by
//! the header timeout: a streamed exec and a WebSocket shell that stay
//! quiet for longer than it.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{TestDaemon, TestResult, Timers, ensure, run};

const SLOW: usize = 300;
const SILENT: usize = 5;
const SLOW_BODY: usize = 5;

/// What a hostile socket sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hostile {
    /// A request head that never ends, a byte at a time.
    Head,
    /// Nothing.
    Silent,
    /// A whole head without a key, then a body a byte at a time.
    Body,
}

/// The daemon's header timeout (the test daemon runs with the default).
fn header_timeout() -> Duration {
    Duration::from_secs(bhatti_server::config::ServerConfig::default().header_timeout_secs)
}

/// Generous: the header timeout plus scheduling slack on a busy machine.
fn close_bound() -> Duration {
    header_timeout() + Duration::from_secs(30)
}

/// Holds a connection open, sending what `how` says a byte every 500 ms;
/// returns how long after the start the server closed it.
async fn hold(mut s: TcpStream, how: Hostile, start: Instant) -> Result<Duration, String> {
    let trickle: &[u8] = match how {
        Hostile::Head | Hostile::Silent => {
            b"GET /sandboxes HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
        }
        Hostile::Body => {
            let head = b"POST /sandboxes HTTP/1.1\r\nHost: localhost\r\n\
                         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n";
            s.write_all(head).await.map_err(|e| e.to_string())?;
            b"{\"name\": \""
        }
    };
    let silent = matches!(how, Hostile::Silent);
    let mut sent = 0usize;
    let mut buf = [0u8; 1024];
    let end = start + close_bound() + Duration::from_secs(30);
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(n) if n > 0 => {} // anything said before the close
                _ => return Ok(start.elapsed()),
            },
            () = tokio::time::sleep(Duration::from_millis(500)), if !silent => {
                let byte = trickle.get(sent).copied().unwrap_or(b'a');
                if s.write_all(&[byte]).await.is_err() {
                    return Ok(start.elapsed());
                }
                sent += 1;
            }
            () = tokio::time::sleep_until(end) => {
                return Err(format!("still open after {:?} ({sent} bytes sent)", start.elapsed()));
            }
        }
    }
}

/// Authenticated requests every 300 ms, alternately on the shared pooled
/// client and on a fresh connection, until `done` says stop; returns how
/// many succeeded, failing at the first that does not.
async fn traffic(
    d: &TestDaemon,
    done: tokio::sync::watch::Receiver<bool>,
) -> Result<usize, libtest_mimic::Failed> {
    let mut ok = 0;
    while !*done.borrow() {
        let fresh = reqwest::Client::new();
        let client = if ok % 2 == 0 { &d.http } else { &fresh };
        let r = client
            .get(format!("{}/sandboxes", d.url))
            .bearer_auth(&d.key)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| format!("request {ok} during the flood: {e}"))?;
        ensure(r.status() == 200, || {
            format!("request {ok} during the flood: {}", r.status())
        })?;
        ok += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(ok)
}

async fn slowloris(d: &TestDaemon) -> TestResult {
    let addr = d.url.trim_start_matches("http://").to_owned();
    let start = Instant::now();
    let mut holders = tokio::task::JoinSet::new();
    let kinds = std::iter::repeat_n(Hostile::Head, SLOW)
        .chain(std::iter::repeat_n(Hostile::Silent, SILENT))
        .chain(std::iter::repeat_n(Hostile::Body, SLOW_BODY));
    for how in kinds {
        let s = TcpStream::connect(&addr).await?;
        holders.spawn(async move { hold(s, how, start).await.map(|t| (how, t)) });
    }
    let (stop, done) = tokio::sync::watch::channel(false);
    let mut closed = Vec::new();
    let collect = async {
        while let Some(r) = holders.join_next().await {
            closed.push(r?);
        }
        let _ = stop.send(true);
        Ok::<_, libtest_mimic::Failed>(())
    };
    let (served, collected) = tokio::join!(traffic(d, done), collect);
    collected?;
    let served = served?;
    let open: Vec<&String> = closed.iter().filter_map(|r| r.as_ref().err()).collect();
    ensure(open.is_empty(), || {
        format!(
            "{} of {} sockets not closed: {:?}",
            open.len(),
            closed.len(),
            open.first()
        )
    })?;
    let closed: Vec<(Hostile, Duration)> = closed.into_iter().flatten().collect();
    for how in [Hostile::Head, Hostile::Silent, Hostile::Body] {
        let mut t: Vec<Duration> = closed.iter().filter(|c| c.0 == how).map(|c| c.1).collect();
        t.sort();
        println!(
            "{how:?}: {} sockets closed, first after {:?}, median {:?}, last {:?}",
            t.len(),
            t.first().copied().unwrap_or_default(),
            t.get(t.len() / 2).copied().unwrap_or_default(),
            t.last().copied().unwrap_or_default(),
        );
    }
    println!("{served} authenticated requests served meanwhile");
    let last = closed.iter().map(|c| c.1).max().unwrap_or_default();
    ensure(last <= close_bound(), || {
        format!(
            "last socket closed after {last:?}, bound {:?}",
            close_bound()
        )
    })?;
    ensure(served >= 3, || {
        format!("only {served} requests during the flood")
    })
}

/// One connection, two requests a pause apart, then left idle: the server
/// closes it after about the header timeout.
async fn keep_alive(d: &TestDaemon) -> TestResult {
    let s = TcpStream::connect(d.url.trim_start_matches("http://")).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
    let conn = tokio::spawn(conn);
    for i in 0..2 {
        if i > 0 {
            tokio::time::sleep(header_timeout() / 2).await;
        }
        send.ready().await?;
        let req = hyper::Request::get("/sandboxes")
            .header("host", "localhost")
            .header("authorization", format!("Bearer {}", d.key))
            .body(Empty::<Bytes>::new())?;
        let resp = send.send_request(req).await?;
        ensure(resp.status() == 200, || {
            format!("keep-alive request {i}: {}", resp.status())
        })?;
        http_body_util::BodyExt::collect(resp.into_body()).await?;
    }
    let idle = Instant::now();
    tokio::time::timeout(close_bound(), conn)
        .await
        .map_err(|_| format!("idle keep-alive connection open after {:?}", idle.elapsed()))??
        .ok();
    let after = idle.elapsed();
    println!("idle keep-alive connection closed after {after:?}");
    ensure(after + Duration::from_secs(1) >= header_timeout(), || {
        format!("idle connection closed early, after {after:?}")
    })
}

/// A streamed exec silent for longer than the header timeout gets all of
/// its output.
async fn quiet_stream(d: &TestDaemon) -> TestResult {
    let pause = header_timeout().as_secs() + 5;
    let script = format!("echo before; sleep {pause}; echo after");
    let text = d
        .req(Method::POST, "/sandboxes/hy/exec")
        .header("accept", "application/x-ndjson")
        .json(&json!({"cmd": ["sh", "-c", script]}))
        .send()
        .await?
        .text()
        .await?;
    let events: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let out: String = events
        .iter()
        .filter(|e| e["type"] == "stdout")
        .filter_map(|e| e["data"].as_str())
        .collect();
    ensure(
        out == "before\nafter\n" && events.last() == Some(&json!({"type": "exit", "exit_code": 0})),
        || format!("stream cut? {text}"),
    )
}

/// A WebSocket shell left quiet for longer than the header timeout still
/// answers.
async fn quiet_shell(d: &TestDaemon) -> TestResult {
    let url = format!(
        "{}/sandboxes/hy/ws?new=true",
        d.url.replace("http://", "ws://")
    );
    let mut req = url.into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {}", d.key).parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    tokio::time::sleep(header_timeout() + Duration::from_secs(5)).await;
    ws.send(Message::Binary(b"echo still-$((40+2))\n".to_vec().into()))
        .await?;
    let mut seen = String::new();
    let end = Instant::now() + Duration::from_secs(30);
    while !seen.contains("still-42") {
        let m = tokio::time::timeout_at(end, ws.next())
            .await
            .map_err(|_| format!("no answer; saw {seen:?}"))?
            .ok_or_else(|| format!("shell closed; saw {seen:?}"))??;
        if let Message::Binary(b) = m {
            seen.push_str(&String::from_utf8_lossy(&b));
        }
    }
    Ok(())
}

pub fn slow_clients_and_quiet_requests() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        slowloris(&d).await?;
        keep_alive(&d).await?;
        // After the server closed it, the pooled client reconnects.
        d.expect(d.req(Method::GET, "/sandboxes"), 200).await?;
        d.create("hy").await?;
        let (stream, shell) = tokio::join!(quiet_stream(&d), quiet_shell(&d));
        stream?;
        shell?;
        d.finish().await
    })
}
