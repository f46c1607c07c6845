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
//! QEMU 7.2 has no `file:` migration URI (it arrived in 8.2), so a snapshot
//! streams through `exec:cat > '<path>'` and a restore starts QEMU with
//! `-incoming "exec:cat '<path>'"` (see [`incoming_uri`]) plus `-S`, then
//! [`QmpClient::wait_incoming`] and [`QmpClient::cont`].

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// Events kept at most between two [`QmpClient::take_events`] calls.
pub const EVENT_QUEUE_LIMIT: usize = 256;

/// Default time limit of one QMP command.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest QMP line accepted (QEMU's replies here are a few KiB at most).
const MAX_LINE: usize = 1 << 20;

/// Interval between `query-migrate` / `query-status` polls.
const POLL_INTERVAL: Duration = Duration::from_millis(2);

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

#[derive(Debug, Deserialize)]
struct ErrorBody {
    class: String,
    desc: String,
}

#[derive(Debug, Deserialize)]
struct Timestamp {
    seconds: u64,
    microseconds: u64,
}

/// Any message QEMU sends on the QMP socket.
#[derive(Debug, Deserialize)]
struct Message {
    #[serde(rename = "QMP")]
    greeting: Option<Greeting>,
    #[serde(rename = "return")]
    ret: Option<Value>,
    error: Option<ErrorBody>,
    event: Option<String>,
    #[serde(default)]
    data: Value,
    timestamp: Option<Timestamp>,
    id: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Greeting {
    version: GreetingVersion,
}

#[derive(Debug, Deserialize)]
struct GreetingVersion {
    qemu: QemuVersion,
}

#[derive(Debug, Deserialize)]
struct RawStatus {
    status: String,
    running: bool,
}

#[derive(Debug, Deserialize)]
struct RawMigrate {
    #[serde(default)]
    status: Option<String>,
    #[serde(rename = "total-time", default)]
    total_time: Option<u64>,
    #[serde(default)]
    ram: Option<RawRam>,
    #[serde(rename = "error-desc", default)]
    error_desc: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawRam {
    transferred: u64,
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

    /// Connects, retrying while the socket does not exist yet or refuses
    /// (QEMU just spawned), until `timeout`.
    pub async fn connect_retry(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let start = Instant::now();
        loop {
            match Self::connect(path).await {
                Ok(c) => return Ok(c),
                Err(QmpError::Connect { source, .. })
                    if matches!(
                        source.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                    ) && start.elapsed() < timeout =>
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(QmpError::Connect { .. }) if start.elapsed() >= timeout => {
                    return Err(QmpError::Timeout {
                        what: "the QMP socket",
                        after: timeout,
                    });
                }
                Err(e) => return Err(e),
            }
        }
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
        tokio::time::timeout(after, self.execute_inner(command, args))
            .await
            .map_err(|_| QmpError::Timeout {
                what: "a QMP reply",
                after,
            })?
    }

    async fn execute_inner(
        &mut self,
        command: &str,
        args: Option<Value>,
    ) -> Result<Value, QmpError> {
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
        self.writer.write_all(&bytes).await?;
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

    /// Writes the VM's full state to `path` (migration through
    /// `exec:cat`) and waits until QEMU reports it completed or failed.
    ///
    /// Stop the VM first for a consistent, single-pass snapshot; after a
    /// successful migration QEMU stays in `postmigrate` and should be quit.
    pub async fn migrate_to_file(
        &mut self,
        path: &Path,
        timeout: Duration,
    ) -> Result<MigrationStats, QmpError> {
        let uri = format!("exec:cat > {}", shell_quote(path)?);
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
                RunState::InMigrate => {}
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

    /// Waits for an event called `name`, first looking at queued events.
    pub async fn wait_event(
        &mut self,
        name: &str,
        timeout: Duration,
    ) -> Result<QmpEvent, QmpError> {
        if let Some(pos) = self.events.iter().position(|e| e.name == name)
            && let Some(ev) = self.events.remove(pos)
        {
            return Ok(ev);
        }
        let fut = async {
            loop {
                let msg = self.read_message().await?;
                if let Some(ev) = msg.event {
                    if ev == name {
                        return Ok(QmpEvent {
                            name: ev,
                            data: msg.data,
                            timestamp_us: stamp(msg.timestamp),
                        });
                    }
                    self.push_event(ev, msg.data, msg.timestamp);
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| QmpError::Timeout {
                what: "a QMP event",
                after: timeout,
            })?
    }

    /// Drains the queued events; the count says how many were dropped
    /// because the queue was full.
    pub fn take_events(&mut self) -> (Vec<QmpEvent>, u64) {
        let dropped = std::mem::take(&mut self.dropped_events);
        (self.events.drain(..).collect(), dropped)
    }

    fn push_event(&mut self, name: String, data: Value, ts: Option<Timestamp>) {
        if self.events.len() >= EVENT_QUEUE_LIMIT {
            self.events.pop_front();
            self.dropped_events += 1;
        }
        self.events.push_back(QmpEvent {
            name,
            data,
            timestamp_us: stamp(ts),
        });
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

/// The `-incoming` argument restoring a snapshot written by
/// [`QmpClient::migrate_to_file`].
pub fn incoming_uri(path: &Path) -> Result<String, QmpError> {
    Ok(format!("exec:cat {}", shell_quote(path)?))
}

/// Single-quotes an absolute UTF-8 path for `/bin/sh` (QEMU runs `exec:`
/// URIs through `sh -c`).
fn shell_quote(path: &Path) -> Result<String, QmpError> {
    let s = path
        .to_str()
        .filter(|s| path.is_absolute() && !s.contains(['\n', '\r', '\0']))
        .ok_or_else(|| QmpError::BadPath(path.to_owned()))?;
    Ok(format!("'{}'", s.replace('\'', r"'\''")))
}

fn stamp(ts: Option<Timestamp>) -> u64 {
    ts.map_or(0, |t| {
        t.seconds
            .saturating_mul(1_000_000)
            .saturating_add(t.microseconds)
    })
}

fn decode<T: serde::de::DeserializeOwned>(command: &str, v: Value) -> Result<T, QmpError> {
    serde_json::from_value(v).map_err(|e| QmpError::UnexpectedReply {
        command: command.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_paths_for_the_shell() {
        assert_eq!(
            shell_quote(Path::new("/a b/it's")).ok().as_deref(),
            Some(r"'/a b/it'\''s'")
        );
        assert!(matches!(
            shell_quote(Path::new("relative")),
            Err(QmpError::BadPath(_))
        ));
        assert!(matches!(
            shell_quote(Path::new("/x\ny")),
            Err(QmpError::BadPath(_))
        ));
        assert_eq!(
            incoming_uri(Path::new("/s/mem")).ok().as_deref(),
            Some("exec:cat '/s/mem'")
        );
    }

    #[test]
    fn run_states_parse() {
        assert_eq!(RunState::parse("paused"), RunState::Paused);
        assert_eq!(RunState::parse("inmigrate"), RunState::InMigrate);
        assert_eq!(RunState::parse("colo"), RunState::Other("colo".to_owned()));
    }
}
