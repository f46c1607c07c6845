//! v1 rows that need no VM: `GET /health` (no auth; `uptime` a Go
//! duration string), the static UI paths (no auth), errors
//! (`{"error": string}`, 401, 404, a bad body 400, a body over the limit
//! 413), and a JSON body sent as `curl -d` sends it (form content type or
//! none), which v1 read as JSON.

use reqwest::Method;

use super::{Rows, go_duration, is_error, is_uint};
use crate::support::{TestDaemon, TestResult, Timers, run};

pub fn health_static_errors() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let mut rows = Rows::default();
        health(&d, &mut rows).await?;
        static_ui(&d, &mut rows).await?;
        errors(&d, &mut rows).await?;
        curl_bodies(&d, &mut rows).await?;
        d.finish().await?;
        rows.done()
    })
}

async fn health(d: &TestDaemon, rows: &mut Rows) -> TestResult {
    let row = "GET /health";
    let (s, h) = d.call(d.req_as("", Method::GET, "/health")).await?;
    rows.check(row, s == 200, || {
        format!("GET /health without auth: {s} {h}")
    });
    rows.check(row, h["status"] == "ok", || format!("status: {h}"));
    rows.check(row, is_uint(&h["sandboxes"]), || {
        format!("`sandboxes` is not a non-negative integer: {h}")
    });
    rows.check(row, h["uptime"].as_str().is_some_and(go_duration), || {
        format!("`uptime` is not a Go duration string like \"2h15m30s\": {h}")
    });
    Ok(())
}

async fn static_ui(d: &TestDaemon, rows: &mut Rows) -> TestResult {
    for path in ["/", "/index.html", "/static/app.js", "/static/style.css"] {
        let r = d.req_as("", Method::GET, path).send().await?;
        let s = r.status().as_u16();
        rows.check("static UI", s != 401, || {
            format!("GET {path} without auth answered 401 (must need no auth)")
        });
    }
    Ok(())
}

async fn errors(d: &TestDaemon, rows: &mut Rows) -> TestResult {
    let row = "errors";
    let (s, e) = d.call(d.req_as("", Method::GET, "/sandboxes")).await?;
    rows.check(row, s == 401 && is_error(&e), || {
        format!("GET /sandboxes without auth: want 401 {{\"error\":string}}, got {s} {e}")
    });
    let (s, e) = d.call(d.req(Method::GET, "/sandboxes/no-such-box")).await?;
    rows.check(row, s == 404 && is_error(&e), || {
        format!("GET /sandboxes/no-such-box: want 404 {{\"error\":string}}, got {s} {e}")
    });
    for (path, body) in [
        ("/sandboxes", "{not json"),
        ("/sandboxes", r#"{"cpus": "two"}"#),
        ("/sandboxes", r#"{"name": 7}"#),
        ("/volumes", r#"{"size_mb": 64}"#),
        ("/secrets", r#"{"name": "X"}"#),
        ("/templates", "[]"),
    ] {
        let r = d
            .req(Method::POST, path)
            .header("content-type", "application/json")
            .body(body);
        let (s, e) = d.call(r).await?;
        rows.check(row, s == 400 && is_error(&e), || {
            format!("POST {path} {body}: want 400 {{\"error\":string}}, got {s} {e}")
        });
    }
    let big = format!("{{\"name\": \"v\", \"pad\": \"{}\"}}", "a".repeat(2 << 20));
    let r = d
        .req(Method::POST, "/volumes")
        .header("content-type", "application/json")
        .body(big);
    let (s, e) = d.call(r).await?;
    rows.check(row, s == 413 && is_error(&e), || {
        format!("POST /volumes with a 2 MiB body: want 413 {{\"error\":string}}, got {s} {e}")
    });
    let r = d.req(Method::GET, "/no/such/route").send().await?;
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let s = r.status().as_u16();
    let e: serde_json::Value = serde_json::from_str(&r.text().await?).unwrap_or_default();
    rows.check(
        row,
        s == 404 && is_error(&e) && ct.starts_with("application/json"),
        || format!("unknown route: want 404 JSON {{\"error\":string}}, got {s} {ct} {e}"),
    );
    Ok(())
}

/// A script's `curl -d '{…}'` sends the JSON as
/// `application/x-www-form-urlencoded` (or with no type at all); v1 read
/// the body as JSON whatever the type, so this daemon must too.
async fn curl_bodies(d: &TestDaemon, rows: &mut Rows) -> TestResult {
    let row = "unknown JSON fields in requests";
    for (ct, name) in [
        (Some("application/x-www-form-urlencoded"), "CURL_FORM"),
        (None, "CURL_NONE"),
    ] {
        let mut r = d
            .req(Method::POST, "/secrets")
            .body(format!(r#"{{"name":"{name}","value":"x"}}"#));
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        let (s, v) = d.call(r).await?;
        rows.check(row, s == 201, || {
            format!(
                "POST /secrets as `curl -d` sends it (Content-Type {ct:?}): want 201, got {s} {v}"
            )
        });
    }
    Ok(())
}
