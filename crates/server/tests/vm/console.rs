//! `GET /sandboxes/{id}/console` against a real VM: the guest's boot line
//! (lohar's first; the kernel boots `quiet`) is there; `lines` bounds the
//! reply and a bad `lines` is 400; another user's sandbox is 404; reading the console of a warm, cold or
//! stopped sandbox wakes nothing (no restore, same state), and the log
//! runs on across a stop and start (the boot line is still there).

use bhatti_engine::engine::{Engine, SandboxId};
use bhatti_engine::state::SandboxState;
use bhatti_store::users::Limits;
use libtest_mimic::{Failed, Trial};
use reqwest::Method;

use crate::support::{TestDaemon, TestResult, Timers, ensure, run, trial};

pub fn trials() -> Vec<Trial> {
    vec![trial(
        "console::tail_owner_and_no_wake",
        tail_owner_and_no_wake,
    )]
}

/// lohar's first line (`lohar: lohar 0.1.0 starting as PID 1`).
const BOOT_LINE: &str = "starting as PID 1";

/// The console as `key` sees it: (status, content type, body).
async fn console(d: &TestDaemon, key: &str, query: &str) -> Result<(u16, String, String), Failed> {
    let path = format!("/sandboxes/c1/console{query}");
    let resp = d.req_as(key, Method::GET, &path).send().await?;
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok((status, ct, resp.text().await?))
}

/// The console of c1 read in `state` leaves it there, unrestored, and
/// still shows the boot.
async fn read_without_waking(d: &TestDaemon, id: &SandboxId, state: SandboxState) -> TestResult {
    let restores = d.state.engine.restore_count(id)?;
    let (s, _, text) = console(d, &d.key, "").await?;
    ensure(s == 200 && text.contains(BOOT_LINE), || {
        format!("{state:?}: {s}\n{text}")
    })?;
    let now = d.state.engine.status(id).await?.state;
    let after = d.state.engine.restore_count(id)?;
    ensure(now == state && after == restores, || {
        format!("read in {state:?}: now {now:?}, restores {restores} -> {after}")
    })
}

pub fn tail_owner_and_no_wake() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let sb = d.create("c1").await?;
        let id = SandboxId::try_from(sb["id"].as_str().unwrap_or_default().to_owned())?;
        let (s, ct, text) = console(&d, &d.key, "").await?;
        ensure(s == 200 && ct.starts_with("text/plain"), || {
            format!("{s} {ct}")
        })?;
        ensure(text.contains(BOOT_LINE) && text.ends_with('\n'), || {
            format!("no boot line in:\n{text}")
        })?;
        let (s, _, five) = console(&d, &d.key, "?lines=5").await?;
        let n = five.lines().count();
        ensure(s == 200 && (1..=5).contains(&n), || {
            format!("lines=5: {s}, {n} lines")
        })?;
        let (s, _, none) = console(&d, &d.key, "?lines=0").await?;
        ensure(s == 200 && none.is_empty(), || {
            format!("lines=0: {s} {none:?}")
        })?;
        for bad in ["?lines=abc", "?lines=10001", "?lines=-1"] {
            let (s, _, body) = console(&d, &d.key, bad).await?;
            ensure(s == 400, || format!("{bad}: {s} {body}"))?;
        }
        let bob = d.user("bob", Limits::default())?;
        let (s, _, body) = console(&d, &bob, "").await?;
        ensure(s == 404 && !body.contains(BOOT_LINE), || {
            format!("bob: {s} {body}")
        })?;
        let by_id = format!("/sandboxes/{id}/console");
        let (s, _) = d.call(d.req_as(&bob, Method::GET, &by_id)).await?;
        ensure(s == 404, || format!("bob by id: {s}"))?;
        let (s, _) = d.call(d.req_as("", Method::GET, &by_id)).await?;
        ensure(s == 401, || format!("no key: {s}"))?;

        d.state.engine.pause(&id).await?;
        read_without_waking(&d, &id, SandboxState::Warm).await?;
        d.state.engine.freeze(&id).await?;
        read_without_waking(&d, &id, SandboxState::Cold).await?;
        d.state.engine.ensure_hot(&id).await?;
        d.expect(d.req(Method::POST, "/sandboxes/c1/stop"), 200)
            .await?;
        d.expect(d.req(Method::POST, "/sandboxes/c1/start"), 200)
            .await?;
        d.expect(d.req(Method::POST, "/sandboxes/c1/stop"), 200)
            .await?;
        read_without_waking(&d, &id, SandboxState::Stopped).await?;
        let v = d.expect(d.req(Method::GET, "/sandboxes/c1"), 200).await?;
        ensure(v["status"] == "stopped", || format!("after read: {v}"))?;
        d.finish().await
    })
}
