//! The unmodified `e2b-code-interpreter` SDK (PyPI, pinned in
//! `scripts/setup.sh`, in `$BHATTI_CACHE_DIR/venv`) against a real daemon:
//! `pytest tests/e2b-interpreter` creates sandboxes of E2B's
//! `code-interpreter-v1` template (bhatti's `interpreter` tier: a Jupyter
//! kernel from Debian's packages behind bhatti's code-interpreter server)
//! and runs code in them.
//!
//! Reported ignored, with the reason, without the SDK in the venv or
//! without the `interpreter` tier built (`cargo xtask images --tier
//! interpreter`; `scripts/setup.sh` builds it). `BHATTI_E2B_CI_K` selects
//! tests (pytest's `-k`).

use std::time::Duration;

use bhatti_engine::image::{ImagePaths, Tier};
use libtest_mimic::Trial;

use crate::pytest;
use crate::support::{TestDaemon, TestResult, Timers, run};

const NAME: &str = "e2b::code_interpreter";
/// The SDK version the tests are written against (scripts/setup.sh).
const SDK: &str = "2.11.5";
/// Wall-clock bound of the pytest process (kernel starts under TCG).
const BUDGET: Duration = Duration::from_secs(1800);

pub fn trials() -> Vec<Trial> {
    pytest::trial_if(NAME, present(), code_interpreter)
}

fn present() -> Result<(), String> {
    pytest::has_pytest()?;
    match pytest::package_version("e2b-code-interpreter") {
        Some(v) if v == SDK => {}
        have => {
            return Err(format!(
                "the venv has e2b-code-interpreter {:?}, not {SDK} (scripts/setup.sh installs it)",
                have.as_deref().unwrap_or("none")
            ));
        }
    }
    ImagePaths::from_env()
        .rootfs(Tier::Interpreter)
        .map(drop)
        .map_err(|e| format!("{e} (cargo xtask images --tier interpreter builds it)"))
}

fn code_interpreter() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let mut cmd = pytest::command("e2b-interpreter", "BHATTI_E2B_CI_K");
        crate::e2b::sdk_env(&mut cmd, &d);
        pytest::finish(cmd, "e2b-interpreter", BUDGET).await?;
        d.finish().await
    })
}
