//! Capture and clone of a [`QemuVm`]: what named snapshots and forks are
//! made of (see the module docs of [`super`]).
//!
//! - capture: `stop`, then a migration to the given path, written by QEMU
//!   through a passed descriptor: the whole RAM for anonymous memory; for
//!   a VM with a shared RAM file ([`shared_ram`]) device state only plus
//!   a sparse copy of the RAM file next to it (`ram`). QEMU stays in
//!   `postmigrate` and `cont` resumes it (which takes its disks back).
//! - clone: the same argv as a boot of the new VM's config, with its
//!   console as a Unix socket; a full stream is loaded with
//!   `-incoming "exec:cat FILE"`, a snapshot with a RAM file maps that
//!   file privately (`share=off`: the clones of one snapshot share its
//!   unmodified pages in the page cache, and never write the file) and
//!   loads the device state with `x-ignore-shared`. Then `cont`. The
//!   snapshot's files are only read.
//! - identity: written to the console socket after a newline; QEMU hands
//!   the bytes to the guest's UART as the guest reads them, and lohar
//!   answers on the console (`bhatti-identify: ok|error`), which the
//!   driver reads before it disconnects (output to a connected client that
//!   does not read would stall the guest's console).

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::adopt::stream_problem;
use super::{QemuDriver, QemuError, QemuVm, shared_ram};
use crate::driver::{Snapshot, VmConfig};
use crate::qemu::qmp::incoming_uri;

/// The console socket of a cloned VM, in its run dir.
pub const CONSOLE_SOCKET: &str = "console.sock";

impl QemuDriver {
    pub(super) async fn do_capture(
        &self,
        vm: &mut QemuVm,
        dest: &Path,
    ) -> Result<Snapshot, QemuError> {
        let start = Instant::now();
        vm.qmp.stop().await?;
        let mut files = vec![dest.to_owned()];
        if vm.shared_ram {
            // Device state only, and a frozen copy of the RAM file.
            shared_ram::before_snapshot(&mut vm.qmp).await?;
            vm.qmp.migrate_to_file(dest, self.snapshot_timeout).await?;
            let ram = dest.with_file_name(shared_ram::RAM_FILE);
            let run_dir = vm.process.console_log().parent().unwrap_or(Path::new("."));
            let run_dir = run_dir.to_owned();
            let to = ram.clone();
            tokio::task::spawn_blocking(move || shared_ram::copy(&run_dir, &to))
                .await
                .map_err(|e| QemuError::Wait(io::Error::other(e)))??;
            files.push(ram);
        } else {
            vm.qmp.migrate_to_file(dest, self.snapshot_timeout).await?;
        }
        let size_bytes = files
            .iter()
            .map(|f| std::fs::metadata(f).map(|m| m.len()))
            .sum::<io::Result<u64>>()
            .map_err(|source| file_err(dest, source))?;
        Ok(Snapshot {
            files,
            size_bytes,
            took: start.elapsed(),
        })
    }

    pub(super) async fn do_restore_clone(
        &self,
        config: &VmConfig,
        snap: &Snapshot,
    ) -> Result<QemuVm, QemuError> {
        let Some(file) = snap.files.first().cloned() else {
            return Err(file_err(
                &config.run_dir,
                io::Error::new(io::ErrorKind::NotFound, "the snapshot has no files"),
            ));
        };
        if let Some(problem) = stream_problem(&file) {
            return Err(file_err(
                &file,
                io::Error::new(io::ErrorKind::InvalidData, problem),
            ));
        }
        let mut spec = self.launch_spec(config);
        spec.console_socket = Some(console_socket(&config.run_dir));
        let uri = incoming_uri(&file)?;
        // The clone's own RAM: the snapshot's RAM file mapped privately, or
        // anonymous memory loaded from a full stream.
        shared_ram::remove(&shared_ram::ram_file(&config.run_dir))?;
        let ram = snap.files.get(1).cloned();
        if let Some(ram) = &ram {
            spec.memory_file = Some(ram.clone());
            spec.private_memory = true;
            spec.incoming = Some("defer".into());
        } else {
            spec.incoming = Some(uri.clone());
        }
        let mut vm = self.start(&spec).await?;
        if ram.is_some() {
            shared_ram::start_incoming(&mut vm.qmp, &uri).await?;
        }
        vm.qmp.wait_incoming(self.snapshot_timeout).await?;
        if ram.is_some() {
            // Its own RAM is private: its snapshots are full streams, which
            // must not say that shared RAM was left out.
            vm.qmp
                .set_migration_capability("x-ignore-shared", false)
                .await?;
        }
        vm.qmp.cont().await?;
        Ok(vm)
    }

    pub(super) async fn do_send_identity(
        &self,
        vm: &mut QemuVm,
        line: &[u8],
    ) -> Result<(), QemuError> {
        let run_dir = vm.process.console_log().parent().unwrap_or(Path::new("."));
        let path = console_socket(run_dir);
        let mut console = tokio::net::UnixStream::connect(&path)
            .await
            .map_err(|e| file_err(&path, e))?;
        // A newline first: whatever was typed before the snapshot stays on
        // a line of its own.
        let mut out = Vec::with_capacity(line.len() + 1);
        out.push(b'\n');
        out.extend_from_slice(line);
        console
            .write_all(&out)
            .await
            .map_err(|e| file_err(&path, e))?;
        // The guest's answer comes back on the console. The connection is
        // closed once it has: a client that stopped reading would stall
        // the guest's console output.
        match tokio::time::timeout(IDENTIFY_TIMEOUT, answer(&mut console)).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(why))) => Err(QemuError::Identify(why)),
            Ok(Err(e)) => Err(file_err(&path, e)),
            Err(_) => Err(QemuError::Identify(format!(
                "no answer within {IDENTIFY_TIMEOUT:?} (is the guest agent older than identify?)"
            ))),
        }
    }
}

/// How long a guest may take to answer its identity.
const IDENTIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads the console until lohar's result line: `Ok(Ok(()))` for
/// `bhatti-identify: ok`, `Ok(Err(why))` for `bhatti-identify: error why`.
async fn answer(console: &mut tokio::net::UnixStream) -> io::Result<Result<(), String>> {
    const OK: &str = "bhatti-identify: ok";
    const ERR: &str = "bhatti-identify: error ";
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = console.read(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        seen.extend_from_slice(&buf[..n]);
        while let Some(i) = seen.iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&seen[..i]).into_owned();
            seen.drain(..=i);
            if line.contains(OK) {
                return Ok(Ok(()));
            }
            if let Some(at) = line.find(ERR) {
                return Ok(Err(line[at + ERR.len()..].trim().to_owned()));
            }
        }
        // Only the last (incomplete) line matters; bound what is kept.
        if seen.len() > 64 * 1024 {
            seen.clear();
        }
    }
}

/// Where a cloned VM's console socket is.
pub fn console_socket(run_dir: &Path) -> PathBuf {
    run_dir.join(CONSOLE_SOCKET)
}

fn file_err(path: &Path, source: io::Error) -> QemuError {
    QemuError::File {
        path: path.to_owned(),
        source,
    }
}
