//! Writes survive every way a sandbox's host side can go away: cycles of
//! (append a line, then one of: stop + start, SIGKILL the daemon and
//! start it again, SIGKILL the sandbox's QEMU), with the steps picked by
//! a seeded generator, a bounded count ([`CYCLES`], `BHATTI_TEST_CRASH_CYCLES`
//! to change it). After each, the whole file is read back: no line lost,
//! no wake failed.
//!
//! An exec's EXIT comes before the guest's sync (protocol version 7,
//! `docs/protocol.md`): a stop syncs first, a daemon SIGKILL leaves the
//! VMM running, but a QEMU killed within 20 ms of an exec may lose what
//! it wrote. Before that step the test syncs the guest (an exec of
//! `sync`) instead of waiting out the delay.

use std::time::Duration;

use reqwest::Method;

use crate::crash::{Crashable, crash_test};
use crate::support::{TestResult, Timers, ensure, eventually};

/// Cycles by default.
const CYCLES: usize = 100;

pub fn writes_survive_random_crashes() -> TestResult {
    let cycles = std::env::var("BHATTI_TEST_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CYCLES);
    crash_test(
        "bhatti-cc-",
        Timers {
            warm_after: 3600,
            cold_after: 3600,
            tick: 1,
        },
        |d| Box::pin(scenario(d, cycles)),
    )
}

async fn scenario(d: &mut Crashable, cycles: usize) -> TestResult {
    d.start(None).await?;
    let id = d.create("cc", true).await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // A fixed seed: the same steps every run (xorshift64).
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut want = String::new();
    let mut counts = [0usize; 3];
    for i in 0..cycles {
        d.sh("cc", &format!("echo line-{i} >> /workspace/log"))
            .await?;
        want.push_str(&format!("line-{i}\n"));
        let step = usize::try_from(next() % 3).unwrap_or(0);
        counts[step] += 1;
        match step {
            0 => {
                let (s, v) = d.call(Method::POST, "/sandboxes/cc/stop", None).await?;
                ensure(s == 200, || format!("cycle {i}: stop {s} {v}"))?;
                let (s, v) = d.call(Method::POST, "/sandboxes/cc/start", None).await?;
                ensure(s == 200, || format!("cycle {i}: start {s} {v}"))?;
            }
            1 => {
                d.kill9()?;
                d.start(None).await?;
            }
            _ => {
                // What a VMM crash may lose (see the module docs).
                d.sh("cc", "sync").await?;
                let pids = d.vmm_pids(&id);
                let pid = *pids.first().ok_or_else(|| format!("cycle {i}: no VMM"))?;
                let pid = rustix::process::Pid::from_raw(pid).ok_or("pid 0")?;
                rustix::process::kill_process(pid, rustix::process::Signal::KILL)?;
                eventually(Duration::from_secs(10), || async {
                    Ok((d.get("cc").await?["thermal"] == "cold").then_some(()))
                })
                .await?;
                // Every other time, the user's way forward: stop, start.
                if i % 2 == 0 {
                    for op in ["stop", "start"] {
                        let path = format!("/sandboxes/cc/{op}");
                        let (s, v) = d.call(Method::POST, &path, None).await?;
                        ensure(s == 200, || {
                            format!("cycle {i}: {op} after the VMM died: {s} {v}")
                        })?;
                    }
                    let v = d.get("cc").await?;
                    ensure(v["thermal"] == "hot", || format!("cycle {i}: started: {v}"))?;
                }
            }
        }
        let got = d.sh("cc", "cat /workspace/log").await?;
        ensure(got == want, || {
            format!("cycle {i} (step {step}): lost lines: got {got:?}")
        })?;
    }
    println!(
        "{cycles} cycles: {} stop/start, {} daemon SIGKILLs, {} QEMU SIGKILLs; no line lost",
        counts[0], counts[1], counts[2]
    );
    let (s, _) = d.call(Method::DELETE, "/sandboxes/cc", None).await?;
    ensure(s == 200, || format!("delete: {s}"))?;
    d.ensure_host(0, 0, 0, "after delete")
}
