//! Tenant isolation on the sandbox network, attacked from a guest with
//! root: alice's `minimal` guest (passwordless sudo, python3) runs
//! `guest/attack.py` against bob's guest and her own. Checked: same-user
//! guests reach each other, other users' and peer-less guests do not, no
//! guest reaches a service in the daemon's namespace, an ARP and MAC
//! spoof of bob's address leaves the daemon talking to bob (and the
//! spoofer receives no connection), and a promiscuous sniffer sees none of
//! bob's traffic while it does see its own.

use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use bhatti_engine::netns::NetNs;
use bhatti_engine::network::{guest_mac, mac_string};
use bhatti_store::users::Limits;
use bhatti_testkit::Need;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestDaemon, TestResult, Timers, ensure, eventually, run};

const ATTACK: &str = include_str!("guest/attack.py");
/// Requests made to bob's sandbox while the spoofer and sniffer run.
const ROUNDS: usize = 8;

/// What this test needs beyond a daemon: the attacker is a minimal-tier
/// guest.
pub const NEEDS: &[Need] = &[Need::MinimalImage];

async fn create(d: &TestDaemon, key: &str, body: Value) -> Result<Ipv4Addr, libtest_mimic::Failed> {
    let sb = d
        .expect(d.req_as(key, Method::POST, "/sandboxes").json(&body), 201)
        .await?;
    Ok(sb["ip"].as_str().unwrap_or_default().parse()?)
}

async fn sh_as(
    d: &TestDaemon,
    key: &str,
    sb: &str,
    script: &str,
) -> Result<String, libtest_mimic::Failed> {
    let body = json!({"cmd": ["sh", "-c", script], "timeout_sec": 60});
    let v = d
        .expect(
            d.req_as(key, Method::POST, &format!("/sandboxes/{sb}/exec"))
                .json(&body),
            200,
        )
        .await?;
    ensure(v["exit_code"] == 0, || format!("`{script}` in {sb}: {v}"))?;
    Ok(v["stdout"].as_str().unwrap_or_default().trim().to_owned())
}

/// Starts a one-shot TCP server in a busybox guest that sends `reply`.
async fn serve(d: &TestDaemon, key: &str, sb: &str, port: u16, reply: &str) -> TestResult {
    let script =
        format!("(while :; do echo {reply} | nc -l -p {port}; done) </dev/null >/dev/null 2>&1 &");
    sh_as(d, key, sb, &script).await.map(drop)
}

/// PATCHes alice's `sb` to `peers` and checks the sandbox object says so.
async fn set_peers(d: &TestDaemon, sb: &str, peers: bool) -> TestResult {
    let v = d
        .expect(
            d.req(Method::PATCH, &format!("/sandboxes/{sb}"))
                .json(&json!({ "peers": peers })),
            200,
        )
        .await?;
    ensure(v["peers"] == peers, || format!("{sb} after PATCH: {v}"))
}

/// What alice's attacker guest gets connecting to `ip:port`.
async fn probe(
    d: &TestDaemon,
    ip: impl std::fmt::Display,
    port: u16,
) -> Result<String, libtest_mimic::Failed> {
    sh_as(
        d,
        &d.key,
        "a1",
        &format!("python3 /tmp/attack.py probe {ip} {port}"),
    )
    .await
}

#[allow(clippy::too_many_lines)] // one scenario on one daemon, step by step
pub fn tenants_cannot_reach_or_impersonate_each_other() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let bob = d.user("bob", Limits::default())?;
        create(
            &d,
            &d.key,
            json!({"name": "a1", "image": "minimal", "memory_mb": 256,
                   "files": [{"path": "/tmp/attack.py", "content_b64": b64(ATTACK)}]}),
        )
        .await?;
        let a2 = create(&d, &d.key, json!({"name": "a2", "memory_mb": 128})).await?;
        let a3 = create(
            &d,
            &d.key,
            json!({"name": "a3", "memory_mb": 128, "peers": false}),
        )
        .await?;
        let b1 = create(&d, &bob, json!({"name": "b1", "memory_mb": 128})).await?;
        serve(&d, &d.key, "a2", 7002, "alice-two").await?;
        serve(&d, &d.key, "a3", 7003, "alice-three").await?;
        serve(&d, &bob, "b1", 7001, "bob-data").await?;
        sh_as(&d, &bob, "b1", "echo bob-real > /tmp/who").await?;

        // Same user: reachable. Other user, or a sandbox without peers: not.
        let same = probe(&d, a2, 7002).await?;
        ensure(same == "alice-two", || {
            format!("a1 -> a2 (same user): {same}")
        })?;
        for (ip, port, what) in [(b1, 7001, "bob's guest"), (a3, 7003, "a peer-less guest")] {
            let got = probe(&d, ip, port).await?;
            ensure(got.starts_with("fail"), || format!("a1 -> {what}: {got}"))?;
        }
        let from_a2 = sh_as(
            &d,
            &d.key,
            "a2",
            &format!("nc -w 3 {b1} 7001 </dev/null; nc -w 3 {a3} 7003 </dev/null; echo end"),
        )
        .await?;
        ensure(from_a2 == "end", || format!("a2 -> b1/a3: {from_a2:?}"))?;
        // The switch works both ways on running sandboxes and is shown.
        set_peers(&d, "a3", true).await?;
        let got = probe(&d, a3, 7003).await?;
        ensure(got == "alice-three", || {
            format!("a1 -> a3 with peers on: {got}")
        })?;
        set_peers(&d, "a2", false).await?;
        let got = probe(&d, a2, 7002).await?;
        ensure(got.starts_with("fail"), || {
            format!("a1 -> a2 with peers off: {got}")
        })?;
        set_peers(&d, "a2", true).await?;
        let from_b1 = sh_as(
            &d,
            &bob,
            "b1",
            &format!("nc -w 3 {a2} 7002 </dev/null; echo end"),
        )
        .await?;
        ensure(from_b1 == "end", || format!("b1 -> a2: {from_b1:?}"))?;

        // A service in the daemon's namespace, on the guests' gateway.
        let gw = d.state.engine.network().gateway();
        let ns = NetNs::open(d.state.engine.network().netns())?;
        let listener = ns.run(move || TcpListener::bind((gw, 0)))??;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let got = probe(&d, gw, port).await?;
        ensure(got.starts_with("fail"), || {
            format!("guest -> namespace service: {got}")
        })?;
        ensure(listener.accept().is_err(), || {
            "the namespace service accepted a guest's connection".into()
        })?;

        // ARP/MAC spoof of bob's address and a sniffer, both as root,
        // running while bob's sandbox is used.
        let b1_mac = mac_string(guest_mac(b1));
        sh_as(
            &d,
            &d.key,
            "a1",
            &format!(
                "mkdir -p /tmp/atk && sudo -n sh -c '\
                 setsid python3 /tmp/attack.py spoof {b1} {b1_mac} /tmp/atk </dev/null >/tmp/atk/spoof.log 2>&1 & \
                 setsid python3 /tmp/attack.py sniff {b1} /tmp/atk </dev/null >/tmp/atk/sniff.log 2>&1 &'"
            ),
        )
        .await?;
        eventually(Duration::from_secs(90), || async {
            let r = sh_as(&d, &d.key, "a1", "ls /tmp/atk").await?;
            Ok((r.contains("spoof.ready") && r.contains("sniff.ready")).then_some(()))
        })
        .await?;
        // Let the spoofer's first announcements land before bob is used.
        tokio::time::sleep(Duration::from_secs(2)).await;
        for round in 0..ROUNDS {
            let who = sh_as(&d, &bob, "b1", "cat /tmp/who").await?;
            ensure(who == "bob-real", || {
                format!("round {round}: bob's exec answered by {who:?}")
            })?;
            d.expect(
                d.req_as(&bob, Method::PUT, "/sandboxes/b1/files?path=/tmp/blob")
                    .body(vec![7u8; 64 * 1024]),
                200,
            )
            .await?;
        }
        // Stop both; this exec is traffic of the sniffer's own, which it
        // must have seen.
        sh_as(&d, &d.key, "a1", "touch /tmp/atk/stop").await?;
        let report = eventually(Duration::from_secs(60), || async {
            let r = sh_as(
                &d,
                &d.key,
                "a1",
                "cat /tmp/atk/*.out /tmp/atk/*.log 2>/dev/null; echo",
            )
            .await?;
            Ok((r.contains("sent=") && r.contains("victim=")).then_some(r))
        })
        .await?;
        ensure(field(&report, "sent") > 100, || {
            format!("spoofer: {report}")
        })?;
        ensure(
            field(&report, "victim") == 0 && field(&report, "own") > 0,
            || format!("sniffer: {report}"),
        )?;
        let neigh = ns.run(|| {
            std::process::Command::new("ip")
                .args(["neigh", "show", &b1.to_string()])
                .output()
        })??;
        let neigh = String::from_utf8_lossy(&neigh.stdout).into_owned();
        ensure(
            neigh.contains(&b1_mac) && neigh.contains("PERMANENT"),
            || format!("bob's neighbour entry: {neigh}"),
        )?;
        d.finish().await
    })
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `key=N` from the attacker's report (0 when absent).
fn field(report: &str, key: &str) -> u64 {
    report
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
