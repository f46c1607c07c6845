//! Kernel settings PID 1 writes to `/proc/sys` at boot, before any user
//! command can run.
//!
//! - `kernel.dmesg_restrict = 1`: only root (`CAP_SYSLOG`) reads the
//!   kernel log. The sandbox user cannot see boot addresses, the host
//!   TSC rate or the device layout the kernel printed.
//! - `fs.inotify.max_user_instances = 1024` (the kernel's default is
//!   128): every WATCH connection (protocol version 4) holds one inotify
//!   instance of the agent's user, root, and the guest's own tools (file
//!   watchers of dev servers) count against the same limit.
//!
//! Runs once on the main thread, right after `/proc` is mounted; a failed
//! write is logged and boot goes on.

use std::path::Path;

/// `(path under /proc/sys, value)` pairs, applied in order.
pub const SETTINGS: &[(&str, &str)] = &[
    ("kernel/dmesg_restrict", "1"),
    ("fs/inotify/max_user_instances", "1024"),
];

/// Writes every [`SETTINGS`] entry under `proc_sys` (`/proc/sys`).
pub fn apply(proc_sys: &Path) {
    for (key, value) in SETTINGS {
        let path = proc_sys.join(key);
        if let Err(e) = std::fs::write(&path, value) {
            crate::log!("sysctl {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_each_setting_under_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("kernel")).expect("mkdir");
        apply(dir.path());
        let got = std::fs::read_to_string(dir.path().join("kernel/dmesg_restrict"));
        assert_eq!(got.expect("written"), "1");
    }
}
