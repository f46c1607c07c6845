//! Network namespace helpers against the real kernel: create/delete, RAII
//! cleanup, a TAP with an address, commands and TCP connections from inside.
//! Needs root; reported as ignored (with the reason) otherwise. Every packet
//! stays inside a namespace the test created.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use bhatti_engine::netns::{NetNs, NetnsError, unique_name};
use libtest_mimic::{Arguments, Failed};
use support::{Need, ensure, trial};

fn main() {
    let args = Arguments::from_args();
    let root = &[Need::Root];
    let trials = vec![
        trial("create_open_delete", root, create_open_delete),
        trial("drop_deletes_created_namespace", root, drop_deletes),
        trial("tap_has_address_and_is_up", root, tap_has_address),
        trial("connect_tcp_reaches_only_inside", root, connect_inside),
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn create_open_delete() -> Result<(), Failed> {
    let name = unique_name("bt-ns");
    let ns = NetNs::create(&name)?;
    ensure(NetNs::exists(&name), || {
        format!("{name} missing after create")
    })?;
    let opened = NetNs::open(&name)?;
    drop(opened);
    ensure(NetNs::exists(&name), || {
        "dropping an opened handle deleted it".into()
    })?;
    ensure(
        matches!(NetNs::create(&name), Err(NetnsError::Command { .. })),
        || "creating an existing namespace did not fail".into(),
    )?;
    ns.delete()?;
    ensure(!NetNs::exists(&name), || format!("{name} still there"))
}

fn drop_deletes() -> Result<(), Failed> {
    let name = unique_name("bt-ns");
    drop(NetNs::create(&name)?);
    ensure(!NetNs::exists(&name), || format!("{name} survived drop"))
}

fn tap_has_address() -> Result<(), Failed> {
    let ns = NetNs::create(&unique_name("bt-tap"))?;
    ns.add_tap("tap0", Some("10.201.0.1/24"))?;
    // The command joins the namespace: it sees tap0 and its address.
    let out = ns
        .command("ip")?
        .args(["-o", "addr", "show", "dev", "tap0"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure(out.status.success(), || format!("ip addr failed: {out:?}"))?;
    ensure(text.contains("10.201.0.1/24"), || {
        format!("no address in: {text}")
    })?;
    // The host namespace has no such device.
    let host_dev = std::fs::read_to_string("/proc/net/dev")?;
    ensure(!host_dev.contains(" tap0:"), || {
        "tap0 leaked into the host namespace".into()
    })?;
    // Per-namespace sysctl: visible inside, host value untouched.
    let key = "net/ipv4/neigh/tap0/retrans_time_ms";
    ns.sysctl("net.ipv4.neigh.tap0.retrans_time_ms", "100")?;
    let inside = ns.run(|| std::fs::read_to_string(format!("/proc/sys/{key}")))??;
    ensure(inside.trim() == "100", || {
        format!("sysctl inside: {inside:?}")
    })?;
    ensure(
        matches!(
            ns.sysctl("net/../../x", "1"),
            Err(NetnsError::InvalidSysctl(_))
        ),
        || "a path-like sysctl name was accepted".into(),
    )?;
    ns.del_link("tap0")?;
    Ok(())
}

fn connect_inside() -> Result<(), Failed> {
    let ns = NetNs::create(&unique_name("bt-tcp"))?;
    let listener: TcpListener = ns.run(|| TcpListener::bind("127.0.0.1:0"))??;
    let addr: SocketAddr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
        let (mut s, _) = listener.accept()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)?;
        s.write_all(b"pong")?;
        Ok(buf)
    });
    let mut c = ns.connect_tcp(addr, Duration::from_secs(5))?;
    c.write_all(b"ping")?;
    c.shutdown(std::net::Shutdown::Write)?;
    let mut reply = String::new();
    c.read_to_string(&mut reply)?;
    let got = server.join().map_err(|_| "server thread panicked")??;
    ensure(got == b"ping", || format!("server got {got:?}"))?;
    ensure(reply == "pong", || format!("client got {reply:?}"))?;
    // The listener lives in the namespace's loopback, not the host's.
    ensure(
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
        || format!("{addr} reachable from the host namespace"),
    )
}
