//! Sandbox TTLs and labels through the API: a TTL destroys (or with
//! `on_expire: "stop"` stops) the sandbox when it runs out; a PATCH
//! extends or removes it; labels are shown, replaced by a PATCH, merged
//! from a template, and filter `GET /sandboxes?label=K=V`; bad TTLs,
//! labels and filters are 400 and change nothing.

use std::time::Duration;

use libtest_mimic::Trial;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestDaemon, TestResult, Timers, ensure, eventually, run, trial};

pub fn trials() -> Vec<Trial> {
    vec![
        trial(
            "lifetime::ttl_destroys_stops_and_extends",
            ttl_destroys_stops_and_extends,
        ),
        trial("lifetime::labels_filter_and_merge", labels_filter_and_merge),
    ]
}

/// Expiry runs once a second; a loaded host may take a few more.
const EXPIRY_WAIT: Duration = Duration::from_secs(60);

async fn create(d: &TestDaemon, body: Value) -> Result<Value, libtest_mimic::Failed> {
    let mut body = body;
    body["memory_mb"] = json!(256);
    d.expect(d.req(Method::POST, "/sandboxes").json(&body), 201)
        .await
}

async fn get(d: &TestDaemon, name: &str) -> Result<(u16, Value), libtest_mimic::Failed> {
    let (s, v) = d
        .call(d.req(Method::GET, &format!("/sandboxes/{name}")))
        .await?;
    Ok((s.as_u16(), v))
}

pub fn ttl_destroys_stops_and_extends() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        // A TTL shorter than a boot counts from when the sandbox is ready:
        // each create answers 201 (the expiry never destroys a sandbox
        // under its create), then the TTL runs out.
        for i in 0..3 {
            create(&d, json!({"name": format!("brief{i}"), "ttl_sec": 1})).await?;
        }
        let a = create(&d, json!({"name": "short", "ttl_sec": 2})).await?;
        ensure(
            a["on_expire"] == "destroy" && a["expires_at"].is_string(),
            || format!("created with a TTL: {a}"),
        )?;
        let b = create(
            &d,
            json!({"name": "sleepy", "ttl_sec": 2, "on_expire": "stop"}),
        )
        .await?;
        ensure(b["on_expire"] == "stop", || format!("stop TTL: {b}"))?;
        // Extended before it runs out, and one without a TTL at all.
        create(&d, json!({"name": "kept", "ttl_sec": 2})).await?;
        let k = d
            .expect(
                d.req(Method::PATCH, "/sandboxes/kept")
                    .json(&json!({"ttl_sec": 3600})),
                200,
            )
            .await?;
        ensure(k["expires_at"] != a["expires_at"], || {
            format!("extended: {k}")
        })?;

        eventually(EXPIRY_WAIT, || async {
            Ok(
                (get(&d, "short").await?.0 == 404 && get(&d, "brief2").await?.0 == 404)
                    .then_some(()),
            )
        })
        .await?;
        let stopped = eventually(EXPIRY_WAIT, || async {
            let (_, v) = get(&d, "sleepy").await?;
            Ok((v["status"] == "stopped").then_some(v))
        })
        .await?;
        ensure(stopped["expires_at"].is_null(), || {
            format!("a stop clears the TTL: {stopped}")
        })?;
        let (s, k) = get(&d, "kept").await?;
        ensure(s == 200 && k["status"] == "running", || {
            format!("extended sandbox: {s} {k}")
        })?;
        // The stopped one starts again and is not stopped by the old TTL.
        d.sh("sleepy", "true").await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (_, v) = get(&d, "sleepy").await?;
        ensure(v["status"] == "running", || format!("after start: {v}"))?;

        // `0` removes the TTL; a bad one is 400 and keeps the old.
        let k = d
            .expect(
                d.req(Method::PATCH, "/sandboxes/kept")
                    .json(&json!({"ttl_sec": 0})),
                200,
            )
            .await?;
        ensure(
            k["expires_at"].is_null() && k["on_expire"].is_null(),
            || format!("TTL removed: {k}"),
        )?;
        for bad in [
            json!({"ttl_sec": 400_000_000}),
            json!({"on_expire": "explode"}),
        ] {
            d.expect(d.req(Method::PATCH, "/sandboxes/kept").json(&bad), 400)
                .await?;
            let mut body = bad.clone();
            body["name"] = json!("bad");
            d.expect(d.req(Method::POST, "/sandboxes").json(&body), 400)
                .await?;
        }
        ensure(get(&d, "bad").await?.0 == 404, || {
            "a bad create left a sandbox".into()
        })?;
        d.finish().await
    })
}

pub fn labels_filter_and_merge() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let t = d
            .expect(
                d.req(Method::POST, "/templates").json(&json!({
                    "name": "tpl", "image": "busybox",
                    "labels": {"team": "ml", "tier": "base"}
                })),
                201,
            )
            .await?;
        let one = create(
            &d,
            json!({"name": "one", "template_id": t["id"], "labels": {"tier": "gpu"}}),
        )
        .await?;
        ensure(
            one["labels"] == json!({"team": "ml", "tier": "gpu"}),
            || format!("template labels under the request's: {one}"),
        )?;
        let two = create(&d, json!({"name": "two", "labels": {"team": "ml"}})).await?;
        ensure(two["labels"] == json!({"team": "ml"}), || format!("{two}"))?;
        let three = create(&d, json!({"name": "three"})).await?;
        ensure(three["labels"] == json!({}), || {
            format!("no labels: {three}")
        })?;

        let names = |v: &Value| -> Vec<String> {
            let mut n: Vec<String> = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s["name"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            n.sort();
            n
        };
        let list = |q: &'static str| {
            let d = &d;
            async move {
                d.expect(d.req(Method::GET, &format!("/sandboxes{q}")), 200)
                    .await
            }
        };
        ensure(
            names(&list("?label=team=ml").await?) == ["one", "two"],
            || "team=ml".into(),
        )?;
        let both = list("?label=team=ml&label=tier=gpu").await?;
        ensure(names(&both) == ["one"], || format!("both labels: {both}"))?;
        ensure(names(&list("?label=team=none").await?).is_empty(), || {
            "no match".into()
        })?;
        ensure(names(&list("").await?).len() == 3, || "unfiltered".into())?;
        d.expect(d.req(Method::GET, "/sandboxes?label=novalue"), 400)
            .await?;

        patch_labels(&d).await?;
        d.finish().await
    })
}

/// A PATCH replaces the labels; bad keys, values or TTLs are 400 and
/// change nothing.
async fn patch_labels(d: &TestDaemon) -> TestResult {
    let p = d
        .expect(
            d.req(Method::PATCH, "/sandboxes/three")
                .json(&json!({"labels": {"team": "ml", "owner": "ci/bot"}})),
            200,
        )
        .await?;
    ensure(p["labels"]["owner"] == "ci/bot", || format!("{p}"))?;
    let all = d
        .expect(d.req(Method::GET, "/sandboxes?label=team=ml"), 200)
        .await?;
    ensure(all.as_array().map(Vec::len) == Some(3), || {
        format!("after PATCH: {all}")
    })?;
    let long = "v".repeat(300);
    for bad in [
        json!({"labels": {"bad key": "x"}}),
        json!({"labels": {"k": long}}),
        json!({"labels": {"ok": "1"}, "ttl_sec": 400_000_000}),
    ] {
        d.expect(d.req(Method::PATCH, "/sandboxes/three").json(&bad), 400)
            .await?;
    }
    let (_, v) = get(d, "three").await?;
    ensure(v["labels"] == p["labels"], || {
        format!("after bad PATCHes: {v}")
    })
}
