//! Kept piped execs (protocol version 5): the registry and the state of
//! one command.
//!
//! A kept command's output pumps write every chunk into the command's
//! [`ChunkRing`] and to each attached connection's channel; its exit task
//! records the exit code and sends it to them. Connections come and go
//! ([`KeptCmd::attach`]); the command does not notice.
//!
//! Locks: [`Kept`] has one `std::sync::Mutex` for the map; each
//! [`KeptCmd`] one `std::sync::Mutex` for its state (ring, subscribers,
//! exit) and one tokio mutex for its stdin (writes await the pipe). No
//! std lock is held across an await. Attach takes the ring snapshot and
//! installs its channel in the same critical section in which the pumps
//! append to the ring and pick the channels, so every byte reaches an
//! attached connection exactly once: in the replay or live.
//!
//! Back-pressure: a chunk waits up to [`STALL`] for room in each
//! attached connection's queue; a connection that takes nothing for that
//! long is dropped (it sees its stream end without EXIT and may attach
//! again). With nobody attached the output only goes to the ring, so the
//! command never blocks on its output.
//!
//! Retention: exited commands stay listed and attachable for
//! [`Limits::kept_retain`], at most [`Limits::max_kept_exited`] of them
//! (oldest go first); both are enforced whenever the registry is used.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bhatti_proto::FrameType;
use bhatti_proto::kept::{KeptInfo, MAX_INFO_ARGV, info_argv};
use tokio::sync::mpsc;

use crate::agent::Limits;
use crate::handlers::exec::Stdin;
use crate::ring::ChunkRing;

/// Longest a chunk waits for room in one attached connection's queue.
pub const STALL: Duration = Duration::from_secs(30);
/// Messages queued per attached connection.
const QUEUE: usize = 64;

/// What an attached connection is sent.
#[derive(Debug)]
pub enum Msg {
    /// An encoded STDOUT or STDERR frame.
    Frame(Arc<[u8]>),
    Exit(i32),
}

/// Errors of the registry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeptError {
    #[error("too many kept commands running (limit {0})")]
    TooMany(usize),
    #[error("kept command {0:?} not found")]
    NotFound(String),
    #[error("tag is {0} bytes, at most {max} allowed", max = bhatti_proto::kept::MAX_TAG)]
    TagTooLong(usize),
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a few field writes; a poisoned lock is consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a new kept command is, besides its pipes.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub pid: i32,
    pub argv: Vec<String>,
    pub cwd: Option<String>,
    pub tag: Option<String>,
    pub user: Option<String>,
}

/// Every kept command, running or exited and not yet expired.
#[derive(Debug)]
pub struct Kept {
    map: Mutex<BTreeMap<u64, Arc<KeptCmd>>>,
    next: AtomicU64,
    limits: Limits,
}

impl Kept {
    pub fn new(limits: Limits) -> Self {
        Self {
            map: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(1),
            limits,
        }
    }

    /// Whether a new kept command with `tag` may start (checked before
    /// the spawn; concurrent starts may pass it together).
    pub fn check(&self, tag: Option<&str>) -> Result<(), KeptError> {
        if let Some(t) = tag.filter(|t| t.len() > bhatti_proto::kept::MAX_TAG) {
            return Err(KeptError::TagTooLong(t.len()));
        }
        let mut map = relock(&self.map);
        self.expire(&mut map);
        let running = map.values().filter(|c| c.exit_code().is_none()).count();
        if running >= self.limits.max_kept {
            return Err(KeptError::TooMany(self.limits.max_kept));
        }
        Ok(())
    }

    /// Registers a started command under the next id (`k1`, `k2`, …).
    pub fn add(&self, spec: Spec, stdin: Stdin) -> Arc<KeptCmd> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (argv, argv_cut) = info_argv(&spec.argv, MAX_INFO_ARGV);
        let cmd = Arc::new(KeptCmd {
            id: format!("k{n}"),
            pid: spec.pid,
            argv,
            argv_cut,
            cwd: spec.cwd,
            tag: spec.tag,
            user: spec.user,
            created_at: crate::agent::now_unix(),
            state: Mutex::new(State {
                ring: ChunkRing::new(self.limits.kept_ring),
                subs: Vec::new(),
                next_sub: 0,
                exit: None,
                stdin_open: !matches!(stdin, Stdin::Closed),
            }),
            stdin: tokio::sync::Mutex::new(stdin),
        });
        let mut map = relock(&self.map);
        map.insert(n, cmd.clone());
        self.expire(&mut map);
        cmd
    }

    /// The command `id` names.
    pub fn get(&self, id: &str) -> Result<Arc<KeptCmd>, KeptError> {
        let mut map = relock(&self.map);
        self.expire(&mut map);
        map.values()
            .find(|c| c.id == id)
            .cloned()
            .ok_or_else(|| KeptError::NotFound(bhatti_proto::text::short(id)))
    }

    /// Every kept command, oldest first.
    pub fn list(&self) -> Vec<KeptInfo> {
        let mut map = relock(&self.map);
        self.expire(&mut map);
        map.values().map(|c| c.info()).collect()
    }

    /// Drops exited commands past the retention time, then the oldest
    /// exited ones over the count.
    fn expire(&self, map: &mut BTreeMap<u64, Arc<KeptCmd>>) {
        let retain = self.limits.kept_retain;
        map.retain(|_, c| c.exited_at().is_none_or(|at| at.elapsed() < retain));
        let exited: Vec<u64> = map
            .iter()
            .filter(|(_, c)| c.exited_at().is_some())
            .map(|(n, _)| *n)
            .collect();
        let over = exited.len().saturating_sub(self.limits.max_kept_exited);
        for n in exited.into_iter().take(over) {
            map.remove(&n);
        }
    }
}

/// One kept command.
#[derive(Debug)]
pub struct KeptCmd {
    pub id: String,
    pub pid: i32,
    argv: Vec<String>,
    argv_cut: bool,
    cwd: Option<String>,
    tag: Option<String>,
    user: Option<String>,
    created_at: i64,
    state: Mutex<State>,
    /// The child's stdin, shared by every attached connection.
    pub stdin: tokio::sync::Mutex<Stdin>,
}

#[derive(Debug)]
struct State {
    ring: ChunkRing,
    subs: Vec<(u64, mpsc::Sender<Msg>)>,
    next_sub: u64,
    exit: Option<(i32, Instant)>,
    stdin_open: bool,
}

/// What an attach starts from.
#[derive(Debug)]
pub struct Attached {
    /// KEPT_INFO as of the attach (`dropped`: what the replay misses).
    pub info: KeptInfo,
    /// The ring, oldest first, adjacent chunks of one kind merged.
    pub replay: Vec<(FrameType, Vec<u8>)>,
    /// Live output and the exit; `None` when the command has exited
    /// (`info.exit_code` is set).
    pub live: Option<mpsc::Receiver<Msg>>,
}

impl KeptCmd {
    pub fn exit_code(&self) -> Option<i32> {
        relock(&self.state).exit.map(|(c, _)| c)
    }

    fn exited_at(&self) -> Option<Instant> {
        relock(&self.state).exit.map(|(_, at)| at)
    }

    pub fn info(&self) -> KeptInfo {
        self.info_locked(&relock(&self.state))
    }

    fn info_locked(&self, st: &State) -> KeptInfo {
        KeptInfo {
            id: self.id.clone(),
            pid: self.pid,
            argv: self.argv.clone(),
            argv_cut: self.argv_cut,
            cwd: self.cwd.clone(),
            tag: self.tag.clone(),
            user: self.user.clone(),
            running: st.exit.is_none(),
            exit_code: st.exit.map(|(c, _)| c),
            stdin_open: st.stdin_open,
            attached: u32::try_from(st.subs.iter().filter(|(_, s)| !s.is_closed()).count())
                .unwrap_or(u32::MAX),
            created_at: self.created_at,
            dropped: st.ring.dropped(),
            replay: 0,
        }
    }

    /// Attaches a connection: the snapshot to replay and, while the
    /// command runs, the channel of everything after it.
    pub fn attach(&self) -> Attached {
        let mut st = relock(&self.state);
        st.subs.retain(|(_, s)| !s.is_closed());
        let live = if st.exit.is_none() {
            let (tx, rx) = mpsc::channel(QUEUE);
            st.next_sub += 1;
            let n = st.next_sub;
            st.subs.push((n, tx));
            Some(rx)
        } else {
            None
        };
        let replay: Vec<(FrameType, Vec<u8>)> =
            st.ring.chunks().map(|(k, d)| (k, d.to_vec())).collect();
        let mut info = self.info_locked(&st);
        info.replay = replay.iter().map(|(_, d)| d.len() as u64).sum();
        Attached { info, replay, live }
    }

    /// Records a chunk of output and sends it to every attached
    /// connection; returns whether anybody got it.
    pub async fn output(&self, kind: FrameType, data: &[u8]) -> bool {
        let subs: Vec<(u64, mpsc::Sender<Msg>)> = {
            let mut st = relock(&self.state);
            st.ring.push(kind, data);
            st.subs.clone()
        };
        if subs.is_empty() {
            return false;
        }
        let Ok(frame) = bhatti_proto::frame::encode(kind, data) else {
            return false;
        };
        let frame: Arc<[u8]> = frame.into();
        let mut delivered = false;
        for (n, tx) in subs {
            if tx
                .send_timeout(Msg::Frame(frame.clone()), STALL)
                .await
                .is_ok()
            {
                delivered = true;
            } else {
                relock(&self.state).subs.retain(|(m, _)| *m != n);
            }
        }
        delivered
    }

    /// Marks stdin closed (for KeptInfo).
    pub fn stdin_closed(&self) {
        relock(&self.state).stdin_open = false;
    }

    /// Records the exit and sends it to every attached connection (after
    /// the output already queued for it).
    pub async fn finish(&self, code: i32) {
        let subs = {
            let mut st = relock(&self.state);
            st.exit = Some((code, Instant::now()));
            st.stdin_open = false;
            std::mem::take(&mut st.subs)
        };
        for (_, tx) in subs {
            let _ = tx.send_timeout(Msg::Exit(code), STALL).await;
        }
        *self.stdin.lock().await = Stdin::Closed;
    }
}
