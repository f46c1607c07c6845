//! Agent-wide state shared by every connection: configuration, identity of
//! user commands, limits, the TTY session and kept exec registries and the
//! activity clock.
//!
//! Held in one `Arc<Agent>`; everything mutable inside has its own small
//! lock or is atomic (see [`crate::sessions`] for the session locks). The
//! AUTH token and the sandbox environment are replaced by an identify
//! ([`crate::identify`]): the token lives in a `watch` channel, so every
//! authenticated connection learns when it changes (and is closed), and
//! the environment behind a `RwLock`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use bhatti_proto::config::GuestConfig;
use tokio::sync::watch;

use crate::env::Identity;
use crate::kept::Kept;
use crate::rtc::Rtc;
use crate::sessions::Sessions;

/// Limits that keep one client from hurting the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent connections over both listeners.
    pub max_connections: usize,
    /// TTY sessions still running.
    pub max_sessions: usize,
    /// Largest single file write, bytes.
    pub max_write_bytes: u64,
    /// Bytes read ahead of a file that reports size 0 (procfs, devices)
    /// to learn its real size (see `handlers::file_read`).
    pub max_unsized_read: usize,
    /// Exited sessions kept for listing and late attach; oldest go first.
    pub max_exited_sessions: usize,
    /// Kept piped execs (protocol version 5) still running.
    pub max_kept: usize,
    /// Exited kept execs still listed and attachable; oldest go first.
    pub max_kept_exited: usize,
    /// How long an exited kept exec stays listed and attachable.
    pub kept_retain: std::time::Duration,
    /// Output bytes kept per kept exec for a replay.
    pub kept_ring: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_sessions: 64,
            max_write_bytes: 16 << 30,
            max_unsized_read: 8 << 20,
            max_exited_sessions: 64,
            max_kept: 64,
            max_kept_exited: 16,
            kept_retain: std::time::Duration::from_secs(600),
            kept_ring: crate::ring::SCROLLBACK,
        }
    }
}

/// Everything a handler may need.
#[derive(Debug)]
pub struct Agent {
    /// Required AUTH token; `None` accepts every connection. A connection
    /// keeps a receiver from its authentication on and ends when the token
    /// is replaced (see [`Agent::replace_token`]).
    token: watch::Sender<Option<Vec<u8>>>,
    /// The sandbox environment every command starts with: the config
    /// drive's `env` at boot, replaced by an identify that carries one.
    env: RwLock<Arc<BTreeMap<String, String>>>,
    /// The config drive (init script, user…; its `env` moved to
    /// [`Agent::env`]); default when there is none.
    pub config: GuestConfig,
    /// Who user commands run as when neither the request nor the sandbox
    /// (`exec_user`) names a user: root in PID-1 mode (v1's rule), the
    /// agent's own user in test mode. See [`crate::run_as`].
    pub identity: Identity,
    /// Who the `init` script runs as when the sandbox sets no `exec_user`:
    /// the sandbox user in PID-1 mode.
    pub init_identity: Identity,
    /// Owner of new files written through the API when neither the
    /// request nor the sandbox names a user: the sandbox user in PID-1
    /// mode; `None` keeps the agent's own.
    pub file_owner: Option<(u32, u32)>,
    /// Directory holding the `passwd` and `group` files users are looked
    /// up in (`/etc`; test mode: `LOHAR_ETC`).
    pub etc: PathBuf,
    /// The agent's effective uid: only root switches users.
    pub own_uid: u32,
    pub limits: Limits,
    /// Test mode: TTY session processes get SIGKILL when the agent dies (a
    /// test harness kills lohar with SIGKILL and must not leak sleeping
    /// sessions). Piped execs are left alone to keep their fast spawn path.
    pub children_die_with_agent: bool,
    /// `sync()` before a piped exec's EXIT (PROTOCOL.md). Always on, except
    /// in test mode with `LOHAR_EXEC_SYNC=0`, which the bench uses to
    /// measure what the sync costs.
    pub sync_after_exec: bool,
    /// PID-1 mode with an RTC: the guest clock is caught up with it before
    /// each connection is handled (see [`crate::rtc`]).
    pub rtc: Option<Rtc>,
    pub sessions: Sessions,
    /// Kept piped execs (protocol version 5).
    pub kept: Kept,
    last_activity: AtomicI64,
}

impl Agent {
    pub fn new(
        token: Option<Vec<u8>>,
        mut config: GuestConfig,
        identity: Identity,
        limits: Limits,
    ) -> Self {
        let sessions = Sessions::new(limits.max_sessions, limits.max_exited_sessions);
        let env = std::mem::take(&mut config.env);
        let kept = Kept::new(limits.clone());
        Self {
            token: watch::Sender::new(token),
            env: RwLock::new(Arc::new(env)),
            config,
            init_identity: identity.clone(),
            identity,
            file_owner: None,
            etc: PathBuf::from("/etc"),
            own_uid: rustix::process::geteuid().as_raw(),
            limits,
            children_die_with_agent: false,
            sync_after_exec: true,
            rtc: None,
            sessions,
            kept,
            last_activity: AtomicI64::new(0),
        }
    }

    /// The AUTH token, as a receiver whose `changed()` fires when an
    /// identify replaces it (the receiver has seen the current token).
    pub fn token(&self) -> watch::Receiver<Option<Vec<u8>>> {
        self.token.subscribe()
    }

    /// Whether `presented` is the current token, compared in constant time
    /// (no token: only the empty string matches).
    pub fn token_matches(&self, presented: &[u8]) -> bool {
        let current = self.token.borrow();
        crate::server::constant_time_eq(presented, current.as_deref().unwrap_or_default())
    }

    /// Replaces the AUTH token; every connection authenticated before is
    /// told, and closes (see `server::connection`).
    pub fn replace_token(&self, token: Vec<u8>) {
        self.token.send_replace(Some(token));
    }

    /// The sandbox environment commands start with now.
    pub fn env(&self) -> Arc<BTreeMap<String, String>> {
        self.env
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the sandbox environment for every later command.
    pub fn set_env(&self, env: BTreeMap<String, String>) {
        *self.env.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(env);
    }

    /// Records host activity now.
    pub fn touch(&self) {
        self.last_activity.store(now_unix(), Ordering::Relaxed);
    }

    /// Unix seconds of the last host activity, 0 when none yet.
    pub fn last_activity(&self) -> i64 {
        self.last_activity.load(Ordering::Relaxed)
    }
}

/// Current time in unix seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
