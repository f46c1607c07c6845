//! Two ways to snapshot a running microVM to disk, measured side by side
//! (issue "snapshots, fork and restore-based create": measure first):
//!
//! - **full**: anonymous guest RAM; stop + migrate everything to a file
//!   (what the engine's stop and freeze do today); restore with
//!   `-incoming` from that file.
//! - **shared**: guest RAM in a file on disk mapped shared
//!   (`memory-backend-file`, `share=on`); stop + migrate with
//!   `x-ignore-shared`, which writes only device state; restore maps the
//!   same RAM file (`-incoming defer`, the capability, `migrate-incoming`).
//! - **tmpfs**: the same with the RAM file in `/dev/shm` while the VM
//!   runs (no writeback of guest memory to disk); the snapshot copies it
//!   to disk and removes it (RAM freed), the restore copies it back.
//!
//! Also measured: pages the host writes back to disk while a guest keeps
//! rewriting 32 MiB of its memory for 20 s, for each path (a RAM file on
//! disk is written back by the host's flusher as the guest dirties it).
//!
//! Each round boots one VM per path (busybox, 256 MiB), puts 64 MiB of
//! random data in its tmpfs, snapshots it, restores it, and checks the
//! data's checksum after the restore (a path that loses memory fails the
//! bench). Also timed: copying the 256 MiB RAM file, which is what
//! freezing a shared snapshot for children to map privately would cost on
//! a file system without reflinks (this host's ext4).
//!
//! Run: `cargo bench -p bhatti-engine --bench snapshot_paths`
//! (`BHATTI_BENCH_ROUNDS=N`, default 5; `BHATTI_BENCH_WRITEBACK=1` adds
//! the writeback runs, about three minutes). Root, QEMU and the images are
//! needed; it prints why it skips otherwise. Everything runs in a network
//! namespace the bench creates, egress `none`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use benchkit::Summary;
use bhatti_agent::{Client, ExecOptions};
use bhatti_engine::agent_link::{NetnsConnector, SocketFactory};
use bhatti_engine::image::{ImagePaths, Tier, config_drive, copy_rootfs};
use bhatti_engine::netns::{NetNs, unique_name};
use bhatti_engine::network::{GuestPort, guest_mac};
use bhatti_engine::qemu::driver::QemuDriver;
use bhatti_engine::qemu::launch::{GuestNet, LaunchSpec, VmProcess};
use bhatti_engine::qemu::qmp::{QmpClient, incoming_uri};
use bhatti_engine::sandbox::{EngineConfig, VmEngine};
use bhatti_proto::config::GuestConfig;

type BenchResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Where the tmpfs path keeps guest RAM (a temporary directory, removed
/// however the bench ends).
const SHM: &str = "/dev/shm";
const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const FILL: &str = "dd if=/dev/urandom of=/dev/shm/fill bs=1M count=64 2>/dev/null; \
                    md5sum /dev/shm/fill";
const SUM: &str = "md5sum /dev/shm/fill";

/// How a path keeps guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Full,
    Shared,
    Tmpfs,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Shared => "shared",
            Mode::Tmpfs => "tmpfs",
        }
    }
}

/// One VM of one path: its launch spec, process and QMP session.
struct Vm {
    spec: LaunchSpec,
    process: VmProcess,
    qmp: QmpClient,
}

/// What one round of one path measured.
#[derive(Default)]
struct Round {
    snapshot: Duration,
    snapshot_bytes: u64,
    restore_to_exec: Duration,
}

async fn start(spec: &LaunchSpec) -> BenchResult<Vm> {
    let process = spec.spawn()?;
    let sock = spec.qmp_socket.clone().ok_or("no QMP socket")?;
    let qmp = QmpClient::connect_retry(&sock, Duration::from_secs(30)).await?;
    Ok(Vm {
        spec: spec.clone(),
        process,
        qmp,
    })
}

async fn ready(agent: &Client) -> BenchResult {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(250), agent.activity()).await
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err("agent not ready".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn sh(agent: &Client, script: &str) -> BenchResult<String> {
    let r = agent.exec(ExecOptions::new(["sh", "-c", script])).await?;
    Ok(String::from_utf8_lossy(&r.stdout).trim().to_owned())
}

/// The launch spec of a fresh VM of one path in `dir`.
fn spec_for(
    dir: &Path,
    shm: &Path,
    ns: &str,
    net: GuestNet,
    mode: Mode,
) -> BenchResult<LaunchSpec> {
    let images = ImagePaths::from_env();
    std::fs::create_dir_all(dir)?;
    let rootfs = dir.join("rootfs.ext4");
    copy_rootfs(&images.rootfs(Tier::Busybox)?, &rootfs)?;
    let guest = GuestConfig {
        sandbox_id: "snap".into(),
        hostname: "snap".into(),
        token: TOKEN.into(),
        ..GuestConfig::default()
    };
    let cfg = dir.join("config.ext4");
    config_drive::build(&guest, &cfg)?;
    let mut spec = LaunchSpec::new(images.kernel()?, rootfs, dir);
    spec.config_drive = Some(cfg);
    spec.net = Some(net);
    spec.netns = Some(ns.to_owned());
    spec.die_with_parent = true;
    spec.guest_tsc_khz = QemuDriver::default().guest_tsc_khz;
    spec.memory_file = match mode {
        Mode::Full => None,
        Mode::Shared => Some(dir.join("ram")),
        Mode::Tmpfs => Some(shm.join("ram")),
    };
    Ok(spec)
}

/// Snapshot `vm` to `snap` (stop, migrate, quit), then restore it and
/// time until `true` runs in the guest; checks `sum` after the restore.
async fn round(vm: Vm, snap: &Path, agent: &Client, sum: &str) -> BenchResult<(Round, Vm)> {
    let Vm {
        spec,
        mut process,
        mut qmp,
    } = vm;
    let shared = spec.memory_file.is_some();
    let t = Instant::now();
    qmp.stop().await?;
    if shared {
        qmp.set_migration_capability("x-ignore-shared", true)
            .await?;
    }
    let _ = std::fs::remove_file(snap);
    qmp.migrate_to_file(snap, Duration::from_secs(120)).await?;
    let on_disk = snap.with_extension("ram");
    let tmpfs = spec.memory_file.clone().filter(|f| f.starts_with(SHM));
    if let Some(ram) = &tmpfs {
        std::fs::copy(ram, &on_disk)?;
    }
    let snapshot = t.elapsed();
    qmp.quit().await?;
    process.wait_exit(Duration::from_secs(10))?;
    drop(process);
    if let Some(ram) = &tmpfs {
        std::fs::remove_file(ram)?;
    }
    let snapshot_bytes = std::fs::metadata(snap)?.len();

    let t = Instant::now();
    if let Some(ram) = &tmpfs {
        std::fs::copy(&on_disk, ram)?;
    }
    let mut restore = spec.clone();
    let uri = incoming_uri(snap)?;
    restore.incoming = Some(if shared { "defer".into() } else { uri.clone() });
    let mut vm = start(&restore).await?;
    if shared {
        vm.qmp
            .set_migration_capability("x-ignore-shared", true)
            .await?;
        vm.qmp.migrate_incoming(&uri).await?;
    }
    vm.qmp.wait_incoming(Duration::from_secs(120)).await?;
    vm.qmp.cont().await?;
    agent.exec(ExecOptions::new(["true"])).await?;
    let restore_to_exec = t.elapsed();
    let after = sh(agent, SUM).await?;
    if after != sum {
        return Err(format!("memory lost across the restore: {sum:?} became {after:?}").into());
    }
    vm.spec = spec;
    Ok((
        Round {
            snapshot,
            snapshot_bytes,
            restore_to_exec,
        },
        vm,
    ))
}

struct PathRun {
    mode: Mode,
    vm: Option<Vm>,
    agent: Client,
    sum: String,
    dir: PathBuf,
    rounds: Vec<Round>,
}

async fn boot_path(
    engine: &VmEngine<QemuDriver>,
    sockets: &SocketFactory,
    root: &Path,
    shm: &Path,
    mode: Mode,
    ip: Ipv4Addr,
) -> BenchResult<PathRun> {
    let name = mode.name();
    let port = GuestPort {
        tap: engine.network().tap_name(name),
        ip,
        tenant: format!("bench-{name}"),
        peers: false,
    };
    engine.network().attach(&port)?;
    engine.network().mark_ip_in_use(ip)?;
    let net = GuestNet {
        tap: port.tap.clone(),
        mac: bhatti_engine::network::mac_string(guest_mac(ip)),
        guest_ip: ip,
        gateway: engine.network().gateway(),
        prefix_len: 24,
    };
    let dir = root.join(name);
    let spec = spec_for(&dir, shm, engine.network().netns(), net, mode)?;
    let vm = start(&spec).await?;
    let agent = Client::new(NetnsConnector::new(ip, sockets.clone())).with_token(TOKEN);
    ready(&agent).await?;
    let sum = sh(&agent, FILL).await?;
    Ok(PathRun {
        mode,
        vm: Some(vm),
        agent,
        sum,
        dir,
        rounds: Vec::new(),
    })
}

fn print(paths: &[PathRun]) {
    let series = |p: &PathRun, f: fn(&Round) -> Duration| -> Vec<Duration> {
        p.rounds.iter().map(f).collect()
    };
    type Step = (&'static str, fn(&Round) -> Duration);
    let steps: [Step; 2] = [
        ("snapshot", |r| r.snapshot),
        ("restore + first exec", |r| r.restore_to_exec),
    ];
    for (what, f) in steps {
        let Some(base) = Summary::of(&series(&paths[0], f)) else {
            continue;
        };
        benchkit::report(&format!("{what}, full (baseline)"), &base, None);
        for p in &paths[1..] {
            if let Some(s) = Summary::of(&series(p, f)) {
                benchkit::report(&format!("{what}, {}", p.mode.name()), &s, Some(&base));
            }
        }
    }
    for p in paths {
        let bytes: Vec<u64> = p.rounds.iter().map(|r| r.snapshot_bytes).collect();
        println!(
            "migration stream, {}: {} KiB (max over {} rounds)",
            p.mode.name(),
            bytes.iter().max().copied().unwrap_or(0) >> 10,
            bytes.len()
        );
    }
}

/// Pages the host wrote back (`/proc/vmstat` `nr_written`) while the
/// guest rewrote 32 MiB of its tmpfs for `secs` seconds.
async fn writeback(p: &PathRun, secs: u32) -> BenchResult<u64> {
    let written = || -> BenchResult<u64> {
        let s = std::fs::read_to_string("/proc/vmstat")?;
        s.lines()
            .find_map(|l| l.strip_prefix("nr_written "))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| "no nr_written in /proc/vmstat".into())
    };
    let before = written()?;
    let script = format!(
        "end=$(( $(date +%s) + {secs} )); while [ $(date +%s) -lt $end ]; do \
         dd if=/dev/zero of=/dev/shm/churn bs=1M count=32 2>/dev/null; done; rm -f /dev/shm/churn"
    );
    sh(&p.agent, &script).await?;
    // Let the flusher catch up (dirty pages expire after 30 s by default).
    tokio::time::sleep(Duration::from_secs(35)).await;
    Ok(written()?.saturating_sub(before))
}

/// Time to copy the shared path's RAM file (freezing it for children).
fn copy_ram(dir: &Path) -> BenchResult<Vec<Duration>> {
    let ram = dir.join("ram");
    let mut v = Vec::new();
    for _ in 0..3 {
        let to = dir.join("ram.copy");
        let t = Instant::now();
        std::fs::copy(&ram, &to)?;
        v.push(t.elapsed());
        std::fs::remove_file(&to)?;
    }
    Ok(v)
}

async fn bench(rounds: usize) -> BenchResult {
    let ns = NetNs::create(&unique_name("btsnap"))?;
    let dir = tempfile::tempdir()?;
    let engine = VmEngine::start(
        QemuDriver::default(),
        EngineConfig::new(dir.path(), ImagePaths::from_env(), ns.name()),
    )
    .await?;
    let sockets = SocketFactory::start(ns.name())?;
    let shm = tempfile::Builder::new()
        .prefix("bhatti-bench-")
        .tempdir_in(SHM)?;
    let mut paths = Vec::new();
    for (i, mode) in [Mode::Full, Mode::Shared, Mode::Tmpfs]
        .into_iter()
        .enumerate()
    {
        let ip = Ipv4Addr::new(10, 213, 0, 211 + i as u8);
        paths.push(boot_path(&engine, &sockets, dir.path(), shm.path(), mode, ip).await?);
    }
    // Interleaved, so host noise hits every path alike.
    for _ in 0..rounds {
        for p in &mut paths {
            let vm = p.vm.take().ok_or("no VM")?;
            let snap = p.dir.join("mem.snap");
            let (r, vm) = round(vm, &snap, &p.agent, &p.sum).await?;
            p.rounds.push(r);
            p.vm = Some(vm);
        }
    }
    println!(
        "snapshot paths, busybox 256 MiB guest with 64 MiB of random data in tmpfs, {rounds} rounds"
    );
    print(&paths);
    if let Some(s) = Summary::of(&copy_ram(&paths[1].dir)?) {
        benchkit::report(
            "copy of the 256 MiB RAM file (freeze for children)",
            &s,
            None,
        );
    }
    if std::env::var("BHATTI_BENCH_WRITEBACK").is_ok_and(|v| v == "1") {
        for p in &paths {
            let pages = writeback(p, 20).await?;
            println!(
                "host writeback while the guest rewrote 32 MiB for 20 s, {}: {} MiB",
                p.mode.name(),
                pages * 4 / 1024
            );
        }
    }
    for p in &mut paths {
        if let Some(mut vm) = p.vm.take() {
            let _ = vm.qmp.quit().await;
            let _ = vm.process.wait_exit(Duration::from_secs(10));
        }
    }
    Ok(())
}

fn main() -> BenchResult {
    if let Some(reason) = bhatti_testkit::skip_reason(bhatti_testkit::VM) {
        println!("skipping snapshot_paths bench: {reason}");
        return Ok(());
    }
    let rounds = std::env::var("BHATTI_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(bench(rounds))
}
