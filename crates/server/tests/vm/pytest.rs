//! Running a pytest suite of the repository (`tests/<dir>`) from the
//! venv `scripts/setup.sh` makes, as one VM trial: what the E2B SDK
//! trial ([`crate::e2b`]) and the browser trial ([`crate::web_ui`])
//! share. A trial whose tools are missing is reported ignored, with the
//! reason.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use libtest_mimic::{Completion, Trial};

use crate::support::{TestResult, ensure};

/// `$BHATTI_CACHE_DIR/venv` (default `/var/cache/bhatti/venv`).
pub fn venv() -> PathBuf {
    std::env::var_os("BHATTI_CACHE_DIR")
        .map_or_else(|| PathBuf::from("/var/cache/bhatti"), PathBuf::from)
        .join("venv")
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The trial `name` running `f`, or an ignored one saying why `present`
/// found its tools missing.
pub fn trial_if(
    name: &'static str,
    present: Result<(), String>,
    f: fn() -> TestResult,
) -> Vec<Trial> {
    if let Err(reason) = present {
        eprintln!("SKIPPED: {name}: {reason}");
        return vec![
            Trial::ignorable_test(name, move || {
                println!("SKIPPED: {reason}");
                Ok(Completion::ignored_with(reason))
            })
            .with_ignored_flag(true),
        ];
    }
    vec![crate::support::trial(name, f)]
}

/// `Ok` when the venv has pytest.
pub fn has_pytest() -> Result<(), String> {
    let venv = venv();
    if venv.join("bin/pytest").is_file() {
        Ok(())
    } else {
        Err(format!(
            "{} has no pytest (scripts/setup.sh installs it)",
            venv.display()
        ))
    }
}

/// The venv's version of Python package `dist`, if installed.
pub fn package_version(dist: &str) -> Option<String> {
    let code = format!("import importlib.metadata as m; print(m.version({dist:?}))");
    let out = std::process::Command::new(venv().join("bin/python"))
        .args(["-c", &code])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !v.is_empty()).then_some(v)
}

/// `pytest tests/<dir> -q -x` in the repository root, with `-k` from the
/// environment variable `k_var` when set; the caller adds its env.
pub fn command(dir: &str, k_var: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(venv().join("bin/pytest"));
    cmd.args([
        &format!("tests/{dir}"),
        "-q",
        "-x",
        "-p",
        "no:cacheprovider",
    ])
    .args(
        std::env::var(k_var)
            .ok()
            .map(|k| ["-k".to_owned(), k])
            .into_iter()
            .flatten(),
    )
    .current_dir(repo_root())
    .env("PYTHONDONTWRITEBYTECODE", "1")
    .stdin(Stdio::null())
    .kill_on_drop(true);
    cmd
}

/// Runs `cmd` (at most `budget`), prints its output, fails unless it
/// passed.
pub async fn finish(mut cmd: tokio::process::Command, dir: &str, budget: Duration) -> TestResult {
    let out = tokio::time::timeout(budget, cmd.output()).await??;
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    ensure(out.status.success(), || {
        format!("pytest tests/{dir} failed: {}", out.status)
    })
}
