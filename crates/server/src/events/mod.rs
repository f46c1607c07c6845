//! Live sandbox events: what `GET /events` streams
//! ([`crate::routes::events`]).
//!
//! [`Events`] is the hub. It is fed from the places where the daemon
//! learns of a change, never by polling:
//! - [`crate::mirror`], the one writer of a sandbox's status × thermal,
//!   hands it every engine [`StateEvent`] ([`Events::engine_state`]);
//! - the service announces a sandbox once its create (or restore, fork)
//!   has booted ([`Events::created`]) and when it destroys one the engine
//!   no longer held ([`Events::destroyed`]);
//! - the host-port registry reports guest ports that start or stop
//!   listening ([`Events::port`]).
//!
//! The hub keeps, per sandbox it has announced, the owner, the name, the
//! last state it published and the engine `seq` of that state. An engine
//! event with an older `seq` than the one published, or with the same
//! state, publishes nothing, so the stream shows each change once and in
//! the engine's order whoever mirrored it first. A sandbox the hub has
//! not announced (a create still booting) publishes nothing until its
//! `created`; sandboxes that exist when the daemon starts are known from
//! the store.
//!
//! Every published [`Event`] gets the next `seq` of the hub (from 1 each
//! daemon run), goes into a bounded ring of recent events (for
//! `Last-Event-ID` resumption) and onto a bounded broadcast channel; a
//! subscriber that falls behind the channel loses the oldest events and is
//! told how many ([`Feed`]).
//!
//! # Threads, locks, I/O
//! One `std::sync::Mutex` around the hub's map and ring, held to compare
//! and publish (a channel send never blocks), never across an await or a
//! store query.

mod feed;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use bhatti_engine::engine::StateEvent;
use bhatti_engine::state::SandboxState;
use bhatti_store::Store;
use bhatti_store::sandboxes::{Sandbox, Status, Thermal};
use serde::Serialize;
use tokio::sync::{broadcast, watch};

pub use feed::{Feed, Item};

/// How many events a subscriber may fall behind before it loses some.
pub const CHANNEL: usize = 512;

/// How many recent events are kept for `Last-Event-ID` resumption.
pub const RING: usize = 1024;

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("reading the sandboxes that exist: {0}")]
    Store(#[from] bhatti_store::StoreError),
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = EventType)]
pub enum Kind {
    Created,
    State,
    Destroyed,
    PortOpened,
    PortClosed,
    /// The sandbox has a new name (the event's `sandbox.name`).
    Renamed,
}

/// The sandbox an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SandboxRef {
    pub id: String,
    pub name: String,
}

/// One event of `GET /events` (the `data` of an SSE `sandbox` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Event {
    /// The hub's sequence number (from 1 each daemon run; also the SSE
    /// `id`).
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub sandbox: SandboxRef,
    /// The sandbox's state after the event: `running/hot`,
    /// `running/warm`, `running/cold`, `stopped`, `unknown` or
    /// `destroyed`.
    pub state: String,
    /// The guest port (`port_opened`, `port_closed` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// When the daemon saw it (RFC 3339, UTC, milliseconds).
    pub at: String,
    /// The owner: only their streams carry it.
    #[serde(skip)]
    pub user_id: String,
}

/// The API's spelling of a stored state.
pub fn state_name(status: Status, thermal: Thermal) -> String {
    match status {
        Status::Running => format!("running/{}", thermal.as_str()),
        other => other.as_str().to_owned(),
    }
}

/// The API's spelling of an engine state.
pub fn engine_state_name(state: SandboxState) -> String {
    match crate::mirror::store_state(state) {
        Some((status, thermal)) => state_name(status, thermal),
        None => "destroyed".into(),
    }
}

/// What the hub knows of an announced sandbox.
#[derive(Debug)]
struct Known {
    user_id: String,
    name: String,
    state: String,
    seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    ring: VecDeque<Arc<Event>>,
    known: HashMap<String, Known>,
}

/// The hub (see the module doc).
#[derive(Debug)]
pub struct Events {
    tx: broadcast::Sender<Arc<Event>>,
    inner: Mutex<Inner>,
    /// `true` once the daemon stops: every feed ends.
    closed: watch::Sender<bool>,
}

impl Events {
    /// A hub that knows the live sandboxes of `store`.
    pub fn new(store: &Store) -> Result<Self, EventsError> {
        let hub = Self::empty();
        for sb in store.list_live_sandboxes()? {
            hub.with(|i| i.known.insert(sb.id.clone(), known(&sb, 0)));
        }
        Ok(hub)
    }

    /// A hub that knows no sandbox.
    pub fn empty() -> Self {
        Self {
            tx: broadcast::channel(CHANNEL).0,
            inner: Mutex::new(Inner {
                next: 1,
                ..Inner::default()
            }),
            closed: watch::channel(false).0,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Publishes one event (under the lock, so `seq`, ring and channel
    /// agree on the order).
    fn publish(&self, inner: &mut Inner, kind: Kind, id: &str, port: Option<u16>) {
        let Some(k) = inner.known.get(id) else { return };
        let ev = Arc::new(Event {
            seq: inner.next,
            kind,
            sandbox: SandboxRef {
                id: id.to_owned(),
                name: k.name.clone(),
            },
            state: k.state.clone(),
            port,
            at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            user_id: k.user_id.clone(),
        });
        inner.next += 1;
        if inner.ring.len() == RING {
            inner.ring.pop_front();
        }
        inner.ring.push_back(ev.clone());
        // No subscriber is not an error.
        let _ = self.tx.send(ev);
    }

    /// Sandbox `sb` was created (or restored, forked) and has booted.
    pub fn created(&self, sb: &Sandbox, seq: u64) {
        self.with(|i| {
            i.known.insert(sb.id.clone(), known(sb, seq));
            self.publish(i, Kind::Created, &sb.id, None);
        });
    }

    /// The engine published `ev`; `row` is the sandbox's row as the store
    /// has it now (for its name), if it could be read.
    pub fn engine_state(&self, ev: &StateEvent, row: Option<&Sandbox>) {
        let id = ev.id.as_str();
        self.with(|i| {
            let Some(k) = i.known.get_mut(id) else { return };
            if ev.seq <= k.seq {
                return;
            }
            k.seq = ev.seq;
            if let Some(row) = row {
                k.name.clone_from(&row.name);
            }
            let state = engine_state_name(ev.state);
            if state == k.state {
                return;
            }
            k.state = state;
            if ev.state == SandboxState::Destroyed {
                self.publish(i, Kind::Destroyed, id, None);
                i.known.remove(id);
            } else {
                self.publish(i, Kind::State, id, None);
            }
        });
    }

    /// Sandbox `id` is destroyed (whether or not the engine held it).
    pub fn destroyed(&self, id: &str) {
        self.with(|i| {
            let Some(k) = i.known.get_mut(id) else { return };
            k.state = "destroyed".into();
            self.publish(i, Kind::Destroyed, id, None);
            i.known.remove(id);
        });
    }

    /// Guest port `port` of sandbox `id` started (`open`) or stopped
    /// listening.
    pub fn port(&self, id: &str, port: u16, open: bool) {
        let kind = if open {
            Kind::PortOpened
        } else {
            Kind::PortClosed
        };
        self.with(|i| self.publish(i, kind, id, Some(port)));
    }

    /// Sandbox `id` is now called `name`.
    pub fn renamed(&self, id: &str, name: &str) {
        self.with(|i| {
            let Some(k) = i.known.get_mut(id) else { return };
            if k.name == name {
                return;
            }
            name.clone_into(&mut k.name);
            self.publish(i, Kind::Renamed, id, None);
        });
    }

    /// Open feeds.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// The seq the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.with(|i| i.next)
    }

    /// Ends every feed (the daemon is stopping).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }
}

fn known(sb: &Sandbox, seq: u64) -> Known {
    Known {
        user_id: sb.user_id.clone(),
        name: sb.name.clone(),
        state: state_name(sb.status, sb.thermal),
        seq,
    }
}

#[cfg(test)]
mod tests;
