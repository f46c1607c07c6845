//! A VMM's life outside the state machine's plan: noticing at once when it
//! dies, and booting a guest from its own disk when its memory is gone.
//!
//! - Every VMM the engine holds (spawned, restored or adopted after a
//!   restart) is watched by a task waiting on its pidfd
//!   ([`VmEngine::watch_exit`]). When it ends while the engine still holds
//!   it (not a snapshot, kill or destroy the engine asked for), the task
//!   takes it out of the slot, makes the sandbox Cold without a snapshot
//!   and publishes that with a note saying the memory is lost.
//! - A Cold or Stopped sandbox without a usable snapshot is woken or
//!   started by a boot from its disk ([`VmEngine::boot_from_disk`]): a new
//!   config drive from `sandbox.json` (token, hostname, volumes and init
//!   script) and the environment held in memory (`boot_env`; files given
//!   at create are on the disk already and are not written again), the VMM, the agent's first answer, the drive
//!   scrubbed. Processes and sessions from before are gone; every file the
//!   guest had synced to its disk is there.
//!
//! # Threads, locks, I/O
//! One task per VMM, idle until the process ends; it takes the sandbox
//! lock only then. A boot from disk runs under the sandbox lock, like a
//! restore: callers of `ensure_hot` queue behind it and share it.

use std::sync::Arc;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::create::guest_volumes;
use super::recover::read_meta;
use super::{Publisher, Sandbox, Slot, VmEngine, blocking, fault};
use crate::driver::Driver;
use crate::engine::{EngineError, EngineResult, SandboxSpec};
use crate::image::config_drive;
use crate::state::SandboxState;

impl<D: Driver> VmEngine<D> {
    /// Starts watching `vm`, the VMM of `sb`, for its exit (module docs).
    pub(super) fn watch_exit(&self, sb: &Arc<Sandbox<D>>, vm: &D::Vm) {
        let (Some(fd), Some(pid)) = (self.driver.exit_fd(vm), self.driver.pid(vm)) else {
            tracing::warn!(sandbox = %sb.id, "VMM exit cannot be watched: noticed on the next request only");
            return;
        };
        let (driver, publisher, sb) = (self.driver.clone(), self.publisher.clone(), sb.clone());
        tokio::spawn(async move {
            // SAFETY: `fd` is an `OwnedFd` (a pidfd) moved into the
            // `AsyncFd`, which owns it until it is dropped; nothing else
            // closes or replaces it while it is registered.
            let registered = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
            match registered {
                Ok(fd) => {
                    let _ = fd.readable().await;
                }
                Err(e) => {
                    let e = std::io::Error::from(e);
                    tracing::warn!(sandbox = %sb.id, error = %e, "VMM exit cannot be watched");
                    return;
                }
            }
            vmm_exited(&*driver, &publisher, &sb, pid).await;
        });
    }

    /// The VMM that makes `slot`'s sandbox hot: a restore of its snapshot
    /// if it has a usable one, else a boot from its disk.
    pub(super) async fn restore_or_boot(
        &self,
        sb: &Sandbox<D>,
        slot: &mut Slot<D>,
    ) -> EngineResult<D::Vm> {
        fault::point("restore");
        if let Some(snap) = slot.snapshot.clone() {
            let Some(problem) = self.driver.snapshot_problem(&snap) else {
                return Ok(self.driver.restore(&sb.vm_config, &snap).await?);
            };
            tracing::warn!(sandbox = %sb.id, %problem, "snapshot unusable: booting from disk");
            self.driver.discard_snapshot(&sb.dir, None);
            slot.snapshot = None;
            slot.lost = Some(format!("its snapshot could not be restored ({problem})"));
        }
        self.boot_from_disk(sb).await
    }

    /// Boots the guest of `sb` from its disk (module docs).
    pub(super) async fn boot_from_disk(&self, sb: &Sandbox<D>) -> EngineResult<D::Vm> {
        let meta = read_meta(&sb.dir).map_err(|e| EngineError::Inconsistent(e.to_string()))?;
        let env = sb
            .boot_env
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let spec = SandboxSpec {
            hostname: meta.hostname.clone(),
            env,
            init: meta.init.clone(),
            exec_user: meta.exec_user.clone(),
            ..SandboxSpec::default()
        };
        let guest = self.guest_config(&sb.id, &spec, &meta.token, guest_volumes(&meta.volumes));
        let drive_path = sb
            .vm_config
            .config_drive
            .clone()
            .unwrap_or_else(|| sb.dir.join(super::CONFIG_DRIVE_FILE));
        let drive = blocking(move || config_drive::build_for_boot(&guest, &drive_path)).await??;
        let (vm, _agent) = self.boot(&sb.vm_config, &meta.token).await?;
        if let Err(e) = drive.scrub() {
            let _ = self.driver.kill(vm).await;
            return Err(e.into());
        }
        tracing::info!(sandbox = %sb.id, "booted from its disk");
        Ok(vm)
    }
}

/// The VMM of `sb` with process id `pid` has ended (module docs).
async fn vmm_exited<D: Driver>(driver: &D, publisher: &Publisher, sb: &Sandbox<D>, pid: u32) {
    let mut slot = sb.slot.lock().await;
    if slot.vm.as_ref().and_then(|vm| driver.pid(vm)) != Some(pid) {
        // Ended by the engine (snapshot, kill, destroy), or replaced.
        return;
    }
    let Some(mut vm) = slot.vm.take() else {
        return;
    };
    let how = driver
        .exited(&mut vm)
        .unwrap_or_else(|| "its process ended".into());
    let console = driver.console_tail(&sb.vm_config, 5);
    if let Err(e) = driver.kill(vm).await {
        tracing::warn!(sandbox = %sb.id, error = %e, "reaping a dead VMM");
    }
    driver.discard_snapshot(&sb.dir, None);
    slot.snapshot = None;
    if slot.state.has_vmm() {
        slot.state = SandboxState::Cold;
    }
    slot.lost = Some(format!("its VMM ended unexpectedly ({how})"));
    tracing::warn!(sandbox = %sb.id, %how, %console, "VMM died");
    publisher.publish(driver, sb, &slot);
}
