//! v1 sandbox bodies and objects: a create with fractional `cpus`, an
//! empty `name`, unknown fields, `volumes:[{name,target}]` and an `init`
//! (which runs as lohar); a
//! create whose zero `cpus`/`memory_mb` mean "default"; the sandbox
//! object's fields and types in create, get and list. Then one sandbox,
//! stopped before each call that needs its VM (exec, files, sessions,
//! ports, proxy, ws), started transparently by that call; `GET
//! /sandboxes/{id}/ports` and `GET /ports` objects, the latter waking
//! nothing.

use std::time::Duration;

use libtest_mimic::Failed;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{Rows, exec, is_text, is_uint, rfc3339_utc, sandbox_object, send};
use crate::support::{TestDaemon, TestResult, Timers, eventually, run};

#[allow(clippy::too_many_lines)] // one scenario on one daemon, step by step
pub fn create_bodies_and_object() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let mut rows = Rows::default();
        let row = "POST /sandboxes";

        // Fractional cpus (rounded up), name "" (generated), unknown
        // fields (ignored), env, init, and a volume attached at `target`.
        d.expect(
            d.req(Method::POST, "/volumes")
                .json(&json!({"name": "v1att"})),
            201,
        )
        .await?;
        let body = json!({
            "name": "", "cpus": 1.5, "memory_mb": 256, "ssh_keys": [],
            "labels": {"team": "v1"}, "env": {"FOO": "bar"},
            "init": "id -u > /tmp/init_uid",
            "volumes": [{"name": "v1att", "target": "/mnt/att"}]
        });
        let (s, sb) = send(&d, Method::POST, "/sandboxes", Some(body.clone())).await?;
        let created = rows.check(row, s == 201, || {
            format!("POST /sandboxes {body}: want 201, got {s} {sb}")
        });
        if created {
            sandbox_object(&mut rows, "create reply", &sb);
            rows.check(row, sb["cpus"] == 2, || {
                format!("cpus 1.5 must round up to 2: {sb}")
            });
            rows.check(row, is_text(&sb["name"]), || {
                format!("name \"\" must give a generated name: {sb}")
            });
            rows.check("sandbox object", sb["status"] == "running", || {
                format!("a new sandbox is running: {sb}")
            });
            let id = sb["id"].as_str().unwrap_or_default().to_owned();
            let (code, out) = exec(&d, &id, "echo $FOO", json!({})).await?;
            rows.check(row, code == 0 && out == "bar\n", || {
                format!("env FOO=bar in the guest: {code} {out:?}")
            });
            let (_, mounts) = exec(&d, &id, "cat /proc/mounts", json!({})).await?;
            rows.check("create volumes", mounts.contains(" /mnt/att "), || {
                format!("volumes[].target: nothing mounted at /mnt/att in {mounts:?}")
            });
            let (_, h) = send(&d, Method::GET, "/health", None).await?;
            rows.check("GET /health", h["sandboxes"].as_u64() >= Some(1), || {
                format!("`sandboxes` must count the running sandbox: {h}")
            });
            let uid = init_uid(&d, &id).await?;
            rows.check("users in the guest", uid == "1000", || {
                format!("the init script must run as lohar (uid 1000): `id -u` wrote {uid:?}")
            });
            // The same object through get and list.
            let (s, got) = send(&d, Method::GET, &format!("/sandboxes/{id}"), None).await?;
            rows.check("sandbox object", s == 200, || format!("get: {s} {got}"));
            sandbox_object(&mut rows, "GET /sandboxes/{id}", &got);
            let (s, list) = send(&d, Method::GET, "/sandboxes", None).await?;
            let items = list.as_array().cloned().unwrap_or_default();
            rows.check("sandbox object", s == 200 && items.len() == 1, || {
                format!("list: {s} {list}")
            });
            for it in &items {
                sandbox_object(&mut rows, "GET /sandboxes item", it);
            }
            d.expect(d.req(Method::DELETE, &format!("/sandboxes/{id}")), 200)
                .await?;
        }

        // Zero means default: 1 CPU, 512 MB.
        let body = json!({"name": "v1def", "cpus": 0, "memory_mb": 0});
        let (s, sb) = send(&d, Method::POST, "/sandboxes", Some(body.clone())).await?;
        if rows.check(row, s == 201, || {
            format!("POST /sandboxes {body}: want 201, got {s} {sb}")
        }) {
            sandbox_object(&mut rows, "create reply (defaults)", &sb);
            rows.check(row, sb["cpus"] == 1 && sb["memory_mb"] == 512, || {
                format!("cpus:0 and memory_mb:0 must mean 1 CPU, 512 MB: {sb}")
            });
        }
        d.finish().await?;
        rows.done()
    })
}

/// What the init script wrote, once it has (or what is there after 60 s).
async fn init_uid(d: &TestDaemon, id: &str) -> Result<String, Failed> {
    let got = eventually(Duration::from_secs(60), || async {
        let (code, out) = exec(d, id, "cat /tmp/init_uid", json!({})).await?;
        Ok((code == 0 && !out.trim().is_empty()).then(|| out.trim().to_owned()))
    })
    .await;
    Ok(got.unwrap_or_else(|e| format!("nothing ({e:?})")))
}

/// The name of a call that needs the VM, made on a stopped sandbox.
const WAKERS: [&str; 6] = ["exec", "files", "sessions", "ports", "proxy", "ws"];

pub fn stopped_sandbox_wakes_and_ports() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let mut rows = Rows::default();
        let sb = d.create("wake").await?;
        let id = sb["id"].as_str().unwrap_or_default().to_owned();
        d.sh(
            "wake",
            "mkdir -p /tmp/srv && echo hi-v1 > /tmp/srv/index.html && busybox httpd -p 3000 -h /tmp/srv",
        )
        .await?;
        ports(&d, &mut rows, &id).await?;
        for call in WAKERS {
            stop(&d, &mut rows, &id).await?;
            if call == "ports" {
                all_ports_wake_none(&d, &mut rows, &id).await?;
            }
            let (ok, got) = wake_by(&d, &id, call).await?;
            rows.check("stopped sandbox", ok, || {
                format!("{call} on a stopped sandbox must start it transparently: got {got}")
            });
            let (_, v) = send(&d, Method::GET, &format!("/sandboxes/{id}"), None).await?;
            if !rows.check("stopped sandbox", v["status"] == "running", || {
                format!("after {call} on a stopped sandbox: {v}")
            }) {
                d.expect(d.req(Method::POST, &format!("/sandboxes/{id}/start")), 200)
                    .await?;
            }
        }
        d.finish().await?;
        rows.done()
    })
}

async fn stop(d: &TestDaemon, rows: &mut Rows, id: &str) -> TestResult {
    let v = d
        .expect(d.req(Method::POST, &format!("/sandboxes/{id}/stop")), 200)
        .await?;
    rows.check(
        "timestamps",
        v["stopped_at"].is_null() || rfc3339_utc(&v["stopped_at"]),
        || format!("`stopped_at` must be an RFC 3339 UTC string: {v}"),
    );
    crate::support::ensure(v["status"] == "stopped", || format!("stop: {v}"))
}

/// Makes the call named `call` on the stopped sandbox: (succeeded, what
/// came back).
async fn wake_by(d: &TestDaemon, id: &str, call: &str) -> Result<(bool, String), Failed> {
    let p = |rest: &str| format!("/sandboxes/{id}/{rest}");
    let (s, v) = match call {
        "exec" => {
            let body = json!({"cmd": ["cat", "/tmp/srv/index.html"]});
            send(d, Method::POST, &p("exec"), Some(body)).await?
        }
        "files" => send(d, Method::GET, &p("files?path=/tmp/srv/index.html"), None).await?,
        "sessions" => send(d, Method::GET, &p("sessions"), None).await?,
        "ports" => send(d, Method::GET, &p("ports"), None).await?,
        "proxy" => send(d, Method::GET, &p("proxy/3000/index.html"), None).await?,
        _ => {
            let url = format!(
                "{}{}?token={}",
                d.url.replace("http://", "ws://"),
                p("ws"),
                d.key
            );
            let req = url.into_client_request()?;
            return Ok(match tokio_tungstenite::connect_async(req).await {
                Ok((ws, r)) => {
                    drop(ws);
                    (true, format!("upgraded: {}", r.status()))
                }
                Err(e) => (false, format!("upgrade refused: {e}")),
            });
        }
    };
    let ok = s == 200
        && match call {
            "exec" => v["stdout"] == "hi-v1\n",
            "files" | "proxy" => v == "hi-v1\n",
            _ => v.is_array(),
        };
    Ok((ok, format!("{s} {v}")))
}

/// `GET /sandboxes/{id}/ports` (once the server listens) and `GET /ports`:
/// v1's field names and types.
async fn ports(d: &TestDaemon, rows: &mut Rows, id: &str) -> TestResult {
    let row = "GET /sandboxes/{id}/ports";
    let path = format!("/sandboxes/{id}/ports");
    let got = eventually(Duration::from_secs(30), || async {
        let (s, v) = send(d, Method::GET, &path, None).await?;
        let found = v.as_array().and_then(|a| {
            a.iter()
                .find(|p| p["container_port"] == 3000 || p["port"] == 3000)
                .cloned()
        });
        Ok(found
            .map(|p| (s, p))
            .or_else(|| (s != 200).then_some((s, v))))
    })
    .await;
    let (s, p) = got.unwrap_or((0, Value::Null));
    rows.check(row, s == 200, || format!("GET {path}: {s} {p}"));
    port_object(rows, row, id, &p);
    let (s, all) = send(d, Method::GET, "/ports", None).await?;
    let mine = all.as_array().and_then(|a| {
        a.iter()
            .find(|p| p["sandbox_id"] == id && p["container_port"] == 3000)
            .cloned()
    });
    rows.check("GET /ports", s == 200 && mine.is_some(), || {
        format!("GET /ports must list port 3000 of {id} with sandbox_id: {s} {all}")
    });
    if let Some(p) = mine {
        port_object(rows, "GET /ports", id, &p);
    }
    Ok(())
}

fn port_object(rows: &mut Rows, row: &str, id: &str, p: &Value) {
    rows.check(row, p["container_port"] == 3000, || {
        format!("`container_port` must be the number 3000: {p}")
    });
    let url = format!("/sandboxes/{id}/proxy/3000/");
    rows.check(row, p["proxy_url"] == url.as_str(), || {
        format!("`proxy_url` must be {url:?}: {p}")
    });
    rows.check(row, is_uint(&p["host_port"]), || {
        format!("`host_port` must be a number: {p}")
    });
}

/// `GET /ports` while the sandbox is stopped: 200, not listed, not woken.
async fn all_ports_wake_none(d: &TestDaemon, rows: &mut Rows, id: &str) -> TestResult {
    let (s, all) = send(d, Method::GET, "/ports", None).await?;
    let listed = all
        .as_array()
        .is_some_and(|a| a.iter().any(|p| p["sandbox_id"] == id));
    rows.check("GET /ports", s == 200 && !listed, || {
        format!("GET /ports with the sandbox stopped: want 200 without it, got {s} {all}")
    });
    let (_, v) = send(d, Method::GET, &format!("/sandboxes/{id}"), None).await?;
    rows.check("GET /ports", v["status"] == "stopped", || {
        format!("GET /ports must wake nothing: {v}")
    });
    Ok(())
}
