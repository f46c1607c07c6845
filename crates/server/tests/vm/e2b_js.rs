//! The unmodified E2B JS SDK (npm `e2b`, pinned in
//! `tests/e2b-js/package.json`, installed by `scripts/setup.sh` with
//! `npm ci`) against a real daemon: `node --test tests/e2b-js/` runs with
//! the same environment as the Python trial ([`crate::e2b`]).
//!
//! Reported ignored, with the reason, without a Node.js the SDK supports
//! (its `engines`: 20.18.1 or later) or without the installed package.

use std::process::Stdio;
use std::time::Duration;

use bhatti_store::users::Limits;
use libtest_mimic::Trial;

use crate::pytest::{repo_root, trial_if};
use crate::support::{TestDaemon, TestResult, Timers, ensure, run};

const NAME: &str = "e2b::js_sdk";
/// The SDK version the tests are written against (package.json).
const SDK: &str = "2.51.0";
/// Oldest Node.js the SDK supports.
const NODE: (u32, u32, u32) = (20, 18, 1);
/// Wall-clock bound of the node process.
const BUDGET: Duration = Duration::from_secs(1200);

pub fn trials() -> Vec<Trial> {
    trial_if(NAME, present(), js_sdk)
}

/// Whether node is new enough and the pinned SDK is installed.
fn present() -> Result<(), String> {
    let out = std::process::Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("no node: {e} (scripts/setup.sh installs it)"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u32> = text
        .trim()
        .trim_start_matches('v')
        .split('.')
        .map_while(|p| p.parse().ok())
        .collect();
    let have = (
        v.first().copied().unwrap_or(0),
        v.get(1).copied().unwrap_or(0),
        v.get(2).copied().unwrap_or(0),
    );
    if have < NODE {
        return Err(format!(
            "node {} is older than the E2B JS SDK's oldest ({}.{}.{})",
            text.trim(),
            NODE.0,
            NODE.1,
            NODE.2
        ));
    }
    let pkg = repo_root().join("tests/e2b-js/node_modules/e2b/package.json");
    let json: serde_json::Value = std::fs::read(&pkg)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| format!("{} missing (scripts/setup.sh runs npm ci)", pkg.display()))?;
    match json["version"].as_str() {
        Some(SDK) => Ok(()),
        other => Err(format!("tests/e2b-js has e2b {other:?}, not {SDK}")),
    }
}

fn js_sdk() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let bob = d.user("bob", Limits::default())?;
        let mut cmd = tokio::process::Command::new("node");
        cmd.args(["--test", "--test-reporter=spec", "sdk.test.mjs"])
            .current_dir(repo_root().join("tests/e2b-js"))
            .env("BHATTI_E2B_OTHER_KEY", &bob)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        crate::e2b::sdk_env(&mut cmd, &d);
        let out = tokio::time::timeout(BUDGET, cmd.output()).await??;
        println!("{}", String::from_utf8_lossy(&out.stdout));
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        ensure(out.status.success(), || {
            format!("node --test tests/e2b-js failed: {}", out.status)
        })?;
        d.finish().await
    })
}
