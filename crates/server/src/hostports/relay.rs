//! One forward's accept loop and its relayed connections: each accepted
//! host connection wakes the sandbox if it is not hot (like the reverse
//! proxy: the call counts as activity, and the connection keeps the
//! sandbox busy while it is open), opens a tunnel to the guest port
//! through the agent, and copies bytes both ways until either side
//! closes.
//!
//! A sandbox this connection had to wake is still coming up when its
//! wake returns: opening the tunnel is then retried for at most
//! [`WAKE_GRACE`] (the agent may not answer yet, the guest's server may
//! not accept yet). Nothing of the client's bytes is read before the
//! tunnel is open, so a retry loses nothing. A sandbox that was hot gets
//! no retry: a refused guest port closes the host connection at once.
//!
//! # Threads, locks, I/O
//! One accept task per forward, owning its listener and a `JoinSet` of
//! relay tasks: aborting the accept task (the registry dropping the
//! forward) aborts every relay. The daemon state is held weakly, and
//! strongly only while a connection is being set up.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bhatti_engine::engine::{Engine, EngineError, Tunnel};
use bhatti_engine::state::SandboxState;
use bhatti_store::StoreError;
use bhatti_store::sandboxes::Status;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use crate::activity::BusyGuard;
use crate::service::{ServiceError, engine_id};
use crate::state::AppState;

/// How long a connection that woke its sandbox retries the tunnel.
pub const WAKE_GRACE: Duration = Duration::from_secs(10);

/// Pause between tunnel attempts after a wake.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Why a host connection could not be relayed (logged; the connection
/// is closed).
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the daemon is stopping")]
    Stopping,
    #[error("the sandbox is destroyed")]
    Destroyed,
    #[error("the sandbox is stopped (its forwards are going away)")]
    Stopped,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Starts the accept loop of a forward to `port` of sandbox `id`.
pub fn spawn<E: Engine>(
    st: Weak<AppState<E>>,
    id: String,
    port: u16,
    listener: TcpListener,
) -> AbortHandle {
    tokio::spawn(accept(st, id, port, listener)).abort_handle()
}

async fn accept<E: Engine>(st: Weak<AppState<E>>, id: String, port: u16, listener: TcpListener) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((conn, peer)) => {
                    let (st, id) = (st.clone(), id.clone());
                    conns.spawn(async move {
                        if let Err(e) = relay(st, &id, port, conn).await {
                            tracing::debug!(sandbox = %id, port, %peer, error = %e,
                                "host port connection not relayed");
                        }
                    });
                }
                Err(e) => {
                    // Out of descriptors and the like: wait, try again.
                    tracing::warn!(sandbox = %id, port, error = %e, "host port accept failed");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn relay<E: Engine>(
    st: Weak<AppState<E>>,
    id: &str,
    port: u16,
    mut conn: TcpStream,
) -> Result<(), RelayError> {
    let (mut tunnel, busy) = {
        let st = st.upgrade().ok_or(RelayError::Stopping)?;
        open(&st, id, port).await?
    };
    let _ = conn.set_nodelay(true);
    let _busy = busy;
    // Ends when both sides are done (or one fails); either way the
    // connection is over.
    let _ = tokio::io::copy_bidirectional(&mut conn, &mut tunnel).await;
    Ok(())
}

/// Wakes the sandbox and opens a tunnel to `port` (module doc).
async fn open<E: Engine>(
    st: &Arc<AppState<E>>,
    id: &str,
    port: u16,
) -> Result<(Tunnel, BusyGuard), RelayError> {
    let sb = st.store.sandbox_by_id(id)?;
    if sb.status == Status::Destroyed {
        return Err(RelayError::Destroyed);
    }
    let eid = engine_id(&sb)?;
    let was = st.engine.status(&eid).await?.state;
    // A stopped sandbox has no forwards: one still open is a race with
    // the stop, and does not start it.
    if was == SandboxState::Stopped {
        return Err(RelayError::Stopped);
    }
    let was_hot = was == SandboxState::Hot;
    st.wake(&sb).await?;
    let busy = st.activity.busy(&sb.id);
    let deadline = Instant::now() + WAKE_GRACE;
    loop {
        match st.engine.tunnel(&eid, port).await {
            Ok(t) => return Ok((t, busy)),
            Err(e)
                if !was_hot
                    && !matches!(e, EngineError::NotFound(_))
                    && Instant::now() < deadline =>
            {
                tracing::debug!(sandbox = %id, port, error = %e,
                    "guest port not answering yet after a wake; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
