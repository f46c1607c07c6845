//! The per-user storage quota of snapshots (`max_storage_mb`): a
//! snapshot is refused with 429 and a message saying how much is used
//! once the user's snapshots take their quota, and allowed again after
//! one is deleted.

use bhatti_store::users::Limits;
use libtest_mimic::Trial;
use reqwest::Method;
use serde_json::json;

use crate::support::{TestDaemon, TestResult, Timers, ensure, run, trial};

pub fn trials() -> Vec<Trial> {
    vec![trial(
        "storage::snapshot_quota_refuses_and_frees",
        snapshot_quota_refuses_and_frees,
    )]
}

pub fn snapshot_quota_refuses_and_frees() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let limits = Limits {
            max_storage_mb: 1,
            ..Limits::default()
        };
        let dave = d.user("dave", limits)?;
        let body = json!({"name": "dq", "memory_mb": 256});
        d.expect(d.req_as(&dave, Method::POST, "/sandboxes").json(&body), 201)
            .await?;
        let snap = |name: &str| {
            d.req_as(&dave, Method::POST, "/sandboxes/dq/snapshots")
                .json(&json!({ "name": name }))
        };
        // Nothing used yet: the first is taken, whatever its size.
        d.expect(snap("first"), 201).await?;
        let (status, body) = d.call(snap("second")).await?;
        let msg = body.to_string();
        ensure(
            status.as_u16() == 429 && msg.contains("storage quota"),
            || format!("over quota: {status} {msg}"),
        )?;
        ensure(msg.contains("of 1 MB"), || format!("no usage said: {msg}"))?;
        d.expect(d.req_as(&dave, Method::DELETE, "/snapshots/first"), 204)
            .await?;
        d.expect(snap("second"), 201).await?;
        d.finish().await
    })
}
