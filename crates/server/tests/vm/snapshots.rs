//! Named snapshots, create from a snapshot and fork through the API
//! (extensions over v1), against real VMs:
//! - a snapshot of a running sandbox (a shell loop counting into a file
//!   in `/tmp`, the guest's memory) leaves it running; it is listed and
//!   shown with its size, filtered by label, private to its owner (404
//!   for another user), its name unique (409), and gone after delete;
//!   one of a stopped sandbox leaves it stopped, and restores and forks;
//! - a sandbox made from it goes on from the snapshot's memory (the
//!   counter file as it was, the loop still counting) with its own
//!   address and hostname; sizes the snapshot fixes are refused (400);
//!   the snapshot outlives its source, and the sandboxes made from it
//!   outlive the snapshot;
//! - fork makes children with their own addresses, hostnames and files,
//!   answering at once; a fork over the quota makes nothing;
//! - damaged snapshots and sandboxes with volumes: [`crate::snapshots_broken`];
//! - across a daemon restart: [`crate::snapshots_restart`].

use std::collections::BTreeSet;
use std::time::Duration;

use bhatti_store::users::Limits;
use libtest_mimic::{Failed, Trial};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestDaemon, TestResult, Timers, ensure, eventually, run, trial};

pub fn trials() -> Vec<Trial> {
    vec![
        trial(
            "snapshots::snapshot_keeps_running_and_is_private",
            snapshot_keeps_running_and_is_private,
        ),
        trial(
            "snapshots::create_from_snapshot_goes_on_from_its_memory",
            create_from_snapshot_goes_on_from_its_memory,
        ),
        trial(
            "snapshots::fork_makes_independent_children",
            fork_makes_independent_children,
        ),
        trial(
            "snapshots::broken_snapshot_and_volumes_are_refused",
            crate::snapshots_broken::broken_snapshot_and_volumes_are_refused,
        ),
        trial(
            "snapshots::survive_a_restart",
            crate::snapshots_restart::snapshots_survive_a_restart,
        ),
    ]
}

/// How long a counter may take to move on a loaded host.
const GROW_WAIT: Duration = Duration::from_secs(60);

/// Starts a loop in `sb` that counts into `/tmp/counter` (tmpfs: memory).
async fn start_counter(d: &TestDaemon, sb: &str) -> TestResult {
    d.sh(
        sb,
        "(sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/counter.new; \
         mv /tmp/counter.new /tmp/counter; sleep 0.2; done' </dev/null >/dev/null 2>&1 &)",
    )
    .await?;
    wait_counter_above(d, sb, 0).await.map(drop)
}

/// The counter of `sb` (0 while there is none).
async fn counter(d: &TestDaemon, sb: &str) -> Result<u64, Failed> {
    let out = d.sh(sb, "cat /tmp/counter 2>/dev/null || echo 0").await?;
    out.trim()
        .parse()
        .map_err(|e| format!("counter of {sb}: {out:?}: {e}").into())
}

/// Waits until the counter of `sb` is above `floor`; returns it.
async fn wait_counter_above(d: &TestDaemon, sb: &str, floor: u64) -> Result<u64, Failed> {
    eventually(GROW_WAIT, || async {
        let c = counter(d, sb).await?;
        Ok((c > floor).then_some(c))
    })
    .await
}

pub(crate) async fn snapshot(d: &TestDaemon, sb: &str, body: Value) -> Result<Value, Failed> {
    d.expect(
        d.req(Method::POST, &format!("/sandboxes/{sb}/snapshots"))
            .json(&body),
        201,
    )
    .await
}

async fn hostname(d: &TestDaemon, sb: &str) -> Result<String, Failed> {
    Ok(d.sh(sb, "cat /proc/sys/kernel/hostname")
        .await?
        .trim()
        .to_owned())
}

/// The names of a JSON list of objects.
pub(crate) fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub fn snapshot_keeps_running_and_is_private() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        d.create("src").await?;
        start_counter(&d, "src").await?;
        let s = snapshot(&d, "src", json!({"name": "s1", "labels": {"k": "v"}})).await?;
        ensure(
            s["status"] == "ready"
                && s["name"] == "s1"
                && s["source"]["name"] == "src"
                && s["size_bytes"].as_u64().is_some_and(|n| n > 0)
                && s["memory_mb"] == 256
                && s["labels"]["k"] == "v"
                && s["problem"].is_null(),
            || format!("snapshot: {s}"),
        )?;
        // The source runs on: its counter keeps growing.
        let after = counter(&d, "src").await?;
        wait_counter_above(&d, "src", after + 2).await?;

        let list = d.expect(d.req(Method::GET, "/snapshots"), 200).await?;
        ensure(names(&list) == ["s1"], || format!("list: {list}"))?;
        let hit = d
            .expect(d.req(Method::GET, "/snapshots?label=k=v"), 200)
            .await?;
        let miss = d
            .expect(d.req(Method::GET, "/snapshots?label=k=w"), 200)
            .await?;
        ensure(names(&hit) == ["s1"] && names(&miss).is_empty(), || {
            format!("label filter: {hit} / {miss}")
        })?;
        let one = d.expect(d.req(Method::GET, "/snapshots/s1"), 200).await?;
        ensure(
            one["status"] == "ready" && one["size_bytes"] == s["size_bytes"],
            || format!("inspect: {one}"),
        )?;
        // Names are unique per user and follow the sandbox name rules.
        d.expect(
            d.req(Method::POST, "/sandboxes/src/snapshots")
                .json(&json!({"name": "s1"})),
            409,
        )
        .await?;
        d.expect(
            d.req(Method::POST, "/sandboxes/src/snapshots")
                .json(&json!({"name": "-bad name"})),
            400,
        )
        .await?;
        others_see_nothing(&d).await?;

        d.expect(d.req(Method::DELETE, "/snapshots/s1"), 204)
            .await?;
        d.expect(d.req(Method::GET, "/snapshots/s1"), 404).await?;
        d.expect(d.req(Method::DELETE, "/snapshots/s1"), 404)
            .await?;
        let dir = d.state.settings.data_dir.join("snapshots");
        let id = s["id"].as_str().unwrap_or_default();
        ensure(!dir.join(id).exists(), || format!("{id}'s files remain"))?;
        of_a_stopped_sandbox(&d).await?;
        d.finish().await
    })
}

/// A stopped sandbox's snapshot copies its saved state: no pause, the
/// source stays stopped; a sandbox made from it runs with its memory; a
/// fork of a stopped parent works too.
async fn of_a_stopped_sandbox(d: &TestDaemon) -> TestResult {
    d.sh("src", "echo asleep > /tmp/state").await?;
    d.expect(d.req(Method::POST, "/sandboxes/src/stop"), 200)
        .await?;
    let s = snapshot(d, "src", json!({"name": "cold"})).await?;
    ensure(s["status"] == "ready" && s["paused_ms"] == 0, || {
        format!("of a stopped sandbox: {s}")
    })?;
    let src = d.expect(d.req(Method::GET, "/sandboxes/src"), 200).await?;
    ensure(src["status"] == "stopped", || format!("source: {src}"))?;
    let body = json!({"snapshot": "cold", "name": "woken"});
    d.expect(d.req(Method::POST, "/sandboxes").json(&body), 201)
        .await?;
    let out = d.sh("woken", "cat /tmp/state").await?;
    ensure(out == "asleep\n", || format!("woken: {out:?}"))?;
    let v = d
        .expect(
            d.req(Method::POST, "/sandboxes/src/fork")
                .json(&json!({"names": ["pup"]})),
            201,
        )
        .await?;
    ensure(names(&v["sandboxes"]) == ["pup"], || format!("fork: {v}"))?;
    let out = d.sh("pup", "cat /tmp/state").await?;
    ensure(out == "asleep\n", || format!("pup: {out:?}"))
}

/// Another user neither sees nor uses alice's snapshot `s1`, nor takes
/// one of her sandbox.
async fn others_see_nothing(d: &TestDaemon) -> TestResult {
    let bob = d.user("bob", Limits::default())?;
    let list = d
        .expect(d.req_as(&bob, Method::GET, "/snapshots"), 200)
        .await?;
    ensure(names(&list).is_empty(), || format!("bob's list: {list}"))?;
    d.expect(d.req_as(&bob, Method::GET, "/snapshots/s1"), 404)
        .await?;
    d.expect(d.req_as(&bob, Method::DELETE, "/snapshots/s1"), 404)
        .await?;
    d.expect(
        d.req_as(&bob, Method::POST, "/sandboxes")
            .json(&json!({"snapshot": "s1"})),
        404,
    )
    .await?;
    d.expect(
        d.req_as(&bob, Method::POST, "/sandboxes/src/snapshots")
            .json(&json!({"name": "mine"})),
        404,
    )
    .await?;
    d.expect(
        d.req_as(&bob, Method::POST, "/sandboxes/src/fork")
            .json(&json!({})),
        404,
    )
    .await
    .map(drop)
}

pub fn create_from_snapshot_goes_on_from_its_memory() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let src = d.create("src").await?;
        start_counter(&d, "src").await?;
        d.sh("src", "echo before > /tmp/marker").await?;
        let floor = counter(&d, "src").await?;
        snapshot(&d, "src", json!({"name": "s"})).await?;
        let ceiling = counter(&d, "src").await?;
        d.sh("src", "echo after > /tmp/marker").await?;

        // Sizes are the snapshot's: another is refused, the same is fine.
        let (status, v) = d
            .call(
                d.req(Method::POST, "/sandboxes")
                    .json(&json!({"snapshot": "s", "memory_mb": 512})),
            )
            .await?;
        ensure(
            status == 400 && v["error"].as_str().is_some_and(|e| e.contains("memory_mb")),
            || format!("other memory: {status} {v}"),
        )?;
        let secret = json!({"name": "SNAP_SECRET", "value": "s3"});
        d.expect(d.req(Method::POST, "/secrets").json(&secret), 201)
            .await?;
        let body = json!({"snapshot": "s", "name": "copy", "memory_mb": 256,
                          "labels": {"from": "s"}, "ttl_sec": 3600, "env": {"X": "1"},
                          "secrets": ["SNAP_SECRET"]});
        let restored_at = std::time::Instant::now();
        let copy = d
            .expect(d.req(Method::POST, "/sandboxes").json(&body), 201)
            .await?;
        ensure(
            copy["name"] == "copy"
                && copy["status"] == "running"
                && copy["labels"]["from"] == "s"
                && copy["expires_at"].is_string()
                && copy["memory_mb"] == 256,
            || format!("restored: {copy}"),
        )?;
        ensure(copy["ip"].is_string() && copy["ip"] != src["ip"], || {
            format!("addresses: {} vs {}", copy["ip"], src["ip"])
        })?;
        let (h_src, h_copy) = (hostname(&d, "src").await?, hostname(&d, "copy").await?);
        ensure(h_src != h_copy, || format!("hostnames: {h_src} = {h_copy}"))?;
        let marker = d
            .sh("copy", "cat /tmp/marker; echo $X $SNAP_SECRET")
            .await?;
        ensure(marker == "before\n1 s3\n", || {
            format!("copy's state: {marker:?}")
        })?;
        // The counter is where the snapshot caught it, and counts on. It
        // ticks at most every 0.2 s, and only since the copy was restored:
        // a copy of the source's later memory would be further on.
        let c = counter(&d, "copy").await?;
        let ticks = (restored_at.elapsed().as_millis() / 200) as u64 + 1;
        ensure(c >= floor && c <= ceiling + ticks, || {
            format!("copy's counter {c} not within {floor}..={ceiling}+{ticks}")
        })?;
        wait_counter_above(&d, "copy", c + 2).await?;
        let list = d.expect(d.req(Method::GET, "/sandboxes"), 200).await?;
        let mut have = names(&list);
        have.sort();
        ensure(have == ["copy", "src"], || format!("sandboxes: {list}"))?;
        // The snapshot outlives its source; its copies outlive it.
        d.expect(d.req(Method::DELETE, "/sandboxes/src"), 200)
            .await?;
        let again = d
            .expect(
                d.req(Method::POST, "/sandboxes")
                    .json(&json!({"snapshot": "s", "name": "again"})),
                201,
            )
            .await?;
        ensure(again["ip"] != copy["ip"], || format!("again: {again}"))?;
        d.expect(d.req(Method::DELETE, "/snapshots/s"), 204).await?;
        let marker = d.sh("again", "cat /tmp/marker").await?;
        ensure(marker == "before\n", || format!("again: {marker:?}"))?;
        wait_counter_above(&d, "copy", c + 4).await?;
        d.finish().await
    })
}

pub fn fork_makes_independent_children() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let parent = d.create("parent").await?;
        d.sh("parent", "echo inherited > /tmp/p").await?;
        for bad in [
            json!({"count": 0}),
            json!({"count": 17}),
            json!({"count": 2, "names": ["one"]}),
            json!({"count": 1, "names": ["-bad"]}),
        ] {
            d.expect(
                d.req(Method::POST, "/sandboxes/parent/fork").json(&bad),
                400,
            )
            .await?;
        }
        let body = json!({"count": 3, "names": ["c1", "c2", "c3"], "labels": {"team": "t"}});
        let v = d
            .expect(
                d.req(Method::POST, "/sandboxes/parent/fork").json(&body),
                201,
            )
            .await?;
        let kids = v["sandboxes"].as_array().cloned().unwrap_or_default();
        ensure(names(&v["sandboxes"]) == ["c1", "c2", "c3"], || {
            format!("children: {v}")
        })?;
        ensure(kids.iter().all(|k| k["labels"]["team"] == "t"), || {
            format!("labels: {v}")
        })?;
        let ips: BTreeSet<String> = kids
            .iter()
            .chain([&parent])
            .filter_map(|k| k["ip"].as_str().map(str::to_owned))
            .collect();
        ensure(ips.len() == 4, || format!("addresses: {ips:?}"))?;
        let mut hosts = BTreeSet::new();
        for sb in ["parent", "c1", "c2", "c3"] {
            hosts.insert(hostname(&d, sb).await?);
        }
        ensure(hosts.len() == 4, || format!("hostnames: {hosts:?}"))?;
        children_are_independent(&d).await?;
        fork_over_quota_makes_nothing(&d).await?;
        d.finish().await
    })
}

/// Each child starts with the parent's files; later writes stay where
/// they were made; two children answer at once.
async fn children_are_independent(d: &TestDaemon) -> TestResult {
    for sb in ["c1", "c2", "c3"] {
        let p = d.sh(sb, "cat /tmp/p").await?;
        ensure(p == "inherited\n", || format!("{sb}: {p:?}"))?;
    }
    d.sh("c1", "echo c1 > /tmp/own").await?;
    d.sh("parent", "echo parent > /tmp/late").await?;
    for sb in ["parent", "c2", "c3"] {
        let out = d.sh(sb, "cat /tmp/own 2>/dev/null || echo none").await?;
        ensure(out == "none\n", || format!("c1's file in {sb}: {out:?}"))?;
    }
    for sb in ["c1", "c2", "c3"] {
        let out = d.sh(sb, "cat /tmp/late 2>/dev/null || echo none").await?;
        ensure(out == "none\n", || {
            format!("parent's file in {sb}: {out:?}")
        })?;
    }
    let (a, b) = tokio::join!(
        d.sh("c2", "sleep 1; cat /proc/sys/kernel/hostname"),
        d.sh("c3", "sleep 1; cat /proc/sys/kernel/hostname"),
    );
    let (a, b) = (a?, b?);
    ensure(!a.is_empty() && a != b, || {
        format!("concurrent: {a:?} {b:?}")
    })
}

/// A user allowed 2 sandboxes who has one cannot fork 2: nothing is made.
async fn fork_over_quota_makes_nothing(d: &TestDaemon) -> TestResult {
    let limits = Limits {
        max_sandboxes: 2,
        ..Limits::default()
    };
    let carol = d.user("carol", limits)?;
    let body = json!({"name": "cp", "memory_mb": 256});
    d.expect(
        d.req_as(&carol, Method::POST, "/sandboxes").json(&body),
        201,
    )
    .await?;
    d.expect(
        d.req_as(&carol, Method::POST, "/sandboxes/cp/fork")
            .json(&json!({"count": 2})),
        429,
    )
    .await?;
    let list = d
        .expect(d.req_as(&carol, Method::GET, "/sandboxes"), 200)
        .await?;
    ensure(names(&list) == ["cp"], || {
        format!("after a refused fork: {list}")
    })
}
