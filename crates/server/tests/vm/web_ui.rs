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

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use libtest_mimic::Trial;

use crate::pytest;
use crate::support::{TestDaemon, TestResult, Timers, run};

const NAME: &str = "web_ui::browser";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Wall-clock bound of the pytest process.
const BUDGET: Duration = Duration::from_secs(1200);

pub fn trials() -> Vec<Trial> {
    pytest::trial_if(NAME, present(), browser)
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
    pytest::has_pytest()?;
    let ok = std::process::Command::new(pytest::venv().join("bin/python"))
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
            pytest::venv().display()
        ))
    }
}

fn browser() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let shots = pytest::repo_root().join("target/web-screenshots");
        std::fs::create_dir_all(&shots)?;
        let mut cmd = pytest::command("web", "BHATTI_WEB_K");
        cmd.env("BHATTI_URL", &d.url)
            .env("BHATTI_KEY", &d.key)
            .env("BHATTI_SCREENSHOTS", &shots)
            // Selenium Manager never runs (the driver's path is given), and
            // would stay offline if it did.
            .env("SE_OFFLINE", "true")
            .env("SE_AVOID_STATS", "true");
        let result = pytest::finish(cmd, "web", BUDGET).await;
        println!("screenshots: {}", shots.display());
        result?;
        d.finish().await
    })
}
