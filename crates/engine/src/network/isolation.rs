//! Layer-2/3 isolation of guests on the sandbox bridge.
//!
//! The threat is a guest with root: it can send any frame on its TAP. Two
//! nftables tables inside the sandbox namespace hold it to its own
//! identity and its own tenant:
//!
//! - `bridge bhatti_isolation` filters frames on the bridge. Its
//!   `prerouting` chain (policy **drop**) jumps, by input port, to that
//!   port's `in_*` chain: the source MAC, ARP sender MAC and IP, and IPv4
//!   source must be the port's own, only IPv4 and ARP pass (no IPv6, no
//!   VLAN tags, no other ethertypes), and the frame is marked with the
//!   port's peer group. Its `forward` chain (policy **drop**) jumps, by
//!   output port, to the port's `fwd_*` chain: only frames addressed to the
//!   port's MAC (or broadcast) and marked with the same peer group pass.
//!   Its `output` chain holds frames the host sends to the port's MAC or
//!   broadcast, so a frame for one guest is never flooded to another.
//!   A TAP that was never admitted passes nothing.
//! - `inet bhatti_guard` drops every new connection from a guest to the
//!   namespace itself (the bridge address): guests reach no host service;
//!   replies to the daemon's own connections pass, and so does a ping of
//!   the gateway.
//!
//! Peer groups: guests of one tenant share a group (a number local to this
//! process) and may exchange packets when both allow peers; a guest that
//! does not gets group 0, which matches no other port. Different tenants
//! never share a group.
//!
//! The daemon's path to each guest is pinned: a permanent neighbour entry
//! (guest IP → guest MAC on the bridge) and a static forwarding entry
//! (guest MAC → its TAP), so no ARP answer or learned MAC can redirect the
//! agent channel — and with the source checks above none can be sent.
//!
//! [`install`] replaces both tables atomically (every port starts blocked;
//! the engine admits each sandbox's TAP as it creates or recovers it).
//! [`admit`] and [`evict`] change one port in one transaction each.
//!
//! # Threads, locks, I/O
//! Blocking `nft`, `ip` and `bridge` commands through [`super::cmd`]; no
//! shared state (group numbers are kept by [`super::Network`]).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::cmd::{self, CmdError};

/// The bridge-family table.
pub const TABLE: &str = "bhatti_isolation";
/// The inet table that guards the namespace's own addresses.
pub const GUARD_TABLE: &str = "bhatti_guard";

/// Peer group of a guest that may not reach any other guest.
pub const NO_PEERS: u32 = 0;

/// One guest's port on the bridge and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRules {
    /// The TAP's interface name.
    pub tap: String,
    /// The guest's only address.
    pub ip: Ipv4Addr,
    /// The guest's only MAC.
    pub mac: [u8; 6],
    /// Peer group ([`NO_PEERS`]: none).
    pub group: u32,
}

/// Replaces both tables: every port blocked until admitted; guests reach
/// the namespace only with replies and pings of `gateway`.
pub fn install(netns: &str, bridge: &str, gateway: Ipv4Addr) -> Result<(), CmdError> {
    cmd::nft_in(netns, &["-f", "-"], Some(&tables_script(bridge, gateway)))?;
    Ok(())
}

/// Lets `port` onto the bridge with its rules (replacing any earlier
/// rules of the same TAP) and pins the path to it. Idempotent.
pub fn admit(netns: &str, bridge: &str, port: &PortRules) -> Result<(), CmdError> {
    cmd::nft_in(netns, &["-f", "-"], Some(&admit_script(port)))?;
    let (ip, mac) = (port.ip.to_string(), mac_string(port.mac));
    cmd::ip_in(
        netns,
        &[
            "neigh",
            "replace",
            &ip,
            "lladdr",
            &mac,
            "dev",
            bridge,
            "nud",
            "permanent",
        ],
    )?;
    cmd::run(
        "bridge",
        &[
            "-n", netns, "fdb", "replace", &mac, "dev", &port.tap, "master", "static",
        ],
        None,
    )?;
    Ok(())
}

/// Removes `port`'s rules and pinned entries. Missing pieces are fine;
/// the TAP itself is removed by the caller.
pub fn evict(netns: &str, bridge: &str, port: &PortRules) -> Result<(), CmdError> {
    cmd::nft_in(netns, &["-f", "-"], Some(&evict_script(&port.tap)))?;
    let ip = port.ip.to_string();
    // A neighbour entry that is already gone is what we want.
    if let Err(e) = cmd::ip_in(netns, &["neigh", "del", &ip, "dev", bridge])
        && !e.stderr().is_some_and(|s| s.contains("No such file"))
    {
        return Err(e);
    }
    Ok(())
}

/// A guest's MAC: locally administered, derived from its address.
pub fn guest_mac(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x06, 0x00, a, b, c, d]
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(mac: [u8; 6]) -> String {
    let mut s = String::with_capacity(17);
    for (i, b) in mac.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The chain-name suffix of a TAP: its name in hex, so any interface name
/// gives a valid, unique nft identifier.
fn chain_suffix(tap: &str) -> String {
    tap.bytes().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn tables_script(bridge: &str, gateway: Ipv4Addr) -> String {
    // Declaring each table first makes the delete valid when it is absent.
    format!(
        "table bridge {TABLE} {{}}\ndelete table bridge {TABLE}\n\
table bridge {TABLE} {{\n\
  map in_ports {{ type ifname : verdict; }}\n\
  map fwd_ports {{ type ifname : verdict; }}\n\
  map out_ports {{ type ifname : verdict; }}\n\
  chain prerouting {{\n    type filter hook prerouting priority filter; policy drop;\n\
    iifname vmap @in_ports\n  }}\n\
  chain forward {{\n    type filter hook forward priority filter; policy drop;\n\
    oifname vmap @fwd_ports\n  }}\n\
  chain output {{\n    type filter hook output priority filter; policy drop;\n\
    oifname vmap @out_ports\n  }}\n\
}}\n\
table inet {GUARD_TABLE} {{}}\ndelete table inet {GUARD_TABLE}\n\
table inet {GUARD_TABLE} {{\n\
  chain input {{\n    type filter hook input priority filter; policy accept;\n\
    iifname \"{bridge}\" ct state established,related accept\n\
    iifname \"{bridge}\" ip daddr {gateway} icmp type echo-request accept\n\
    iifname \"{bridge}\" drop\n  }}\n\
}}\n"
    )
}

fn admit_script(p: &PortRules) -> String {
    let s = chain_suffix(&p.tap);
    let (ip, mac, tap) = (p.ip, mac_string(p.mac), &p.tap);
    let t = format!("bridge {TABLE}");
    let to_me = format!("ether daddr != {{ {mac}, ff:ff:ff:ff:ff:ff }} drop");
    let from_peers = if p.group == NO_PEERS {
        "drop".to_owned()
    } else {
        format!("meta mark != {} drop", p.group)
    };
    let mut out = String::new();
    for chain in ["in", "fwd", "out"] {
        let _ = writeln!(out, "add chain {t} {chain}_{s}");
        let _ = writeln!(out, "flush chain {t} {chain}_{s}");
    }
    let rules = [
        ("in", format!("ether saddr != {mac} drop")),
        ("in", "ether type arp arp htype != 1 drop".to_owned()),
        ("in", "ether type arp arp ptype != ip drop".to_owned()),
        (
            "in",
            format!("ether type arp arp saddr ether != {mac} drop"),
        ),
        ("in", format!("ether type arp arp saddr ip != {ip} drop")),
        ("in", format!("ether type ip ip saddr != {ip} drop")),
        ("in", "ether type != { ip, arp } drop".to_owned()),
        ("in", format!("meta mark set {} accept", p.group)),
        ("fwd", to_me.clone()),
        ("fwd", from_peers),
        ("fwd", "accept".to_owned()),
        ("out", to_me),
        ("out", "accept".to_owned()),
    ];
    for (chain, rule) in rules {
        let _ = writeln!(out, "add rule {t} {chain}_{s} {rule}");
    }
    for chain in ["in", "fwd", "out"] {
        // Add, delete, add: the element ends up present with this verdict
        // whether or not it was there before.
        let el = format!("{{ \"{tap}\" : jump {chain}_{s} }}");
        let _ = writeln!(out, "add element {t} {chain}_ports {el}");
        let _ = writeln!(out, "delete element {t} {chain}_ports {{ \"{tap}\" }}");
        let _ = writeln!(out, "add element {t} {chain}_ports {el}");
    }
    out
}

fn evict_script(tap: &str) -> String {
    let s = chain_suffix(tap);
    let t = format!("bridge {TABLE}");
    let mut out = String::new();
    for chain in ["in", "fwd", "out"] {
        // Make the element and chain exist first, so that the deletes are
        // valid for a port that was never (or only partly) admitted.
        let _ = writeln!(out, "add chain {t} {chain}_{s}");
        let _ = writeln!(
            out,
            "add element {t} {chain}_ports {{ \"{tap}\" : jump {chain}_{s} }}"
        );
        let _ = writeln!(out, "delete element {t} {chain}_ports {{ \"{tap}\" }}");
        let _ = writeln!(out, "delete chain {t} {chain}_{s}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(group: u32) -> PortRules {
        PortRules {
            tap: "bt-ab-1".into(),
            ip: Ipv4Addr::new(10, 213, 0, 7),
            mac: guest_mac(Ipv4Addr::new(10, 213, 0, 7)),
            group,
        }
    }

    #[test]
    fn macs_are_local_and_follow_the_address() {
        assert_eq!(
            mac_string(guest_mac(Ipv4Addr::new(10, 0, 2, 7))),
            "06:00:0a:00:02:07"
        );
    }

    #[test]
    fn chain_names_are_hex_of_the_tap() {
        assert_eq!(chain_suffix("bt-a"), "62742d61");
    }

    #[test]
    fn admit_holds_the_port_to_its_own_addresses() {
        let s = admit_script(&port(3));
        for want in [
            "ether saddr != 06:00:0a:d5:00:07 drop",
            "arp saddr ether != 06:00:0a:d5:00:07 drop",
            "arp saddr ip != 10.213.0.7 drop",
            "ip saddr != 10.213.0.7 drop",
            "ether type != { ip, arp } drop",
            "meta mark set 3 accept",
            "meta mark != 3 drop",
            "ether daddr != { 06:00:0a:d5:00:07, ff:ff:ff:ff:ff:ff } drop",
        ] {
            assert!(s.contains(want), "missing {want:?} in\n{s}");
        }
        // Each chain is emptied before its rules are added again.
        assert!(s.contains("flush chain bridge bhatti_isolation in_62742d61622d31"));
    }

    #[test]
    fn a_port_without_peers_takes_nothing_forwarded() {
        let s = admit_script(&port(NO_PEERS));
        let fwd: Vec<&str> = s
            .lines()
            .filter(|l| l.starts_with("add rule") && l.contains(" fwd_"))
            .collect();
        assert_eq!(fwd.len(), 3, "{fwd:?}");
        assert!(fwd[1].ends_with(" drop") && !fwd[1].contains("mark"));
    }

    #[test]
    fn guard_blocks_new_connections_into_the_namespace() {
        let s = tables_script("br0", Ipv4Addr::new(10, 213, 0, 1));
        assert!(s.contains("iifname \"br0\" ct state established,related accept"));
        assert!(s.contains("iifname \"br0\" drop"));
        assert!(s.contains("policy drop;\niifname vmap @in_ports"));
    }
}
