//! Snapshots and the sandboxes made from them across a daemon crash
//! (SIGKILL) and restart on the same data dir: the snapshot is still
//! listed `ready` and restores again; a sandbox restored from it and a
//! forked child are adopted with their memory (their VMMs kept running);
//! a snapshot whose row was lost is deleted (no one could reach it), as
//! is a saved image whose name row was lost, while a named one stays; and
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

/// Saves `src` as images `kept` and `lost` (each with its own content);
/// returns their dirs in the engine's image store. The test then drops
/// `lost`'s row, as if the daemon died between storing the image and
/// recording its name.
async fn save_two_images(d: &Crashable) -> Result<Vec<std::path::PathBuf>, Failed> {
    let mut dirs = Vec::new();
    for name in ["kept", "lost"] {
        d.sh("src", &format!("echo {name} > /which && sync"))
            .await?;
        let v = post(d, "/sandboxes/src/image", json!({"name": name}), 201).await?;
        let id = v["id"].as_str().unwrap_or_default();
        let hex = id.strip_prefix("sha256:").unwrap_or(id);
        dirs.push(d.dir.join("images").join(hex));
    }
    ensure(dirs.iter().all(|p| p.is_dir()), || {
        format!("saved images missing: {dirs:?}")
    })?;
    Ok(dirs)
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
    let image_dirs = save_two_images(d).await?;
    d.kill9()?;
    let store = bhatti_store::Store::open(&d.dir.join("state.db"))?;
    store.delete_snapshot(&orphan_id)?;
    for user in store.list_users()? {
        let _ = store.delete_image(&user.id, "lost");
    }
    drop(store);
    d.start(None).await?;
    ensure(!files.exists(), || format!("{orphan_id} left on disk"))?;
    ensure(image_dirs[0].is_dir() && !image_dirs[1].exists(), || {
        format!("after restart, want only the first of {image_dirs:?}")
    })?;
    let (s, v) = d.call(Method::GET, "/images/kept", None).await?;
    ensure(s == 200, || format!("kept after restart: {s} {v}"))?;
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
    destroy_all(d, &["src", "copy", "kid", "late"]).await?;
    d.term().await
}

async fn destroy_all(d: &Crashable, names: &[&str]) -> TestResult {
    for sb in names {
        let (s, v) = d
            .call(Method::DELETE, &format!("/sandboxes/{sb}"), None)
            .await?;
        ensure(s == 200, || format!("destroy {sb}: {s} {v}"))?;
    }
    Ok(())
}
