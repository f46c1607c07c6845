//! [`TestVm`]: one real microVM (QEMU, busybox tier) in its own temp dir
//! and its own network namespace, with a TAP inside that namespace and the
//! guest at [`GUEST_IP`]. The host reaches lohar with [`NetnsConnector`]
//! (TCP opened from a thread that joined the namespace). Dropping the VM
//! kills QEMU, then deletes the namespace, then the temp dir.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use bhatti_agent::connector::{BoxStream, ConnectFuture, Connector};
use bhatti_agent::{Client, ExecOptions, ExecResult};
use bhatti_engine::image::{self, ImagePaths, Tier};
use bhatti_engine::netns::{NetNs, unique_name};
use bhatti_engine::qemu::launch::{
    Accel, BootError, Drive, GuestNet, LaunchSpec, VmProcess, clock,
};
use bhatti_proto::CONTROL_PORT;
use bhatti_proto::config::GuestConfig;
use libtest_mimic::Failed;

pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 2);
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 1);
pub const TAP: &str = "tap0";

/// How long a boot may take before the test fails (TCG on a busy host).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// What to boot.
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// Written to the config drive; `None` boots without one.
    pub config: Option<GuestConfig>,
    /// Extra block devices (volumes) after the config drive.
    pub volumes: Vec<Drive>,
    /// `init=`; lohar when `None`.
    pub init: Option<String>,
    pub extra_cmdline: Vec<String>,
    /// Rewrites the rootfs copy before boot (e.g. to corrupt it).
    pub damage_rootfs: Option<fn(&std::path::Path) -> io::Result<()>>,
    pub quiet: bool,
    /// Which rootfs tier to boot.
    pub tier: Tier,
    /// `LaunchSpec::tcg_fast_timer` (off: the old, slower TCG boot).
    pub tcg_fast_timer: bool,
}

impl Default for VmOptions {
    fn default() -> Self {
        Self {
            config: Some(default_config()),
            volumes: Vec::new(),
            init: None,
            extra_cmdline: Vec::new(),
            damage_rootfs: None,
            quiet: true,
            tier: Tier::Busybox,
            tcg_fast_timer: true,
        }
    }
}

/// A config with a token, hostname and env, for uid 1000.
/// How long a booted guest's agent may take to answer.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub fn default_config() -> GuestConfig {
    GuestConfig {
        sandbox_id: "vmtest".into(),
        hostname: "vmtest-box".into(),
        token: "7e57".repeat(16),
        dns: vec![GATEWAY.to_string()],
        ..GuestConfig::default()
    }
}

/// A running test VM. Field order is drop order: QEMU first.
#[derive(Debug)]
pub struct TestVm {
    pub vm: VmProcess,
    pub ns: NetNs,
    pub dir: tempfile::TempDir,
    pub token: String,
    /// When QEMU was started (after all host-side preparation).
    pub spawned_at: std::time::Instant,
}

impl TestVm {
    /// Copies the busybox rootfs, builds the config drive, creates the
    /// namespace and TAP, and starts QEMU (without waiting).
    pub fn start(opts: VmOptions) -> Result<Self, Failed> {
        let paths = ImagePaths::from_env();
        let kernel = paths.kernel()?;
        let base = paths.rootfs(opts.tier)?;
        let dir = tempfile::Builder::new().prefix("bhatti-vm-").tempdir()?;
        let rootfs = dir.path().join("rootfs.ext4");
        image::copy_rootfs(&base, &rootfs)?;
        if let Some(damage) = opts.damage_rootfs {
            damage(&rootfs)?;
        }
        let ns = NetNs::create(&unique_name("bt-vm"))?;
        ns.add_tap(TAP, Some(&format!("{GATEWAY}/24")))?;
        // Re-ask ARP every 50 ms instead of every second, so a connect
        // attempt made before the guest's NIC is up does not add up to a
        // second to the measured readiness.
        ns.sysctl(&format!("net.ipv4.neigh.{TAP}.retrans_time_ms"), "50")?;

        let mut spec = LaunchSpec::new(kernel, rootfs, dir.path());
        spec.accel = Accel::auto();
        spec.guest_tsc_khz = clock::host_tsc_khz();
        let token = opts
            .config
            .as_ref()
            .map(|c| c.token.clone())
            .unwrap_or_default();
        if let Some(cfg) = &opts.config {
            let drive = dir.path().join("config.ext4");
            image::config_drive::build(cfg, &drive)?;
            spec.config_drive = Some(drive);
        }
        spec.volumes = opts.volumes;
        if let Some(init) = opts.init {
            spec.init = init;
        }
        spec.extra_cmdline = opts.extra_cmdline;
        spec.quiet = opts.quiet;
        spec.tcg_fast_timer = opts.tcg_fast_timer;
        spec.die_with_parent = true;
        spec.net = Some(GuestNet {
            tap: TAP.into(),
            mac: bhatti_engine::network::mac_string(bhatti_engine::network::guest_mac(GUEST_IP)),
            guest_ip: GUEST_IP,
            gateway: GATEWAY,
            prefix_len: 24,
        });
        spec.netns = Some(ns.name().to_owned());
        let spawned_at = std::time::Instant::now();
        let vm = spec.spawn()?;
        Ok(Self {
            vm,
            ns,
            dir,
            token,
            spawned_at,
        })
    }

    /// Boots and waits until lohar accepts TCP connections on its control
    /// port inside the namespace.
    pub fn boot(opts: VmOptions) -> Result<Self, Failed> {
        let mut vm = Self::start(opts)?;
        vm.wait_listening(BOOT_TIMEOUT)?;
        Ok(vm)
    }

    /// Waits until the agent's control port accepts a connection.
    pub fn wait_listening(&mut self, timeout: Duration) -> Result<(), BootError> {
        let ns = NetNs::open(self.ns.name()).ok();
        let addr = SocketAddr::from((GUEST_IP, CONTROL_PORT));
        self.vm.wait_until(timeout, Duration::from_millis(20), || {
            ns.as_ref()
                .is_some_and(|ns| ns.connect_tcp(addr, Duration::from_millis(200)).is_ok())
        })
    }

    /// Boots with guest config `config` and otherwise default options.
    pub fn boot_with(config: GuestConfig) -> Result<Self, Failed> {
        Self::boot(VmOptions {
            config: Some(config),
            ..VmOptions::default()
        })
    }

    /// A client with the VM's token, once the agent answers.
    pub async fn ready_client(&self) -> Result<Client, Failed> {
        let c = self.client();
        c.wait_ready(READY_TIMEOUT).await?;
        Ok(c)
    }

    /// A client with the VM's token.
    pub fn client(&self) -> Client {
        self.client_with_token(&self.token.clone())
    }

    /// A client with `token` (empty: none).
    pub fn client_with_token(&self, token: &str) -> Client {
        let c = Client::new(NetnsConnector {
            ns: self.ns.name().to_owned(),
            ip: GUEST_IP,
        });
        if token.is_empty() {
            c
        } else {
            c.with_token(token)
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Runs `argv` through the agent and fails the trial unless it exits 0.
pub async fn run_ok(client: &Client, argv: &[&str]) -> Result<String, Failed> {
    run_ok_as(client, None, argv).await
}

/// [`run_ok`] as guest `user` (`None`: the default user, root).
pub async fn run_ok_as(
    client: &Client,
    user: Option<&str>,
    argv: &[&str],
) -> Result<String, Failed> {
    let mut opts = ExecOptions::new(argv.iter().copied()).timeout(Duration::from_secs(30));
    opts.user = user.map(str::to_owned);
    let r: ExecResult = client.exec(opts).await?;
    if r.exit_code != 0 {
        return Err(format!(
            "{argv:?} exited {}: stdout {:?} stderr {:?}",
            r.exit_code,
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&r.stdout).into_owned())
}

/// A tokio runtime for one trial.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failed> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Reaches lohar over TCP from inside a named network namespace.
#[derive(Debug, Clone)]
pub struct NetnsConnector {
    pub ns: String,
    pub ip: Ipv4Addr,
}

impl Connector for NetnsConnector {
    fn connect(&self, port: u16) -> ConnectFuture<'_> {
        let ns = self.ns.clone();
        let addr = SocketAddr::from((self.ip, port));
        Box::pin(async move {
            let std_stream = tokio::task::spawn_blocking(move || {
                NetNs::open(&ns)
                    .and_then(|ns| ns.connect_tcp(addr, Duration::from_secs(5)))
                    .map_err(io::Error::other)
            })
            .await
            .map_err(io::Error::other)??;
            std_stream.set_nonblocking(true)?;
            let s = tokio::net::TcpStream::from_std(std_stream)?;
            Ok(Box::new(s) as BoxStream)
        })
    }
}
