//! The sandbox state machine: the only place that decides which lifecycle
//! operation is legal in which state and what the driver must do for it.
//!
//! ```text
//!                 create
//!                   │
//!                   ▼
//!   ┌──────────── Hot ◄──────────────┐
//!   │  pause │  ▲ resume / wake      │ wake (restore) / start (restore)
//!   │        ▼  │                    │
//!   │       Warm ─────freeze─────► Cold ───stop───┐
//!   │        │      (snapshot)       ▲            │
//!   │        │                       │            ▼
//!   └──stop──┴─────────stop (snapshot)──────► Stopped
//!                                                 │ start
//!   any state except Destroyed ──destroy──► Destroyed (terminal)
//! ```
//!
//! | state     | VMM process | vCPUs   | RAM              |
//! |-----------|-------------|---------|------------------|
//! | Hot       | alive       | running | held             |
//! | Warm      | alive       | paused  | held             |
//! | Cold      | gone        | —       | snapshot on disk |
//! | Stopped   | gone        | —       | snapshot on disk |
//! | Destroyed | gone        | —       | deleted          |
//!
//! Cold and Stopped hold the same thing on disk; the difference is intent.
//! Cold is the thermal manager's doing and wakes transparently on the next
//! request ([`Op::Wake`], what `ensure_hot` asks for); Stopped is the user's
//! and only [`Op::Start`] brings it back. `Wake` on a Hot sandbox is a
//! no-op, which is what lets concurrent `ensure_hot` callers coalesce: the
//! first one restores, the others find it Hot.
//!
//! # Threads, locks, I/O
//! Pure functions over plain values: no I/O, no locks. The engine applies
//! a [`Transition`] under the sandbox's own lock and only stores the
//! target state once the driver action succeeded.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a sandbox is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxState {
    Hot,
    Warm,
    Cold,
    Stopped,
    Destroyed,
}

impl SandboxState {
    pub const ALL: [SandboxState; 5] = [
        Self::Hot,
        Self::Warm,
        Self::Cold,
        Self::Stopped,
        Self::Destroyed,
    ];

    /// Lower-case name, as in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hot => "hot",
            Self::Warm => "warm",
            Self::Cold => "cold",
            Self::Stopped => "stopped",
            Self::Destroyed => "destroyed",
        }
    }

    /// Whether a VMM process exists in this state.
    pub fn has_vmm(self) -> bool {
        matches!(self, Self::Hot | Self::Warm)
    }

    /// Whether the API shows the sandbox as running (hot, warm or cold).
    pub fn is_running(self) -> bool {
        matches!(self, Self::Hot | Self::Warm | Self::Cold)
    }
}

impl fmt::Display for SandboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A lifecycle operation requested of a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Pause the vCPUs (thermal hot → warm).
    Pause,
    /// Resume the vCPUs (warm → hot).
    Resume,
    /// Snapshot to disk and end the VMM (thermal warm → cold).
    Freeze,
    /// Make the sandbox hot from wherever it is running (`ensure_hot`).
    Wake,
    /// User stop: snapshot if needed, VMM gone.
    Stop,
    /// User start: restore a stopped sandbox.
    Start,
    /// Kill the VMM and delete everything.
    Destroy,
}

impl Op {
    pub const ALL: [Op; 7] = [
        Self::Pause,
        Self::Resume,
        Self::Freeze,
        Self::Wake,
        Self::Stop,
        Self::Start,
        Self::Destroy,
    ];
}

/// What the driver must do to carry out a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing (already there, or only the label changes).
    None,
    /// Pause the vCPUs.
    Pause,
    /// Resume the vCPUs.
    Resume,
    /// Pause if running, snapshot to disk, end the VMM.
    Snapshot,
    /// Start a VMM from the snapshot and resume it.
    Restore,
    /// Kill the VMM if any and delete the sandbox's files.
    Destroy,
}

/// An allowed transition: do `action`, then the sandbox is in `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: SandboxState,
    pub to: SandboxState,
    pub action: Action,
}

/// An operation that is not allowed in the sandbox's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {op:?} a sandbox that is {state}")]
pub struct StateError {
    pub state: SandboxState,
    pub op: Op,
}

/// The transition table: every lifecycle change goes through here.
pub fn transition(from: SandboxState, op: Op) -> Result<Transition, StateError> {
    use Action as A;
    use SandboxState::*;
    let (to, action) = match (from, op) {
        (Hot, Op::Pause) => (Warm, A::Pause),
        (Warm, Op::Pause) => (Warm, A::None),
        (Warm, Op::Resume) => (Hot, A::Resume),
        (Hot, Op::Resume) => (Hot, A::None),
        (Warm, Op::Freeze) => (Cold, A::Snapshot),
        (Cold, Op::Freeze) => (Cold, A::None),
        (Hot, Op::Wake) => (Hot, A::None),
        (Warm, Op::Wake) => (Hot, A::Resume),
        (Cold, Op::Wake) => (Hot, A::Restore),
        (Hot | Warm, Op::Stop) => (Stopped, A::Snapshot),
        (Cold, Op::Stop) => (Stopped, A::None),
        (Stopped, Op::Stop) => (Stopped, A::None),
        (Stopped, Op::Start) => (Hot, A::Restore),
        // `start` on a running sandbox makes it hot, like `ensure_hot`.
        (Hot, Op::Start) => (Hot, A::None),
        (Warm, Op::Start) => (Hot, A::Resume),
        (Cold, Op::Start) => (Hot, A::Restore),
        (Hot | Warm | Cold | Stopped, Op::Destroy) => (Destroyed, A::Destroy),
        (state, op) => return Err(StateError { state, op }),
    };
    Ok(Transition { from, to, action })
}

#[cfg(test)]
mod tests;
