//! The store's lookup cache seen through the API (see
//! `bhatti_store::cache`): with every lookup warm, a key rotated or a user
//! deleted by the operator (a second connection to the daemon's
//! `state.db`, exactly what `bhatti user rotate-key|delete` opens while
//! the daemon runs) fails on the very next request, the new key works, a
//! renamed sandbox answers to its new name only, a destroyed one is 404 by
//! id and by name, and another user never gets alice's sandbox.

use bhatti_store::Store;
use bhatti_store::users::Limits;
use reqwest::Method;
use serde_json::json;

use crate::support::{TestDaemon, TestResult, Timers, ensure, run};

/// Status of `GET path` with `key`, asked twice (the second one is
/// answered from a warm cache when the first one filled it).
async fn get_twice(d: &TestDaemon, key: &str, path: &str) -> Result<u16, libtest_mimic::Failed> {
    let (a, _) = d.call(d.req_as(key, Method::GET, path)).await?;
    let (b, v) = d.call(d.req_as(key, Method::GET, path)).await?;
    ensure(a == b, || format!("GET {path}: {a} then {b}: {v}"))?;
    Ok(b.as_u16())
}

pub fn no_stale_key_or_sandbox() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let bob = d.user("bob", Limits::default())?;
        let operator = Store::open(&d.state.settings.data_dir.join("state.db"))?;
        let sb = d.create("web").await?;
        let id = sb["id"].as_str().unwrap_or_default().to_owned();

        // Warm: alice's lookups by id and name, bob's misses.
        for p in [format!("/sandboxes/{id}"), "/sandboxes/web".into()] {
            ensure(get_twice(&d, &d.key, &p).await? == 200, || {
                format!("alice {p}")
            })?;
            ensure(get_twice(&d, &bob, &p).await? == 404, || format!("bob {p}"))?;
        }

        // Rename: the new name only; the id shows the new name.
        d.expect(
            d.req(Method::PATCH, "/sandboxes/web")
                .json(&json!({"name": "api"})),
            200,
        )
        .await?;
        ensure(
            get_twice(&d, &d.key, "/sandboxes/web").await? == 404,
            || "old name still found".into(),
        )?;
        let v = d.expect(d.req(Method::GET, "/sandboxes/api"), 200).await?;
        ensure(v["id"] == id.as_str(), || format!("new name: {v}"))?;
        let v = d
            .expect(d.req(Method::GET, &format!("/sandboxes/{id}")), 200)
            .await?;
        ensure(v["name"] == "api", || format!("by id after rename: {v}"))?;
        d.sh("api", "true").await?;

        // Rotation by the operator: the old key fails at once.
        ensure(
            get_twice(&d, &d.key, "/sandboxes/api").await? == 200,
            || "warm".into(),
        )?;
        let new_key = bhatti_server::users::rotate_key(&operator, "alice")?.key;
        let (s, v) = d.call(d.req(Method::GET, "/sandboxes/api")).await?;
        ensure(s == 401, || format!("old key after rotation: {s} {v}"))?;
        ensure(
            get_twice(&d, &new_key, "/sandboxes/api").await? == 200,
            || "new key".into(),
        )?;

        // Destroy: 404 by id and by name at once, exec too.
        d.expect(
            d.req_as(&new_key, Method::DELETE, &format!("/sandboxes/{id}")),
            200,
        )
        .await?;
        for p in [format!("/sandboxes/{id}"), "/sandboxes/api".into()] {
            ensure(get_twice(&d, &new_key, &p).await? == 404, || {
                format!("destroyed sandbox at {p}")
            })?;
        }
        let exec = d
            .req_as(&new_key, Method::POST, &format!("/sandboxes/{id}/exec"))
            .json(&json!({"cmd": ["true"]}));
        d.expect(exec, 404).await?;

        // Deletion by the operator: bob's warm key fails at once.
        ensure(get_twice(&d, &bob, "/sandboxes").await? == 200, || {
            "bob".into()
        })?;
        operator.delete_user("bob")?;
        let (s, v) = d.call(d.req_as(&bob, Method::GET, "/sandboxes")).await?;
        ensure(s == 401, || format!("deleted user's key: {s} {v}"))?;
        d.finish().await
    })
}
