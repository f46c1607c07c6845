//! Reverse proxy and published ports against a real HTTP server in the
//! guest (busybox httpd with a CGI script that echoes request headers),
//! a raw upgrade echo server (busybox nc), and a cold sandbox woken by
//! 50 concurrent requests with exactly one restore, every one answered;
//! a request that wakes the sandbox is held until the guest's server
//! accepts (started just after the wake), not refused.
//! The agent's own ports are neither proxied nor published, and aliases
//! are per user: bob publishing alice's alias learns nothing of hers, and
//! each user's host name reaches their own sandbox.

use std::time::{Duration, Instant};

use bhatti_engine::engine::{Engine, SandboxId};
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use bhatti_store::users::Limits;

use crate::support::{TestDaemon, TestResult, Timers, ensure, eventually, run};

const CGI: &str = r#"#!/bin/sh
echo Content-Type: text/plain
echo
echo custom=$HTTP_X_CUSTOM auth=$HTTP_AUTHORIZATION
"#;

/// Answers any request with 101, then echoes bytes.
const UPGRADE_ECHO: &str = r#"#!/bin/sh
while read -r l; do [ "$l" = "$(printf '\r')" ] && break; done
printf 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n'
exec cat
"#;

async fn put(d: &TestDaemon, path: &str, body: &'static str, mode: &str) -> TestResult {
    let q = format!("/sandboxes/px/files?path={path}&mode={mode}");
    d.expect(d.req(Method::PUT, &q).body(body), 200)
        .await
        .map(drop)
}

/// `GET /` with `Host: <host of url>` and no key: (status, body).
async fn get_host(d: &TestDaemon, url: &str) -> Result<(u16, String), libtest_mimic::Failed> {
    let host = url
        .trim_start_matches("http://")
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    let r = d
        .req_as("", Method::GET, "/")
        .header("host", host)
        .send()
        .await?;
    Ok((r.status().as_u16(), r.text().await?))
}

#[allow(clippy::too_many_lines)] // one scenario on one daemon, step by step
pub fn proxy_and_publish() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let sb = d.create("px").await?;
        let id = sb["id"].as_str().unwrap_or_default().to_owned();
        put(&d, "/srv/index.html", "hello-from-guest\n", "0644").await?;
        put(&d, "/srv/cgi-bin/h", CGI, "0755").await?;
        put(&d, "/srv/up.sh", UPGRADE_ECHO, "0755").await?;
        d.sh(
            "px",
            "busybox httpd -p 8080 -h /srv && (nc -ll -p 9000 -e /srv/up.sh </dev/null >/dev/null 2>&1 &)",
        )
        .await?;
        let ports = eventually(Duration::from_secs(10), || async {
            let v = d
                .expect(d.req(Method::GET, "/sandboxes/px/ports"), 200)
                .await?;
            let has = |p: u16| {
                v.as_array()
                    .is_some_and(|a| a.iter().any(|x| x["port"] == p))
            };
            Ok((has(8080) && has(9000)).then_some(v))
        })
        .await?;
        ensure(
            ports.as_array().is_some_and(|a| {
                a.iter()
                    .all(|p| p["port"] != 1024 && p["port"] != 1025 && p["proxy_url"].is_string())
            }),
            || format!("ports: {ports}"),
        )?;

        // HTTP GET, a 404 from the guest, header forwarding (the API key
        // is not forwarded).
        let r = d
            .req(Method::GET, "/sandboxes/px/proxy/8080/")
            .send()
            .await?;
        ensure(r.status() == 200, || format!("GET /: {}", r.status()))?;
        let body = r.text().await?;
        ensure(body == "hello-from-guest\n", || format!("body {body:?}"))?;
        let r = d
            .req(Method::GET, "/sandboxes/px/proxy/8080/nope.html")
            .send()
            .await?;
        ensure(r.status() == 404, || format!("guest 404: {}", r.status()))?;
        let r = d
            .req(
                Method::GET,
                &format!("/sandboxes/{id}/proxy/8080/cgi-bin/h"),
            )
            .header("x-custom", "v1")
            .send()
            .await?;
        let body = r.text().await?;
        ensure(body.trim() == "custom=v1 auth=", || {
            format!("cgi saw {body:?}")
        })?;
        // Invalid port, unknown sandbox, nothing listening, no key.
        d.expect(d.req(Method::GET, "/sandboxes/px/proxy/0/"), 400)
            .await?;
        d.expect(d.req(Method::GET, "/sandboxes/px/proxy/http/"), 400)
            .await?;
        d.expect(d.req(Method::GET, "/sandboxes/nope/proxy/8080/"), 404)
            .await?;
        let e = d
            .expect(d.req(Method::GET, "/sandboxes/px/proxy/8999/"), 502)
            .await?;
        ensure(
            e["error"].as_str().is_some_and(|m| m.contains("8999")),
            || format!("502: {e}"),
        )?;
        d.expect(d.req_as("", Method::GET, "/sandboxes/px/proxy/8080/"), 401)
            .await?;
        // The agent's own ports are not the user's: 400, never a tunnel.
        for port in [1024, 1025] {
            let e = d
                .expect(
                    d.req(Method::GET, &format!("/sandboxes/px/proxy/{port}/")),
                    400,
                )
                .await?;
            ensure(
                e["error"].as_str().is_some_and(|m| m.contains("agent")),
                || format!("proxy {port}: {e}"),
            )?;
            d.expect(
                d.req(Method::POST, "/sandboxes/px/publish")
                    .json(&json!({"port": port, "alias": "agent"})),
                400,
            )
            .await?;
        }

        // Upgrade: after 101 the connection is a byte pipe to the guest.
        let head = format!(
            "GET /sandboxes/px/proxy/9000/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Connection: Upgrade\r\nUpgrade: echo\r\n\r\n",
            d.key
        );
        let mut s = tokio::net::TcpStream::connect(d.url.trim_start_matches("http://")).await?;
        s.write_all(head.as_bytes()).await?;
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await??;
            ensure(n > 0, || {
                format!("closed: {}", String::from_utf8_lossy(&got))
            })?;
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got).into_owned();
        ensure(text.starts_with("HTTP/1.1 101"), || {
            format!("upgrade answer: {text}")
        })?;
        s.write_all(b"ping-through-tunnel\n").await?;
        let mut echo = Vec::new();
        while !String::from_utf8_lossy(&echo).contains("ping-through-tunnel") {
            let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await??;
            ensure(n > 0, || "tunnel closed".into())?;
            echo.extend_from_slice(&buf[..n]);
        }
        drop(s);

        // Publish: Host routing without an API key.
        let p = d
            .expect(
                d.req(Method::POST, "/sandboxes/px/publish")
                    .json(&json!({"port": 8080, "alias": "site"})),
                201,
            )
            .await?;
        let site = p["url"].as_str().unwrap_or_default().to_owned();
        ensure(p["alias"] == "site" && site.contains("//site-"), || {
            format!("publish: {p}")
        })?;
        d.expect(
            d.req(Method::POST, "/sandboxes/px/publish")
                .json(&json!({"port": 8080, "alias": "BAD!"})),
            400,
        )
        .await?;
        let (status, body) = get_host(&d, &site).await?;
        ensure(status == 200 && body == "hello-from-guest\n", || {
            format!("published: {status} {body:?}")
        })?;
        // Without the tag, or with an unknown alias: 404.
        for host in ["http://site.localhost/", "http://other-0a1b2c3d.localhost/"] {
            let (status, _) = get_host(&d, host).await?;
            ensure(status == 404, || format!("{host}: {status}"))?;
        }
        let list = d
            .expect(d.req(Method::GET, "/sandboxes/px/publish"), 200)
            .await?;
        ensure(list.as_array().is_some_and(|a| a.len() == 1), || {
            format!("published: {list}")
        })?;

        // 50 concurrent requests to a cold sandbox: one wake, all answered
        // (as often as BHATTI_TEST_BURSTS says: a stress knob).
        let eid = bhatti_engine::engine::SandboxId::try_from(id.clone())?;
        for _ in 0..bursts() {
            cold_burst(&d, &eid).await?;
        }
        refused_while_waking(&d, &eid).await?;

        aliases_are_per_user(&d, &site).await?;

        d.expect(d.req(Method::DELETE, "/sandboxes/px/publish/8080"), 200)
            .await?;
        let (status, _) = get_host(&d, &site).await?;
        ensure(status == 404, || format!("after unpublish: {status}"))?;
        d.finish().await
    })
}

/// How many cold bursts [`proxy_and_publish`] sends: `BHATTI_TEST_BURSTS`,
/// else 1.
fn bursts() -> usize {
    std::env::var("BHATTI_TEST_BURSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Freezes `px` and sends it 50 requests at once: exactly one restore,
/// every request answered 200 (none sees a guest still coming up).
async fn cold_burst(d: &TestDaemon, eid: &SandboxId) -> TestResult {
    d.state.engine.pause(eid).await?;
    d.state.engine.freeze(eid).await?;
    let before = d.state.engine.restore_count(eid)?;
    let t = Instant::now();
    let mut all = Vec::new();
    for i in 0..50 {
        let r = d
            .req(Method::GET, "/sandboxes/px/proxy/8080/")
            .header("x-n", i);
        all.push(tokio::spawn(async move {
            let r = r.send().await?;
            Ok::<_, reqwest::Error>((r.status(), t.elapsed(), r.text().await?))
        }));
    }
    let (mut failed, mut slowest) = (Vec::new(), Duration::ZERO);
    for h in all {
        let (status, took, body) = h.await??;
        slowest = slowest.max(took);
        if status != 200 {
            failed.push(format!("{status} after {took:.1?}: {body}"));
        }
    }
    println!("cold burst: 50 requests, slowest {slowest:.2?}");
    ensure(failed.is_empty(), || {
        format!(
            "{} of 50 concurrent requests failed: {failed:?}",
            failed.len()
        )
    })?;
    let after = d.state.engine.restore_count(eid)?;
    ensure(after == before + 1, || {
        format!("restores: {before} -> {after}")
    })
}

/// A request that wakes the sandbox, to a port nothing listens on yet,
/// is held while the guest comes up: it is answered once a server starts
/// on that port (here by an exec just after the wake), not refused.
async fn refused_while_waking(d: &TestDaemon, eid: &SandboxId) -> TestResult {
    d.state.engine.pause(eid).await?;
    d.state.engine.freeze(eid).await?;
    let before = d.state.engine.restore_count(eid)?;
    let r = d.req(Method::GET, "/sandboxes/px/proxy/8082/");
    let pending = tokio::spawn(async move {
        let r = r.send().await?;
        Ok::<_, reqwest::Error>((r.status(), r.text().await?))
    });
    // Only that request wakes the sandbox: once restored, start the server.
    eventually(Duration::from_secs(60), || async {
        Ok((d.state.engine.restore_count(eid)? > before).then_some(()))
    })
    .await?;
    d.sh("px", "busybox httpd -p 8082 -h /srv").await?;
    let (status, body) = pending.await??;
    ensure(status == 200 && body == "hello-from-guest\n", || {
        format!("request held during the wake: {status} {body:?}")
    })
}

/// Bob publishes alice's alias `site` (her URL: `alice_site`): he gets the
/// answer an unused alias gets, under his own host name, and each host
/// name reaches its owner's sandbox.
async fn aliases_are_per_user(d: &TestDaemon, alice_site: &str) -> TestResult {
    let bob = d.user("bob", Limits::default())?;
    let body = json!({"name": "bx", "memory_mb": 256});
    d.expect(d.req_as(&bob, Method::POST, "/sandboxes").json(&body), 201)
        .await?;
    let exec = json!({"cmd": ["sh", "-c",
        "mkdir -p /tmp/srv && echo hello-from-bob > /tmp/srv/index.html && busybox httpd -p 8080 -h /tmp/srv"]});
    let v = d
        .expect(
            d.req_as(&bob, Method::POST, "/sandboxes/bx/exec")
                .json(&exec),
            200,
        )
        .await?;
    ensure(v["exit_code"] == 0, || format!("bob's httpd: {v}"))?;

    let publish = |alias: &str, port: u16| {
        d.req_as(&bob, Method::POST, "/sandboxes/bx/publish")
            .json(&json!({"port": port, "alias": alias}))
    };
    let (taken, t) = d.call(publish("site", 8080)).await?;
    let (unused, u) = d.call(publish("never-used", 8081)).await?;
    ensure(taken == 201 && unused == 201, || {
        format!("bob: site {taken} {t}, never-used {unused} {u}")
    })?;
    let bob_site = t["url"].as_str().unwrap_or_default().to_owned();
    let tag = |url: &str| {
        let label = url.trim_start_matches("http://").split('.').next();
        label
            .and_then(|l| l.rsplit_once('-'))
            .map(|(_, t)| t.to_owned())
    };
    ensure(
        bob_site != alice_site
            && bob_site.contains("//site-")
            && tag(&bob_site) == tag(u["url"].as_str().unwrap_or_default()),
        || format!("bob's urls: {t} {u}, alice's {alice_site}"),
    )?;
    // His own alias twice is his own conflict.
    d.expect(publish("site", 9999), 409).await?;

    for (url, want) in [
        (alice_site, "hello-from-guest\n"),
        (&bob_site, "hello-from-bob\n"),
    ] {
        let (status, body) = eventually(Duration::from_secs(10), || async {
            let (s, b) = get_host(d, url).await?;
            Ok((s == 200).then_some((s, b)))
        })
        .await?;
        ensure(body == want, || format!("{url}: {status} {body:?}"))?;
    }
    // An anonymous visitor never undoes its owner's stop.
    d.expect(d.req_as(&bob, Method::POST, "/sandboxes/bx/stop"), 200)
        .await?;
    let (status, body) = get_host(d, &bob_site).await?;
    ensure(status == 503, || {
        format!("published port of a stopped sandbox: {status} {body:?}")
    })?;
    let sb = d
        .expect(d.req_as(&bob, Method::GET, "/sandboxes/bx"), 200)
        .await?;
    ensure(sb["status"] == "stopped", || {
        format!("after the visit: {sb}")
    })?;
    d.expect(d.req_as(&bob, Method::DELETE, "/sandboxes/bx"), 200)
        .await
        .map(drop)
}
