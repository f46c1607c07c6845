//! v1's ports surface against a real daemon and a real HTTP server in the
//! guest (busybox httpd): `GET /sandboxes/{id}/ports` objects
//! (`container_port`, `proxy_url`, `host_port`, and our `port`), an HTTP
//! request to `127.0.0.1:<host_port>` answered by the guest, a stable
//! host port, `GET /ports` (with `sandbox_id`, the caller's sandboxes
//! only), a port found by the background scan alone, a forward that goes
//! when its port stops listening, a cold sandbox that `GET /ports` leaves
//! cold and a host connection wakes, a stopped sandbox whose forwards go
//! and that `GET /ports` does not start, forwards back after start and
//! closed when the daemon stops; and `host_port_bind: null` (ports
//! listed, no forwards; a destroyed sandbox's ports forgotten); and an
//! idle sandbox with a forward cools to warm and stays warm through scan
//! rounds and `GET /ports` (the scanner neither touches nor wakes it).
//! Every wait polls with a generous deadline.

use std::time::Duration;

use bhatti_engine::engine::{Engine, SandboxId};
use bhatti_engine::state::SandboxState;
use bhatti_server::hostports;
use bhatti_store::users::Limits;
use libtest_mimic::{Failed, Trial};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{TestDaemon, TestResult, Timers, ensure, eventually, run, trial};

pub fn trials() -> Vec<Trial> {
    vec![
        trial("ports::host_port_forwards", host_port_forwards),
        trial("ports::forwards_off", forwards_off),
        trial(
            "ports::scans_let_idle_sandboxes_cool",
            scans_let_idle_sandboxes_cool,
        ),
    ]
}

const PAGE: &str = "hello-through-host-port";

/// Generous: a cold restore under TCG on a loaded host.
const LONG: Duration = Duration::from_secs(90);

/// Writes the page and starts busybox httpd on `port` in the background;
/// returns its pid.
async fn serve(d: &TestDaemon, sb: &str, port: u16) -> Result<String, Failed> {
    let script = format!(
        "mkdir -p /tmp/www && echo {PAGE} > /tmp/www/index.html && \
         (busybox httpd -f -p {port} -h /tmp/www </dev/null >/dev/null 2>&1 & echo $!)"
    );
    Ok(d.sh(sb, &script).await?.trim().to_owned())
}

/// The entry of `list` for guest port `port`.
fn entry(list: &Value, port: u16) -> Option<Value> {
    list.as_array()?
        .iter()
        .find(|p| p["container_port"] == port)
        .cloned()
}

/// `GET /` on `127.0.0.1:<port>`: the whole response.
async fn http_get(port: u16) -> Result<String, Failed> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&out).into_owned())
    };
    Ok(tokio::time::timeout(LONG, fetch).await??)
}

/// Waits until nothing accepts on `127.0.0.1:<port>`.
async fn closed(port: u16) -> TestResult {
    eventually(LONG, || async {
        let c = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
        Ok(c.is_err().then_some(()))
    })
    .await
}

/// The host port of guest port `port` that the registry holds.
fn known_host_port(d: &TestDaemon, id: &str, port: u16) -> Option<u16> {
    d.state.host_ports.known(id)?.get(&port).copied().flatten()
}

async fn sandbox_ports(d: &TestDaemon, sb: &str) -> Result<Value, Failed> {
    d.expect(d.req(Method::GET, &format!("/sandboxes/{sb}/ports")), 200)
        .await
}

#[allow(clippy::too_many_lines)] // one scenario on one daemon, step by step
pub fn host_port_forwards() -> TestResult {
    run(async {
        let mut d = TestDaemon::start(Timers::default()).await?;
        let sb = d.create("hp").await?;
        let id = sb["id"].as_str().unwrap_or_default().to_owned();
        let eid: SandboxId = id.parse()?;
        let pid3000 = serve(&d, "hp", 3000).await?;

        // The per-sandbox list: v1's fields and ours.
        let p = eventually(LONG, || async {
            Ok(entry(&sandbox_ports(&d, "hp").await?, 3000))
        })
        .await?;
        let hp3000 = p["host_port"].as_u64().and_then(|n| u16::try_from(n).ok());
        ensure(
            p["port"] == 3000
                && p["proxy_url"] == format!("/sandboxes/{id}/proxy/3000/")
                && hp3000.is_some_and(|n| n > 0),
            || format!("port object {p}"),
        )?;
        let hp3000 = hp3000.unwrap_or_default();
        let resp = http_get(hp3000).await?;
        ensure(resp.starts_with("HTTP/1.") && resp.contains(PAGE), || {
            format!("through host port {hp3000}: {resp:?}")
        })?;
        // The same host port on the next scan.
        let again = entry(&sandbox_ports(&d, "hp").await?, 3000);
        ensure(
            again.as_ref().is_some_and(|p| p["host_port"] == hp3000),
            || format!("host port changed: {again:?}"),
        )?;

        // GET /ports: the caller's, with sandbox_id; bob sees none of it.
        let all = d.expect(d.req(Method::GET, "/ports"), 200).await?;
        let e = entry(&all, 3000);
        ensure(
            e.as_ref().is_some_and(|e| {
                e["sandbox_id"] == id.as_str()
                    && e["sandbox_name"] == "hp"
                    && e["host_port"] == hp3000
                    && e["proxy_url"] == p["proxy_url"]
            }),
            || format!("GET /ports: {all}"),
        )?;
        let bob = d.user("bob", Limits::default())?;
        let theirs = d.expect(d.req_as(&bob, Method::GET, "/ports"), 200).await?;
        ensure(theirs == json!([]), || {
            format!("bob's GET /ports: {theirs}")
        })?;

        // A port found by the background scan alone.
        serve(&d, "hp", 3001).await?;
        let hp3001 = eventually(LONG, || async { Ok(known_host_port(&d, &id, 3001)) }).await?;

        // The port stops listening: its forward goes.
        d.sh("hp", &format!("kill {pid3000}")).await?;
        eventually(LONG, || async {
            let gone = d
                .state
                .host_ports
                .known(&id)
                .is_some_and(|m| !m.contains_key(&3000));
            Ok(gone.then_some(()))
        })
        .await?;
        closed(hp3000).await?;

        // Cold: GET /ports shows the last scan and wakes nothing; a
        // connection to the host port wakes it.
        d.state.engine.pause(&eid).await?;
        d.state.engine.freeze(&eid).await?;
        let all = d.expect(d.req(Method::GET, "/ports"), 200).await?;
        ensure(
            entry(&all, 3001).is_some_and(|e| e["host_port"] == hp3001)
                && entry(&all, 3000).is_none(),
            || format!("GET /ports of a cold sandbox: {all}"),
        )?;
        let state = d.state.engine.status(&eid).await?.state;
        ensure(state == SandboxState::Cold, || {
            format!("GET /ports changed a cold sandbox to {state:?}")
        })?;
        let resp = http_get(hp3001).await?;
        ensure(resp.contains(PAGE), || {
            format!("waking connection: {resp:?}")
        })?;
        let state = d.state.engine.status(&eid).await?.state;
        ensure(state == SandboxState::Hot, || {
            format!("after it: {state:?}")
        })?;

        // Stopped: forwards gone; GET /ports neither lists nor starts it.
        d.expect(d.req(Method::POST, "/sandboxes/hp/stop"), 200)
            .await?;
        closed(hp3001).await?;
        let all = d.expect(d.req(Method::GET, "/ports"), 200).await?;
        ensure(all == json!([]), || format!("GET /ports, stopped: {all}"))?;
        let v = d.expect(d.req(Method::GET, "/sandboxes/hp"), 200).await?;
        ensure(v["status"] == "stopped", || {
            format!("after GET /ports: {v}")
        })?;
        let state = d.state.engine.status(&eid).await?.state;
        ensure(state == SandboxState::Stopped, || {
            format!("engine: {state:?}")
        })?;

        // Started again (httpd restored with it): a forward again, closed
        // when the daemon stops.
        d.expect(d.req(Method::POST, "/sandboxes/hp/start"), 200)
            .await?;
        let hp = eventually(LONG, || async { Ok(known_host_port(&d, &id, 3001)) }).await?;
        let resp = http_get(hp).await?;
        ensure(resp.contains(PAGE), || format!("after start: {resp:?}"))?;
        d.stop_serving().await?;
        closed(hp).await?;
        d.finish().await
    })
}

/// The background scan neither keeps a sandbox hot nor wakes it: with a
/// forward open, an idle sandbox goes warm and stays warm through scan
/// rounds and `GET /ports`; a host connection then wakes it.
pub fn scans_let_idle_sandboxes_cool() -> TestResult {
    run(async {
        let t = Timers {
            warm_after: 4,
            cold_after: 3600,
            tick: 1,
        };
        let d = TestDaemon::start(t).await?;
        let sb = d.create("idle").await?;
        let id = sb["id"].as_str().unwrap_or_default().to_owned();
        let eid: SandboxId = id.parse()?;
        serve(&d, "idle", 3000).await?;
        let p = eventually(LONG, || async {
            Ok(entry(&sandbox_ports(&d, "idle").await?, 3000))
        })
        .await?;
        let hp = p["host_port"].as_u64().unwrap_or_default();
        let state = || async { Ok::<_, Failed>(d.state.engine.status(&eid).await?.state) };
        eventually(LONG, || async {
            Ok((state().await? == SandboxState::Warm).then_some(()))
        })
        .await?;
        // Two scan rounds and more: still warm.
        tokio::time::sleep(hostports::scan::SCAN_EVERY * 2 + Duration::from_secs(1)).await;
        let all = d.expect(d.req(Method::GET, "/ports"), 200).await?;
        ensure(
            entry(&all, 3000).is_some_and(|e| e["host_port"] == hp),
            || format!("GET /ports of a warm sandbox: {all}"),
        )?;
        let now = state().await?;
        ensure(now == SandboxState::Warm, || {
            format!("scans or GET /ports moved a warm sandbox to {now:?}")
        })?;
        let resp = http_get(u16::try_from(hp)?).await?;
        ensure(resp.contains(PAGE), || {
            format!("waking connection: {resp:?}")
        })?;
        d.finish().await
    })
}

/// `host_port_bind: null`: ports are listed, none is forwarded.
pub fn forwards_off() -> TestResult {
    run(async {
        let d = TestDaemon::start_with(Timers::default(), |c| c.host_port_bind = None).await?;
        let sb = d.create("off").await?;
        let id = sb["id"].as_str().unwrap_or_default().to_owned();
        serve(&d, "off", 3000).await?;
        let p = eventually(LONG, || async {
            Ok(entry(&sandbox_ports(&d, "off").await?, 3000))
        })
        .await?;
        ensure(
            p["port"] == 3000 && p["host_port"].is_null() && p["proxy_url"].is_string(),
            || format!("port object {p}"),
        )?;
        let all = d.expect(d.req(Method::GET, "/ports"), 200).await?;
        ensure(
            entry(&all, 3000)
                .is_some_and(|e| e["sandbox_id"] == id.as_str() && e["host_port"].is_null()),
            || format!("GET /ports: {all}"),
        )?;
        // Destroyed: nothing is known of its ports.
        d.expect(d.req(Method::DELETE, "/sandboxes/off"), 200)
            .await?;
        eventually(LONG, || async {
            Ok(d.state.host_ports.known(&id).is_none().then_some(()))
        })
        .await?;
        d.finish().await
    })
}
