//! Recovery after the daemon is killed with SIGKILL ([`crate::crash`]),
//! holding a hot sandbox with a shell session, a cold one, a stopped one
//! and one whose VMM was killed behind its back. After a restart on the
//! same data dir and namespace: the hot one is the same VMM, its memory
//! and its shell's scrollback intact; the cold one wakes and the stopped
//! one starts with their data; the one whose VMM died boots from its disk
//! with every acknowledged write; and the host holds exactly the VMMs,
//! TAPs and dirs of live sandboxes. A graceful stop (SIGTERM, the default
//! `on_shutdown: keep`) then leaves the hot one running too.

use std::time::Duration;

use futures_util::SinkExt;
use libtest_mimic::Failed;
use reqwest::Method;
use tokio_tungstenite::tungstenite::Message;

use crate::crash::{Crashable, crash_test};
use crate::shell::{Ws, hello, read_until};
use crate::support::{TestResult, Timers, ensure, eventually};

pub fn sigkill_and_restart() -> TestResult {
    crash_test(
        "bhatti-rec-",
        Timers {
            warm_after: 2,
            cold_after: 4,
            tick: 1,
        },
        |d| Box::pin(scenario(d)),
    )
}

/// A shell in `sb`: (session id, socket).
async fn shell(d: &Crashable, sb: &str, query: &str) -> Result<(String, Ws), Failed> {
    let url = format!(
        "{}/sandboxes/{sb}/ws?control=1&token={}{query}",
        d.url.replace("http://", "ws://"),
        d.key
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    Ok((hello(&mut ws).await?, ws))
}

#[allow(clippy::too_many_lines)] // one scenario on one daemon, step by step
async fn scenario(d: &mut Crashable) -> TestResult {
    d.start(None).await?;
    let mut ids = std::collections::HashMap::new();
    for (name, keep_hot) in [
        ("cold", false),
        ("stopped", false),
        ("hot", true),
        ("died", true),
    ] {
        let v = d.create(name, keep_hot).await?;
        ids.insert(name, v["id"].as_str().unwrap_or_default().to_owned());
    }
    d.sh("cold", "echo cold-data > \"$HOME/f\"").await?;
    d.sh("stopped", "echo stopped-data > \"$HOME/f\"").await?;
    let (s, _) = d
        .call(Method::POST, "/sandboxes/stopped/stop", None)
        .await?;
    ensure(s == 200, || format!("stop: {s}"))?;
    d.sh("hot", "echo in-ram > /tmp/m").await?;
    let (sid, mut ws) = shell(d, "hot", "&new=true").await?;
    ws.send(Message::Binary(b"echo mark-$((6*7))\n".to_vec().into()))
        .await?;
    read_until(&mut ws, "mark-42").await?;
    drop(ws);

    // An acknowledged write, then its VMM dies: noticed at once, and the
    // write is on the disk.
    let r = d
        .http
        .put(format!(
            "{}/sandboxes/died/files?path=/workspace/acked",
            d.url
        ))
        .bearer_auth(&d.key)
        .body("acked-data")
        .send()
        .await?;
    ensure(r.status() == 200, || format!("put: {}", r.status()))?;
    let pids = d.vmm_pids(&ids["died"]);
    let pid = *pids.first().ok_or("no VMM for died")?;
    let pid = rustix::process::Pid::from_raw(pid).ok_or("pid 0")?;
    rustix::process::kill_process(pid, rustix::process::Signal::KILL)?;
    let v = eventually(Duration::from_secs(10), || async {
        let v = d.get("died").await?;
        Ok((v["thermal"] == "cold").then_some(v))
    })
    .await?;
    ensure(
        v["status"] == "running"
            && v["status_reason"]
                .as_str()
                .is_some_and(|r| r.contains("memory is lost")),
        || format!("dead VMM: {v}"),
    )?;
    eventually(Duration::from_secs(120), || async {
        Ok((d.get("cold").await?["thermal"] == "cold").then_some(()))
    })
    .await?;
    let hot_pids = d.vmm_pids(&ids["hot"]);
    ensure(hot_pids.len() == 1, || format!("hot VMMs {hot_pids:?}"))?;

    d.kill9()?;
    d.start(None).await?;

    // Adopted: the same process, memory and shell kept.
    let hot = d.get("hot").await?;
    ensure(
        hot["status"] == "running" && hot["thermal"] == "hot",
        || format!("hot after restart: {hot}"),
    )?;
    ensure(d.vmm_pids(&ids["hot"]) == hot_pids, || {
        format!(
            "hot's VMM changed: {:?} vs {hot_pids:?}",
            d.vmm_pids(&ids["hot"])
        )
    })?;
    let out = d.sh("hot", "cat /tmp/m").await?;
    ensure(out == "in-ram\n", || format!("hot memory: {out:?}"))?;
    let (again, mut ws) = shell(d, "hot", &format!("&session={sid}")).await?;
    ensure(again == sid, || format!("reattached {again}, wanted {sid}"))?;
    read_until(&mut ws, "mark-42").await?;
    drop(ws);
    // Every live sandbox has its TAP; only hot has a VMM (the rest are
    // cold, stopped, or waiting to boot from disk).
    d.ensure_host(1, 4, 4, "after restart")?;

    let cold = d.get("cold").await?;
    ensure(
        cold["status"] == "running" && cold["thermal"] == "cold",
        || format!("cold after restart: {cold}"),
    )?;
    let out = d.sh("cold", "cat \"$HOME/f\"").await?;
    ensure(out == "cold-data\n", || format!("cold data: {out:?}"))?;
    ensure(d.get("stopped").await?["status"] == "stopped", || {
        "stopped after restart".into()
    })?;
    let (s, v) = d
        .call(Method::POST, "/sandboxes/stopped/start", None)
        .await?;
    ensure(s == 200 && v["status"] == "running", || {
        format!("start: {s} {v}")
    })?;
    let out = d.sh("stopped", "cat \"$HOME/f\"").await?;
    ensure(out == "stopped-data\n", || format!("stopped data: {out:?}"))?;
    let out = d.sh("died", "cat /workspace/acked").await?;
    ensure(out == "acked-data", || format!("acked write: {out:?}"))?;

    // A graceful stop (on_shutdown: keep) leaves the VMs running too.
    let before = d.vmm_pids(&ids["hot"]);
    d.term().await?;
    d.start(None).await?;
    ensure(d.vmm_pids(&ids["hot"]) == before, || {
        format!(
            "SIGTERM changed hot's VMM: {:?} vs {before:?}",
            d.vmm_pids(&ids["hot"])
        )
    })?;
    let out = d.sh("hot", "cat /tmp/m").await?;
    ensure(out == "in-ram\n", || {
        format!("hot memory after SIGTERM: {out:?}")
    })?;

    for n in ["hot", "cold", "stopped", "died"] {
        let (s, v) = d
            .call(Method::DELETE, &format!("/sandboxes/{n}"), None)
            .await?;
        ensure(s == 200, || format!("delete {n}: {s} {v}"))?;
    }
    d.ensure_host(0, 0, 0, "after deleting all")
}
