//! Host-side client of the lohar guest agent.
//!
//! [`Client`] speaks the frame protocol of `../shared/PROTOCOL.md` over any
//! [`Connector`] (Unix sockets for lohar's test mode, TCP; the engine adds
//! its own). It is cheap to clone. By default it holds no connection: every
//! operation opens one (one request per connection, as PROTOCOL.md says),
//! starting with AUTH when the client has a token. With
//! [`Client::with_reuse`] (protocol version 6, [`pool`]) unary requests and
//! piped execs go over a few kept connections instead, shared by clones.
//!
//! Operation families, one module each:
//! - [`exec`]: buffered and streaming piped exec;
//! - [`supervise`]: a streaming exec run to a deadline (KILL, then the
//!   rest of its output), collected under an output cap;
//! - [`session`]: TTY sessions (shell, attach, list, kill);
//! - [`files`]: read (streaming, cancellable), write (streamed), stat, ls;
//! - [`forward`]: raw tunnels to guest TCP ports;
//! - [`activity`]: activity info and wait-until-ready;
//! - [`fsops`]: protocol version 4 — capabilities ([`Client::caps`]),
//!   mkdir, move, remove, extended stat and listing;
//! - [`watch`]: protocol version 4 — directory watches;
//! - [`kept`]: protocol version 5 — kept piped execs (start, attach with
//!   replay, list);
//! - [`sync`]: protocol version 7 — EXIT before the exec's sync
//!   ([`Client::with_deferred_sync`]) and [`Client::sync`].
//!
//! Version 4 operations need an agent that lists them in
//! [`Client::caps`]; a v1 agent refuses their frames as unexpected.
//! Signals other than KILL go through [`Input::signal`]; end of input
//! without a half-close (so that KILL and SIGNAL can still be sent) is
//! [`Input::end_stdin`] (version 5, feature `stdin_eof`).
//!
//! Shared pieces: [`connector`] (transports), [`conn`] (one connection,
//! the event reader task, the stdin writer), [`pool`] (reused
//! connections), [`error`] (the error type).
//!
//! Unknown frame types are skipped everywhere (forward compatibility).
//! Anything else an agent should never send — a malformed frame or JSON, a
//! negative or broken size, more data than announced — is
//! [`Error::Protocol`] for the caller and a `tracing` warning naming the
//! peer ([`Client::with_peer`]); nothing is dropped silently.
//! Errors are typed: what the agent said is an [`AgentFailure`] with the
//! [`ErrorCode`] of the ERROR_CODE frame before the ERROR frame (protocol
//! version 2, `docs/protocol.md`), [`ErrorCode::Other`] from a v1 agent.
//! Streaming handles own their halves of the connection; nothing holds a
//! lock across a network await. Streaming operations spawn one reader task
//! each, so they need a tokio runtime.
//!
//! ```no_run
//! use std::time::Duration;
//! use bhatti_agent::{Client, Event, ExecOptions, ReadOptions, ShellOptions};
//!
//! # async fn demo() -> bhatti_agent::Result<()> {
//! let agent = Client::unix("/tmp/lohar.sock", "/tmp/lohar-fwd.sock").with_token("00ff");
//! agent.wait_ready(Duration::from_secs(5)).await?;
//!
//! let out = agent.exec(ExecOptions::new(["uname", "-a"]).timeout(Duration::from_secs(10))).await?;
//! println!("{} {}", out.exit_code, String::from_utf8_lossy(&out.stdout));
//!
//! let mut shell = agent.shell(&ShellOptions::new(["/bin/sh"]).size(40, 120)).await?;
//! shell.write(b"ls\n").await?;
//! while let Some(ev) = shell.next().await? {
//!     if let Event::Stdout(bytes) = ev { print!("{}", String::from_utf8_lossy(&bytes)); }
//! }
//!
//! let body = agent.read_file("/etc/hostname", ReadOptions::default()).await?;
//! let hostname = body.read_all().await?;
//! # let _ = hostname; Ok(()) }
//! ```

#[macro_use]
pub mod pool;
pub mod activity;
pub mod conn;
pub mod connector;
pub mod error;
pub mod exec;
mod file_write;
pub mod files;
pub mod forward;
pub mod fsops;
pub mod kept;
pub mod session;
pub mod supervise;
pub mod sync;
pub mod watch;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bhatti_proto::FrameType;

pub use bhatti_proto::ext::{
    Caps, EntryInfo, EntryType, Ls2Response, MkdirResponse, WatchEvent, WatchEventType, feature,
};
pub use bhatti_proto::kept::{KeptInfo, KeptList};
pub use bhatti_proto::messages::{ActivityInfo, ExecRequest, FileInfo, SessionInfo};
pub use conn::{Event, Events, Input};
pub use connector::{AgentStream, BoxStream, Connector, TcpConnector, UnixConnector};
pub use error::{AgentFailure, Error, ErrorCode, Result};
pub use exec::{ExecOptions, ExecResult, ExecStream};
pub use files::{FileReader, ReadOptions};
pub use forward::Tunnel;
pub use kept::Kept;
pub use session::{Session, ShellOptions};
pub use supervise::Supervised;
pub use watch::Watch;

use conn::Conn;

/// A client of one agent. Clones share the connector, the token and the
/// peer name.
#[derive(Clone)]
pub struct Client {
    connector: Arc<dyn Connector>,
    token: Option<Arc<[u8]>>,
    /// Names the agent in log lines (a sandbox id, or the connector).
    peer: Arc<str>,
    /// Longest wait for a connection and for the agent's first reply to a
    /// request ([`Client::with_reply_timeout`]).
    reply_timeout: Duration,
    /// Idle reused connections ([`Client::with_reuse`]), shared by clones.
    pool: Option<Arc<pool::Pool>>,
    /// Ask for EXIT before the exec's sync ([`Client::with_deferred_sync`]).
    defer_sync: bool,
    /// The agent's first CAPS_RESP, once asked (shared by clones).
    known_caps: Arc<std::sync::OnceLock<Caps>>,
}

/// How long the agent may take to accept a connection and to answer a
/// request by default: far above anything a working agent needs (a
/// write's fsync included), so that only a silent agent hits it.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("connector", &self.connector)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("peer", &self.peer)
            .field("reply_timeout", &self.reply_timeout)
            .field("pool", &self.pool)
            .field("defer_sync", &self.defer_sync)
            .finish()
    }
}

impl Client {
    /// A client over any connector, without a token.
    pub fn new(connector: impl Connector + 'static) -> Self {
        Self::from_arc(Arc::new(connector))
    }

    /// A client over a shared connector, without a token.
    pub fn from_arc(connector: Arc<dyn Connector>) -> Self {
        let peer = Arc::from(format!("{connector:?}"));
        Self {
            connector,
            token: None,
            peer,
            reply_timeout: REPLY_TIMEOUT,
            pool: None,
            defer_sync: false,
            known_caps: Arc::default(),
        }
    }

    /// A client of lohar in test mode (control and forward Unix sockets).
    pub fn unix(control: impl Into<PathBuf>, forward: impl Into<PathBuf>) -> Self {
        Self::new(UnixConnector::new(control, forward))
    }

    /// A client of an agent listening on TCP at `ip`.
    pub fn tcp(ip: IpAddr) -> Self {
        Self::new(TcpConnector::new(ip))
    }

    /// Sends `token` as AUTH at the start of every connection.
    pub fn with_token(mut self, token: impl AsRef<[u8]>) -> Self {
        self.token = Some(Arc::from(token.as_ref()));
        self
    }

    /// Names the agent in the warnings logged for replies it should never
    /// have sent (e.g. the sandbox id); the default is the connector's
    /// description.
    pub fn with_peer(mut self, name: impl Into<String>) -> Self {
        self.peer = Arc::from(name.into());
        self
    }

    /// Sets how long a connection and the agent's first reply to a
    /// request may take before the operation fails with
    /// [`Error::Timeout`] (default [`REPLY_TIMEOUT`]). Streams (exec
    /// output, sessions, forwarded bytes) are not cut by it: exec has its
    /// own deadline ([`Supervised`]).
    pub fn with_reply_timeout(mut self, timeout: Duration) -> Self {
        self.reply_timeout = timeout;
        self
    }

    /// Reuses control connections for unary requests when the agent
    /// serves them (protocol version 6; see [`pool`]): no connection,
    /// accept and AUTH per request. Clones share the idle connections.
    pub fn with_reuse(mut self) -> Self {
        self.pool = Some(Arc::default());
        self
    }

    /// A clone that opens a connection per request, as v1 hosts do (for
    /// comparisons; the original keeps its pool).
    pub fn without_reuse(&self) -> Self {
        Self {
            pool: None,
            ..self.clone()
        }
    }

    /// Closes the idle reused connections, e.g. when the VM behind them
    /// stops. Harmless without [`Client::with_reuse`]; a connection taken
    /// later that turns out dead is replaced anyway.
    pub fn forget_connections(&self) {
        if let Some(p) = &self.pool {
            p.clear();
        }
    }

    /// Idle reused connections kept now.
    pub fn idle_connections(&self) -> usize {
        self.pool.as_ref().map_or(0, |p| p.len())
    }

    /// Idle reused connections found closed when taken so far (each
    /// replaced by a new connection; see [`pool`]).
    pub fn stale_connections(&self) -> u64 {
        self.pool.as_ref().map_or(0, |p| p.stale())
    }

    /// The name the client's log lines give the agent.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Connects to `port` and sends AUTH (if any) and the request frame.
    async fn open(&self, port: u16, kind: FrameType, payload: &[u8]) -> Result<Conn> {
        self.connect(port, false, kind, payload).await
    }

    /// [`Client::open`], with REUSE before the request when `reuse`.
    async fn connect(
        &self,
        port: u16,
        reuse: bool,
        kind: FrameType,
        payload: &[u8],
    ) -> Result<Conn> {
        let stream = tokio::time::timeout(self.reply_timeout, self.connector.connect(port))
            .await
            .map_err(|_| Error::Timeout(self.reply_timeout))??;
        let mut conn = Conn::start(
            stream,
            self.token.as_deref(),
            reuse,
            kind,
            payload,
            self.peer.clone(),
        )
        .await?;
        conn.reply_timeout = self.reply_timeout;
        Ok(conn)
    }
}
