//! The guest user through the API: one rule for exec, shells and file
//! writes — v1's by default (commands as root, API-written files owned by
//! the sandbox user `lohar`), a sandbox's or template's `user` for all of
//! its requests, and a `user` per exec, shell and file write that wins.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{TestDaemon, TestResult, Timers, ensure, run};

/// `sh -c script` in `sb` as `user` (`None`: the default).
async fn sh_as(
    d: &TestDaemon,
    sb: &str,
    user: Option<&str>,
    script: &str,
) -> Result<Value, libtest_mimic::Failed> {
    let mut body = json!({"cmd": ["sh", "-c", script], "timeout_sec": 60});
    if let Some(u) = user {
        body["user"] = json!(u);
    }
    d.expect(
        d.req(Method::POST, &format!("/sandboxes/{sb}/exec"))
            .json(&body),
        200,
    )
    .await
}

/// Writes `data` to `path` in `sb` with `query` appended.
async fn put(d: &TestDaemon, sb: &str, path: &str, query: &str) -> TestResult {
    d.expect(
        d.req(
            Method::PUT,
            &format!("/sandboxes/{sb}/files?path={path}{query}"),
        )
        .body("x"),
        200,
    )
    .await
    .map(drop)
}

pub fn one_rule_through_the_api() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        // Default: v1's rule.
        d.create("plain").await?;
        let v = sh_as(&d, "plain", None, "id -u").await?;
        ensure(v["stdout"] == "0\n", || format!("default exec: {v}"))?;
        put(&d, "plain", "/root/api.txt", "").await?;
        let v = sh_as(
            &d,
            "plain",
            None,
            "stat -c %u /root/api.txt && cat /root/api.txt",
        )
        .await?;
        ensure(v["stdout"] == "1000\nx", || {
            format!("API file in /root: {v}")
        })?;
        // Per request.
        let v = sh_as(&d, "plain", Some("lohar"), "id -u; echo $HOME").await?;
        ensure(v["stdout"] == "1000\n/home/lohar\n", || {
            format!("exec as lohar: {v}")
        })?;
        put(&d, "plain", "/root/mine.txt", "&user=root").await?;
        let v = sh_as(&d, "plain", None, "stat -c %u /root/mine.txt").await?;
        ensure(v["stdout"] == "0\n", || format!("write as root: {v}"))?;
        shell_as(&d, "plain", "lohar", "1000").await?;
        // Bad users: 400 before anything runs; an unknown one from the guest.
        for (user, what) in [("no-such-user", "unknown"), ("bad user!", "malformed")] {
            let body = json!({"cmd": ["true"], "user": user});
            let (s, e) = d
                .call(d.req(Method::POST, "/sandboxes/plain/exec").json(&body))
                .await?;
            ensure(s == 400 && e["error"].is_string(), || {
                format!("{what} user: {s} {e}")
            })?;
        }
        let body = json!({"name": "bad", "user": "-x"});
        d.expect(d.req(Method::POST, "/sandboxes").json(&body), 400)
            .await?;

        // Per sandbox, from a template; the request still wins.
        let t = json!({"name": "as-lohar", "memory_mb": 256, "user": "lohar"});
        d.expect(d.req(Method::POST, "/templates").json(&t), 201)
            .await?;
        let body = json!({"name": "tpl", "template_id": "as-lohar"});
        let sb = d
            .expect(d.req(Method::POST, "/sandboxes").json(&body), 201)
            .await?;
        ensure(sb["user"] == "lohar", || format!("sandbox object: {sb}"))?;
        let v = sh_as(&d, "tpl", None, "id -u").await?;
        ensure(v["stdout"] == "1000\n", || format!("sandbox user: {v}"))?;
        let v = sh_as(&d, "tpl", Some("root"), "id -u").await?;
        ensure(v["stdout"] == "0\n", || {
            format!("request over sandbox: {v}")
        })?;
        put(&d, "tpl", "/workspace/t.txt", "").await?;
        let v = sh_as(&d, "tpl", None, "stat -c %u /workspace/t.txt").await?;
        ensure(v["stdout"] == "1000\n", || {
            format!("sandbox user's file: {v}")
        })?;
        d.finish().await
    })
}

/// A shell opened with `?user=` runs as that user.
async fn shell_as(d: &TestDaemon, sb: &str, user: &str, uid: &str) -> TestResult {
    let url = format!(
        "{}/sandboxes/{sb}/ws?new=true&user={user}&token={}",
        d.url.replace("http://", "ws://"),
        d.key
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    ws.send(Message::Binary(b"echo uid=$(id -u)=\n".to_vec().into()))
        .await?;
    let want = format!("uid={uid}=");
    let mut seen = String::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen.contains(&want) {
        let m = tokio::time::timeout_at(end, ws.next())
            .await
            .map_err(|_| format!("no {want:?} in {seen:?}"))?
            .ok_or_else(|| format!("closed; saw {seen:?}"))??;
        if let Message::Binary(b) = m {
            seen.push_str(&String::from_utf8_lossy(&b));
        }
    }
    Ok(())
}
