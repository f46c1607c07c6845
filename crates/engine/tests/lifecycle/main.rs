//! Sandbox lifecycle through the engine with real QEMU microVMs (TCG here),
//! the real kernel, busybox rootfs and lohar as PID 1. Every test has its
//! own data dir and its own network namespace (egress `none`); nothing is
//! sent outside it. Reported as ignored, with the reason, without root,
//! QEMU or the images (`cargo xtask images`).
//!
//! The engine runs the daemon's driver type, [`AnyDriver`] (QEMU), so the
//! dispatch is exercised with real VMs. One file per theme: `thermal`,
//! `events`, `failures`, `guest`, `recovery`, `agent`, `users`, `disk`,
//! `images`;
//! helpers here.

#[path = "../support/mod.rs"]
mod support;

mod agent;
mod disk;
mod events;
mod failures;
mod guest;
mod images;
mod races;
mod recovery;
mod shared_ram;
mod snapshots;
mod thermal;
mod users;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bhatti_agent::Event;
use bhatti_engine::driver::Driver;
use bhatti_engine::drivers::AnyDriver;
use bhatti_engine::engine::{
    Engine, EngineError, ExecOptions, ExecRequest, ReadOptions, SandboxId, SandboxSpec,
    ShellOptions,
};
use bhatti_engine::image::{ImagePaths, Tier};
use bhatti_engine::netns::{NetNs, unique_name};
use bhatti_engine::qemu::driver::QemuDriver;
use bhatti_engine::sandbox::{EngineConfig, Recovery, VmEngine};
use bhatti_engine::state::SandboxState;
use libtest_mimic::{Arguments, Failed};
use support::{Need, ensure, trial};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type TestResult = Result<(), Failed>;

/// An engine with its own namespace and data dir; the engine (and its VMs)
/// goes first on drop, then the namespace, then the directory.
struct TestEngine {
    engine: Arc<VmEngine<AnyDriver>>,
    _ns: NetNs,
    dir: tempfile::TempDir,
}

impl TestEngine {
    async fn start(images: ImagePaths) -> Result<Self, Failed> {
        let ns = NetNs::create(&unique_name("btlc"))?;
        let dir = tempfile::tempdir()?;
        let engine = VmEngine::start(driver(), config(&dir, &ns, images)).await?;
        Ok(Self {
            engine: Arc::new(engine),
            _ns: ns,
            dir,
        })
    }

    fn sandbox_dir(&self, id: &SandboxId) -> std::path::PathBuf {
        self.dir.path().join("sandboxes").join(id.as_str())
    }
}

/// The driver the daemon would pick here: QEMU, behind [`AnyDriver`].
fn driver() -> AnyDriver {
    AnyDriver::Qemu(QemuDriver::default())
}

fn config(dir: &tempfile::TempDir, ns: &NetNs, images: ImagePaths) -> EngineConfig {
    EngineConfig::new(dir.path(), images, ns.name())
}

fn run<F: Future<Output = TestResult>>(f: F) -> TestResult {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(f)
}

fn small() -> SandboxSpec {
    SandboxSpec {
        cpus: 1,
        memory_mb: 256,
        image: Tier::Busybox.into(),
        ..SandboxSpec::default()
    }
}

/// How long a sandbox sleeps before its clock is checked after the wake.
const CLOCK_NAP: Duration = Duration::from_secs(4);

fn id(s: &str) -> Result<SandboxId, Failed> {
    Ok(s.parse::<SandboxId>()?)
}

async fn sh(e: &VmEngine<AnyDriver>, id: &SandboxId, script: &str) -> Result<String, Failed> {
    let r = e.exec(id, ExecOptions::new(["sh", "-c", script])).await?;
    ensure(r.exit_code == 0, || {
        format!(
            "`{script}` exited {}: {}",
            r.exit_code,
            String::from_utf8_lossy(&r.stderr)
        )
    })?;
    Ok(String::from_utf8_lossy(&r.stdout).into_owned())
}

/// How far the guest's wall clock is behind the host's, in seconds: the
/// host's time just before the exec against the guest's whole seconds
/// during it. A clock on time gives at most 1.5 (the guest reads whole
/// seconds, and the RTC it was set from counts whole seconds too) and can
/// go negative by the exec's own latency.
async fn guest_clock_lag(e: &VmEngine<AnyDriver>, id: &SandboxId) -> Result<f64, Failed> {
    let host = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    let out = sh(e, id, "date +%s").await?;
    let guest: f64 = out
        .trim()
        .parse()
        .map_err(|_| format!("date printed {out:?}"))?;
    Ok(host - guest)
}

/// Fails unless the guest's clock agrees with the host's (after a wake:
/// caught up by lohar from the RTC, not left where the VM stopped — a
/// clock left behind is [`CLOCK_NAP`] or more behind).
async fn ensure_on_time(e: &VmEngine<AnyDriver>, id: &SandboxId, how: &str) -> TestResult {
    let lag = guest_clock_lag(e, id).await?;
    ensure((-2.0..2.5).contains(&lag), || {
        format!("{how}: guest clock {lag:.1} s behind the host")
    })
}

fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none())
}

fn main() {
    let args = Arguments::from_args();
    let vm = [Need::Root, Need::Qemu, Need::Images];
    let mut trials = users::trials(&vm);
    trials.extend(shared_ram::trials(&vm));
    trials.extend(snapshots::trials(&vm));
    trials.extend(guest::trials(&vm));
    trials.extend(races::trials(&vm).into_iter().chain(images::trials(&vm)));
    trials.extend([
        trial("create_exec_destroy", &vm, thermal::create_exec_destroy),
        trial(
            "pause_resume_and_wake_from_warm",
            &vm,
            thermal::pause_resume_and_wake_from_warm,
        ),
        trial(
            "stop_start_keeps_data_across_two_cycles",
            &vm,
            thermal::stop_start_keeps_data_across_two_cycles,
        ),
        trial(
            "concurrent_wakes_of_a_cold_sandbox_restore_once",
            &vm,
            thermal::concurrent_wakes_of_a_cold_sandbox_restore_once,
        ),
        trial(
            "every_transition_is_published_in_order",
            &vm,
            events::every_transition_is_published_in_order,
        ),
        trial(
            "status_never_waits_for_a_snapshot_in_progress",
            &vm,
            events::status_never_waits_for_a_snapshot_in_progress,
        ),
        trial(
            "engine_restart_recovers_snapshotted_sandboxes",
            &vm,
            recovery::engine_restart_recovers_snapshotted_sandboxes,
        ),
        trial(
            "agent_operations_through_the_engine",
            &vm,
            agent::agent_operations_through_the_engine,
        ),
        trial(
            "orphan_vmm_processes_are_killed_by_recovery",
            &[Need::Root],
            failures::orphan_vmm_processes_are_killed_by_recovery,
        ),
        trial(
            "create_fails_cleanly_when_the_agent_never_answers",
            &vm,
            failures::create_fails_cleanly_when_the_agent_never_answers,
        ),
        trial(
            "broken_snapshot_boots_from_disk",
            &vm,
            failures::broken_snapshot_boots_from_disk,
        ),
        trial(
            "larger_disk_grows_the_root_file_system",
            &vm,
            disk::larger_disk_grows_the_root_file_system,
        ),
        trial(
            "failed_create_leaves_nothing_behind",
            &[Need::Root, Need::Qemu],
            failures::failed_create_leaves_nothing_behind,
        ),
    ]);
    libtest_mimic::run(&args, trials).exit();
}
