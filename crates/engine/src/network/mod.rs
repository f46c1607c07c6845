//! Sandbox networking, all inside one network namespace the engine owns.
//!
//! ```text
//!  sandbox namespace (NetworkConfig::netns)
//!  ┌──────────────────────────────────────────────────────┐
//!  │ br0 10.213.0.1/24                                    │
//!  │  ├── bt-<id1> (TAP) ── VM 1, 10.213.0.2 (kernel ip=) │
//!  │  ├── bt-<id2> (TAP) ── VM 2, 10.213.0.3              │
//!  │  └── ...                                             │
//!  │ up0 ── veth ── uplink (only with Egress::Nat)        │
//!  └──────────────────────────────────────────────────────┘
//! ```
//!
//! [`Network::setup`] is idempotent: it creates the namespace, bridge and
//! egress pieces that are missing and leaves the rest, and installs the
//! [`isolation`] tables anew (every guest port blocked until admitted).
//! Each VM gets an address from the [`IpPool`] and a persistent TAP
//! ([`Network::attach`]) that is admitted to the bridge with its own MAC
//! and address only, in its tenant's peer group; both survive stop/start.
//! On engine start,
//! [`Network::remove_orphan_taps`] deletes TAPs with the engine's prefix
//! that no known sandbox uses, and [`Network::mark_ip_in_use`] re-reserves
//! the addresses of recovered sandboxes.
//!
//! # Threads, locks, I/O
//! Configuration runs `ip`/`nft` and blocks (call from
//! `tokio::task::spawn_blocking`). The IP pool sits behind a
//! `std::sync::Mutex` held only for the in-memory update, never across I/O
//! or an await.

pub mod cmd;
pub mod egress;
pub mod isolation;
pub mod pool;
pub mod tap;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Mutex, PoisonError};

pub use egress::{Egress, NatConfig};
pub use isolation::{guest_mac, mac_string};
pub use pool::{IpPool, PoolError};

use crate::netns::{MAX_NAME_LEN, NetNs};
use cmd::CmdError;

/// Where and how sandbox networking is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The namespace sandboxes live in (created if missing).
    pub netns: String,
    /// Bridge name inside the namespace.
    pub bridge: String,
    /// Guest subnet (always a /24; `.1` is the bridge).
    pub subnet: Ipv4Addr,
    /// Prefix of the engine's TAP names (at most 6 characters, so that
    /// enough of the sandbox id fits in 15).
    pub tap_prefix: String,
    /// Egress mode.
    pub egress: Egress,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            netns: "bhatti".to_owned(),
            bridge: "br0".to_owned(),
            subnet: Ipv4Addr::new(10, 213, 0, 0),
            tap_prefix: "bt-".to_owned(),
            egress: Egress::None,
        }
    }
}

/// Errors from setting up or using sandbox networking.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid network configuration: {0}")]
    Config(String),
    #[error("setting up the bridge in namespace {netns:?}")]
    Bridge {
        netns: String,
        #[source]
        source: CmdError,
    },
    #[error(transparent)]
    Tap(#[from] tap::TapError),
    #[error("configuring egress")]
    Egress(#[from] egress::EgressError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("isolating guest port {tap}")]
    Isolation {
        tap: String,
        #[source]
        source: CmdError,
    },
    #[error("egress was requested but the engine's egress mode is `none`")]
    NoEgress,
}

/// A guest's place on the bridge: its TAP, its only address (the MAC
/// follows from it, [`guest_mac`]) and who it may exchange packets with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPort {
    pub tap: String,
    pub ip: Ipv4Addr,
    /// Guests of one tenant may reach each other (where both allow
    /// peers); guests of different tenants never.
    pub tenant: String,
    /// This guest takes and sends packets from and to its tenant's other
    /// guests.
    pub peers: bool,
}

/// Sandbox networking of one engine.
#[derive(Debug)]
pub struct Network {
    config: NetworkConfig,
    pool: Mutex<IpPool>,
    /// Peer group number of each tenant seen by this process (from 1).
    groups: Mutex<HashMap<String, u32>>,
}

impl Network {
    /// Validates `config` and makes the namespace, bridge and egress match
    /// it. Safe to call again on a configured namespace.
    pub fn setup(config: NetworkConfig) -> Result<Self, NetworkError> {
        validate(&config)?;
        let ns = config.netns.as_str();
        let bridge_err = |source| NetworkError::Bridge {
            netns: ns.to_owned(),
            source,
        };
        if !NetNs::exists(ns) {
            cmd::run("ip", &["netns", "add", ns], None).map_err(bridge_err)?;
        }
        cmd::ip_in(ns, &["link", "set", "lo", "up"]).map_err(bridge_err)?;
        if !tap::exists(ns, &config.bridge).map_err(|e| match e {
            tap::TapError::Cmd(c) => bridge_err(c),
            other => NetworkError::Tap(other),
        })? {
            cmd::ip_in(ns, &["link", "add", &config.bridge, "type", "bridge"])
                .map_err(bridge_err)?;
        }
        let pool = IpPool::new(config.subnet);
        let gw = format!("{}/24", pool.gateway());
        cmd::ip_in(ns, &["addr", "replace", &gw, "dev", &config.bridge]).map_err(bridge_err)?;
        // A fixed MAC: a bridge without one takes the lowest MAC of its
        // ports, and every change of it flushes the bridge's neighbour
        // table, the pinned entries of every guest included.
        let mac = mac_string(guest_mac(pool.gateway()));
        cmd::ip_in(ns, &["link", "set", &config.bridge, "address", &mac]).map_err(bridge_err)?;
        cmd::ip_in(ns, &["link", "set", &config.bridge, "up"]).map_err(bridge_err)?;
        egress::apply(ns, &config.bridge, pool.gateway(), &config.egress)?;
        isolation::install(ns, &config.bridge, pool.gateway()).map_err(bridge_err)?;
        Ok(Self {
            config,
            pool: Mutex::new(pool),
            groups: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// The sandbox namespace's name.
    pub fn netns(&self) -> &str {
        &self.config.netns
    }

    /// The bridge address, the guests' gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        self.pool().gateway()
    }

    /// The kernel `ip=` argument that configures a guest's `eth0`.
    pub fn kernel_ip_arg(&self, guest: Ipv4Addr) -> String {
        format!("ip={guest}::{}:255.255.255.0::eth0:off", self.gateway())
    }

    /// Takes a free guest address.
    pub fn allocate_ip(&self) -> Result<Ipv4Addr, NetworkError> {
        Ok(self.pool().allocate()?)
    }

    /// Returns a guest address to the pool.
    pub fn release_ip(&self, ip: Ipv4Addr) -> Result<(), NetworkError> {
        Ok(self.pool().release(ip)?)
    }

    /// Re-reserves the address of a recovered sandbox.
    pub fn mark_ip_in_use(&self, ip: Ipv4Addr) -> Result<(), NetworkError> {
        Ok(self.pool().mark_in_use(ip)?)
    }

    /// Whether `ip` is allocated.
    pub fn ip_in_use(&self, ip: Ipv4Addr) -> bool {
        self.pool().is_in_use(ip)
    }

    /// Whether guests get egress unless their sandbox says otherwise.
    pub fn egress_available(&self) -> bool {
        matches!(self.config.egress, Egress::Nat(_))
    }

    /// The per-sandbox egress switch for guest `ip`. Denying is a no-op
    /// under [`Egress::None`]; allowing there is an error.
    pub fn set_guest_egress(&self, ip: Ipv4Addr, allow: bool) -> Result<(), NetworkError> {
        if !self.egress_available() {
            return if allow {
                Err(NetworkError::NoEgress)
            } else {
                Ok(())
            };
        }
        Ok(egress::set_guest(&self.config.netns, ip, allow)?)
    }

    /// The TAP name of the sandbox with id `key`.
    pub fn tap_name(&self, key: &str) -> String {
        tap::tap_name(&self.config.tap_prefix, key)
    }

    /// Creates (or re-attaches) the guest's TAP on the bridge, admitted
    /// with the guest's own MAC and address only, and pins the daemon's
    /// path to it. Idempotent; also changes a port's peer setting.
    pub fn attach(&self, port: &GuestPort) -> Result<(), NetworkError> {
        self.check_prefix(&port.tap)?;
        let (ns, bridge) = (&self.config.netns, &self.config.bridge);
        tap::create(ns, bridge, &port.tap)?;
        isolation::admit(ns, bridge, &self.rules(port)).map_err(|source| NetworkError::Isolation {
            tap: port.tap.clone(),
            source,
        })
    }

    /// Removes the guest's rules, pinned entries and TAP; missing pieces
    /// are fine.
    pub fn detach(&self, port: &GuestPort) -> Result<(), NetworkError> {
        self.check_prefix(&port.tap)?;
        let (ns, bridge) = (&self.config.netns, &self.config.bridge);
        isolation::evict(ns, bridge, &self.rules(port)).map_err(|source| {
            NetworkError::Isolation {
                tap: port.tap.clone(),
                source,
            }
        })?;
        Ok(tap::remove(ns, &port.tap)?)
    }

    fn rules(&self, port: &GuestPort) -> isolation::PortRules {
        let group = if port.peers {
            let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
            let next = u32::try_from(groups.len()).unwrap_or(u32::MAX - 1) + 1;
            *groups.entry(port.tenant.clone()).or_insert(next)
        } else {
            isolation::NO_PEERS
        };
        isolation::PortRules {
            tap: port.tap.clone(),
            ip: port.ip,
            mac: guest_mac(port.ip),
            group,
        }
    }

    /// The engine's TAPs present in the namespace.
    pub fn list_taps(&self) -> Result<Vec<String>, NetworkError> {
        Ok(tap::list(&self.config.netns, &self.config.tap_prefix)?)
    }

    /// Removes the engine's TAPs that are not in `in_use`; returns them.
    pub fn remove_orphan_taps(
        &self,
        in_use: &HashSet<String>,
    ) -> Result<Vec<String>, NetworkError> {
        Ok(tap::remove_orphans(
            &self.config.netns,
            &self.config.tap_prefix,
            in_use,
        )?)
    }

    fn check_prefix(&self, name: &str) -> Result<(), NetworkError> {
        if name.starts_with(&self.config.tap_prefix) {
            Ok(())
        } else {
            Err(NetworkError::Config(format!(
                "TAP {name:?} lacks the engine prefix {:?}",
                self.config.tap_prefix
            )))
        }
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, IpPool> {
        // The pool is plain data updated in one step; a panic elsewhere
        // cannot leave it half-written, so a poisoned lock is still valid.
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn validate(c: &NetworkConfig) -> Result<(), NetworkError> {
    let bad = |what: String| Err(NetworkError::Config(what));
    let name_ok = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    };
    if !name_ok(&c.netns, MAX_NAME_LEN) {
        return bad(format!("namespace name {:?}", c.netns));
    }
    if !tap::valid_ifname(&c.bridge) {
        return bad(format!("bridge name {:?}", c.bridge));
    }
    if c.tap_prefix.is_empty() || c.tap_prefix.len() > 6 || !tap::valid_ifname(&c.tap_prefix) {
        return bad(format!("TAP prefix {:?} (1-6 chars)", c.tap_prefix));
    }
    if c.bridge.starts_with(&c.tap_prefix) || egress::INNER_VETH.starts_with(&c.tap_prefix) {
        return bad(format!(
            "TAP prefix {:?} would match the bridge or uplink",
            c.tap_prefix
        ));
    }
    if !c.subnet.is_private() {
        return bad(format!("guest subnet {} is not a private range", c.subnet));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_configs_are_rejected_before_any_command() {
        let ok = NetworkConfig::default();
        assert!(validate(&ok).is_ok());
        let cases = [
            NetworkConfig {
                netns: "a/b".into(),
                ..ok.clone()
            },
            NetworkConfig {
                bridge: "".into(),
                ..ok.clone()
            },
            NetworkConfig {
                tap_prefix: "toolongprefix".into(),
                ..ok.clone()
            },
            NetworkConfig {
                tap_prefix: "br".into(),
                ..ok.clone()
            },
            NetworkConfig {
                subnet: Ipv4Addr::new(8, 8, 8, 0),
                ..ok.clone()
            },
        ];
        for c in cases {
            assert!(
                matches!(Network::setup(c.clone()), Err(NetworkError::Config(_))),
                "{c:?}"
            );
        }
    }
}
