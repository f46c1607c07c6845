//! Snapshot and restore of a [`QemuVm`] (see the module docs of
//! [`super`]).

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::adopt::stream_problem;
use super::{QemuDriver, QemuError, QemuVm, SNAPSHOT_FILE, private_file, shared_ram};
use crate::driver::{Snapshot, VmConfig};
use crate::qemu::qmp::incoming_uri;

impl QemuDriver {
    pub(super) async fn do_snapshot(
        &self,
        vm: QemuVm,
        run_dir: &Path,
    ) -> Result<Snapshot, QemuError> {
        let QemuVm {
            mut process,
            mut qmp,
            shared_ram: shared,
            ..
        } = vm;
        let start = Instant::now();
        let tmp = run_dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let path = run_dir.join(SNAPSHOT_FILE);
        qmp.stop().await?;
        private_file(&tmp)?;
        if shared {
            shared_ram::before_snapshot(&mut qmp).await?;
        }
        qmp.migrate_to_file(&tmp, self.snapshot_timeout).await?;
        shared_ram::mark(run_dir, shared)?;
        std::fs::rename(&tmp, &path).map_err(|source| QemuError::File {
            path: path.clone(),
            source,
        })?;
        crate::sandbox::fault::point("snapshot.written");
        qmp.quit().await?;
        let limit = Duration::from_secs(10);
        let exited = tokio::task::spawn_blocking(move || {
            let r = process.wait_exit(limit);
            // Drop kills and reaps it if it did not exit on its own.
            drop(process);
            r
        })
        .await
        .map_err(|e| QemuError::Wait(io::Error::other(e)))?
        .map_err(QemuError::Wait)?;
        if exited.is_none() {
            return Err(QemuError::NoExit(limit));
        }
        let size_bytes = std::fs::metadata(&path)
            .map_err(|source| QemuError::File {
                path: path.clone(),
                source,
            })?
            .len();
        Ok(Snapshot {
            files: vec![path],
            size_bytes,
            took: start.elapsed(),
        })
    }

    pub(super) async fn do_restore(
        &self,
        config: &VmConfig,
        snap: &Snapshot,
    ) -> Result<QemuVm, QemuError> {
        let file = snap
            .files
            .first()
            .cloned()
            .unwrap_or_else(|| config.run_dir.join(SNAPSHOT_FILE));
        if let Some(problem) = stream_problem(&file) {
            return Err(QemuError::File {
                path: file,
                source: io::Error::new(io::ErrorKind::InvalidData, problem),
            });
        }
        let mut spec = self.launch_spec(config);
        let uri = incoming_uri(&file)?;
        let shared = shared_ram::is_shared(&config.run_dir);
        let ram = shared_ram::ram_file(&config.run_dir);
        if shared {
            spec.memory_file = Some(ram);
            spec.incoming = Some("defer".into());
        } else {
            // A full stream brings its memory; an old RAM file is garbage.
            // With shared RAM on, the stream is loaded into a fresh one, so
            // that from now on this VM's snapshots are device state only
            // (a clone's first stop is a full stream; later ones are not).
            shared_ram::remove(&ram)?;
            if self.shared_ram {
                spec.memory_file = Some(shared_ram::fresh(&config.run_dir)?);
            }
            spec.incoming = Some(uri.clone());
        }
        let mut vm = self.start(&spec).await?;
        if shared {
            shared_ram::start_incoming(&mut vm.qmp, &uri).await?;
        }
        vm.qmp.wait_incoming(self.snapshot_timeout).await?;
        // The state is loaded; once the guest runs, its disks (and RAM
        // file) move past the snapshot, so it must not be restored again.
        std::fs::remove_file(&file).map_err(|source| QemuError::File {
            path: file.clone(),
            source,
        })?;
        shared_ram::remove(&shared_ram::marker(&config.run_dir))?;
        vm.qmp.cont().await?;
        Ok(vm)
    }
}
