//! Sandboxes: CRUD lifecycle with stop/start keeping data; auth, another
//! user's sandbox, quotas and bad input.

use bhatti_store::users::Limits;
use reqwest::Method;
use serde_json::json;

use crate::support::{TestDaemon, TestResult, Timers, ensure, run};

pub fn crud_lifecycle() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let sb = d.create("web").await?;
        ensure(
            sb["name"] == "web" && sb["status"] == "running" && sb["thermal"] == "hot",
            || format!("created: {sb}"),
        )?;
        let id = sb["id"].as_str().unwrap_or_default().to_owned();
        ensure(
            sb["cpus"] == 1 && sb["memory_mb"] == 256 && sb.get("stopped_at").is_none(),
            || format!("sizes: {sb}"),
        )?;
        // Duplicate live name.
        let (s, e) = d
            .call(
                d.req(Method::POST, "/sandboxes")
                    .json(&json!({"name": "web"})),
            )
            .await?;
        ensure(s == 409 && e["error"].is_string(), || {
            format!("duplicate: {s} {e}")
        })?;
        // By id and by name; list.
        let by_id = d
            .expect(d.req(Method::GET, &format!("/sandboxes/{id}")), 200)
            .await?;
        let by_name = d.expect(d.req(Method::GET, "/sandboxes/web"), 200).await?;
        ensure(by_id == by_name, || format!("{by_id} vs {by_name}"))?;
        let list = d.expect(d.req(Method::GET, "/sandboxes"), 200).await?;
        ensure(list.as_array().is_some_and(|a| a.len() == 1), || {
            format!("list: {list}")
        })?;
        // Rename and keep_hot.
        let p = d
            .expect(
                d.req(Method::PATCH, "/sandboxes/web")
                    .json(&json!({"name": "site", "keep_hot": true})),
                200,
            )
            .await?;
        ensure(p["name"] == "site" && p["keep_hot"] == true, || {
            format!("patch: {p}")
        })?;
        // Data survives stop/start.
        d.sh("site", "echo kept > \"$HOME/data.txt\"").await?;
        let st = d
            .expect(d.req(Method::POST, "/sandboxes/site/stop"), 200)
            .await?;
        ensure(
            st["status"] == "stopped" && st["stopped_at"].is_string(),
            || format!("stop: {st}"),
        )?;
        // As in v1, a call that needs the VM starts a stopped sandbox.
        let out = d.sh("site", "cat \"$HOME/data.txt\"").await?;
        ensure(out == "kept\n", || format!("exec on stopped: {out:?}"))?;
        let st = d.expect(d.req(Method::GET, "/sandboxes/site"), 200).await?;
        ensure(st["status"] == "running", || format!("after exec: {st}"))?;
        d.expect(d.req(Method::POST, "/sandboxes/site/stop"), 200)
            .await?;
        let st = d
            .expect(d.req(Method::POST, "/sandboxes/site/start"), 200)
            .await?;
        ensure(st["status"] == "running" && st["thermal"] == "hot", || {
            format!("start: {st}")
        })?;
        let out = d.sh("site", "cat \"$HOME/data.txt\"").await?;
        ensure(out == "kept\n", || format!("after restart: {out:?}"))?;
        // Delete; the name is free again.
        let del = d
            .expect(d.req(Method::DELETE, "/sandboxes/site"), 200)
            .await?;
        ensure(del == json!({"status": "destroyed"}), || {
            format!("delete: {del}")
        })?;
        d.expect(d.req(Method::GET, &format!("/sandboxes/{id}")), 404)
            .await?;
        let list = d.expect(d.req(Method::GET, "/sandboxes"), 200).await?;
        ensure(list == json!([]), || format!("list after delete: {list}"))?;
        d.finish().await
    })
}

#[allow(clippy::too_many_lines)] // one scenario on one daemon, step by step
pub fn auth_isolation_quota_bad_input() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        // Public routes; everything else needs a key.
        let h = d.expect(d.req_as("", Method::GET, "/health"), 200).await?;
        ensure(h["status"] == "ok" && h["version"].is_string(), || {
            format!("health: {h}")
        })?;
        d.expect(d.req_as("", Method::GET, "/openapi.json"), 200)
            .await?;
        let e = d
            .expect(d.req_as("", Method::GET, "/sandboxes"), 401)
            .await?;
        ensure(e["error"].is_string(), || format!("401 body: {e}"))?;
        d.expect(d.req_as("bht_nope", Method::GET, "/sandboxes"), 401)
            .await?;
        let fake = format!("bht_{}", "0".repeat(64));
        d.expect(d.req_as(&fake, Method::GET, "/sandboxes"), 401)
            .await?;
        // ?token= is refused outside WebSocket upgrades.
        let q = format!("/sandboxes?token={}", d.key);
        d.expect(d.req_as("", Method::GET, &q), 401).await?;

        // Quota: bob may have one sandbox, one CPU, 512 MB.
        let bob = d.user(
            "bob",
            Limits {
                max_sandboxes: 1,
                max_cpus: 1,
                max_memory_mb: 512,
                ..Limits::default()
            },
        )?;
        let (s, e) = d
            .call(
                d.req_as(&bob, Method::POST, "/sandboxes")
                    .json(&json!({"cpus": 2})),
            )
            .await?;
        ensure(
            s == 400 && e["error"].as_str().is_some_and(|m| m.contains("cpus")),
            || format!("cpus over limit: {s} {e}"),
        )?;
        let (s, e) = d
            .call(
                d.req_as(&bob, Method::POST, "/sandboxes")
                    .json(&json!({"memory_mb": 1024})),
            )
            .await?;
        ensure(s == 400, || format!("memory over limit: {s} {e}"))?;
        let sb = d
            .expect(
                d.req_as(&bob, Method::POST, "/sandboxes")
                    .json(&json!({"memory_mb": 256})),
                201,
            )
            .await?;
        ensure(sb["name"].as_str().is_some_and(|n| !n.is_empty()), || {
            format!("generated name: {sb}")
        })?;
        let bob_sb = sb["id"].as_str().unwrap_or_default().to_owned();
        let e = d
            .expect(
                d.req_as(&bob, Method::POST, "/sandboxes").json(&json!({})),
                429,
            )
            .await?;
        ensure(e["error"] == "sandbox limit reached (1/1)", || {
            format!("quota: {e}")
        })?;

        // Another user's sandbox does not exist for alice.
        for (m, p) in [
            (Method::GET, format!("/sandboxes/{bob_sb}")),
            (Method::DELETE, format!("/sandboxes/{bob_sb}")),
            (Method::POST, format!("/sandboxes/{bob_sb}/stop")),
            (
                Method::GET,
                format!("/sandboxes/{bob_sb}/files?path=/etc/hostname"),
            ),
        ] {
            d.expect(d.req(m.clone(), &p), 404).await?;
        }
        d.expect(
            d.req(Method::POST, &format!("/sandboxes/{bob_sb}/exec"))
                .json(&json!({"cmd": ["true"]})),
            404,
        )
        .await?;
        let alice_list = d.expect(d.req(Method::GET, "/sandboxes"), 200).await?;
        ensure(alice_list == json!([]), || {
            format!("alice sees {alice_list}")
        })?;

        // Bad input: each a 400 with a message, nothing created.
        let exec = format!("/sandboxes/{bob_sb}/exec");
        for (path, body) in [
            ("/sandboxes", "{not json"),
            ("/sandboxes", r#"{"name": "bad name!"}"#),
            ("/sandboxes", r#"{"name": 7}"#),
            ("/sandboxes", r#"{"cpus": "two"}"#),
            ("/sandboxes", r#"{"cpus": -1}"#),
            ("/sandboxes", r#"{"image": "windows"}"#),
            ("/sandboxes", r#"{"env": {"1BAD": "x"}}"#),
            (
                "/sandboxes",
                r#"{"files": [{"path": "rel/x", "content_b64": ""}]}"#,
            ),
            (exec.as_str(), r#"{"cmd": []}"#),
            (exec.as_str(), "{\"cmd\": [\"echo\", \"a\\u0000b\"]}"),
            (exec.as_str(), r#"{"cmd": ["true"], "timeout_sec": 0}"#),
        ] {
            let r = d
                .req_as(&bob, Method::POST, path)
                .header("content-type", "application/json")
                .body(body);
            let (s, e) = d.call(r).await?;
            ensure(s == 400 && e["error"].is_string(), || {
                format!("{path} {body}: {s} {e}")
            })?;
        }
        let files = format!("/sandboxes/{bob_sb}/files?path=/tmp/a%00b");
        d.expect(d.req_as(&bob, Method::GET, &files), 400).await?;
        let proxy = format!("/sandboxes/{bob_sb}/proxy/70000/");
        d.expect(d.req_as(&bob, Method::GET, &proxy), 400).await?;
        // Too large a JSON body.
        let big = format!("{{\"name\": \"{}\"}}", "a".repeat(2 << 20));
        let r = d
            .req_as(&bob, Method::POST, "/sandboxes")
            .header("content-type", "application/json")
            .body(big);
        let resp = r.send().await?;
        ensure(
            resp.status() == 413 && resp.headers()["connection"] == "close",
            || format!("too large a body: {resp:?}"),
        )?;
        // Unknown route and method: JSON errors too.
        let e = d.expect(d.req(Method::GET, "/nope"), 404).await?;
        ensure(e["error"].is_string(), || format!("404 body {e}"))?;
        d.expect(d.req(Method::PUT, "/sandboxes"), 405).await?;
        // Rate limit: creates are 30 a minute per user, then 429 with
        // Retry-After (invalid requests count too); others are unaffected.
        let carol = d.user("carol", Limits::default())?;
        let mut statuses = Vec::new();
        for _ in 0..31 {
            let r = d.req_as(&carol, Method::POST, "/sandboxes").body("{bad");
            let resp = r.send().await?;
            statuses.push((
                resp.status().as_u16(),
                resp.headers().contains_key("retry-after"),
            ));
        }
        ensure(
            statuses[..30].iter().all(|s| s.0 == 400) && statuses[30] == (429, true),
            || format!("rate limit: {statuses:?}"),
        )?;
        d.expect(d.req_as(&carol, Method::GET, "/sandboxes"), 200)
            .await?;
        // Still serving.
        let list = d
            .expect(d.req_as(&bob, Method::GET, "/sandboxes"), 200)
            .await?;
        ensure(list.as_array().is_some_and(|a| a.len() == 1), || {
            format!("bob: {list}")
        })?;
        d.finish().await
    })
}
