//! Egress from the sandbox namespace to the outside world.
//!
//! - [`Egress::None`] (default, and what tests use): no uplink exists, so
//!   nothing a guest sends can leave the namespace.
//! - [`Egress::Nat`]: a veth pair joins the sandbox namespace (`up0`, the
//!   inner end) to the uplink namespace (the host's by default). Inside the
//!   sandbox namespace an nftables table masquerades guest traffic leaving
//!   through `up0` and, before that, drops anything addressed to the deny
//!   list: RFC 1918 private ranges, link-local (cloud metadata at
//!   169.254.169.254), CGNAT, loopback, multicast/reserved, and every address
//!   of the uplink namespace (the host). New connections from guests into
//!   the sandbox namespace itself are dropped. IPv6 is not forwarded. In
//!   the uplink namespace a second table masquerades the veth subnet and
//!   drops new connections arriving from the veth. Each guest is let out
//!   only while its address is in the `egress_allowed` set
//!   ([`set_guest`]), the per-sandbox switch.
//!
//! Applying a mode is idempotent: each table is replaced atomically in one
//! `nft -f` transaction, links are created only when missing, and
//! switching to `None` removes the uplink and the tables.
//!
//! # Threads, locks, I/O
//! Blocking `ip`/`nft`/`sysctl` commands through [`super::cmd`]; no state.

use std::net::Ipv4Addr;

use super::cmd::{self, CmdError};

/// Name of the nftables table in the sandbox namespace.
pub const TABLE: &str = "bhatti_egress";
/// Name of the nftables table in the uplink namespace.
pub const UPLINK_TABLE: &str = "bhatti_uplink";
/// The set of guest addresses allowed out (per-sandbox switch).
pub const ALLOWED_SET: &str = "egress_allowed";

/// The inner end of the uplink veth, inside the sandbox namespace.
pub const INNER_VETH: &str = "up0";

/// Ranges guests may never reach, whatever the mode.
pub const DENY_RANGES: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/3",
];

/// How guest traffic may leave the sandbox namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Egress {
    /// Nothing leaves the namespace.
    #[default]
    None,
    /// NAT through a veth to the uplink namespace, with the deny list.
    Nat(NatConfig),
}

/// Settings of [`Egress::Nat`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatConfig {
    /// Namespace holding the outer veth end; `None` = the host's own.
    pub uplink_netns: Option<String>,
    /// Name of the outer veth end (unique in the uplink namespace).
    pub outer_veth: String,
    /// The veth pair's /30: `.1` outer end, `.2` inner end.
    pub link_subnet: Ipv4Addr,
    /// Extra destinations to deny (CIDR strings), besides [`DENY_RANGES`]
    /// and the uplink namespace's own addresses.
    pub extra_deny: Vec<String>,
}

impl Default for NatConfig {
    fn default() -> Self {
        Self {
            uplink_netns: None,
            outer_veth: "bhatti-up".to_owned(),
            link_subnet: Ipv4Addr::new(10, 254, 254, 0),
            extra_deny: Vec::new(),
        }
    }
}

/// Errors from applying an egress mode.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("invalid egress setting: {0}")]
    Invalid(String),
    #[error(transparent)]
    Cmd(#[from] CmdError),
}

/// Applies `egress` to sandbox namespace `netns` whose guests sit behind
/// `bridge` on `subnet`/24 with gateway `gateway`.
pub fn apply(
    netns: &str,
    bridge: &str,
    gateway: Ipv4Addr,
    egress: &Egress,
) -> Result<(), EgressError> {
    match egress {
        Egress::None => remove(netns),
        Egress::Nat(nat) => apply_nat(netns, bridge, gateway, nat),
    }
}

/// Removes the uplink veth and the egress table from `netns` (the outer
/// end of a veth disappears with its peer). Missing pieces are fine.
pub fn remove(netns: &str) -> Result<(), EgressError> {
    if link_exists(Some(netns), INNER_VETH)? {
        cmd::ip_in(netns, &["link", "del", INNER_VETH])?;
    }
    cmd::nft_in(
        netns,
        &["-f", "-"],
        Some(&replace_table_script(TABLE, None)),
    )?;
    Ok(())
}

/// Lets guest `ip` out (`allow`) or not, under [`Egress::Nat`]: adds it
/// to or removes it from the allowed set. Idempotent: the set is first
/// made to hold `ip` and then, to deny, emptied of it, in one transaction.
pub fn set_guest(netns: &str, ip: Ipv4Addr, allow: bool) -> Result<(), EgressError> {
    let mut script = format!("add element inet {TABLE} {ALLOWED_SET} {{ {ip} }}\n");
    if !allow {
        script.push_str(&format!(
            "delete element inet {TABLE} {ALLOWED_SET} {{ {ip} }}\n"
        ));
    }
    cmd::nft_in(netns, &["-f", "-"], Some(&script))?;
    Ok(())
}

fn apply_nat(
    netns: &str,
    bridge: &str,
    gateway: Ipv4Addr,
    nat: &NatConfig,
) -> Result<(), EgressError> {
    let (outer_ip, inner_ip) = link_addrs(nat.link_subnet);
    let uplink = nat.uplink_netns.as_deref();
    if !super::tap::valid_ifname(&nat.outer_veth) {
        return Err(EgressError::Invalid(format!(
            "outer veth name {:?}",
            nat.outer_veth
        )));
    }
    if uplink == Some(netns) {
        return Err(EgressError::Invalid(
            "the uplink namespace must differ from the sandbox namespace".into(),
        ));
    }
    for cidr in &nat.extra_deny {
        if !is_cidr(cidr) {
            return Err(EgressError::Invalid(format!("deny entry {cidr:?}")));
        }
    }

    if !link_exists(Some(netns), INNER_VETH)? {
        if link_exists(uplink, &nat.outer_veth)? {
            ip(uplink, &["link", "del", &nat.outer_veth])?;
        }
        ip(
            uplink,
            &[
                "link",
                "add",
                &nat.outer_veth,
                "type",
                "veth",
                "peer",
                "name",
                INNER_VETH,
                "netns",
                netns,
            ],
        )?;
    }
    let outer_cidr = format!("{outer_ip}/30");
    let inner_cidr = format!("{inner_ip}/30");
    ip(
        uplink,
        &["addr", "replace", &outer_cidr, "dev", &nat.outer_veth],
    )?;
    ip(uplink, &["link", "set", &nat.outer_veth, "up"])?;
    cmd::ip_in(netns, &["addr", "replace", &inner_cidr, "dev", INNER_VETH])?;
    cmd::ip_in(netns, &["link", "set", INNER_VETH, "up"])?;
    let outer = outer_ip.to_string();
    cmd::ip_in(netns, &["route", "replace", "default", "via", &outer])?;
    cmd::sysctl_in(netns, "net.ipv4.ip_forward", "1")?;

    let mut deny: Vec<String> = DENY_RANGES.iter().map(|s| (*s).to_owned()).collect();
    deny.extend(uplink_addrs(uplink)?);
    deny.extend(nat.extra_deny.iter().cloned());
    let body = sandbox_table(bridge, gateway, &deny);
    cmd::nft_in(
        netns,
        &["-f", "-"],
        Some(&replace_table_script(TABLE, Some(&body))),
    )?;

    let body = uplink_table(&nat.outer_veth, nat.link_subnet);
    let script = replace_table_script(UPLINK_TABLE, Some(&body));
    match uplink {
        Some(ns) => {
            cmd::nft_in(ns, &["-f", "-"], Some(&script))?;
            cmd::sysctl_in(ns, "net.ipv4.ip_forward", "1")?;
        }
        None => {
            cmd::run("nft", &["-f", "-"], Some(&script))?;
            cmd::run("sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"], None)?;
        }
    }
    Ok(())
}

/// The outer (`.1`) and inner (`.2`) addresses of the veth /30.
pub fn link_addrs(link_subnet: Ipv4Addr) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(link_subnet) & !0b11;
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

/// An nft script that atomically replaces `table` (family inet) with
/// `body`, or deletes it when `body` is `None`.
fn replace_table_script(table: &str, body: Option<&str>) -> String {
    // Declaring the table first makes the delete valid when it is absent.
    let mut s = format!("table inet {table} {{}}\ndelete table inet {table}\n");
    if let Some(body) = body {
        s.push_str(&format!("table inet {table} {{\n{body}}}\n"));
    }
    s
}

fn sandbox_table(bridge: &str, gateway: Ipv4Addr, deny: &[String]) -> String {
    format!(
        "  set deny4 {{\n    type ipv4_addr; flags interval; auto-merge\n    elements = {{ {deny} }}\n  }}\n\
  set {ALLOWED_SET} {{\n    type ipv4_addr\n  }}\n\
  chain forward {{\n    type filter hook forward priority filter; policy drop;\n\
    ct state established,related accept\n\
    iifname \"{bridge}\" oifname \"{bridge}\" accept\n\
    iifname \"{bridge}\" oifname \"{INNER_VETH}\" ip daddr @deny4 drop\n\
    iifname \"{bridge}\" oifname \"{INNER_VETH}\" ip saddr @{ALLOWED_SET} accept\n  }}\n\
  chain input {{\n    type filter hook input priority filter; policy accept;\n\
    iifname \"{bridge}\" ct state established,related accept\n\
    iifname \"{bridge}\" ip daddr {gateway} icmp type echo-request accept\n\
    iifname \"{bridge}\" drop\n\
    iifname \"{INNER_VETH}\" ct state established,related accept\n\
    iifname \"{INNER_VETH}\" drop\n  }}\n\
  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n\
    oifname \"{INNER_VETH}\" masquerade\n  }}\n",
        deny = deny.join(", "),
    )
}

fn uplink_table(outer_veth: &str, link_subnet: Ipv4Addr) -> String {
    format!(
        "  chain input {{\n    type filter hook input priority filter; policy accept;\n\
    iifname \"{outer_veth}\" ct state established,related accept\n\
    iifname \"{outer_veth}\" drop\n  }}\n\
  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n\
    ip saddr {link_subnet}/30 oifname != \"{outer_veth}\" masquerade\n  }}\n"
    )
}

/// The IPv4 addresses (as /32) of the uplink namespace, so that guests
/// cannot reach the host on any of them.
fn uplink_addrs(uplink: Option<&str>) -> Result<Vec<String>, CmdError> {
    let out = match uplink {
        Some(ns) => cmd::ip_json_in(ns, &["-4", "addr", "show"])?,
        None => {
            let text = cmd::run("ip", &["-j", "-4", "addr", "show"], None)?;
            serde_json::from_str(&text).map_err(|e| CmdError::BadOutput {
                command: "ip -j -4 addr show".into(),
                reason: e.to_string(),
            })?
        }
    };
    let mut addrs = Vec::new();
    for link in out.as_array().into_iter().flatten() {
        for a in link
            .get("addr_info")
            .and_then(|a| a.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(ip) = a.get("local").and_then(|l| l.as_str())
                && ip.parse::<Ipv4Addr>().is_ok()
            {
                addrs.push(format!("{ip}/32"));
            }
        }
    }
    Ok(addrs)
}

fn ip(netns: Option<&str>, args: &[&str]) -> Result<String, CmdError> {
    match netns {
        Some(ns) => cmd::ip_in(ns, args),
        None => cmd::run("ip", args, None),
    }
}

fn link_exists(netns: Option<&str>, name: &str) -> Result<bool, CmdError> {
    let mut args = vec!["-j"];
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["link", "show"]);
    let text = cmd::run("ip", &args, None)?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| CmdError::BadOutput {
        command: format!("ip {}", args.join(" ")),
        reason: e.to_string(),
    })?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .any(|l| l.get("ifname").and_then(|n| n.as_str()) == Some(name)))
}

fn is_cidr(s: &str) -> bool {
    let (ip, len) = s.split_once('/').unwrap_or((s, "32"));
    ip.parse::<Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_addresses_come_from_the_slash_30() {
        assert_eq!(
            link_addrs(Ipv4Addr::new(10, 254, 254, 3)),
            (
                Ipv4Addr::new(10, 254, 254, 1),
                Ipv4Addr::new(10, 254, 254, 2)
            )
        );
    }

    #[test]
    fn cidrs_are_checked() {
        assert!(is_cidr("192.0.2.1"));
        assert!(is_cidr("192.0.2.0/24"));
        assert!(!is_cidr("192.0.2.0/33"));
        assert!(!is_cidr("x; flush ruleset"));
    }

    #[test]
    fn table_script_replaces_atomically() {
        let s = replace_table_script("t", None);
        assert_eq!(s, "table inet t {}\ndelete table inet t\n");
        let body = sandbox_table("br0", Ipv4Addr::new(10, 1, 2, 1), &["10.0.0.0/8".into()]);
        assert!(body.contains("elements = { 10.0.0.0/8 }"));
        assert!(body.contains("oifname \"up0\" masquerade"));
    }
}
