//! TTY sessions: the registry and the per-session state machine.
//!
//! Tasks per session: an output pump (PTY master → scrollback ring and the
//! attached client's channel) and an exit watcher (waits for the reaper's
//! status, lets the pump drain, records the exit, tells the attached
//! client). Each attached client's connection task owns an
//! [`Attachment`]'s receiving ends and relays them to its socket.
//!
//! Locks: [`Sessions`] has one `std::sync::Mutex` for the map; each
//! [`Session`] has one `std::sync::Mutex` for its state (ring, attached
//! client, exit code, idle timer). Neither is ever held across an await;
//! the session lock is taken inside the registry lock only for counting.
//! Output ordering on attach: the new client's SESSION_INFO and scrollback
//! snapshot are taken under the session lock in the same critical section
//! that installs its channel, and the pump appends to the ring and picks
//! the channel under that lock too, so every byte reaches the client
//! exactly once: in the scrollback or live, never both.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bhatti_proto::messages::SessionInfo;
use rustix::process::{Pid, Signal};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::pty::Master;
use crate::ring::{Ring, SCROLLBACK};

/// Exit code sent to a client that another attach displaced.
pub const DISPLACED_EXIT: i32 = -1;
/// Id of the session that runs the sandbox's init script.
pub const INIT_SESSION: &str = "init";
/// How long the exit watcher lets the pump drain after the process exits
/// (background jobs may keep the terminal open forever).
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// Output chunks queued per attached client.
const CLIENT_QUEUE: usize = 16;

/// Errors of the registry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("too many sessions (limit {0})")]
    TooMany(usize),
    #[error("session not found")]
    NotFound,
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // State stays consistent across a panic elsewhere (single-field
    // updates), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// All sessions, running and exited-not-yet-reaped.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<BTreeMap<String, Arc<Session>>>,
    next_id: AtomicU64,
    max_live: usize,
    max_exited: usize,
}

impl Sessions {
    pub fn new(max_live: usize, max_exited: usize) -> Self {
        Self {
            map: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            max_live,
            max_exited,
        }
    }

    /// Creates and registers a session. `id` is `None` for the next `sN`.
    /// `make` runs under the registry lock, so the live-session limit holds
    /// even with concurrent creates.
    pub fn create<E: From<SessionError>>(
        &self,
        id: Option<&str>,
        make: impl FnOnce(String) -> Result<Arc<Session>, E>,
    ) -> Result<Arc<Session>, E> {
        let mut map = relock(&self.map);
        let live = map.values().filter(|s| s.is_running()).count();
        if live >= self.max_live {
            return Err(SessionError::TooMany(self.max_live).into());
        }
        let id = match id {
            Some(id) => id.to_owned(),
            None => format!("s{}", self.next_id.fetch_add(1, Ordering::Relaxed)),
        };
        let session = make(id.clone())?;
        map.insert(id, session.clone());
        Self::prune(&mut map, self.max_exited);
        Ok(session)
    }

    fn prune(map: &mut BTreeMap<String, Arc<Session>>, max_exited: usize) {
        let mut exited: Vec<(u64, String)> = map
            .values()
            .filter(|s| !s.is_running())
            .map(|s| (s.seq, s.id.clone()))
            .collect();
        if exited.len() <= max_exited {
            return;
        }
        exited.sort();
        for (_, id) in exited.iter().take(exited.len() - max_exited) {
            map.remove(id);
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        relock(&self.map).get(id).cloned()
    }

    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        relock(&self.map).remove(id)
    }

    /// SessionInfo of every registered session, oldest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        let map = relock(&self.map);
        let mut all: Vec<&Arc<Session>> = map.values().collect();
        all.sort_by_key(|s| s.seq);
        all.iter().map(|s| s.info()).collect()
    }

    /// (running, attached) session counts.
    pub fn counts(&self) -> (u32, u32) {
        let map = relock(&self.map);
        let mut running = 0;
        let mut attached = 0;
        for s in map.values() {
            let st = relock(&s.state);
            running += u32::from(st.exit_code.is_none());
            attached += u32::from(st.attached.is_some());
        }
        (running, attached)
    }
}

/// One TTY session.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    argv: String,
    created_at: i64,
    /// Creation order, for listing and pruning.
    seq: u64,
    pgid: i32,
    pub master: Arc<Master>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    ring: Ring,
    attached: Option<Attachment>,
    exit_code: Option<i32>,
    max_idle_sec: u64,
    idle_timer: Option<JoinHandle<()>>,
    next_attach: u64,
}

#[derive(Debug)]
struct Attachment {
    id: u64,
    out: mpsc::Sender<Vec<u8>>,
    end: oneshot::Sender<i32>,
}

/// What a newly attached client receives, in this order: `info`, then
/// `scrollback` (when non-empty), then either EXIT `exited` (already
/// exited) or live output from `output` until `end` yields an exit code.
#[derive(Debug)]
pub struct Attached {
    pub info: SessionInfo,
    pub scrollback: Vec<u8>,
    pub exited: Option<i32>,
    pub output: mpsc::Receiver<Vec<u8>>,
    pub end: oneshot::Receiver<i32>,
    guard: DetachGuard,
}

impl Attached {
    pub fn session(&self) -> &Arc<Session> {
        &self.guard.session
    }
}

/// Detaches its client when dropped (disconnect, error, or normal end).
#[derive(Debug)]
struct DetachGuard {
    session: Arc<Session>,
    id: u64,
}

impl Drop for DetachGuard {
    fn drop(&mut self) {
        self.session.detach(self.id);
    }
}

/// A requested idle timeout in seconds: negative means none, and anything
/// beyond a year is a year (keeps timer arithmetic far from overflow).
fn idle_secs(requested: i64) -> u64 {
    u64::try_from(requested).unwrap_or(0).min(365 * 24 * 3600)
}

static SEQ: AtomicU64 = AtomicU64::new(0);

impl Session {
    pub fn new(
        id: String,
        argv: &[String],
        pgid: i32,
        master: Master,
        max_idle_sec: i64,
    ) -> Arc<Self> {
        Arc::new(Self {
            id,
            argv: argv.join(" "),
            created_at: crate::agent::now_unix(),
            seq: SEQ.fetch_add(1, Ordering::Relaxed),
            pgid,
            master: Arc::new(master),
            state: Mutex::new(State {
                ring: Ring::new(SCROLLBACK),
                attached: None,
                exit_code: None,
                max_idle_sec: idle_secs(max_idle_sec),
                idle_timer: None,
                next_attach: 0,
            }),
        })
    }

    pub fn is_running(&self) -> bool {
        relock(&self.state).exit_code.is_none()
    }

    pub fn info(&self) -> SessionInfo {
        let st = relock(&self.state);
        self.info_locked(&st)
    }

    fn info_locked(&self, st: &State) -> SessionInfo {
        SessionInfo {
            session_id: self.id.clone(),
            argv: self.argv.clone(),
            tty: true,
            running: st.exit_code.is_none(),
            exit_code: st.exit_code,
            attached: st.attached.is_some(),
            created_at: self.created_at,
        }
    }

    /// Attaches a client, displacing (EXIT [`DISPLACED_EXIT`]) any other.
    /// `max_idle_sec` > 0 replaces the idle timeout used after detach.
    pub fn attach(self: &Arc<Self>, max_idle_sec: Option<i64>) -> Attached {
        let (out_tx, output) = mpsc::channel(CLIENT_QUEUE);
        let (end_tx, end) = oneshot::channel();
        let mut st = relock(&self.state);
        if let Some(old) = st.attached.take() {
            let _ = old.end.send(DISPLACED_EXIT);
        }
        if let Some(t) = st.idle_timer.take() {
            t.abort();
        }
        if let Some(secs) = max_idle_sec.filter(|s| *s > 0) {
            st.max_idle_sec = idle_secs(secs);
        }
        st.next_attach += 1;
        let id = st.next_attach;
        let exited = st.exit_code;
        if exited.is_none() {
            st.attached = Some(Attachment {
                id,
                out: out_tx,
                end: end_tx,
            });
        }
        let info = self.info_locked(&st);
        let scrollback = st.ring.contents();
        drop(st);
        Attached {
            info,
            scrollback,
            exited,
            output,
            end,
            guard: DetachGuard {
                session: self.clone(),
                id,
            },
        }
    }

    fn detach(self: &Arc<Self>, attach_id: u64) {
        let mut st = relock(&self.state);
        if st.attached.as_ref().is_none_or(|a| a.id != attach_id) {
            return;
        }
        st.attached = None;
        if st.exit_code.is_none() && st.max_idle_sec > 0 {
            let secs = st.max_idle_sec;
            let weak: Weak<Session> = Arc::downgrade(self);
            st.idle_timer = Some(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(secs)).await;
                if let Some(s) = weak.upgrade() {
                    s.idle_expired();
                }
            }));
        }
    }

    fn idle_expired(&self) {
        let st = relock(&self.state);
        if st.attached.is_none() && st.exit_code.is_none() {
            crate::debug!("session {}: idle timeout, killing", self.id);
            self.signal(Signal::KILL);
        }
    }

    /// Sends `sig` to the session's process group while it runs.
    pub fn signal(&self, sig: Signal) {
        if let Some(pgid) = Pid::from_raw(self.pgid) {
            let _ = rustix::process::kill_process_group(pgid, sig);
        }
    }

    /// Starts the output pump and the exit watcher. Call after the creating
    /// client (if any) attached, so it sees SESSION_INFO before output.
    pub fn start(self: &Arc<Self>, exit: oneshot::Receiver<i32>) {
        let pump = tokio::spawn(self.clone().pump());
        let me = self.clone();
        tokio::spawn(async move {
            let code = exit.await.unwrap_or(-1);
            let _ = tokio::time::timeout(DRAIN_GRACE, pump).await;
            let mut st = relock(&me.state);
            st.exit_code = Some(code);
            if let Some(t) = st.idle_timer.take() {
                t.abort();
            }
            if let Some(a) = st.attached.take() {
                let _ = a.end.send(code);
            }
        });
    }

    async fn pump(self: Arc<Self>) {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match self.master.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) => {
                    crate::debug!("session {}: pty read: {e}", self.id);
                    return;
                }
            };
            let chunk = &buf[..n];
            let tx = {
                let mut st = relock(&self.state);
                st.ring.push(chunk);
                st.attached.as_ref().map(|a| a.out.clone())
            };
            if let Some(tx) = tx {
                // Back-pressure from a slow client; a gone client fails fast.
                let _ = tx.send(chunk.to_vec()).await;
            }
        }
    }
}
