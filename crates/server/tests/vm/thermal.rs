//! Thermal transitions with short timeouts: an idle sandbox goes hot →
//! warm → cold, listing never wakes it, the next request wakes it
//! transparently; `keep_hot` exempts a sandbox.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::{TestDaemon, TestResult, Timers, ensure, eventually, run};

pub fn idle_cools_and_wakes() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers {
            warm_after: 2,
            cold_after: 4,
            tick: 1,
        })
        .await?;
        d.create("th").await?;
        d.sh("th", "echo before > /tmp/state").await?;
        let thermal = |want: &'static str| {
            let d = &d;
            move || async move {
                let v = d.expect(d.req(Method::GET, "/sandboxes/th"), 200).await?;
                Ok((v["thermal"] == want).then_some(v))
            }
        };
        eventually(Duration::from_secs(60), thermal("warm")).await?;
        let cold = eventually(Duration::from_secs(120), thermal("cold")).await?;
        ensure(cold["status"] == "running", || format!("cold: {cold}"))?;
        // Listing does not wake it.
        d.expect(d.req(Method::GET, "/sandboxes"), 200).await?;
        let v = d.expect(d.req(Method::GET, "/sandboxes/th"), 200).await?;
        ensure(v["thermal"] == "cold", || format!("after list: {v}"))?;
        let id = bhatti_engine::engine::SandboxId::try_from(
            v["id"].as_str().unwrap_or_default().to_owned(),
        )?;
        let restores = d.state.engine.restore_count(&id)?;
        // Transparent wake, memory state intact.
        let out = d.sh("th", "cat /tmp/state").await?;
        ensure(out == "before\n", || format!("after wake: {out:?}"))?;
        ensure(d.state.engine.restore_count(&id)? == restores + 1, || {
            "not restored once".into()
        })?;
        let v = d.expect(d.req(Method::GET, "/sandboxes/th"), 200).await?;
        ensure(v["thermal"] == "hot", || format!("after wake: {v}"))?;

        // keep_hot: stays hot well past both timeouts.
        d.expect(
            d.req(Method::PATCH, "/sandboxes/th")
                .json(&json!({"keep_hot": true})),
            200,
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(7)).await;
        let v = d.expect(d.req(Method::GET, "/sandboxes/th"), 200).await?;
        ensure(v["thermal"] == "hot", || format!("keep_hot: {v}"))?;
        d.finish().await
    })
}
