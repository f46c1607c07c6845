//! The guest's sync before its VM is paused or saved.
//!
//! The engine's agent clients defer each exec's `sync()` until after its
//! EXIT (protocol version 7, [`Client::with_deferred_sync`]): lohar
//! starts that sync within 20 ms of the EXIT (sooner when no other exec
//! ends), which saves an exec the wait for it. What the guest wrote is
//! then on its disks a moment after the exec ends rather than before, so
//! the engine asks for a finished sync ([`Client::sync`]) before anything
//! that copies or freezes the disks or leaves the guest at the VMM's
//! mercy for long: a pause, a stop or freeze (the memory snapshot), a
//! named snapshot, an image save.
//!
//! What a VMM crash can lose: with the sync after every exec, nothing an
//! exec wrote; now, what execs wrote in the last 20 ms before the crash
//! and the sync's own time (plus, as before, what background processes
//! wrote since the last sync). A pause or snapshot loses nothing.
//!
//! This is agent I/O under the sandbox's lock (the one exception, see the
//! module docs of [`super`]), bounded by [`SYNC_TIMEOUT`]: a guest that
//! does not answer is paused or saved all the same, with a warning, as
//! before this extension.

use std::time::Duration;

use bhatti_agent::Client;

use crate::engine::SandboxId;
use crate::state::SandboxState;

/// Longest wait for the guest's sync before a pause or save.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// Has a running guest (`state` Hot) sync its disks; only logs when it
/// cannot. A paused guest cannot answer and synced before its pause.
pub(super) async fn sync_guest(agent: &Client, id: &SandboxId, state: SandboxState) {
    if state != SandboxState::Hot {
        return;
    }
    match tokio::time::timeout(SYNC_TIMEOUT, agent.sync()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(sandbox = %id, "guest sync before a pause or save failed: {e}")
        }
        Err(_) => tracing::warn!(
            sandbox = %id,
            "guest sync before a pause or save took over {SYNC_TIMEOUT:?}; going on"
        ),
    }
}
