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

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bhatti_store::users::Limits;
use libtest_mimic::{Completion, Trial};

use crate::support::{TestDaemon, TestResult, Timers, ensure, run};

const NAME: &str = "e2b::python_sdk";
/// The SDK version the tests are written against (scripts/setup.sh).
const SDK: &str = "2.63.0";
/// Wall-clock bound of the pytest process.
const BUDGET: Duration = Duration::from_secs(1800);

pub fn trials() -> Vec<Trial> {
    if let Err(reason) = sdk_present() {
        eprintln!("SKIPPED: {NAME}: {reason}");
        return vec![
            Trial::ignorable_test(NAME, move || {
                println!("SKIPPED: {reason}");
                Ok(Completion::ignored_with(reason))
            })
            .with_ignored_flag(true),
        ];
    }
    vec![crate::support::trial(NAME, python_sdk)]
}

/// `$BHATTI_CACHE_DIR/venv` (default `/var/cache/bhatti/venv`).
fn venv() -> PathBuf {
    std::env::var_os("BHATTI_CACHE_DIR")
        .map_or_else(|| PathBuf::from("/var/cache/bhatti"), PathBuf::from)
        .join("venv")
}

/// Whether the venv has pytest and the pinned SDK.
fn sdk_present() -> Result<(), String> {
    let venv = venv();
    if !venv.join("bin/pytest").is_file() {
        return Err(format!(
            "{} has no pytest (scripts/setup.sh installs it)",
            venv.display()
        ));
    }
    let out = std::process::Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('e2b'))",
        ])
        .output()
        .map_err(|e| format!("running the venv's python: {e}"))?;
    let have = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if have == SDK {
        Ok(())
    } else {
        Err(format!(
            "the venv has e2b {:?}, not {SDK} (scripts/setup.sh installs it)",
            if have.is_empty() { "none" } else { &have }
        ))
    }
}

fn python_sdk() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let bob = d.user("bob", Limits::default())?;
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut cmd = tokio::process::Command::new(venv().join("bin/pytest"));
        cmd.args(["tests/e2b", "-q", "-x", "-p", "no:cacheprovider"])
            .args(
                std::env::var("BHATTI_E2B_PYTEST_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .args(
                std::env::var("BHATTI_E2B_K")
                    .ok()
                    .map(|k| ["-k".to_owned(), k])
                    .into_iter()
                    .flatten(),
            )
            .current_dir(&root)
            .env("E2B_API_KEY", &d.key)
            .env("E2B_API_URL", format!("{}/e2b", d.url))
            .env("E2B_SANDBOX_URL", format!("{}/e2b", d.url))
            // Nothing may leave loopback: no default domain to fall back on.
            .env("E2B_DOMAIN", "invalid.localhost")
            .env("BHATTI_E2B_OTHER_KEY", &bob)
            .env("BHATTI_URL", &d.url)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(BUDGET, cmd.output()).await??;
        println!("{}", String::from_utf8_lossy(&out.stdout));
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        ensure(out.status.success(), || {
            format!("pytest tests/e2b failed: {}", out.status)
        })?;
        d.finish().await
    })
}
