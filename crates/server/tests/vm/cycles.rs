//! Many lifecycle cycles on one sandbox, all through the HTTP API: a
//! unique line appended (exec) before each `stop`/`start`, and after each
//! `start` the whole file read back (`GET /files`): no write lost, no wake
//! failed. Then a few thermal cycles (pause, snapshot to cold, wake by the
//! next request) with a `PUT /files` write before each.
//!
//! [`CYCLES_ENV`] overrides the number of stop/start cycles
//! ([`DEFAULT_CYCLES`]); [`COLD_CYCLES`] thermal ones follow. The time of
//! each phase is printed, so a slow host shows where it went.

use std::time::{Duration, Instant};

use bhatti_engine::engine::{Engine, SandboxId};
use libtest_mimic::Failed;
use reqwest::Method;

use crate::support::{TestDaemon, TestResult, Timers, ensure, run};

/// Environment variable with the number of stop/start cycles.
pub const CYCLES_ENV: &str = "BHATTI_TEST_CYCLES";

/// Stop/start cycles unless [`CYCLES_ENV`] says otherwise.
pub const DEFAULT_CYCLES: usize = 100;

/// Cold → wake cycles after the stop/start ones.
const COLD_CYCLES: usize = 5;

/// The file the stop/start cycles append to, in the home directory (on
/// the guest's disk).
const LOG: &str = "cycles.log";

fn cycles() -> usize {
    std::env::var(CYCLES_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CYCLES)
}

/// The line cycle `i` writes.
fn line(i: usize) -> String {
    format!("cycle-{i:04}")
}

/// Prefixes a failure's message with `what`.
fn ctx(what: String) -> impl FnOnce(Failed) -> Failed {
    move |e| format!("{what}: {}", e.message().unwrap_or("failed")).into()
}

/// The whole of `path` in the sandbox, read over HTTP.
async fn read(d: &TestDaemon, path: &str) -> Result<String, Failed> {
    let r = d
        .req(Method::GET, &format!("/sandboxes/cy/files?path={path}"))
        .send()
        .await?;
    let status = r.status();
    let body = r.text().await?;
    ensure(status == 200, || format!("read {path}: {status} {body}"))?;
    Ok(body)
}

/// Fails unless `got` is exactly lines `0..n`, naming the first one lost.
fn all_lines(got: &str, n: usize, when: &str) -> TestResult {
    let want: Vec<String> = (0..n).map(line).collect();
    let have: Vec<&str> = got.lines().collect();
    ensure(have == want, || {
        let lost: Vec<&String> = want
            .iter()
            .filter(|l| !have.contains(&l.as_str()))
            .collect();
        format!(
            "{when}: {} of {n} lines, lost {lost:?}, file ends {:?}",
            have.len(),
            have.iter().rev().take(3).collect::<Vec<_>>()
        )
    })
}

/// `n` × (append a line, stop, start, read every line back).
async fn stop_start(d: &TestDaemon, home: &str, n: usize) -> TestResult {
    let log = format!("{home}/{LOG}");
    let (mut stop, mut start) = (Duration::ZERO, Duration::ZERO);
    for i in 0..n {
        d.sh("cy", &format!("echo {} >> {log}", line(i))).await?;
        let t = Instant::now();
        let v = d
            .expect(d.req(Method::POST, "/sandboxes/cy/stop"), 200)
            .await
            .map_err(ctx(format!("cycle {i}: stop")))?;
        ensure(v["status"] == "stopped", || format!("cycle {i}: stop: {v}"))?;
        stop += t.elapsed();
        let t = Instant::now();
        let v = d
            .expect(d.req(Method::POST, "/sandboxes/cy/start"), 200)
            .await
            .map_err(ctx(format!("cycle {i}: start")))?;
        ensure(v["status"] == "running", || {
            format!("cycle {i}: start: {v}")
        })?;
        start += t.elapsed();
        all_lines(&read(d, &log).await?, i + 1, &format!("cycle {i}"))?;
    }
    let per = |t: Duration| t.checked_div(u32::try_from(n.max(1)).unwrap_or(1));
    println!(
        "{n} stop/start cycles: stop {stop:.1?} (each {:.2?}), start {start:.1?} (each {:.2?})",
        per(stop).unwrap_or_default(),
        per(start).unwrap_or_default()
    );
    Ok(())
}

/// `n` × (PUT a file, pause and snapshot to cold, read it back: the read
/// wakes the sandbox; exactly one restore each).
async fn cold_wake(d: &TestDaemon, id: &SandboxId, home: &str, n: usize) -> TestResult {
    let t = Instant::now();
    for i in 0..n {
        let path = format!("{home}/cold-{i}");
        let body = format!("cold-{i}\n");
        d.expect(
            d.req(Method::PUT, &format!("/sandboxes/cy/files?path={path}"))
                .body(body.clone()),
            200,
        )
        .await?;
        d.state.engine.pause(id).await?;
        d.state.engine.freeze(id).await?;
        let before = d.state.engine.restore_count(id)?;
        let got = read(d, &path).await.map_err(ctx(format!("cold {i}")))?;
        ensure(got == body, || format!("cold {i}: read {got:?}"))?;
        let after = d.state.engine.restore_count(id)?;
        ensure(after == before + 1, || {
            format!("cold {i}: restores {before} -> {after}")
        })?;
    }
    println!("{n} cold/wake cycles: {:.1?}", t.elapsed());
    Ok(())
}

pub fn stop_start_keeps_every_write() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let sb = d.create("cy").await?;
        let id = SandboxId::try_from(sb["id"].as_str().unwrap_or_default().to_owned())?;
        let home = d.sh("cy", "echo $HOME").await?.trim().to_owned();
        let n = cycles();
        stop_start(&d, &home, n).await?;
        cold_wake(&d, &id, &home, COLD_CYCLES).await?;
        // The appended file is whole after the thermal cycles too.
        all_lines(&read(&d, &format!("{home}/{LOG}")).await?, n, "at the end")?;
        d.finish().await
    })
}
