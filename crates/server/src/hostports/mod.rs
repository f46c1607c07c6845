//! Host-port forwards (v1's `host_port`): every TCP port listening in a
//! running sandbox gets a host TCP port, bound on the config's
//! `host_port_bind` address (loopback by default; `null` turns forwards
//! off). A connection to it is relayed to the guest port through the
//! agent's forward channel ([`Engine::tunnel`](bhatti_engine::engine::Engine::tunnel)),
//! the path the reverse proxy takes; no packet of it crosses the
//! sandbox network ([`relay`]).
//!
//! [`HostPorts`] is the registry: per sandbox, the guest ports last seen
//! listening, each with its forward. Scans feed it ([`HostPorts::sync`]):
//! the background scanner ([`scan::run`], hot sandboxes only, every
//! [`scan::SCAN_EVERY`]), `GET /sandboxes/{id}/ports` and `GET /ports`
//! (hot ones).
//!
//! Lifetime of a forward:
//! - made when a scan first sees its guest port listening, on an
//!   ephemeral host port (bind port 0: no clash with the host's services
//!   or between sandboxes), which stays the same while the guest port
//!   keeps listening;
//! - kept while the sandbox cools (warm, cold): a connection wakes it,
//!   and counts as activity for as long as it is open;
//! - gone when a scan no longer sees the port, when the sandbox is
//!   stopped or destroyed (engine events; the scanner also prunes every
//!   round), and when the daemon stops ([`HostPorts::close`]). Closing a
//!   forward closes its listener and cuts its relayed connections.
//!
//! Guest ports that start or stop listening (a scan's difference, or a
//! sandbox forgotten) are published as `port_opened` / `port_closed`
//! events ([`crate::events`]).
//!
//! A guest port whose host bind failed (address not on this host, port
//! table full) is recorded without a forward (`host_port: null`), logged
//! once, and not retried while it keeps listening.
//!
//! # Threads, locks, I/O
//! One `std::sync::Mutex` around the map, held to compare and update one
//! sandbox's ports (a non-blocking `bind(2)` per new port happens under
//! it) and never across an await. Each forward is one accept task owning
//! its listener and a `JoinSet` of relay tasks (one per connection);
//! dropping the registry entry aborts the accept task, which drops the
//! set and so aborts its relays. Tasks hold the daemon state weakly: the
//! registry lives in that state and must not keep it alive.

pub mod relay;
pub mod scan;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use bhatti_engine::engine::Engine;
use tokio::task::AbortHandle;

use crate::state::AppState;

/// Guest port → host port (`None`: no forward) of one sandbox.
pub type PortMap = BTreeMap<u16, Option<u16>>;

/// One guest port's forward: the accept task, aborted when dropped.
#[derive(Debug)]
struct Forward {
    host_port: u16,
    task: AbortHandle,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Sandbox id → guest port → its forward (`None`: forwards off, or
    /// the bind failed).
    sandboxes: HashMap<String, BTreeMap<u16, Option<Forward>>>,
    /// The daemon is stopping: nothing new is bound.
    closed: bool,
}

/// The registry of forwards (see the module doc).
#[derive(Debug)]
pub struct HostPorts {
    bind: Option<IpAddr>,
    inner: Mutex<Inner>,
    events: Option<Arc<crate::events::Events>>,
}

impl HostPorts {
    /// A registry binding forwards on `bind` (`None`: ports are tracked,
    /// nothing is forwarded).
    pub fn new(bind: Option<IpAddr>) -> Self {
        Self {
            bind,
            inner: Mutex::new(Inner::default()),
            events: None,
        }
    }

    /// The registry, publishing port events to `events`.
    #[must_use]
    pub fn with_events(mut self, events: Arc<crate::events::Events>) -> Self {
        self.events = Some(events);
        self
    }

    fn announce(&self, id: &str, ports: impl IntoIterator<Item = u16>, open: bool) {
        if let Some(ev) = &self.events {
            ports.into_iter().for_each(|p| ev.port(id, p, open));
        }
    }

    /// The address forwards bind, if they are on.
    pub fn bind_addr(&self) -> Option<IpAddr> {
        self.bind
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Records that `ports` are what sandbox `id` listens on now: new
    /// ports get a forward, ports no longer listening lose theirs.
    /// Returns the sandbox's ports with their host ports.
    pub fn sync<E: Engine>(
        &self,
        st: &Arc<AppState<E>>,
        id: &str,
        ports: &BTreeSet<u16>,
    ) -> PortMap {
        let (map, closed) = self.with(|inner| {
            if inner.closed {
                return (ports.iter().map(|p| (*p, None)).collect(), Vec::new());
            }
            let entry = inner.sandboxes.entry(id.to_owned()).or_default();
            let closed: Vec<u16> = entry
                .keys()
                .filter(|p| !ports.contains(p))
                .copied()
                .collect();
            // Dropping a Forward aborts its accept task and relays.
            entry.retain(|p, _| ports.contains(p));
            for &port in ports {
                entry.entry(port).or_insert_with(|| {
                    if let Some(ev) = &self.events {
                        ev.port(id, port, true);
                    }
                    self.open(st, id, port)
                });
            }
            (view(entry), closed)
        });
        self.announce(id, closed, false);
        map
    }

    /// Binds a forward for `port` of sandbox `id` (`None` when forwards
    /// are off or the bind fails).
    fn open<E: Engine>(&self, st: &Arc<AppState<E>>, id: &str, port: u16) -> Option<Forward> {
        let addr = SocketAddr::new(self.bind?, 0);
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(|l| {
                let host_port = l.local_addr()?.port();
                Ok((tokio::net::TcpListener::from_std(l)?, host_port))
            });
        match listener {
            Ok((listener, host_port)) => {
                let task = relay::spawn(Arc::downgrade(st), id.to_owned(), port, listener);
                tracing::info!(sandbox = %id, port, host_port, "host port forward opened");
                Some(Forward { host_port, task })
            }
            Err(e) => {
                tracing::warn!(sandbox = %id, port, %addr, error = %e,
                    "cannot bind a host port for this guest port; it has no host_port");
                None
            }
        }
    }

    /// The ports last seen listening in sandbox `id`, if it was scanned.
    pub fn known(&self, id: &str) -> Option<PortMap> {
        self.with(|inner| inner.sandboxes.get(id).map(view))
    }

    /// The sandboxes that have an entry.
    pub fn sandboxes(&self) -> Vec<String> {
        self.with(|inner| inner.sandboxes.keys().cloned().collect())
    }

    /// Drops everything known of sandbox `id`, closing its forwards.
    pub fn forget(&self, id: &str) {
        let gone = self.with(|inner| inner.sandboxes.remove(id));
        if let Some(g) = &gone {
            self.announce(id, g.keys().copied(), false);
        }
        if gone.is_some_and(|g| g.values().any(Option::is_some)) {
            tracing::info!(sandbox = %id, "host port forwards closed");
        }
    }

    /// Closes every forward; nothing new is bound afterwards (the daemon
    /// is stopping).
    pub fn close(&self) {
        let all = self.with(|inner| {
            inner.closed = true;
            std::mem::take(&mut inner.sandboxes)
        });
        drop(all);
    }
}

fn view(ports: &BTreeMap<u16, Option<Forward>>) -> PortMap {
    ports
        .iter()
        .map(|(p, f)| (*p, f.as_ref().map(|f| f.host_port)))
        .collect()
}
