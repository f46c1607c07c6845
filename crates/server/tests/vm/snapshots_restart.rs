//! Snapshots and the sandboxes made from them across a daemon crash
//! (SIGKILL) and restart on the same data dir: the snapshot is still
//! listed `ready` and restores again; a sandbox restored from it and a
//! forked child are adopted with their memory (their VMMs kept running);
//! a snapshot whose row was lost is deleted (no one could reach it); and
//! the host holds exactly the VMMs of the live sandboxes.

use libtest_mimic::Failed;
use reqwest::Method;
use serde_json::{Value, json};

use crate::crash::{Crashable, crash_test};
use crate::support::{TestResult, Timers, ensure};

pub fn snapshots_survive_a_restart() -> TestResult {
    crash_test("bhatti-snr-", Timers::default(), |d| Box::pin(scenario(d)))
}

/// `POST path body`; fails unless the status is `want`.
async fn post(d: &Crashable, path: &str, body: Value, want: u16) -> Result<Value, Failed> {
    let (s, v) = d.call(Method::POST, path, Some(body)).await?;
    ensure(s == want, || format!("POST {path}: {s} {v}"))?;
    Ok(v)
}

async fn scenario(d: &mut Crashable) -> TestResult {
    d.start(None).await?;
    d.create("src", false).await?;
    d.sh("src", "echo in-ram > /tmp/m").await?;
    post(d, "/sandboxes/src/snapshots", json!({"name": "s"}), 201).await?;
    post(
        d,
        "/sandboxes",
        json!({"snapshot": "s", "name": "copy"}),
        201,
    )
    .await?;
    post(d, "/sandboxes/src/fork", json!({"names": ["kid"]}), 201).await?;
    let before: Vec<(String, Vec<i32>)> = {
        let mut v = Vec::new();
        for sb in ["copy", "kid"] {
            let id = d.get(sb).await?["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            v.push((sb.to_owned(), d.vmm_pids(&id)));
        }
        v
    };

    // Taken, but its row lost (as if the daemon died before writing it).
    let orphan = post(d, "/sandboxes/src/snapshots", json!({"name": "o"}), 201).await?;
    let orphan_id = orphan["id"].as_str().unwrap_or_default().to_owned();

    let files = d.dir.join("snapshots").join(&orphan_id);
    ensure(files.is_dir(), || format!("{} missing", files.display()))?;
    d.kill9()?;
    bhatti_store::Store::open(&d.dir.join("state.db"))?.delete_snapshot(&orphan_id)?;
    d.start(None).await?;
    ensure(!files.exists(), || format!("{orphan_id} left on disk"))?;
    let (_, list) = d.call(Method::GET, "/snapshots", None).await?;
    ensure(list.as_array().map(Vec::len) == Some(1), || {
        format!("snapshots after restart: {list}")
    })?;

    let (s, snap) = d.call(Method::GET, "/snapshots/s", None).await?;
    ensure(s == 200 && snap["status"] == "ready", || {
        format!("snapshot after restart: {s} {snap}")
    })?;
    for (sb, pids) in &before {
        let v = d.get(sb).await?;
        let id = v["id"].as_str().unwrap_or_default();
        ensure(v["status"] == "running" && d.vmm_pids(id) == *pids, || {
            format!(
                "{sb} after restart: {v}, VMMs {:?} were {pids:?}",
                d.vmm_pids(id)
            )
        })?;
        let m = d.sh(sb, "cat /tmp/m").await?;
        ensure(m == "in-ram\n", || format!("{sb}'s memory: {m:?}"))?;
    }
    post(
        d,
        "/sandboxes",
        json!({"snapshot": "s", "name": "late"}),
        201,
    )
    .await?;
    let m = d.sh("late", "cat /tmp/m").await?;
    ensure(m == "in-ram\n", || format!("late: {m:?}"))?;
    ensure(d.all_vmm_pids().len() == 4, || {
        format!("VMMs: {:?}", d.all_vmm_pids())
    })?;
    for sb in ["src", "copy", "kid", "late"] {
        let (s, v) = d
            .call(Method::DELETE, &format!("/sandboxes/{sb}"), None)
            .await?;
        ensure(s == 200, || format!("destroy {sb}: {s} {v}"))?;
    }
    d.term().await
}
