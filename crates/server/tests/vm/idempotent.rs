//! `Idempotency-Key` on `POST /sandboxes`: creates with one key make one
//! sandbox, even at once; the key is per user, kept in the sandbox's row
//! (so a restarted daemon keeps the rule), freed by a destroy; a malformed
//! key is a 400 that creates nothing.

use bhatti_store::users::Limits;
use libtest_mimic::Trial;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestDaemon, TestResult, Timers, ensure, run, trial};

pub fn trials() -> Vec<Trial> {
    vec![trial(
        "idempotent::one_sandbox_per_key",
        one_sandbox_per_key,
    )]
}

/// A create as `key`'s owner with `idem`: (status, replayed, body).
async fn create(
    d: &TestDaemon,
    key: &str,
    idem: &str,
) -> Result<(u16, bool, Value), libtest_mimic::Failed> {
    let r = d
        .req_as(key, Method::POST, "/sandboxes")
        .header("Idempotency-Key", idem)
        .json(&json!({"memory_mb": 256}))
        .send()
        .await?;
    let status = r.status().as_u16();
    let replayed = r
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let v: Value = r.json().await?;
    Ok((status, replayed, v))
}

async fn count(d: &TestDaemon, key: &str) -> Result<usize, libtest_mimic::Failed> {
    let v = d
        .expect(d.req_as(key, Method::GET, "/sandboxes"), 200)
        .await?;
    Ok(v.as_array().map_or(0, Vec::len))
}

fn one_sandbox_per_key() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let bob = d.user("bob", Limits::default())?;
        let alice = d.key.clone();
        // Three at once with one key: one boot, the others get its sandbox.
        let (a, b, c) = tokio::join!(
            create(&d, &alice, "k-1"),
            create(&d, &alice, "k-1"),
            create(&d, &alice, "k-1")
        );
        let all = [a?, b?, c?];
        let id = all[0].2["id"].clone();
        ensure(
            all.iter().all(|(s, _, v)| *s == 201 && v["id"] == id),
            || format!("one key, one sandbox: {all:?}"),
        )?;
        let replays = all.iter().filter(|(_, r, _)| *r).count();
        ensure(replays == 2, || format!("replayed: {all:?}"))?;
        ensure(count(&d, &alice).await? == 1, || "alice has 1".to_owned())?;
        // The key is in the row: a restarted daemon finds it there.
        let row = d
            .state
            .store
            .sandbox_by_id(id.as_str().unwrap_or_default())?;
        ensure(row.spec["idempotency_key"] == "k-1", || {
            format!("stored spec: {}", row.spec)
        })?;
        // Another key, another sandbox; bob's key space is his own.
        let (s, r, other) = create(&d, &alice, "k-2").await?;
        ensure(s == 201 && !r && other["id"] != id, || {
            format!("k-2: {other}")
        })?;
        let (s, r, theirs) = create(&d, &bob, "k-1").await?;
        ensure(s == 201 && !r && theirs["id"] != id, || {
            format!("bob: {theirs}")
        })?;
        // A malformed key creates nothing.
        for bad in ["has space", &"x".repeat(256)] {
            let (s, _, v) = create(&d, &alice, bad).await?;
            ensure(
                s == 400
                    && v["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("Idempotency-Key")),
                || format!("bad key {bad:?}: {s} {v}"),
            )?;
        }
        ensure(count(&d, &alice).await? == 2, || "alice has 2".to_owned())?;
        // Destroyed, the key makes a new one.
        let path = format!("/sandboxes/{}", id.as_str().unwrap_or_default());
        d.expect(d.req(Method::DELETE, &path), 200).await?;
        let (s, r, again) = create(&d, &alice, "k-1").await?;
        ensure(s == 201 && !r && again["id"] != id, || {
            format!("after destroy: {again}")
        })?;
        d.finish().await
    })
}
