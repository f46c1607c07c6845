//! The unmodified E2B Python SDK (PyPI `e2b`, pinned in
//! `scripts/setup.sh`, installed into `$BHATTI_CACHE_DIR/venv`) against a
//! real daemon: `pytest tests/e2b` runs with `E2B_API_URL` and
//! `E2B_SANDBOX_URL` set to the daemon's `/e2b` on loopback, `E2B_API_KEY`
//! to alice's key and `BHATTI_E2B_OTHER_KEY` to bob's (isolation tests).
//! `BHATTI_URL` is the daemon's native API for what the SDK cannot do
//! (start a server in the guest for the port relay).
//!
//! Without the SDK in the venv the trial is reported ignored, with the
//! reason. For a run by hand, `BHATTI_E2B_K` selects tests (pytest's
//! `-k` expression, e.g. `lifecycle or routes`) and
//! `BHATTI_E2B_PYTEST_ARGS` adds whitespace-separated pytest arguments.

use std::time::Duration;

use bhatti_store::users::Limits;
use libtest_mimic::Trial;

use crate::pytest;
use crate::support::{TestDaemon, TestResult, Timers, run};

const NAME: &str = "e2b::python_sdk";
/// The SDK version the tests are written against (scripts/setup.sh).
const SDK: &str = "2.63.0";
/// Wall-clock bound of the pytest process.
const BUDGET: Duration = Duration::from_secs(1800);

pub fn trials() -> Vec<Trial> {
    pytest::trial_if(NAME, sdk_present(), python_sdk)
}

/// Whether the venv has pytest and the pinned SDK.
fn sdk_present() -> Result<(), String> {
    pytest::has_pytest()?;
    match pytest::package_version("e2b") {
        Some(v) if v == SDK => Ok(()),
        have => Err(format!(
            "the venv has e2b {:?}, not {SDK} (scripts/setup.sh installs it)",
            have.as_deref().unwrap_or("none")
        )),
    }
}

/// The environment an E2B SDK needs to reach daemon `d` as alice, and
/// nothing off loopback.
pub fn sdk_env(cmd: &mut tokio::process::Command, d: &TestDaemon) {
    cmd.env("E2B_API_KEY", &d.key)
        .env("E2B_API_URL", format!("{}/e2b", d.url))
        .env("E2B_SANDBOX_URL", format!("{}/e2b", d.url))
        // No default domain (E2B's cloud) to fall back on.
        .env("E2B_DOMAIN", "invalid.localhost");
}

fn python_sdk() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let bob = d.user("bob", Limits::default())?;
        let mut cmd = pytest::command("e2b", "BHATTI_E2B_K");
        cmd.args(
            std::env::var("BHATTI_E2B_PYTEST_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .env("BHATTI_E2B_OTHER_KEY", &bob)
        .env("BHATTI_URL", &d.url);
        sdk_env(&mut cmd, &d);
        pytest::finish(cmd, "e2b", BUDGET).await?;
        d.finish().await
    })
}
