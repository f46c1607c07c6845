//! Reused control connections (protocol version 6, `docs/protocol.md`).
//!
//! A client made with [`crate::Client::with_reuse`] keeps up to
//! [`MAX_IDLE`] connections per agent open between unary requests (file
//! read, write, stat and listing, activity, the v4 file operations, session
//! and kept-command lists, a buffered exec). Such a connection starts with
//! AUTH and REUSE, and goes back to the pool once its reply has been read
//! whole; anything else (an error of the transport, a timeout, a reader
//! dropped halfway) closes it.
//!
//! Whether the agent serves REUSE is asked once, with CAPS on a
//! one-request connection; a v1 agent (or a lohar older than version 6)
//! never sees the frame. Should one still refuse it, the client stops
//! sending it and repeats the request without.
//!
//! A pooled connection can be dead when it is taken (the VM was stopped or
//! restored, the agent's idle limit passed). One the agent closed is seen
//! and skipped when taken; otherwise the request fails before any reply
//! frame arrives, and the client repeats it once on a new connection.
//! That is safe for every request, exec included, because the agent never
//! closes a reused connection after reading a request without answering
//! it (`docs/protocol.md`).
//!
//! Locks: one `std::sync::Mutex` over the idle list, never held across an
//! await.

/// The reply reader of a unary request, for [`crate::Client::unary`]: a
/// closure that takes the connection (its request sent) by value, runs
/// `$body` (a `Result`) with it, and hands it back with the result.
macro_rules! reply {
    (|$c:ident| $body:expr) => {
        move |mut $c: $crate::conn::Conn| async move {
            let r: $crate::error::Result<_> = async { $body }.await;
            ($c, r)
        }
    };
}

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use bhatti_proto::{CONTROL_PORT, FrameType};
use tokio::io::{AsyncRead, ReadBuf, ReadHalf, WriteHalf};

use crate::conn::Conn;
use crate::connector::BoxStream;
use crate::error::{Error, Result};
use crate::feature;

/// Idle connections kept per agent at most.
pub const MAX_IDLE: usize = 4;

/// How long a connection may wait in the pool. Far below the agent's own
/// limit (10 minutes of guest time), so the agent never closes one the
/// client is about to use.
pub const IDLE_TTL: Duration = Duration::from_secs(60);

/// The idle connections of one agent and whether it serves REUSE.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<Vec<(BoxStream, Instant)>>,
    /// 0 (not known yet), [`SERVED`] or [`REFUSED`].
    support: AtomicU8,
    /// Idle connections found closed when taken.
    stale: AtomicU64,
}

const SERVED: u8 = 1;
const REFUSED: u8 = 2;

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &self.len())
            .field("support", &self.support())
            .finish()
    }
}

impl Pool {
    /// The most recently used live connection, if any. One the agent has
    /// closed meanwhile (seen without waiting: [`still_open`]) is dropped
    /// and counted as stale.
    pub(crate) fn take(&self) -> Option<BoxStream> {
        loop {
            let mut stream = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                idle.retain(|(_, since)| now.duration_since(*since) < IDLE_TTL);
                idle.pop()?.0
            };
            if still_open(&mut stream) {
                return Some(stream);
            }
            self.stale.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Keeps `stream`, whose last reply was read whole, for the next
    /// request (or closes it when the pool is full).
    pub(crate) fn put(&self, stream: BoxStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((stream, Instant::now()));
        }
    }

    /// Closes every idle connection.
    pub(crate) fn clear(&self) {
        let drained: Vec<_> = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.drain(..).collect()
        };
        drop(drained);
    }

    /// `Some(served)` once known.
    pub(crate) fn support(&self) -> Option<bool> {
        match self.support.load(Ordering::Relaxed) {
            SERVED => Some(true),
            REFUSED => Some(false),
            _ => None,
        }
    }

    /// Notes whether a CAPS_RESP lists REUSE, unless that is known.
    pub(crate) fn learn(&self, caps: &bhatti_proto::ext::Caps) {
        if self.support().is_none() {
            self.set_support(caps.has(feature::REUSE));
        }
    }

    pub(crate) fn set_support(&self, served: bool) {
        let v = if served { SERVED } else { REFUSED };
        self.support.store(v, Ordering::Relaxed);
        if !served {
            self.clear();
        }
    }

    /// Idle connections found closed when taken, so far.
    pub(crate) fn stale(&self) -> u64 {
        self.stale.load(Ordering::Relaxed)
    }

    /// Idle connections now.
    pub(crate) fn len(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl crate::Client {
    /// Runs the unary request `kind` + `payload` with `op` reading its
    /// reply: on an idle reused connection when there is one (once more on
    /// a new connection if that one turns out dead), else on a new one,
    /// which is kept afterwards when the agent serves REUSE.
    pub(crate) async fn unary<T, F, Fut>(
        &self,
        kind: FrameType,
        payload: &[u8],
        mut op: F,
    ) -> Result<T>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = (Conn, Result<T>)>,
    {
        let Some(pool) = self.reuse_pool().await else {
            let c = self.open(CONTROL_PORT, kind, payload).await?;
            return op(c).await.1;
        };
        if let Some(c) = self.resume_idle(pool, kind, payload).await {
            match op(c).await {
                (c, Ok(v)) => {
                    recycle(pool, c);
                    return Ok(v);
                }
                (c, Err(e)) if !c.heard && is_dead(&e) => {
                    pool.stale.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer = %self.peer, "idle agent connection was closed: {e}");
                }
                (_, Err(e)) => return Err(e),
            }
        }
        let c = self.connect(CONTROL_PORT, true, kind, payload).await?;
        match op(c).await {
            (c, Ok(v)) => {
                recycle(pool, c);
                Ok(v)
            }
            (_, Err(e)) if refused_reuse(&e) => {
                tracing::warn!(peer = %self.peer, "agent refused REUSE after listing it: {e}");
                pool.set_support(false);
                let c = self.open(CONTROL_PORT, kind, payload).await?;
                op(c).await.1
            }
            (_, Err(e)) => Err(e),
        }
    }

    /// A new connection for a unary request that cannot be sent twice (a
    /// write streamed from its source), opened with REUSE when the agent
    /// serves it; [`Client::keep`](crate::Client) it once its reply was
    /// read whole.
    pub(crate) async fn open_unary(&self, kind: FrameType, payload: &[u8]) -> Result<Conn> {
        let reuse = self.reuse_pool().await.is_some();
        self.connect(CONTROL_PORT, reuse, kind, payload).await
    }

    /// The connection of a streamed request (a piped exec): an idle reused
    /// one when there is one, else a new one (with REUSE when the agent
    /// serves it), and the pool it returns to.
    ///
    /// An idle connection the agent has closed is skipped when taken
    /// ([`Pool::take`]). Unlike [`Client::unary`](crate::Client), nothing
    /// here can notice one whose peer vanished without closing it before
    /// the caller reads from it: the engine closes idle connections
    /// whenever the VM behind them stops or is restored
    /// ([`crate::Client::forget_connections`]), so that does not happen.
    pub(crate) async fn open_streamed(
        &self,
        kind: FrameType,
        payload: &[u8],
    ) -> Result<(Conn, Option<&Arc<Pool>>)> {
        let (Some(_), Some(pool)) = (self.reuse_pool().await, self.pool.as_ref()) else {
            return Ok((self.open(CONTROL_PORT, kind, payload).await?, None));
        };
        if let Some(c) = self.resume_idle(pool, kind, payload).await {
            return Ok((c, Some(pool)));
        }
        let c = self.connect(CONTROL_PORT, true, kind, payload).await?;
        Ok((c, Some(pool)))
    }

    /// The request sent on an idle connection of `pool`, if there is one
    /// that takes it.
    async fn resume_idle(&self, pool: &Pool, kind: FrameType, payload: &[u8]) -> Option<Conn> {
        let stream = pool.take()?;
        match Conn::resume(stream, kind, payload, self.peer.clone()).await {
            Ok(mut c) => {
                c.reply_timeout = self.reply_timeout;
                Some(c)
            }
            Err(e) => {
                pool.stale.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %self.peer, "idle agent connection was closed: {e}");
                None
            }
        }
    }

    /// Keeps `c` for the next request, if it was opened with REUSE.
    pub(crate) fn keep(&self, c: Conn) {
        if let Some(pool) = &self.pool {
            recycle(pool, c);
        }
    }

    /// The pool, when reuse is on and the agent serves it; asks the agent
    /// (CAPS on a one-request connection) the first time.
    async fn reuse_pool(&self) -> Option<&Pool> {
        let pool = self.pool.as_deref()?;
        match pool.support() {
            Some(served) => served.then_some(pool),
            None => {
                // Not known yet: a failed CAPS (agent not up) decides
                // nothing; a successful one tells the pool.
                let served = self.caps().await.ok()?.has(feature::REUSE);
                served.then_some(pool)
            }
        }
    }
}

/// Whether an idle connection is still open, asked without waiting: a
/// read that would block. End of file (the agent closed it), an error,
/// or bytes nobody asked for (a connection out of step) mean it is not.
/// A peer that vanished without closing (a VM stopped unseen) still looks
/// open; a unary request then finds out and is sent again
/// ([`crate::Client`]'s `unary`).
fn still_open(stream: &mut BoxStream) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(stream).poll_read(&mut cx, &mut buf).is_pending()
}

/// The two halves of a streamed request's reused connection (an
/// [`crate::ExecStream`]): once the reader has seen EXIT or ERROR and the
/// [`crate::Input`] was dropped, they are joined and the connection goes
/// back to the pool. A half that never arrives (a reader aborted, an
/// error) leaves the other to close with this.
pub(crate) struct Rejoin {
    pool: Arc<Pool>,
    halves: Mutex<Halves>,
}

type Halves = (Option<ReadHalf<BoxStream>>, Option<WriteHalf<BoxStream>>);

impl Rejoin {
    pub(crate) fn new(pool: &Arc<Pool>) -> Arc<Self> {
        Arc::new(Self {
            pool: pool.clone(),
            halves: Mutex::new((None, None)),
        })
    }

    pub(crate) fn give_read(&self, r: ReadHalf<BoxStream>) {
        let mut h = self.halves.lock().unwrap_or_else(|p| p.into_inner());
        h.0 = Some(r);
        self.join(&mut h);
    }

    pub(crate) fn give_write(&self, w: WriteHalf<BoxStream>) {
        let mut h = self.halves.lock().unwrap_or_else(|p| p.into_inner());
        h.1 = Some(w);
        self.join(&mut h);
    }

    fn join(&self, h: &mut Halves) {
        if h.0.is_none() || h.1.is_none() {
            return;
        }
        if let (Some(r), Some(w)) = (h.0.take(), h.1.take())
            && r.is_pair_of(&w)
        {
            self.pool.put(r.unsplit(w));
        }
    }
}

/// Puts `c` back into `pool` when it was opened with REUSE and its reply
/// was read whole (which the caller's success says).
pub(crate) fn recycle(pool: &Pool, c: Conn) {
    if c.reusable {
        pool.put(c.stream);
    }
}

/// The connection was gone before it carried anything back.
fn is_dead(e: &Error) -> bool {
    match e {
        Error::Closed(_) => true,
        Error::Transport(io) => matches!(
            io.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::UnexpectedEof
                | io::ErrorKind::NotConnected
        ),
        _ => false,
    }
}

/// The agent's answer to a REUSE frame it does not know.
fn refused_reuse(e: &Error) -> bool {
    let want = format!("unexpected frame type 0x{:02x}", FrameType::REUSE.0);
    e.agent_message().is_some_and(|m| m.starts_with(&want))
}

impl crate::Client {
    /// [`Client::unary`](crate::Client) for a request whose reply is one
    /// JSON frame of type `resp`.
    pub(crate) async fn unary_json<T: serde::de::DeserializeOwned>(
        &self,
        kind: FrameType,
        payload: &[u8],
        resp: FrameType,
        during: &'static str,
    ) -> Result<T> {
        self.unary(
            kind,
            payload,
            reply!(|c| {
                let f = c.expect(resp, during).await?;
                c.decode(resp.name().unwrap_or(during), &f.payload)
            }),
        )
        .await
    }
}
