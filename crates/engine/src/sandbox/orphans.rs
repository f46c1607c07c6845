//! Finding VMM processes by what their command line names: any process
//! whose command line mentions `<data_dir>/sandboxes/` belongs to this
//! engine's data dir. Recovery adopts the ones of live sandboxes and ends
//! the rest (left by a create that never finished, or a sandbox whose
//! files are gone).
//!
//! # Threads, locks, I/O
//! Reads `/proc/<pid>/cmdline` and sends SIGKILL; blocking, run during
//! recovery. No shared state.

use std::collections::HashSet;
use std::path::Path;

use rustix::process::{Pid, Signal, kill_process};

/// Pids of processes whose argv contains `marker`, other than our own.
pub fn find(marker: &str) -> Vec<i32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let needle = marker.as_bytes();
    let mut pids = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if u32::try_from(pid).is_ok_and(|p| p == me) {
            continue;
        }
        // Processes vanish while we look: unreadable ones are skipped.
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.windows(needle.len()).any(|w| w == needle) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

/// Kills the processes using files under `sandboxes_dir`, except the
/// pids in `keep` (VMMs the engine holds); returns the pids killed.
pub fn kill_all_except(sandboxes_dir: &Path, keep: &HashSet<i32>) -> Vec<i32> {
    let mut marker = sandboxes_dir.to_string_lossy().into_owned();
    if !marker.ends_with('/') {
        marker.push('/');
    }
    let mut killed = Vec::new();
    for pid in find(&marker) {
        if keep.contains(&pid) {
            continue;
        }
        if let Some(p) = Pid::from_raw(pid)
            && kill_process(p, Signal::KILL).is_ok()
        {
            killed.push(pid);
        }
    }
    killed
}

/// Kills every process using files under `sandboxes_dir` (test and bench
/// cleanup); returns their pids.
pub fn kill_all(sandboxes_dir: &Path) -> Vec<i32> {
    kill_all_except(sandboxes_dir, &HashSet::new())
}
