//! Taking over a QEMU that an earlier engine run started
//! ([`Driver::adopt`](crate::driver::Driver::adopt)), and the cheap check
//! that a snapshot file is a QEMU migration stream at all.
//!
//! # Threads, locks, I/O
//! Reads `/proc` and the snapshot file's first bytes; talks QMP to the
//! adopted QEMU; kills one in a state it cannot continue from on the
//! blocking pool.

use std::io;
use std::path::Path;

use super::{QemuDriver, QemuError, QemuVm, shared_ram};
use crate::driver::{Adopted, Driver, VmConfig};
use crate::qemu::launch::VmProcess;
use crate::qemu::qmp::{QmpClient, QmpError, RunState};

/// How every QEMU migration stream starts: `QEVM` and format version 3.
const STREAM_MAGIC: [u8; 8] = *b"QEVM\0\0\0\x03";

impl QemuDriver {
    /// See [`Driver::adopt`].
    pub(super) async fn do_adopt(
        &self,
        config: &VmConfig,
    ) -> Result<Option<Adopted<QemuVm>>, QemuError> {
        let spec = self.launch_spec(config);
        let Some(sock) = spec.qmp_socket.clone() else {
            return Ok(None);
        };
        // Only QEMU has the QMP socket's path in its argv (the `cat` of a
        // migration names the snapshot file).
        let marker = sock.to_string_lossy().into_owned();
        let Some(process) = crate::sandbox::orphans::find(&marker)
            .into_iter()
            .find_map(|pid| {
                let pid = u32::try_from(pid).ok()?;
                VmProcess::adopt(pid, &config.run_dir, spec.make_cgroup())
            })
        else {
            return Ok(None);
        };
        let mut qmp =
            match tokio::time::timeout(self.start_timeout, QmpClient::connect(&sock)).await {
                Ok(Ok(qmp)) => qmp,
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => {
                    return Err(QemuError::Qmp(QmpError::Timeout {
                        what: "the QMP socket of a running VMM",
                        after: self.start_timeout,
                    }));
                }
            };
        qmp.settle_migration(self.snapshot_timeout).await?;
        let state = qmp.query_status().await?.state;
        let shared_ram = shared_ram::launched_shared(process.pid());
        let vm = QemuVm {
            process,
            qmp,
            shared_ram,
        };
        let paused = match state {
            RunState::Running => false,
            RunState::Paused | RunState::PostMigrate => true,
            other => {
                tracing::warn!(?other, run_dir = %config.run_dir.display(), "ending a VMM in a state it cannot continue from");
                let QemuVm { mut process, .. } = vm;
                tokio::task::spawn_blocking(move || process.kill())
                    .await
                    .map_err(|e| QemuError::Wait(io::Error::other(e)))?
                    .map_err(QemuError::Wait)?;
                return Ok(None);
            }
        };
        self.discard_snapshot(&config.run_dir, None);
        Ok(Some(Adopted { vm, paused }))
    }
}

/// Why the snapshot file at `path` cannot be restored, if it cannot.
pub(super) fn stream_problem(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut head = [0u8; 8];
    let read = std::fs::File::open(path).and_then(|mut f| {
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    });
    match read {
        Err(e) => Some(format!("{} cannot be read: {e}", path.display())),
        Ok(0) => Some(format!("{} is empty", path.display())),
        Ok(n) if n < head.len() || head != STREAM_MAGIC => Some(format!(
            "{} is not a QEMU snapshot (it does not start with the migration stream header)",
            path.display()
        )),
        Ok(_) => None,
    }
}
