//! Snapshots that cannot be restored, and sandboxes that cannot be
//! snapshotted: a damaged snapshot (its memory file cut short) or one
//! whose files are gone is shown `broken` with the problem, a create from
//! it fails (422) and leaves no sandbox, and it can still be deleted; a
//! sandbox with a volume cannot be snapshotted or forked (409, and the
//! fork leaves no sandbox).

use bhatti_engine::engine::Engine;
use reqwest::Method;
use serde_json::json;

use crate::snapshots::{names, snapshot};
use crate::support::{TestDaemon, TestResult, Timers, ensure, run};

pub fn broken_snapshot_and_volumes_are_refused() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        d.create("src").await?;
        let s = snapshot(&d, "src", json!({"name": "bad"})).await?;
        let id = s["id"].as_str().unwrap_or_default();
        let mem = d
            .state
            .settings
            .data_dir
            .join("snapshots")
            .join(id)
            .join("mem.snap");
        let len = std::fs::metadata(&mem)?.len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&mem)?
            .set_len(len / 2)?;
        let one = d.expect(d.req(Method::GET, "/snapshots/bad"), 200).await?;
        ensure(
            one["status"] == "broken" && one["problem"].as_str().is_some_and(|p| !p.is_empty()),
            || format!("damaged: {one}"),
        )?;
        let list = d.expect(d.req(Method::GET, "/snapshots"), 200).await?;
        ensure(list[0]["status"] == "broken", || format!("list: {list}"))?;
        let (status, v) = d
            .call(
                d.req(Method::POST, "/sandboxes")
                    .json(&json!({"snapshot": "bad", "name": "from-bad"})),
            )
            .await?;
        ensure(status == 422, || {
            format!("create from a broken snapshot: {status} {v}")
        })?;
        ensure(v["error"].as_str().is_some_and(|e| !e.is_empty()), || {
            format!("no message: {v}")
        })?;
        let list = d.expect(d.req(Method::GET, "/sandboxes"), 200).await?;
        ensure(names(&list) == ["src"], || format!("left behind: {list}"))?;
        ensure(d.state.engine.list().await.len() == 1, || {
            "the engine holds more than src".into()
        })?;
        // Deleting a broken one works.
        d.expect(d.req(Method::DELETE, "/snapshots/bad"), 204)
            .await?;
        files_gone(&d).await?;

        let body = json!({"name": "vol", "memory_mb": 256,
                          "new_volumes": [{"name": "data", "size_mb": 16, "mount": "/data"}]});
        d.expect(d.req(Method::POST, "/sandboxes").json(&body), 201)
            .await?;
        d.expect(
            d.req(Method::POST, "/sandboxes/vol/snapshots")
                .json(&json!({"name": "v"})),
            409,
        )
        .await?;
        d.expect(d.req(Method::GET, "/snapshots/v"), 404).await?;
        d.expect(
            d.req(Method::POST, "/sandboxes/vol/fork")
                .json(&json!({"names": ["vol-kid"]})),
            409,
        )
        .await?;
        let list = d.expect(d.req(Method::GET, "/sandboxes"), 200).await?;
        let mut have = names(&list);
        have.sort();
        ensure(have == ["src", "vol"], || {
            format!("after a refused fork: {list}")
        })?;
        d.finish().await
    })
}

/// A snapshot whose files were removed behind the daemon's back is
/// `broken` (files missing), a create from it 422, and it can be deleted.
async fn files_gone(d: &TestDaemon) -> TestResult {
    let s = snapshot(d, "src", json!({"name": "gone"})).await?;
    let dir = d.state.settings.data_dir.join("snapshots");
    std::fs::remove_dir_all(dir.join(s["id"].as_str().unwrap_or_default()))?;
    let one = d.expect(d.req(Method::GET, "/snapshots/gone"), 200).await?;
    ensure(
        one["status"] == "broken"
            && one["problem"]
                .as_str()
                .is_some_and(|p| p.contains("missing")),
        || format!("files gone: {one}"),
    )?;
    d.expect(
        d.req(Method::POST, "/sandboxes")
            .json(&json!({"snapshot": "gone"})),
        422,
    )
    .await?;
    d.expect(d.req(Method::DELETE, "/snapshots/gone"), 204)
        .await
        .map(drop)
}
