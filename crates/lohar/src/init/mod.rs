//! PID-1 mode: boot the sandbox, then serve the protocol forever.
//!
//! Order: panic hook → API file systems (/proc, /sys, /dev, /dev/pts,
//! /tmp, /run, cgroup2) → kernel settings (`sysctl`) → console on fds 0-2
//! if missing → root file system grown to fill its disk ([`growfs`]) →
//! kernel command line → `lo` and the NIC up (finishing
//! `ip=` if the kernel did not) → config drive (absent is fine) →
//! hostname, volumes, resolv.conf, files → reaping → listeners (TCP 0.0.0.0:1024/1025, vsock when the kernel has it)
//! → console reader for identify lines ([`crate::identify`]) → `init`
//! session → serve. SIGTERM syncs and powers off. Every step logs
//! its failure and boot goes on; lohar never exits (the kernel would
//! panic), it parks instead.
//!
//! Threads: the main thread runs the tokio current-thread runtime, which
//! also reaps every child on SIGCHLD, including orphans re-parented to
//! PID 1 (see [`crate::children`]); if the server ever stops, a reaper
//! thread takes over.

pub mod apply;
pub mod clock;
pub mod cmdline;
pub mod growfs;
pub mod mounts;
pub mod net;
pub mod power;
pub mod sysctl;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use bhatti_proto::config::GuestConfig;
use bhatti_proto::{CONTROL_PORT, FORWARD_PORT};

use crate::agent::{Agent, Limits};
use crate::env::Identity;
use crate::server::{self, Listener, Port};

/// Boots the sandbox and serves forever.
pub fn run() -> ! {
    power::install_panic_hook();
    crate::log!("lohar {} starting as PID 1", env!("CARGO_PKG_VERSION"));
    mounts::mount_api_filesystems();
    sysctl::apply(Path::new("/proc/sys"));
    ensure_console();
    grow_root();
    let cmdline = cmdline::Cmdline::read();
    bring_up_network(&cmdline);
    let iface = cmdline.net_device();
    let mut config = match mounts::read_config_drive(&cmdline.config_device, mounts::CONFIG_MOUNT) {
        Ok(Some(drive)) => {
            if let Some(t) = drive.written_at {
                clock::raise_to(t);
            }
            drive.config
        }
        Ok(None) => {
            crate::log!(
                "no config drive at {}; using defaults",
                cmdline.config_device
            );
            GuestConfig::default()
        }
        Err(e) => {
            // Fail closed: a drive that is there but unreadable may have
            // carried a token, so nobody gets in (every connection is told
            // `auth required`); the console says why.
            crate::log!("{e}; using defaults and refusing every connection");
            GuestConfig {
                token: unguessable_token(),
                ..GuestConfig::default()
            }
        }
    };
    if config.dns.is_empty()
        && let Some(ip) = &cmdline.ip
    {
        config.dns = ip.dns.iter().map(ToString::to_string).collect();
    }
    apply_config(&config);
    if let Err(e) = crate::start_workers() {
        crate::log!("{e}");
    }
    match crate::runtime() {
        Ok(rt) => {
            // A panic escaping the server must not end PID 1 (the kernel
            // would panic); the hook has logged it, the reaper keeps going.
            let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                rt.block_on(serve(config, iface));
            }));
            if served.is_err() {
                crate::log!("server panicked");
            }
        }
        Err(e) => crate::log!("runtime: {e}"),
    }
    crate::log!("server stopped; parking");
    // PID 1 still reaps the orphans the kernel gives it.
    if let Err(e) = crate::children::start_reaper_thread() {
        crate::log!("{e}");
    }
    loop {
        std::thread::park();
    }
}

/// 32 random bytes as hex: a token no client can present.
fn unguessable_token() -> String {
    bhatti_proto::token::random_hex::<32>().unwrap_or_else(|_| {
        // No randomness: a token with a byte no hex token contains still
        // cannot be matched by a well-formed client, and the time mixes in.
        let mut buf = [0u8; 32];
        buf[..8].copy_from_slice(&crate::agent::now_unix().to_le_bytes());
        buf[31] = 0xff;
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Makes sure fds 0-2 are the console (the kernel leaves them closed when
/// it could not open /dev/console before /dev was mounted).
fn ensure_console() {
    // SAFETY: F_GETFD on fd 2 only queries whether it is open.
    if unsafe { libc::fcntl(2, libc::F_GETFD) } >= 0 {
        return;
    }
    let Ok(console) = rustix::fs::open(
        "/dev/console",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY,
        rustix::fs::Mode::empty(),
    ) else {
        return;
    };
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors, which are unused
        // (closed) at this point; `console` stays valid during the call.
        unsafe {
            libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&console), target);
        }
    }
}

/// Grows the root file system into a disk larger than it ([`growfs`]).
fn grow_root() {
    match growfs::grow_root() {
        Ok(Some(g)) => crate::log!(
            "root file system grown from {} to {} MiB",
            g.from >> 20,
            g.to >> 20
        ),
        Ok(None) => {}
        Err(e) => crate::log!("growing the root file system: {e}"),
    }
}

fn bring_up_network(cmdline: &cmdline::Cmdline) {
    if let Err(e) = net::bring_up("lo") {
        crate::log!("{e}");
    }
    let dev = cmdline.net_device();
    if let Some(ip) = &cmdline.ip
        && let Err(e) = net::ensure_address(&dev, ip)
    {
        crate::log!("{e}");
    }
    if let Err(e) = net::bring_up(&dev) {
        crate::log!("{e}");
    }
}

fn apply_config(config: &GuestConfig) {
    if !config.hostname.is_empty()
        && let Err(e) = rustix::system::sethostname(config.hostname.as_bytes())
    {
        crate::log!("sethostname: {e}");
    }
    // Volumes first, so config files aimed inside a volume land on it
    // instead of being hidden under its mount.
    let owner = (config.user.uid, config.user.gid);
    for v in &config.volumes {
        if let Err(e) = mounts::mount_volume(v, owner) {
            crate::log!("volume: {e}");
        }
    }
    apply::apply_files(Path::new("/"), config);
}

/// Who commands run as by default: root (v1's rule), in its home.
pub fn root_identity() -> Identity {
    crate::run_as::identity(None, "/root".to_owned(), "root".to_owned())
}

/// The sandbox user (`config.user`) as an identity: who runs the `init`
/// script when the sandbox has no `exec_user`. Its supplementary groups
/// come from `group_text` (`/etc/group`); uid 0 means root, no switch.
pub fn identity(config: &GuestConfig, group_text: &str) -> Identity {
    let u = &config.user;
    let name = if u.name.is_empty() {
        if u.uid == 0 { "root" } else { "lohar" }.to_owned()
    } else {
        u.name.clone()
    };
    let home = if !u.home.is_empty() {
        u.home.clone()
    } else if u.uid == 0 {
        "/root".to_owned()
    } else {
        format!("/home/{name}")
    };
    let account = crate::users::account(
        crate::users::PasswdEntry {
            name: name.clone(),
            uid: u.uid,
            gid: u.gid,
            home: home.clone(),
        },
        group_text,
    );
    let switch_to = (u.uid != 0).then_some(crate::env::Creds {
        uid: u.uid,
        gid: u.gid,
        groups: account.groups,
    });
    crate::run_as::identity(switch_to, home, name)
}

async fn serve(config: GuestConfig, iface: String) {
    crate::children::start_reaping();
    tokio::spawn(async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
                crate::log!("SIGTERM");
                power::power_off();
            }
            Err(e) => crate::log!("SIGTERM handler: {e}"),
        }
    });
    let mut listeners = Vec::new();
    for (port, num) in [(Port::Control, CONTROL_PORT), (Port::Forward, FORWARD_PORT)] {
        let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, num));
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => listeners.push((port, Listener::Tcp(l))),
            Err(e) => crate::log!("listen tcp {addr}: {e}"),
        }
        match crate::vsock::VsockListener::bind(u32::from(num)) {
            Ok(l) => listeners.push((port, Listener::Vsock(l))),
            Err(e) => crate::debug!("listen vsock {num}: {e}"),
        }
    }
    let token = (!config.token.is_empty()).then(|| config.token.clone().into_bytes());
    let group_text = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let init_identity = identity(&config, &group_text);
    let file_owner = (config.user.uid != 0).then_some((config.user.uid, config.user.gid));
    let mut agent = Agent::new(token, config, root_identity(), Limits::default());
    agent.init_identity = init_identity;
    agent.file_owner = file_owner;
    agent.rtc = crate::rtc::Rtc::open();
    if agent.rtc.is_none() {
        crate::log!(
            "no {}; the clock is not caught up after a wake",
            crate::rtc::RTC_DEVICE
        );
    }
    let agent = Arc::new(agent);
    let console = Path::new(crate::identify::CONSOLE);
    let mode = crate::identify::Mode::Vm { iface };
    if let Err(e) = crate::identify::start(agent.clone(), console, mode) {
        crate::log!("{e}");
    }
    if let Some(script) = agent.config.init.clone().filter(|s| !s.trim().is_empty())
        && let Err(e) = crate::handlers::session::start_init(&agent, &script)
    {
        crate::log!("init session: {e}");
    }
    let names: Vec<String> = listeners
        .iter()
        .map(|(p, l)| format!("{p:?}/{}", l.kind()))
        .collect();
    crate::log!("ready ({})", names.join(", "));
    server::serve(agent, listeners).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use bhatti_proto::config::GuestUser;

    #[test]
    fn identity_switches_unless_root() {
        let mut c = GuestConfig::default();
        let id = identity(&c, "docker:x:999:lohar\nlohar:x:1000:\n");
        assert_eq!(
            id.switch_to,
            Some(crate::env::Creds {
                uid: 1000,
                gid: 1000,
                groups: vec![1000, 999]
            })
        );
        assert_eq!(id.home, "/home/lohar");
        assert_eq!(id.user.as_deref(), Some("lohar"));
        c.user = GuestUser {
            name: "root".into(),
            uid: 0,
            gid: 0,
            home: String::new(),
        };
        let id = identity(&c, "");
        assert_eq!(id.switch_to, None);
        assert_eq!(id.home, "/root");
        let root = root_identity();
        assert_eq!((root.switch_to, root.user.as_deref()), (None, Some("root")));
    }
}
