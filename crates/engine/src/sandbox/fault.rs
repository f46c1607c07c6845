//! Fault injection for crash tests: `BHATTI_FAULT=<point>` makes the
//! process abort (no unwinding, no cleanup: what SIGKILL does) when it
//! reaches the named point of a lifecycle operation, so a test can check
//! that a restart recovers from a crash at exactly that point.
//!
//! Points: `create.vmm` (VMM booted, before `sandbox.json`),
//! `create.meta` (after `sandbox.json`, before the sandbox is published),
//! `snapshot` (before a snapshot is written), `snapshot.written` (snapshot
//! file complete, VMM still running), `restore` (before a restore or boot),
//! `destroy` (VMM killed, files not yet removed).
//!
//! Unset (always, outside tests) it costs one load of a cached value.
//!
//! # Threads, locks, I/O
//! Reads the environment once per process.

use std::sync::OnceLock;

/// The environment variable naming the point to abort at.
pub const ENV: &str = "BHATTI_FAULT";

/// Aborts the process if `BHATTI_FAULT` names `name`.
pub fn point(name: &str) {
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    let target = TARGET.get_or_init(|| std::env::var(ENV).ok().filter(|v| !v.is_empty()));
    if target.as_deref() == Some(name) {
        eprintln!("{ENV}: aborting at {name}");
        std::process::abort();
    }
}
