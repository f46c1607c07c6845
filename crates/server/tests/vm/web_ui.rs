//! The web UI in a real browser: `pytest tests/web` (selenium, pinned in
//! `scripts/setup.sh`, in `$BHATTI_CACHE_DIR/venv`) drives Debian's
//! headless Chromium (`/usr/bin/chromium` through `/usr/bin/chromedriver`)
//! against a real daemon with real VMs on loopback: log in, create a
//! sandbox, type in the xterm.js terminal and read the rendered buffer,
//! resize the window and check `stty size` in the guest, reload and see
//! the scrollback, upload/view/download a file, exec, stop and start,
//! destroy. Screenshots of each page go to `target/web-screenshots/`.
//!
//! Without Chromium, its driver or selenium the trial is reported ignored,
//! with the reason. `BHATTI_WEB_K` selects tests by hand (pytest's `-k`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use libtest_mimic::{Completion, Trial};

use crate::support::{TestDaemon, TestResult, Timers, ensure, run};

const NAME: &str = "web_ui::browser";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Wall-clock bound of the pytest process.
const BUDGET: Duration = Duration::from_secs(1200);

pub fn trials() -> Vec<Trial> {
    if let Err(reason) = present() {
        eprintln!("SKIPPED: {NAME}: {reason}");
        return vec![
            Trial::ignorable_test(NAME, move || {
                println!("SKIPPED: {reason}");
                Ok(Completion::ignored_with(reason))
            })
            .with_ignored_flag(true),
        ];
    }
    vec![crate::support::trial(NAME, browser)]
}

/// `$BHATTI_CACHE_DIR/venv` (default `/var/cache/bhatti/venv`).
fn venv() -> PathBuf {
    std::env::var_os("BHATTI_CACHE_DIR")
        .map_or_else(|| PathBuf::from("/var/cache/bhatti"), PathBuf::from)
        .join("venv")
}

/// Whether Chromium, chromedriver, pytest and selenium are installed.
fn present() -> Result<(), String> {
    for bin in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(bin).is_file() {
            return Err(format!(
                "{bin} is missing (scripts/setup.sh installs chromium and chromium-driver)"
            ));
        }
    }
    let venv = venv();
    if !venv.join("bin/pytest").is_file() {
        return Err(format!(
            "{} has no pytest (scripts/setup.sh installs it)",
            venv.display()
        ));
    }
    let ok = std::process::Command::new(venv.join("bin/python"))
        .args(["-c", "import selenium.webdriver"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} has no selenium (scripts/setup.sh installs it)",
            venv.display()
        ))
    }
}

fn browser() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let shots = root.join("target/web-screenshots");
        std::fs::create_dir_all(&shots)?;
        let mut cmd = tokio::process::Command::new(venv().join("bin/pytest"));
        cmd.args(["tests/web", "-q", "-x", "-p", "no:cacheprovider"])
            .args(
                std::env::var("BHATTI_WEB_K")
                    .ok()
                    .map(|k| ["-k".to_owned(), k])
                    .into_iter()
                    .flatten(),
            )
            .current_dir(&root)
            .env("BHATTI_URL", &d.url)
            .env("BHATTI_KEY", &d.key)
            .env("BHATTI_SCREENSHOTS", &shots)
            // Selenium Manager never runs (the driver's path is given), and
            // would stay offline if it did.
            .env("SE_OFFLINE", "true")
            .env("SE_AVOID_STATS", "true")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(BUDGET, cmd.output()).await??;
        println!("{}", String::from_utf8_lossy(&out.stdout));
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        println!("screenshots: {}", shots.display());
        ensure(out.status.success(), || {
            format!("pytest tests/web failed: {}", out.status)
        })?;
        d.finish().await
    })
}
