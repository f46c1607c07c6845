//! Reading a sandbox's listening ports into the registry, and the
//! background scanner.
//!
//! [`run`] scans every **hot** sandbox each [`SCAN_EVERY`]: one agent
//! exec (`cat /proc/net/tcp /proc/net/tcp6`, parsed by
//! [`crate::routes::ports::listening_ports`]) per sandbox, through
//! [`Engine::exec_if_hot`], which skips a sandbox that is not hot or is
//! changing state. It never wakes a sandbox and never counts as
//! activity, so idle sandboxes still cool down: a warm or cold sandbox
//! keeps the forwards of its last scan. Every round also drops the
//! entries of sandboxes the engine no longer runs, and engine events drop
//! a stopped or destroyed sandbox's forwards at once. When the daemon
//! stops, the scanner closes every forward ([`super::HostPorts::close`]).
//!
//! # Threads, locks, I/O
//! One task; the scans of a round run concurrently (one exec each,
//! bounded by [`SCAN_TIMEOUT`]), with no lock of ours held across them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bhatti_engine::engine::{Engine, EngineResult, ExecOptions, SandboxId, StateEvent};
use bhatti_engine::state::SandboxState;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

use super::PortMap;
use crate::routes::ports::listening_ports;
use crate::state::AppState;

/// How often the background scanner looks at hot sandboxes.
pub const SCAN_EVERY: Duration = Duration::from_secs(3);

/// Longest one scan may take.
pub const SCAN_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a sandbox in `state` is running (its forwards stay).
fn running(state: SandboxState) -> bool {
    matches!(
        state,
        SandboxState::Hot | SandboxState::Warm | SandboxState::Cold
    )
}

/// The command that prints the guest's TCP tables, bounded.
fn scan_command() -> ExecOptions {
    ExecOptions::new(["cat", "/proc/net/tcp", "/proc/net/tcp6"])
        .output_cap(4 << 20)
        .timeout(SCAN_TIMEOUT)
}

/// The TCP ports listening in the guest (the agent's own left out). Like
/// every agent call, it wakes the sandbox if it is not hot.
pub async fn guest_ports<E: Engine>(engine: &E, eid: &SandboxId) -> EngineResult<BTreeSet<u16>> {
    let r = engine.exec(eid, scan_command()).await?;
    Ok(listening_ports(&String::from_utf8_lossy(&r.stdout)))
}

/// [`guest_ports`] of a sandbox that is hot now; `None` (and no wake)
/// otherwise.
async fn hot_guest_ports<E: Engine>(
    engine: &E,
    eid: &SandboxId,
) -> EngineResult<Option<BTreeSet<u16>>> {
    let r = engine.exec_if_hot(eid, scan_command()).await?;
    Ok(r.map(|r| listening_ports(&String::from_utf8_lossy(&r.stdout))))
}

/// What is known of sandbox `id`'s ports without waking it: a fresh scan
/// while it is hot, the last scan's while it is warm or cold (or when the
/// scan fails); `None` when it is not running (stopped, destroyed, not
/// held by the engine) or was never scanned.
pub async fn current<E: Engine>(st: &Arc<AppState<E>>, id: &str) -> Option<PortMap> {
    let eid: SandboxId = id.parse().ok()?;
    let state = st.engine.status(&eid).await.ok()?.state;
    if !running(state) {
        st.host_ports.forget(id);
        return None;
    }
    if state == SandboxState::Hot
        && let Some(m) = scan_hot(st, &eid).await
    {
        return Some(m);
    }
    st.host_ports.known(id)
}

/// Scans a sandbox if it is hot and records the result.
async fn scan_hot<E: Engine>(st: &Arc<AppState<E>>, eid: &SandboxId) -> Option<PortMap> {
    let id = eid.as_str();
    match hot_guest_ports(&*st.engine, eid).await {
        Ok(None) => None,
        Ok(Some(ports)) => {
            // Stopped or destroyed while the scan ran: no forwards.
            let state = st.engine.status(eid).await.ok().map(|i| i.state);
            if !state.is_some_and(running) {
                st.host_ports.forget(id);
                return None;
            }
            Some(st.host_ports.sync(st, id, &ports))
        }
        Err(e) => {
            tracing::debug!(sandbox = %id, error = %e, "port scan failed");
            None
        }
    }
}

/// Drops the entries of sandboxes the engine no longer runs.
async fn prune<E: Engine>(st: &Arc<AppState<E>>) {
    for id in st.host_ports.sandboxes() {
        let alive = match id.parse::<SandboxId>() {
            Ok(eid) => st.engine.status(&eid).await.is_ok_and(|i| running(i.state)),
            Err(_) => false,
        };
        if !alive {
            st.host_ports.forget(&id);
        }
    }
}

/// One round: prune, then scan every hot sandbox.
pub async fn round<E: Engine>(st: &Arc<AppState<E>>) {
    prune(st).await;
    let hot: Vec<SandboxId> = st
        .engine
        .list()
        .await
        .into_iter()
        .filter(|i| i.state == SandboxState::Hot)
        .map(|i| i.id)
        .collect();
    futures_util::future::join_all(hot.iter().map(|eid| scan_hot(st, eid))).await;
}

/// Scans until `stop` resolves, then closes every forward.
pub async fn run<E: Engine>(
    st: Arc<AppState<E>>,
    mut events: Receiver<StateEvent>,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut tick = tokio::time::interval(SCAN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut events_open = true;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = tick.tick() => tokio::select! {
                () = &mut stop => break,
                () = round(&st) => {}
            },
            ev = events.recv(), if events_open => match ev {
                Ok(ev) if !running(ev.state) => st.host_ports.forget(ev.id.as_str()),
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => prune(&st).await,
                Err(RecvError::Closed) => events_open = false,
            },
        }
    }
    st.host_ports.close();
}
