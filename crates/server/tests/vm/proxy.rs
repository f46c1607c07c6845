//! Reverse proxy and published ports against a real HTTP server in the
//! guest (busybox httpd with a CGI script that echoes request headers),
//! a raw upgrade echo server (busybox nc), and a cold sandbox woken by
//! 50 concurrent requests with exactly one restore.

use std::time::Duration;

use bhatti_engine::engine::Engine;
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
                    .all(|p| p["port"] != 1024 && p["proxy_url"].is_string())
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
        ensure(
            p["alias"] == "site" && p["url"].as_str().is_some_and(|u| u.contains("site.")),
            || format!("publish: {p}"),
        )?;
        d.expect(
            d.req(Method::POST, "/sandboxes/px/publish")
                .json(&json!({"port": 8080, "alias": "BAD!"})),
            400,
        )
        .await?;
        let r = d
            .req_as("", Method::GET, "/index.html")
            .header("host", "site.localhost")
            .send()
            .await?;
        ensure(r.status() == 200, || format!("published: {}", r.status()))?;
        ensure(r.text().await? == "hello-from-guest\n", || {
            "published body".into()
        })?;
        let r = d
            .req_as("", Method::GET, "/")
            .header("host", "other.localhost")
            .send()
            .await?;
        ensure(r.status() == 404, || {
            format!("unknown alias: {}", r.status())
        })?;
        let list = d
            .expect(d.req(Method::GET, "/sandboxes/px/publish"), 200)
            .await?;
        ensure(list.as_array().is_some_and(|a| a.len() == 1), || {
            format!("published: {list}")
        })?;

        // 50 concurrent requests to a cold sandbox: one wake.
        let eid = bhatti_engine::engine::SandboxId::try_from(id.clone())?;
        d.state.engine.pause(&eid).await?;
        d.state.engine.freeze(&eid).await?;
        let before = d.state.engine.restore_count(&eid)?;
        let mut all = Vec::new();
        for i in 0..50 {
            let r = d
                .req(Method::GET, "/sandboxes/px/proxy/8080/")
                .header("x-n", i);
            all.push(tokio::spawn(async move { r.send().await }));
        }
        for h in all {
            let r = h.await??;
            ensure(r.status() == 200, || format!("concurrent: {}", r.status()))?;
        }
        let after = d.state.engine.restore_count(&eid)?;
        ensure(after == before + 1, || {
            format!("restores: {before} -> {after}")
        })?;

        d.expect(d.req(Method::DELETE, "/sandboxes/px/publish/8080"), 200)
            .await?;
        let r = d
            .req_as("", Method::GET, "/")
            .header("host", "site.localhost")
            .send()
            .await?;
        ensure(r.status() == 404, || {
            format!("after unpublish: {}", r.status())
        })?;
        d.finish().await
    })
}
