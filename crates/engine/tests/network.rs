//! Sandbox networking against the real kernel: every test creates its own
//! uniquely named network namespace (deleted on drop) and configures the
//! bridge, TAPs and egress inside it. No test sends a packet; the NAT test
//! puts the uplink in a second test-created namespace, never the host's.
//! Reported as ignored, with the reason printed, without root or iproute2
//! or nftables.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use bhatti_engine::agent_link::SocketFactory;
use bhatti_engine::netns::{NetNs, unique_name};
use bhatti_engine::network::{
    Egress, GuestPort, NatConfig, Network, NetworkConfig, cmd, guest_mac, isolation, mac_string,
};
use bhatti_testkit::{Need, trial};
use libtest_mimic::{Arguments, Failed};

type TestResult = Result<(), Failed>;
type NamedTest = (&'static str, fn() -> TestResult);

/// Root for the namespaces, iproute2 and nftables to configure them.
const NEEDS: &[Need] = &[Need::Root, Need::Ip, Need::Nft];

/// A test namespace plus a network configured in it.
fn setup(egress: Egress) -> Result<(NetNs, NetworkConfig, Network), Failed> {
    let ns = NetNs::create(&unique_name("btnet"))?;
    let config = NetworkConfig {
        netns: ns.name().to_owned(),
        subnet: Ipv4Addr::new(10, 77, 0, 0),
        egress,
        ..NetworkConfig::default()
    };
    let net = Network::setup(config.clone())?;
    Ok((ns, config, net))
}

/// A port for TAP `tap` of tenant `t`, with an address from the pool.
fn port(net: &Network, key: &str, t: &str) -> Result<GuestPort, Failed> {
    Ok(GuestPort {
        tap: net.tap_name(key),
        ip: net.allocate_ip()?,
        tenant: t.to_owned(),
        peers: true,
    })
}

fn links(ns: &str, args: &[&str]) -> Result<Vec<serde_json::Value>, Failed> {
    let mut full = vec!["link", "show"];
    full.extend_from_slice(args);
    Ok(cmd::ip_json_in(ns, &full)?
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn names(links: &[serde_json::Value]) -> Vec<String> {
    let mut v: Vec<String> = links
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_owned))
        .collect();
    v.sort();
    v
}

fn bridge_setup_is_idempotent() -> TestResult {
    let (ns, config, _net) = setup(Egress::None)?;
    // A second engine start on the same namespace.
    let net = Network::setup(config.clone())?;
    let addrs = cmd::ip_json_in(ns.name(), &["-4", "addr", "show", "dev", "br0"])?;
    let infos = addrs[0]["addr_info"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let locals: Vec<&str> = infos.iter().filter_map(|a| a["local"].as_str()).collect();
    if locals != ["10.77.0.1"] || infos[0]["prefixlen"] != 24 {
        return Err(format!("bridge addresses after two set-ups: {addrs}").into());
    }
    let br = links(ns.name(), &["dev", "br0"])?;
    let up = br[0]["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"));
    if !up {
        return Err(format!("bridge not up: {br:?}").into());
    }
    // Guests' neighbour entries are pinned, so the host never resolves
    // them; the bridge's own MAC is fixed.
    let mac = br[0]["address"].as_str().unwrap_or_default();
    if mac != "06:00:0a:4d:00:01" {
        return Err(format!("bridge MAC {mac:?}").into());
    }
    if net.gateway() != Ipv4Addr::new(10, 77, 0, 1)
        || net.kernel_ip_arg(Ipv4Addr::new(10, 77, 0, 9))
            != "ip=10.77.0.9::10.77.0.1:255.255.255.0::eth0:off"
    {
        return Err("gateway or kernel ip= argument wrong".into());
    }
    Ok(())
}

fn two_taps_attach_to_the_bridge() -> TestResult {
    let (ns, _config, net) = setup(Egress::None)?;
    let (pa, pb) = (
        port(&net, "sandbox-one", "t")?,
        port(&net, "sandbox-two", "t")?,
    );
    let (a, b) = (pa.tap.clone(), pb.tap.clone());
    net.attach(&pa)?;
    net.attach(&pb)?;
    // Idempotent: a second attach (engine restart) keeps one device.
    net.attach(&pa)?;
    let on_bridge = names(&links(ns.name(), &["master", "br0"])?);
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    if on_bridge != want {
        return Err(format!("bridge ports {on_bridge:?}, want {want:?}").into());
    }
    if net.list_taps()? != want {
        return Err(format!("list_taps {:?}", net.list_taps()?).into());
    }
    Ok(())
}

fn ip_pool_allocates_releases_and_reuses() -> TestResult {
    let (_ns, _config, net) = setup(Egress::None)?;
    let a = net.allocate_ip()?;
    let b = net.allocate_ip()?;
    if (a, b) != (Ipv4Addr::new(10, 77, 0, 2), Ipv4Addr::new(10, 77, 0, 3)) {
        return Err(format!("first addresses {a} {b}").into());
    }
    net.release_ip(a)?;
    if net.ip_in_use(a) || net.allocate_ip()? != a {
        return Err("released address was not reused".into());
    }
    net.mark_ip_in_use(Ipv4Addr::new(10, 77, 0, 4))?;
    if net.allocate_ip()? != Ipv4Addr::new(10, 77, 0, 5) {
        return Err("recovered address was handed out again".into());
    }
    if net.release_ip(Ipv4Addr::new(10, 78, 0, 2)).is_ok() {
        return Err("releasing a foreign address succeeded".into());
    }
    Ok(())
}

fn tap_removal_is_clean_and_repeatable() -> TestResult {
    let (ns, _config, net) = setup(Egress::None)?;
    let p = port(&net, "gone", "t")?;
    let t = p.tap.clone();
    net.attach(&p)?;
    net.detach(&p)?;
    net.detach(&p)?;
    let left = names(&links(ns.name(), &[])?);
    if left.contains(&t) {
        return Err(format!("TAP still present: {left:?}").into());
    }
    let foreign = GuestPort {
        tap: "eth0".into(),
        ..p
    };
    if net.detach(&foreign).is_ok() {
        return Err("removing a non-engine interface was allowed".into());
    }
    Ok(())
}

fn orphan_taps_are_removed_at_start() -> TestResult {
    let (ns, config, net) = setup(Egress::None)?;
    let keep = net.tap_name("alive");
    for key in ["alive", "dead1", "dead2"] {
        net.attach(&port(&net, key, "t")?)?;
    }
    // A TAP without the engine prefix belongs to someone else.
    cmd::ip_in(
        ns.name(),
        &["tuntap", "add", "dev", "other0", "mode", "tap"],
    )?;
    drop(net);
    let net = Network::setup(config)?;
    let removed = net.remove_orphan_taps(&HashSet::from([keep.clone()]))?;
    if removed != [net.tap_name("dead1"), net.tap_name("dead2")] {
        return Err(format!("removed {removed:?}").into());
    }
    let left = names(&links(ns.name(), &[])?);
    if !left.contains(&keep) || !left.contains(&"other0".to_owned()) {
        return Err(format!("wrong interfaces left: {left:?}").into());
    }
    Ok(())
}

fn egress_none_has_no_way_out() -> TestResult {
    let (ns, _config, net) = setup(Egress::None)?;
    if net
        .set_guest_egress(Ipv4Addr::new(10, 77, 0, 2), true)
        .is_ok()
    {
        return Err("egress allowed for a guest with egress `none`".into());
    }
    net.set_guest_egress(Ipv4Addr::new(10, 77, 0, 2), false)?;
    let routes = cmd::ip_in(ns.name(), &["-4", "route", "show", "default"])?;
    let ruleset = cmd::nft_in(ns.name(), &["list", "ruleset"], None)?;
    let left = names(&links(ns.name(), &[])?);
    if !routes.trim().is_empty()
        || ruleset.contains("bhatti_egress")
        || left.contains(&"up0".into())
    {
        return Err(format!("routes {routes:?} ruleset {ruleset:?} links {left:?}").into());
    }
    Ok(())
}

fn nat_installs_masquerade_and_deny_list() -> TestResult {
    let uplink = NetNs::create(&unique_name("btup"))?;
    // The uplink's own address must land in the deny list (it is "the host").
    cmd::ip_in(
        uplink.name(),
        &["addr", "add", "198.51.100.7/32", "dev", "lo"],
    )?;
    let nat = NatConfig {
        uplink_netns: Some(uplink.name().to_owned()),
        extra_deny: vec!["203.0.113.0/24".into()],
        ..NatConfig::default()
    };
    let (ns, mut config, _net) = setup(Egress::Nat(nat))?;
    // Idempotent re-apply.
    Network::setup(config.clone())?;

    let rules = cmd::nft_in(ns.name(), &["list", "ruleset"], None)?;
    for want in [
        "table inet bhatti_egress",
        "oifname \"up0\" masquerade",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "198.51.100.7",
        "203.0.113.0/24",
        "ip daddr @deny4 drop",
    ] {
        if !rules.contains(want) {
            return Err(format!("sandbox ruleset lacks {want:?}:\n{rules}").into());
        }
    }
    if rules.matches("table inet bhatti_egress").count() != 1 {
        return Err(format!("table installed twice:\n{rules}").into());
    }
    let up_rules = cmd::nft_in(uplink.name(), &["list", "ruleset"], None)?;
    if !up_rules.contains("ip saddr 10.254.254.0/30") || !up_rules.contains("masquerade") {
        return Err(format!("uplink ruleset:\n{up_rules}").into());
    }
    let route = cmd::ip_in(ns.name(), &["-4", "route", "show", "default"])?;
    if !route.contains("via 10.254.254.1 dev up0") {
        return Err(format!("default route {route:?}").into());
    }

    // The per-sandbox switch: allowed guests are in the set, others not.
    let net = Network::setup(config.clone())?;
    let guest = Ipv4Addr::new(10, 77, 0, 5);
    net.set_guest_egress(guest, true)?;
    net.set_guest_egress(guest, true)?;
    let rules = cmd::nft_in(
        ns.name(),
        &["list", "set", "inet", "bhatti_egress", "egress_allowed"],
        None,
    )?;
    if !rules.contains("10.77.0.5") {
        return Err(format!("guest not allowed out:\n{rules}").into());
    }
    net.set_guest_egress(guest, false)?;
    net.set_guest_egress(guest, false)?;
    let rules = cmd::nft_in(
        ns.name(),
        &["list", "set", "inet", "bhatti_egress", "egress_allowed"],
        None,
    )?;
    if rules.contains("10.77.0.5") {
        return Err(format!("guest still allowed out:\n{rules}").into());
    }

    // Switching back to `none` removes the uplink and the rules.
    config.egress = Egress::None;
    Network::setup(config)?;
    let rules = cmd::nft_in(ns.name(), &["list", "ruleset"], None)?;
    let left = names(&links(ns.name(), &[])?);
    if rules.contains("bhatti_egress") || left.contains(&"up0".into()) {
        return Err(format!("nat left behind: {rules} {left:?}").into());
    }
    Ok(())
}

fn agent_sockets_are_made_inside_the_namespace() -> TestResult {
    use std::io::Write;
    use tokio::io::AsyncReadExt;

    let ns = NetNs::create(&unique_name("btlink"))?;
    // A listener that exists only inside the namespace's loopback.
    let listener = ns.run(|| std::net::TcpListener::bind("127.0.0.1:0"))??;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.write_all(b"inside")
    });
    let factory = SocketFactory::start(ns.name())?;
    let got = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let mut s = factory.connect(addr).await?;
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await?;
            std::io::Result::Ok(buf)
        })?;
    server.join().map_err(|_| "server thread panicked")??;
    if got != b"inside" {
        return Err(format!("read {got:?} from {addr}").into());
    }
    if SocketFactory::start(&unique_name("absent")).is_ok() {
        return Err("a factory started in a missing namespace".into());
    }
    Ok(())
}

fn isolation_table(ns: &NetNs) -> Result<String, Failed> {
    Ok(cmd::nft_in(
        ns.name(),
        &["list", "table", "bridge", isolation::TABLE],
        None,
    )?)
}

/// Attached ports get their own filter chains, a permanent neighbour
/// entry and a static forwarding entry; a detach removes all three; a
/// re-attach with peers off replaces the rules.
fn ports_are_filtered_and_pinned() -> TestResult {
    let (ns, config, net) = setup(Egress::None)?;
    let a = port(&net, "pinned-a", "alice")?;
    let b = port(&net, "pinned-b", "bob")?;
    net.attach(&a)?;
    net.attach(&b)?;
    // More ports joining (whatever their MACs) leave the pinned entries:
    // the bridge's own MAC is fixed, so it never changes (a change would
    // flush the whole neighbour table).
    for key in ["later-1", "later-2", "later-3", "later-4"] {
        net.attach(&port(&net, key, "carol")?)?;
    }
    let mac_a = mac_string(guest_mac(a.ip));
    let table = isolation_table(&ns)?;
    for want in [
        format!("ether saddr != {mac_a} drop"),
        format!("arp saddr ip != {} drop", a.ip),
        format!("ip saddr != {} drop", b.ip),
        format!("\"{}\" : jump in_", a.tap),
    ] {
        if !table.contains(&want) {
            return Err(format!("{want:?} missing from\n{table}").into());
        }
    }
    // Different tenants, different peer groups.
    if table.matches("meta mark set 0x00000001").count() != 1
        || table.matches("meta mark set 0x00000002").count() != 1
    {
        return Err(format!("peer groups:\n{table}").into());
    }
    let neigh = cmd::ip_in(ns.name(), &["neigh", "show", "dev", &config.bridge])?;
    if !neigh.contains(&format!("{} lladdr {mac_a} PERMANENT", a.ip)) {
        return Err(format!("neighbour of {} not pinned: {neigh}", a.ip).into());
    }
    let fdb = cmd::run(
        "bridge",
        &["-n", ns.name(), "fdb", "show", "dev", &a.tap],
        None,
    )?;
    if !fdb
        .lines()
        .any(|l| l.starts_with(&mac_a) && l.contains("static"))
    {
        return Err(format!("no static fdb entry for {mac_a}: {fdb}").into());
    }

    let lone = GuestPort {
        peers: false,
        ..a.clone()
    };
    net.attach(&lone)?;
    let table = isolation_table(&ns)?;
    if table.matches("meta mark set 0x00000001").count() != 0 {
        return Err(format!("peers still on after re-attach:\n{table}").into());
    }

    net.detach(&lone)?;
    let table = isolation_table(&ns)?;
    let neigh = cmd::ip_in(ns.name(), &["neigh", "show", "dev", &config.bridge])?;
    if table.contains(&format!("\"{}\"", a.tap)) || neigh.contains(&a.ip.to_string()) {
        return Err(format!("detached port left behind:\n{table}\n{neigh}").into());
    }
    // A second engine start replaces the tables: every port blocked until
    // admitted again.
    let _net = Network::setup(config)?;
    let table = isolation_table(&ns)?;
    if table.contains(&format!("\"{}\"", b.tap)) {
        return Err(format!("ports survived a new set-up:\n{table}").into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let tests: [NamedTest; 9] = [
        (
            "ports_are_filtered_and_pinned",
            ports_are_filtered_and_pinned,
        ),
        (
            "agent_sockets_are_made_inside_the_namespace",
            agent_sockets_are_made_inside_the_namespace,
        ),
        ("bridge_setup_is_idempotent", bridge_setup_is_idempotent),
        (
            "two_taps_attach_to_the_bridge",
            two_taps_attach_to_the_bridge,
        ),
        (
            "ip_pool_allocates_releases_and_reuses",
            ip_pool_allocates_releases_and_reuses,
        ),
        (
            "tap_removal_is_clean_and_repeatable",
            tap_removal_is_clean_and_repeatable,
        ),
        (
            "orphan_taps_are_removed_at_start",
            orphan_taps_are_removed_at_start,
        ),
        ("egress_none_has_no_way_out", egress_none_has_no_way_out),
        (
            "nat_installs_masquerade_and_deny_list",
            nat_installs_masquerade_and_deny_list,
        ),
    ];
    let trials = tests
        .into_iter()
        .map(|(name, f)| trial(name, NEEDS, f))
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
