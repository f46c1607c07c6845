//! QMP client: the QEMU Machine Protocol over the VMM's Unix socket.
//!
//! Used by the QEMU driver for pause/resume (`stop` / `cont`), status,
//! snapshots (migration to a file) and shutdown.
//!
//! # Threads, locks, I/O
//! No background task and no internal lock: a [`QmpClient`] owns its socket
//! and every operation takes `&mut self`, so exactly one command is in
//! flight at a time. The driver keeps the client inside the per-sandbox
//! state, behind the sandbox lock; QMP is a local Unix socket, never the
//! network.
//!
//! Each command carries a numeric `id`. Replies with another id (left over
//! from a call whose future was dropped, e.g. by a timeout) are skipped, and
//! the partial line buffer lives in the client, so a cancelled call never
//! desynchronises the stream. Asynchronous events read while waiting for a
//! reply are kept in a bounded queue ([`QmpClient::take_events`]); the oldest
//! are dropped once [`EVENT_QUEUE_LIMIT`] is reached.
//!
//! # Snapshots
//! QEMU 7.2 has no `file:` migration URI (it arrived in 8.2). A snapshot
//! is written to a file the client opens and hands to QEMU over the
//! socket (`getfd` with `SCM_RIGHTS`, then `migrate` to `fd:NAME`):
//! through `exec:cat > FILE` it could be cut short, because QEMU sends
//! SIGTERM to a `cat` that has not exited when the migration channel
//! closes, and under load `cat` may still be writing the last pipe-full.
//! A restore starts QEMU with `-incoming "exec:cat '<path>'"` (see
//! [`incoming_uri`]; QEMU reads to the end, so `cat` is done) plus `-S`,
//! then [`QmpClient::wait_incoming`] and [`QmpClient::cont`].
//!
//! # Layout
//! This file: errors, the public types and the command channel
//! (connect, `execute`, the simple commands). `wire`: QEMU's JSON
//! messages. `migrate`: snapshots and restores (migration polling).
//! `fdpass`: handing QEMU a file descriptor.
//! `events`: the event queue.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use backon::{ConstantBuilder, Retryable};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use wire::{Message, RawStatus, decode};

mod events;
mod fdpass;
mod migrate;
mod wire;

pub use migrate::incoming_uri;

/// Events kept at most between two [`QmpClient::take_events`] calls.
pub const EVENT_QUEUE_LIMIT: usize = 256;

/// Default time limit of one QMP command.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest QMP line accepted (QEMU's replies here are a few KiB at most).
const MAX_LINE: usize = 1 << 20;

/// Errors from talking QMP.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("connect to QMP socket {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("QMP socket I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("QMP connection closed by QEMU")]
    Closed,
    #[error("QMP greeting missing or malformed: {0}")]
    Greeting(String),
    #[error("malformed QMP message {line:?}: {reason}")]
    Malformed { line: String, reason: String },
    #[error("QMP message longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("QMP command `{command}` failed: {class}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
    #[error("unexpected reply to `{command}`: {reason}")]
    UnexpectedReply { command: String, reason: String },
    #[error("migration failed: {0}")]
    MigrationFailed(String),
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: &'static str, after: Duration },
    #[error("snapshot path {0:?} must be absolute UTF-8 without newlines")]
    BadPath(PathBuf),
}

impl QmpError {
    /// A connect that failed because QEMU has not opened its QMP socket
    /// yet (no socket file, or nobody listening on it): worth retrying
    /// while QEMU starts.
    pub fn not_listening_yet(&self) -> bool {
        matches!(self, Self::Connect { source, .. } if matches!(
            source.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
        ))
    }
}

/// QEMU's version, from the greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct QemuVersion {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
}

/// QEMU's run state (`query-status`), with the states the driver acts on
/// named and everything else kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    Prelaunch,
    Running,
    Paused,
    InMigrate,
    PostMigrate,
    FinishMigrate,
    Shutdown,
    InternalError,
    Other(String),
}

impl RunState {
    fn parse(s: &str) -> Self {
        match s {
            "prelaunch" => Self::Prelaunch,
            "running" => Self::Running,
            "paused" => Self::Paused,
            "inmigrate" => Self::InMigrate,
            "postmigrate" => Self::PostMigrate,
            "finish-migrate" => Self::FinishMigrate,
            "shutdown" => Self::Shutdown,
            "internal-error" => Self::InternalError,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// Reply of `query-status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusInfo {
    pub state: RunState,
    pub running: bool,
}

/// An asynchronous QMP event (`STOP`, `RESUME`, `SHUTDOWN`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    pub name: String,
    pub data: Value,
    /// Microseconds since the Unix epoch, from QEMU's timestamp.
    pub timestamp_us: u64,
}

/// Outcome of a completed migration to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationStats {
    /// QEMU's own `total-time` in milliseconds.
    pub total_time_ms: u64,
    /// RAM bytes sent (QEMU's `ram.transferred`).
    pub transferred_bytes: u64,
}

/// `call` (a command and its reply) within the command time limit `after`.
async fn within<T>(
    after: Duration,
    call: impl std::future::Future<Output = Result<T, QmpError>>,
) -> Result<T, QmpError> {
    tokio::time::timeout(after, call)
        .await
        .map_err(|_| QmpError::Timeout {
            what: "a QMP reply",
            after,
        })?
}

/// A connected, capability-negotiated QMP session.
#[derive(Debug)]
pub struct QmpClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// Bytes of a line not yet complete (kept across cancelled calls).
    line: Vec<u8>,
    next_id: u64,
    events: VecDeque<QmpEvent>,
    dropped_events: u64,
    version: QemuVersion,
    command_timeout: Duration,
}

impl QmpClient {
    /// Connects to `path`, reads the greeting and leaves negotiation mode
    /// (`qmp_capabilities`).
    pub async fn connect(path: &Path) -> Result<Self, QmpError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| QmpError::Connect {
                path: path.to_owned(),
                source,
            })?;
        let (r, w) = stream.into_split();
        let mut client = Self {
            reader: BufReader::new(r),
            writer: w,
            line: Vec::new(),
            next_id: 1,
            events: VecDeque::new(),
            dropped_events: 0,
            version: QemuVersion {
                major: 0,
                minor: 0,
                micro: 0,
            },
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
        };
        let first = client.read_message().await?;
        client.version = match first.greeting {
            Some(g) => g.version.qemu,
            None => return Err(QmpError::Greeting("first message is not a greeting".into())),
        };
        client.execute("qmp_capabilities", None).await?;
        Ok(client)
    }

    /// Connects, retrying every 5 ms while the socket does not exist yet or
    /// refuses ([`QmpError::not_listening_yet`]: QEMU just spawned), until
    /// `timeout`.
    pub async fn connect_retry(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let attempts = (|| Self::connect(path))
            .retry(
                ConstantBuilder::new()
                    .with_delay(Duration::from_millis(5))
                    .without_max_times(),
            )
            .sleep(tokio::time::sleep)
            .when(QmpError::not_listening_yet);
        tokio::time::timeout(timeout, attempts)
            .await
            .map_err(|_| QmpError::Timeout {
                what: "the QMP socket",
                after: timeout,
            })?
    }

    /// QEMU's version from the greeting.
    pub fn version(&self) -> QemuVersion {
        self.version
    }

    /// Sets the time limit of each command (default
    /// [`DEFAULT_COMMAND_TIMEOUT`]).
    pub fn set_command_timeout(&mut self, timeout: Duration) {
        self.command_timeout = timeout;
    }

    /// Runs one command and returns its `return` value, within the command
    /// time limit. After a timeout the client stays usable: the late reply
    /// is recognised by its id and skipped.
    pub async fn execute(&mut self, command: &str, args: Option<Value>) -> Result<Value, QmpError> {
        let after = self.command_timeout;
        within(after, self.execute_inner(command, args)).await
    }

    async fn execute_inner(
        &mut self,
        command: &str,
        args: Option<Value>,
    ) -> Result<Value, QmpError> {
        let (id, bytes) = self.request(command, args)?;
        self.writer.write_all(&bytes).await?;
        self.await_reply(command, id).await
    }

    /// A numbered request line for `command`.
    fn request(&mut self, command: &str, args: Option<Value>) -> Result<(u64, Vec<u8>), QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut req = json!({ "execute": command, "id": id });
        if let Some(args) = args {
            req["arguments"] = args;
        }
        let mut bytes = serde_json::to_vec(&req).map_err(|e| QmpError::Malformed {
            line: command.to_owned(),
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        Ok((id, bytes))
    }

    /// Reads until the reply to request `id`, queueing events.
    async fn await_reply(&mut self, command: &str, id: u64) -> Result<Value, QmpError> {
        loop {
            let msg = self.read_message().await?;
            if let Some(name) = msg.event {
                self.push_event(name, msg.data, msg.timestamp);
                continue;
            }
            if msg.id.as_ref().and_then(Value::as_u64) != Some(id) {
                // A reply to an abandoned earlier command, or a stray greeting.
                continue;
            }
            if let Some(err) = msg.error {
                return Err(QmpError::Command {
                    command: command.to_owned(),
                    class: err.class,
                    desc: err.desc,
                });
            }
            return Ok(msg.ret.unwrap_or(Value::Null));
        }
    }

    /// Pauses the vCPUs (`stop`).
    pub async fn stop(&mut self) -> Result<(), QmpError> {
        self.execute("stop", None).await.map(drop)
    }

    /// Resumes the vCPUs (`cont`).
    pub async fn cont(&mut self) -> Result<(), QmpError> {
        self.execute("cont", None).await.map(drop)
    }

    /// Asks the guest to power down via ACPI (`system_powerdown`).
    pub async fn system_powerdown(&mut self) -> Result<(), QmpError> {
        self.execute("system_powerdown", None).await.map(drop)
    }

    /// `query-status`.
    pub async fn query_status(&mut self) -> Result<StatusInfo, QmpError> {
        let v = self.execute("query-status", None).await?;
        let raw: RawStatus = decode("query-status", v)?;
        Ok(StatusInfo {
            state: RunState::parse(&raw.status),
            running: raw.running,
        })
    }

    /// Ends QEMU (`quit`). QEMU may close the socket before or after its
    /// reply; both count as success.
    pub async fn quit(mut self) -> Result<(), QmpError> {
        match self.execute("quit", None).await {
            Ok(_) | Err(QmpError::Closed) => Ok(()),
            Err(QmpError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(QmpError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Reads one complete line and parses it. Cancel-safe: a partial line
    /// stays in `self.line`.
    async fn read_message(&mut self) -> Result<Message, QmpError> {
        loop {
            let n = self.reader.read_until(b'\n', &mut self.line).await?;
            if n == 0 {
                return Err(QmpError::Closed);
            }
            if self.line.len() > MAX_LINE {
                self.line.clear();
                return Err(QmpError::LineTooLong);
            }
            if self.line.last() != Some(&b'\n') {
                continue;
            }
            let line = std::mem::take(&mut self.line);
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            return serde_json::from_str(text).map_err(|e| QmpError::Malformed {
                line: text.chars().take(200).collect(),
                reason: e.to_string(),
            });
        }
    }
}

#[cfg(test)]
mod tests;
