//! Prerequisite checks: a missing tool is an error naming the Debian
//! package that provides it.

use std::path::Path;

use anyhow::{Result, bail};

/// Fails unless `program` is on `PATH` (or in an sbin directory).
pub fn command(program: &str, package: &str) -> Result<()> {
    if find(program) {
        Ok(())
    } else {
        bail!(
            "`{program}` not found: install the Debian package `{package}` (apt-get install {package})"
        )
    }
}

/// Fails unless `path` exists.
pub fn file(path: &str, package: &str) -> Result<()> {
    if Path::new(path).exists() {
        Ok(())
    } else {
        bail!(
            "{path} not found: install the Debian package `{package}` (apt-get install {package})"
        )
    }
}

/// Fails unless running as root (needed to keep file ownership in images).
pub fn root(what: &str) -> Result<()> {
    if is_root() {
        Ok(())
    } else {
        bail!("building {what} needs root (file ownership inside the image): run as root")
    }
}

/// Whether the current user is root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn find(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(Into::into))
        .any(|dir| dir.join(program).is_file())
}
