//! One cgroup per VMM process, so a busy guest cannot starve its
//! neighbours or the daemon, and a guest's VMM cannot take the host's
//! memory.
//!
//! # Policy
//! - CPU: a hard quota of `cpus` host cores (`cpus × 100 ms` per 100 ms
//!   period) and the weight of `cpus + 1` default tasks (v1 `cpu.shares`
//!   1024 each, v2 `cpu.weight` 100 each): a vCPU thread each plus QEMU's
//!   main loop, which does the guest's I/O. Outside a cgroup those threads
//!   competed as separate tasks; weighted as `cpus` tasks the group got
//!   less than before (benches/neighbours.rs, busy 2-core host, 4 runs:
//!   the neighbour's `exec true` p50 under two hogs 1.2-1.55x the
//!   no-cgroup figure, hogs at 0.4 instead of 0.6-0.8 cores; with `+ 1`,
//!   2 runs: 0.87x and 1.4x, p99 64 vs 100 ms and 60 vs 92 ms). Under TCG
//!   one vCPU thread can burn a whole host core, so the quota is what
//!   keeps a multi-vCPU guest from taking every core; equal weights share
//!   what is left fairly.
//! - Memory: a hard limit of the guest's RAM plus [`OVERHEAD_MIB`] for QEMU
//!   itself (its heap, device state, and under TCG the translated code,
//!   bounded by `-accel tcg,tb-size`).
//!
//! # Layout
//! VMM groups are peers of the daemon's own processes, never gathered
//! under one shared parent: a parent would compete as a single entity,
//! so a few hogs would make every VMM (the idle neighbour too) wait
//! behind everything else on the host. Measured once on a loaded 2-core
//! host (`benches/neighbours.rs`): with a shared parent the idle
//! neighbour's `exec true` p50 went from 19 ms to 74 ms, under two hogs
//! to 186 ms, and the hogs got 0.15 host cores each instead of 0.5.
//! - cgroup v1 (each controller its own hierarchy): in the daemon's own
//!   group in the `cpu` and in the `memory` hierarchy, so every limit
//!   already set on the daemon still holds for its VMMs;
//! - cgroup v2: beside the daemon's own group (in its parent; the root
//!   when the daemon is in the root), because a v2 group with processes
//!   cannot hand controllers to children. `cpu` and `memory` are enabled
//!   in that parent's subtree.
//!
//! A VMM's group is [`PREFIX`] plus its run dir's name (the sandbox id)
//! and a hash of the dir's full path, so a restore reuses the name and
//! two data dirs never collide. The group is made before the spawn, the
//! child joins it between fork and exec (so every thread and every later
//! child, like the `exec:` migration helper, is in it from the start),
//! and it is removed once the process is reaped ([`VmmCgroup::remove`]). `rmdir`
//! never removes a group that still has a process, so removing cannot hurt
//! a VMM that still runs. A VMM killed while the daemon was down (see
//! `sandbox::orphans`), or one whose owner exited without reaping it,
//! leaves an empty group: its next spawn reuses it, and the first spawn
//! of every process removes empty groups older than [`LEFTOVER_AGE`]
//! (a group is joined milliseconds after it is made).
//!
//! Where no hierarchy is writable (no root, a read-only `/sys/fs/cgroup`,
//! controllers missing) the engine logs one warning and runs VMMs without
//! limits: a create never fails for want of cgroups. `BHATTI_VMM_CGROUPS=0`
//! turns the whole feature off.
//!
//! # Layout of the code
//! This file: the policy ([`Limits`]) and a VMM's group ([`VmmCgroup`]).
//! `layout`: finding where groups go (cgroup v1 or v2, the daemon's own
//! group) and sweeping leftovers.
//!
//! # Threads, locks, I/O
//! The layout is found once per process (a `OnceLock`: reads
//! `/proc/self/cgroup` and `/proc/self/mountinfo`, sweeps leftovers).
//! Making, joining and removing a group are plain file-system calls on the
//! caller's thread; the join runs in the forked child (one `write(2)` per
//! hierarchy on descriptors opened before the fork).

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Once};
use std::time::Duration;

/// The start of every VMM group's name.
pub const PREFIX: &str = "bhatti-vmm-";

/// Memory allowed above the guest's RAM for QEMU itself. Measured: a
/// 256 MiB TCG guest with its RAM full peaked at 335 MB (67 MB above its
/// RAM), and TCG's code buffer may grow to 128 MiB more (see
/// `qemu::launch::TCG_TB_MIB`).
pub const OVERHEAD_MIB: u64 = 256;

/// An empty VMM group at least this old is a leftover.
pub const LEFTOVER_AGE: Duration = Duration::from_secs(60);

/// The CFS period the quota is given in.
pub const PERIOD_US: u64 = 100_000;

use layout::{Layout, Version, layout};

mod layout;

/// Errors placing a VMM in its cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("turned off by BHATTI_VMM_CGROUPS=0")]
    Disabled,
    #[error("no cgroup hierarchy with the cpu and memory controllers is mounted")]
    NotMounted,
    #[error("the {0} controller is not available to this process's cgroup")]
    NoController(&'static str),
    #[error("cannot {op} {}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// What a VMM may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub cpus: u32,
    pub memory_mib: u32,
}

impl Limits {
    /// CPU time per [`PERIOD_US`]: `cpus` whole cores.
    pub fn quota_us(&self) -> u64 {
        u64::from(self.cpus.max(1)) * PERIOD_US
    }

    /// The memory limit: guest RAM plus [`OVERHEAD_MIB`].
    pub fn memory_bytes(&self) -> u64 {
        (u64::from(self.memory_mib) + OVERHEAD_MIB) << 20
    }

    /// The files and values that set these limits in `version`.
    fn files(&self, version: Version) -> Vec<(&'static str, String)> {
        let cpus = u64::from(self.cpus.max(1));
        match version {
            Version::V1Cpu => vec![
                ("cpu.cfs_period_us", PERIOD_US.to_string()),
                ("cpu.cfs_quota_us", self.quota_us().to_string()),
                ("cpu.shares", (1024 * (cpus + 1)).to_string()),
            ],
            Version::V1Memory => vec![("memory.limit_in_bytes", self.memory_bytes().to_string())],
            Version::V2 => vec![
                ("cpu.max", format!("{} {PERIOD_US}", self.quota_us())),
                ("cpu.weight", (100 * (cpus + 1)).min(10_000).to_string()),
                ("memory.max", self.memory_bytes().to_string()),
            ],
        }
    }
}

/// A VMM's cgroup (one dir per hierarchy). Removed by [`Self::remove`],
/// not on drop: a detached VMM keeps its group.
#[derive(Debug)]
pub struct VmmCgroup {
    dirs: Vec<PathBuf>,
    /// `cgroup.procs` of each dir, open for the child to join.
    procs: Arc<Vec<fs::File>>,
}

impl VmmCgroup {
    /// Makes (or reuses) the group `name` with `limits`. `None` when
    /// cgroups cannot be used here; the first such failure is logged.
    pub fn make(name: &str, limits: Limits) -> Option<Self> {
        static WARNED: Once = Once::new();
        match layout().and_then(|l| Self::make_in(l, name, limits)) {
            Ok(cg) => Some(cg),
            Err(CgroupError::Disabled) => None,
            Err(e) => {
                WARNED.call_once(|| {
                    tracing::warn!(error = %e, "VMMs run without cgroup limits");
                });
                None
            }
        }
    }

    fn make_in(layout: &Layout, name: &str, limits: Limits) -> Result<Self, CgroupError> {
        let mut cg = Self {
            dirs: Vec::new(),
            procs: Arc::new(Vec::new()),
        };
        let mut procs = Vec::new();
        for (version, parent) in &layout.parents {
            let dir = parent.join(name);
            match fs::create_dir(&dir) {
                Ok(()) => cg.dirs.push(dir.clone()),
                // Left by a VMM killed while the daemon was down: reuse it.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => cg.dirs.push(dir.clone()),
                Err(e) => {
                    cg.remove();
                    return Err(io_err("make", &dir)(e));
                }
            }
            let set = limits.files(*version).into_iter().try_for_each(|(f, v)| {
                let path = dir.join(f);
                fs::write(&path, v).map_err(io_err("write", &path))
            });
            let opened = set.and_then(|()| {
                let path = dir.join("cgroup.procs");
                fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err("open", &path))
            });
            match opened {
                Ok(f) => procs.push(f),
                Err(e) => {
                    cg.remove();
                    return Err(e);
                }
            }
        }
        cg.procs = Arc::new(procs);
        Ok(cg)
    }

    /// Makes the child of `cmd` join this group between fork and exec. A
    /// failed join does not stop the spawn (see [`Self::check_joined`]).
    pub fn join_on_spawn(&self, cmd: &mut Command) {
        let procs = Arc::clone(&self.procs);
        // SAFETY: runs in the forked child before exec; it only calls
        // write(2) on descriptors opened before the fork (no allocation, no
        // locks), which is async-signal-safe. "0" means the writer itself.
        unsafe {
            cmd.pre_exec(move || {
                for f in procs.iter() {
                    let _ = rustix::io::write(f, b"0");
                }
                Ok(())
            });
        }
    }

    /// Logs a warning when `pid` is not in every dir of this group (its
    /// join in the child failed: it runs without some limit).
    pub fn check_joined(&self, pid: u32) {
        let me = pid.to_string();
        for dir in &self.dirs {
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            if !procs.lines().any(|l| l == me) {
                tracing::warn!(pid, dir = %dir.display(), "VMM did not join its cgroup");
            }
        }
    }

    /// The group's dirs (one per hierarchy).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Removes the group once its processes are gone. A group that still
    /// has a process (the kernel says busy) is retried for a second, then
    /// left and logged.
    pub fn remove(&self) {
        for dir in self.dirs.iter().rev() {
            let mut tries = 0;
            loop {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.kind() == io::ErrorKind::ResourceBusy => {
                        tries += 1;
                        if tries > 100 {
                            tracing::warn!(dir = %dir.display(), "VMM cgroup still busy; left");
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "removing VMM cgroup");
                        break;
                    }
                }
            }
        }
    }
}

/// The group name for a VMM whose files live in `run_dir`: [`PREFIX`],
/// the dir's name and a hash of its whole path (FNV-1a), e.g.
/// `bhatti-vmm-sb1-3f2a9c0d1e7b6a55`.
pub fn name_for(run_dir: &Path) -> String {
    let base: String = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in run_dir.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{PREFIX}{base}-{h:016x}")
}

#[cfg(test)]
mod tests;
