//! A daemon aborted (as by SIGKILL) at each named point of create, stop,
//! start and destroy (`BHATTI_FAULT`, [`bhatti_engine::sandbox::fault`]),
//! then started again: every operation ends in a state the user can act
//! on — done, or cleanly undone — and the host holds no VMM, TAP or
//! directory that no live sandbox owns.

use bhatti_engine::image::ImagePaths;
use bhatti_server::daemon::{Daemon, DaemonError};
use reqwest::Method;
use serde_json::json;

use crate::crash::{Crashable, crash_test};
use crate::support::{TestResult, Timers, ensure};

pub fn sigkill_at_every_step() -> TestResult {
    crash_test(
        "bhatti-flt-",
        Timers {
            warm_after: 3600,
            cold_after: 3600,
            tick: 1,
        },
        |d| Box::pin(scenario(d)),
    )
}

/// Starts the daemon to abort at `point`, sends the request that reaches
/// it (its answer is lost with the daemon), and starts it again.
async fn crash_at(
    d: &mut Crashable,
    point: &str,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> TestResult {
    d.kill9()?;
    d.start(Some(point)).await?;
    let sent = d.call(method, path, body).await;
    ensure(sent.is_err(), || {
        format!("{point}: the daemon answered {sent:?} instead of aborting")
    })?;
    d.wait_aborted().await?;
    d.start(None).await
}

async fn scenario(d: &mut Crashable) -> TestResult {
    // One daemon per data dir: a second one would take the first one's
    // VMMs for orphans.
    d.start(None).await?;
    let cfg = serde_json::from_slice(&std::fs::read(d.dir.join("test-config.json"))?)?;
    let second = Daemon::start(&cfg, ImagePaths::from_env()).await;
    ensure(matches!(second, Err(DaemonError::Locked(_))), || {
        format!(
            "a second daemon on the same data dir: {:?}",
            second.map(|_| ())
        )
    })?;
    let create = |name: &str| Some(json!({"name": name, "memory_mb": 256, "keep_hot": true}));

    // A create cut after its VMM booted, before sandbox.json: undone.
    crash_at(d, "create.vmm", Method::POST, "/sandboxes", create("c1")).await?;
    let (s, v) = d.call(Method::GET, "/sandboxes/c1", None).await?;
    ensure(s == 404, || format!("interrupted create: {s} {v}"))?;
    d.ensure_host(0, 0, 0, "after an interrupted create")?;

    // Cut after sandbox.json: done — its VMM is adopted.
    crash_at(d, "create.meta", Method::POST, "/sandboxes", create("c2")).await?;
    let v = d.get("c2").await?;
    ensure(v["status"] == "running" && v["thermal"] == "hot", || {
        format!("create cut after sandbox.json: {v}")
    })?;
    d.sh("c2", "echo c2-data > \"$HOME/f\"; echo in-ram > /tmp/m")
        .await?;
    d.ensure_host(1, 1, 1, "after a create cut after sandbox.json")?;

    // A stop cut with the snapshot written, the VMM not yet told to quit:
    // the VMM is adopted (the stop never happened) and runs on.
    crash_at(
        d,
        "snapshot.written",
        Method::POST,
        "/sandboxes/c2/stop",
        None,
    )
    .await?;
    let out = d.sh("c2", "cat /tmp/m \"$HOME/f\"").await?;
    ensure(out == "in-ram\nc2-data\n", || {
        format!("after a cut stop: {out:?}")
    })?;
    ensure(
        !d.dir
            .join("sandboxes")
            .join(d.get("c2").await?["id"].as_str().unwrap_or(""))
            .join("mem.snap")
            .exists(),
        || "a snapshot older than the running VM was kept".into(),
    )?;
    d.ensure_host(1, 1, 1, "after a cut stop")?;

    // A start cut before the restore: still stopped, and starts.
    let (s, v) = d.call(Method::POST, "/sandboxes/c2/stop", None).await?;
    ensure(s == 200, || format!("stop: {s} {v}"))?;
    crash_at(d, "restore", Method::POST, "/sandboxes/c2/start", None).await?;
    ensure(d.get("c2").await?["status"] == "stopped", || {
        "a cut start left it other than stopped".into()
    })?;
    let (s, v) = d.call(Method::POST, "/sandboxes/c2/start", None).await?;
    ensure(s == 200 && v["status"] == "running", || {
        format!("start after a cut start: {s} {v}")
    })?;
    let out = d.sh("c2", "cat /tmp/m \"$HOME/f\"").await?;
    ensure(out == "in-ram\nc2-data\n", || {
        format!("after a cut start: {out:?}")
    })?;

    // A destroy cut with the VMM killed, its files still there. Either the
    // store had already recorded the destroy (the engine published it
    // before the abort): recovery finishes it; or it had not: the sandbox
    // is still listed, and a second destroy removes everything.
    crash_at(d, "destroy", Method::DELETE, "/sandboxes/c2", None).await?;
    let (s, v) = d.call(Method::GET, "/sandboxes/c2", None).await?;
    if s != 404 {
        ensure(s == 200, || format!("after a cut destroy: {s} {v}"))?;
        d.ensure_host(0, 1, 1, "after a cut destroy")?;
        let (s, v) = d.call(Method::DELETE, "/sandboxes/c2", None).await?;
        ensure(s == 200, || format!("second destroy: {s} {v}"))?;
    }
    d.ensure_host(0, 0, 0, "after the destroy")?;
    Ok(())
}
