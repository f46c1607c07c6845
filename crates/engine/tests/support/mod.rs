//! Shared support for the host-level engine tests (network namespaces, real
//! VMs): prerequisite checks that turn into "ignored" trials with a printed
//! reason (from `bhatti-testkit`), and [`TestVm`], one QEMU microVM in its
//! own temp dir and its own network namespace.

#![allow(dead_code)]

pub mod vm;

use libtest_mimic::Failed;

/// The host checks and the skipping trial are the test-support crate's,
/// shared with the daemon's and the CLI's VM tests and the benches.
#[allow(unused_imports)] // each test binary and bench uses its own subset
pub use bhatti_testkit::{Need, skip_reason, trial};

/// Fails the trial with `msg` unless `cond`.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(msg().into()) }
}
