//! Running child processes with their command line in the error.

use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

/// Runs `cmd` with inherited stdio (its output is the progress display).
pub fn status(cmd: &mut Command) -> Result<()> {
    let shown = show(cmd);
    let st = cmd
        .status()
        .with_context(|| format!("cannot run `{shown}`"))?;
    if !st.success() {
        bail!("`{shown}` failed ({st})");
    }
    Ok(())
}

/// Runs `cmd` capturing its output; fails with its stderr.
pub fn output(cmd: &mut Command) -> Result<Output> {
    let shown = show(cmd);
    let out = cmd
        .output()
        .with_context(|| format!("cannot run `{shown}`"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}
