//! Snapshots over QMP: writing the VM's state to a file (migration
//! through `exec:cat`) and waiting for an incoming one to load. Both poll
//! QEMU's status every [`POLL_INTERVAL`] until it says done or failed (a
//! poll for progress, not a retry of something that failed).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::wire::{RawMigrate, decode};
use super::{MigrationStats, QmpClient, QmpError, RunState, StatusInfo};

/// Interval between `query-migrate` / `query-status` polls.
const POLL_INTERVAL: Duration = Duration::from_millis(2);

impl QmpClient {
    /// Writes the VM's full state to `path` (created or truncated, mode
    /// 0600: it holds guest memory) and waits until QEMU reports it
    /// completed or failed. QEMU writes the file itself, through a
    /// descriptor passed over the socket (see the module docs of
    /// [`super`] for why not `exec:cat`); when it says completed, every
    /// byte is in the file.
    ///
    /// Stop the VM first for a consistent, single-pass snapshot; after a
    /// successful migration QEMU stays in `postmigrate` and should be quit.
    pub async fn migrate_to_file(
        &mut self,
        path: &Path,
        timeout: Duration,
    ) -> Result<MigrationStats, QmpError> {
        use std::os::fd::AsFd;
        use std::os::unix::fs::OpenOptionsExt;
        shell_quote(path)?; // the same path rules as a restore's
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(QmpError::Io)?;
        // An existing file keeps its mode through `open`; this one holds
        // guest memory.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(QmpError::Io)?;
        let name = format!("snapshot{}", self.next_id);
        self.send_fd(&name, file.as_fd()).await?;
        drop(file);
        let uri = format!("fd:{name}");
        self.execute("migrate", Some(json!({ "uri": uri }))).await?;
        let start = Instant::now();
        loop {
            let v = self.execute("query-migrate", None).await?;
            let raw: RawMigrate = decode("query-migrate", v)?;
            match raw.status.as_deref() {
                Some("completed") => {
                    return Ok(MigrationStats {
                        total_time_ms: raw.total_time.unwrap_or(0),
                        transferred_bytes: raw.ram.map_or(0, |r| r.transferred),
                    });
                }
                Some("failed") | Some("cancelled") => {
                    return Err(QmpError::MigrationFailed(
                        raw.error_desc.unwrap_or_else(|| "no reason given".into()),
                    ));
                }
                _ => {}
            }
            if start.elapsed() >= timeout {
                // Best effort: do not leave a migration running behind us.
                let _ = self.execute("migrate_cancel", None).await;
                return Err(QmpError::Timeout {
                    what: "migration to complete",
                    after: timeout,
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// On a QEMU started with `-incoming` and `-S`: waits until the
    /// incoming migration has been loaded (state leaves `inmigrate`). The
    /// VM is then paused; call [`cont`](Self::cont) to run it.
    pub async fn wait_incoming(&mut self, timeout: Duration) -> Result<StatusInfo, QmpError> {
        let start = Instant::now();
        loop {
            let st = self.query_status().await?;
            match st.state {
                RunState::InMigrate => {
                    // A stream QEMU could not load leaves it in
                    // `inmigrate` with the migration failed: say so now.
                    let v = self.execute("query-migrate", None).await?;
                    let raw: RawMigrate = decode("query-migrate", v)?;
                    if raw.status.as_deref() == Some("failed") {
                        return Err(QmpError::MigrationFailed(
                            raw.error_desc
                                .unwrap_or_else(|| "the snapshot did not load".into()),
                        ));
                    }
                }
                RunState::Paused | RunState::Running => return Ok(st),
                other => {
                    return Err(QmpError::MigrationFailed(format!(
                        "incoming migration ended in state {other:?}"
                    )));
                }
            }
            if start.elapsed() >= timeout {
                return Err(QmpError::Timeout {
                    what: "incoming migration",
                    after: timeout,
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl QmpClient {
    /// Turns a migration capability on or off (`migrate-set-capabilities`),
    /// e.g. `x-ignore-shared`, which leaves RAM in a shared memory backend
    /// out of the stream. An incoming side needs it set too, before
    /// `migrate-incoming` (start QEMU with `-incoming defer`).
    pub async fn set_migration_capability(
        &mut self,
        capability: &str,
        state: bool,
    ) -> Result<(), QmpError> {
        self.execute(
            "migrate-set-capabilities",
            Some(json!({"capabilities": [{"capability": capability, "state": state}]})),
        )
        .await?;
        Ok(())
    }

    /// On a QEMU started with `-incoming defer`: starts loading `uri`
    /// (then [`wait_incoming`](Self::wait_incoming)).
    pub async fn migrate_incoming(&mut self, uri: &str) -> Result<(), QmpError> {
        self.execute("migrate-incoming", Some(json!({ "uri": uri })))
            .await?;
        Ok(())
    }

    /// Cancels an outgoing migration left running (by an engine that died
    /// mid-snapshot) and waits until QEMU says it is over; a QEMU with no
    /// migration in progress is left as it is.
    pub async fn settle_migration(&mut self, timeout: Duration) -> Result<(), QmpError> {
        let start = Instant::now();
        let mut cancelled = false;
        loop {
            let v = self.execute("query-migrate", None).await?;
            let raw: RawMigrate = decode("query-migrate", v)?;
            match raw.status.as_deref() {
                None | Some("none" | "completed" | "failed" | "cancelled") => return Ok(()),
                Some(_) if !cancelled => {
                    self.execute("migrate_cancel", None).await?;
                    cancelled = true;
                }
                Some(_) => {}
            }
            if start.elapsed() >= timeout {
                return Err(QmpError::Timeout {
                    what: "a cancelled migration to end",
                    after: timeout,
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// The `-incoming` argument restoring a snapshot written by
/// [`QmpClient::migrate_to_file`].
pub fn incoming_uri(path: &Path) -> Result<String, QmpError> {
    Ok(format!("exec:cat {}", shell_quote(path)?))
}

/// Single-quotes an absolute UTF-8 path for `/bin/sh` (QEMU runs `exec:`
/// URIs through `sh -c`).
pub(super) fn shell_quote(path: &Path) -> Result<String, QmpError> {
    let s = path
        .to_str()
        .filter(|s| path.is_absolute() && !s.contains(['\n', '\r', '\0']))
        .ok_or_else(|| QmpError::BadPath(path.to_owned()))?;
    Ok(format!("'{}'", s.replace('\'', r"'\''")))
}
