//! The identify's interface changes ([`super::set_mac`],
//! [`super::replace_address`]) against a real kernel: a veth pair in a
//! network namespace the test makes (root only; skipped otherwise, or when
//! `ip` cannot make the pair). No packet leaves the namespace.

use std::net::Ipv4Addr;
use std::process::Command;

use super::*;

fn ip(args: &[&str]) -> Option<String> {
    let out = Command::new("ip").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `f` on a thread of its own in a fresh network namespace holding a
/// veth pair `v0`/`v1`, both up; `None` when that cannot be made here.
fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root for a network namespace");
        return None;
    }
    let t = std::thread::spawn(move || {
        // SAFETY: only the network namespace is unshared (not the file
        // table), for this thread alone, which ends with the test.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }.ok()?;
        ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"])?;
        ip(&["link", "set", "v1", "up"])?;
        Some(f())
    });
    let res = t.join().expect("netns thread");
    if res.is_none() {
        eprintln!("skipped: no network namespace with a veth pair here");
    }
    res
}

#[test]
fn mac_address_and_default_route_are_replaced() {
    let Some(shown) = in_netns(|| {
        set_mac("v0", [0x02, 0, 0x0a, 0, 0, 0x05]).expect("set MAC");
        replace_address(
            "v0",
            Ipv4Addr::new(10, 9, 0, 2),
            24,
            Ipv4Addr::new(10, 9, 0, 1),
        )
        .expect("first address");
        let first = (
            ip(&["-o", "-4", "addr", "show", "dev", "v0"]),
            ip(&["route"]),
        );
        // The same again changes nothing and fails nothing (EEXIST route).
        replace_address(
            "v0",
            Ipv4Addr::new(10, 9, 0, 2),
            24,
            Ipv4Addr::new(10, 9, 0, 1),
        )
        .expect("same address again");
        let again = (
            ip(&["-o", "-4", "addr", "show", "dev", "v0"]),
            ip(&["route"]),
        );
        // A fork child's new identity: another address, mask and gateway.
        set_mac("v0", [0x02, 0, 0x0a, 0, 1, 0x07]).expect("second MAC");
        replace_address(
            "v0",
            Ipv4Addr::new(10, 8, 1, 7),
            16,
            Ipv4Addr::new(10, 8, 0, 1),
        )
        .expect("new address");
        let link = ip(&["-o", "link", "show", "dev", "v0"]);
        let addr = ip(&["-o", "-4", "addr", "show", "dev", "v0"]);
        (first, again, link, addr, ip(&["route"]))
    }) else {
        return;
    };
    let ((addr1, route1), again, link, addr, route) = shown;
    let (addr1, route1) = (addr1.expect("ip addr"), route1.expect("ip route"));
    assert!(addr1.contains("inet 10.9.0.2/24"), "{addr1}");
    assert!(route1.contains("default via 10.9.0.1 dev v0"), "{route1}");
    assert_eq!(again, (Some(addr1), Some(route1)));
    let link = link.expect("ip link");
    assert!(link.contains("link/ether 02:00:0a:00:01:07"), "{link}");
    assert!(link.contains(",UP"), "the link stays up: {link}");
    let addr = addr.expect("ip addr");
    assert!(addr.contains("inet 10.8.1.7/16"), "{addr}");
    assert!(
        !addr.contains("10.9.0.2"),
        "the old address is gone: {addr}"
    );
    let route = route.expect("ip route");
    assert!(route.contains("default via 10.8.0.1 dev v0"), "{route}");
    assert!(!route.contains("10.9.0.1"), "{route}");
}

#[test]
fn a_prefix_over_32_is_refused_before_any_change() {
    let Some(res) = in_netns(|| {
        let res = replace_address(
            "v0",
            Ipv4Addr::new(10, 9, 0, 2),
            33,
            Ipv4Addr::new(10, 9, 0, 1),
        );
        (
            res.map_err(|e| e.to_string()),
            ip(&["-o", "-4", "addr", "show", "dev", "v0"]),
        )
    }) else {
        return;
    };
    assert_eq!(res.0, Err("prefix length 33 is over 32".to_owned()));
    assert_eq!(res.1.as_deref(), Some(""));
}
