//! Engine lifecycle costs with real microVMs (TCG here), each step beside
//! a baseline measured in the same run:
//!
//! | step                      | baseline                                        |
//! |---------------------------|-------------------------------------------------|
//! | create → agent ready      | bare QEMU spawn → agent ready (files pre-made)  |
//! | exec `true`               | the same exec straight through the agent client |
//! | 10 concurrent execs       | the same through the agent client               |
//! | warm wake + exec          | exec on a hot sandbox                           |
//! | cold wake + exec          | driver restore + agent exec, no engine          |
//! | 1 KiB write + read        | the same through the agent client               |
//! | truncated read (10k lines)| full read of the same file                      |
//!
//! plus stop time and snapshot size, destroy time, and the VMM's resident
//! memory when hot, warm and cold.
//!
//! Run: `cargo bench -p bhatti-engine --bench lifecycle` (root, QEMU and
//! `cargo xtask images`); it prints why it skips otherwise. Everything runs
//! in a namespace the bench creates, egress `none`.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use benchkit::Summary;
use bhatti_agent::{Client, ExecOptions, ReadOptions};
use bhatti_engine::agent_link::{NetnsConnector, SocketFactory};
use bhatti_engine::driver::{Driver, VmConfig, VmNet};
use bhatti_engine::engine::{Engine, SandboxId, SandboxSpec};
use bhatti_engine::image::{ImagePaths, Tier, config_drive, copy_rootfs};
use bhatti_engine::netns::{NetNs, unique_name};
use bhatti_engine::network::{GuestPort, guest_mac};
use bhatti_engine::qemu::driver::QemuDriver;
use bhatti_engine::qemu::launch::DEFAULT_INIT;
use bhatti_engine::sandbox::{EngineConfig, VmEngine};
use bhatti_proto::config::GuestConfig;

type BenchResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const CREATES: usize = 5;
const EXECS: usize = 200;
const WAKES: usize = 20;
const COLD: usize = 12;

/// Prints one step and its baseline, with the step's p50 ratio to it.
fn report(step: &str, s: Vec<Duration>, base: &str, b: Vec<Duration>) {
    let (Some(s), Some(b)) = (Summary::of(&s), Summary::of(&b)) else {
        return;
    };
    benchkit::report(base, &b, None);
    benchkit::report(step, &s, Some(&b));
}

/// p50 and p95 of `v` (zero when empty).
fn p50_p95(v: &[Duration]) -> (Duration, Duration) {
    Summary::of(v).map_or_else(Default::default, |s| (s.p50, s.p95))
}

fn rss_kib(pid: Option<u32>) -> u64 {
    let Some(pid) = pid else { return 0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn spec() -> SandboxSpec {
    SandboxSpec {
        cpus: 1,
        memory_mb: 256,
        image: Tier::Busybox.into(),
        ..SandboxSpec::default()
    }
}

/// A VM started by the driver alone, with files made beforehand: the
/// baseline for create, exec and restore.
struct BareVm {
    driver: QemuDriver,
    config: VmConfig,
    vm: Option<<QemuDriver as Driver>::Vm>,
    agent: Client,
}

/// The baseline VM's port: a tenant of its own.
fn bare_port(engine: &VmEngine<QemuDriver>, ip: Ipv4Addr) -> GuestPort {
    GuestPort {
        tap: engine.network().tap_name("bare"),
        ip,
        tenant: "bench-bare".into(),
        peers: false,
    }
}

async fn bare_vm(
    engine: &VmEngine<QemuDriver>,
    sockets: &SocketFactory,
    dir: &Path,
    ip: Ipv4Addr,
) -> BenchResult<(BareVm, Duration)> {
    let images = ImagePaths::from_env();
    let run_dir = dir.join("bare");
    std::fs::create_dir_all(&run_dir)?;
    let rootfs = run_dir.join("rootfs.ext4");
    copy_rootfs(&images.rootfs(Tier::Busybox)?, &rootfs)?;
    let token = "0123456789abcdef0123456789abcdef";
    let guest = GuestConfig {
        sandbox_id: "bare".into(),
        hostname: "bare".into(),
        token: token.into(),
        ..GuestConfig::default()
    };
    let cfg_drive = run_dir.join("config.ext4");
    config_drive::build(&guest, &cfg_drive)?;
    let port = bare_port(engine, ip);
    let tap = port.tap.clone();
    engine.network().attach(&port)?;
    engine.network().mark_ip_in_use(ip)?;
    let config = VmConfig {
        vcpus: 1,
        memory_mib: 256,
        kernel: images.kernel()?,
        rootfs,
        config_drive: Some(cfg_drive),
        volumes: Vec::new(),
        net: Some(VmNet {
            tap,
            mac: guest_mac(ip),
            guest_ip: ip,
            gateway: engine.network().gateway(),
            prefix_len: 24,
        }),
        init: DEFAULT_INIT.into(),
        run_dir,
        netns: Some(engine.network().netns().to_owned()),
    };
    let driver = QemuDriver::default();
    let agent = Client::new(NetnsConnector::new(ip, sockets.clone())).with_token(token);
    let t = Instant::now();
    let vm = driver.spawn(&config).await?;
    // Same polling as the engine's create: every 10 ms, 250 ms per attempt.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(250), agent.activity()).await
        {
            break;
        }
        if Instant::now() >= deadline {
            return Err("bare VM agent not ready".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = t.elapsed();
    Ok((
        BareVm {
            driver,
            config,
            vm: Some(vm),
            agent,
        },
        took,
    ))
}

/// The engine's steady-state sandbox and the bare VM it is compared with.
struct Pair {
    engine: Arc<VmEngine<QemuDriver>>,
    id: SandboxId,
    bare: BareVm,
}

async fn bench() -> BenchResult {
    let ns = NetNs::create(&unique_name("btbench"))?;
    let dir = tempfile::tempdir()?;
    let engine = Arc::new(
        VmEngine::start(
            QemuDriver::default(),
            EngineConfig::new(dir.path(), ImagePaths::from_env(), ns.name()),
        )
        .await?,
    );
    let sockets = SocketFactory::start(ns.name())?;
    creates(&engine, &sockets, dir.path()).await?;

    // One engine sandbox and one bare VM for the rest.
    let id: SandboxId = "main".parse()?;
    engine.create(id.clone(), spec()).await?;
    let bare_dir = dir.path().join("bare-main");
    let ip = Ipv4Addr::new(10, 213, 0, 201);
    let (bare, _) = bare_vm(&engine, &sockets, &bare_dir, ip).await?;
    let mut p = Pair { engine, id, bare };
    execs(&p).await?;
    guest_fork_exec(&p).await?;
    concurrent_execs(&p).await?;
    wakes(&mut p).await?;
    memory(&p).await?;
    cold(&mut p).await?;
    files(&p).await?;
    truncated_read(&p).await?;

    if let Some(vm) = p.bare.vm.take() {
        p.bare.driver.kill(vm).await?;
    }
    p.engine.destroy(&p.id).await?;
    Ok(())
}

/// Create -> ready and destroy, engine vs bare driver spawn (files
/// pre-made).
async fn creates(
    engine: &Arc<VmEngine<QemuDriver>>,
    sockets: &SocketFactory,
    dir: &Path,
) -> BenchResult {
    let (mut create, mut destroy, mut bare_create) = (Vec::new(), Vec::new(), Vec::new());
    let ip = Ipv4Addr::new(10, 213, 0, 200);
    for i in 0..CREATES {
        let id: SandboxId = format!("c{i}").parse()?;
        let t = Instant::now();
        engine.create(id.clone(), spec()).await?;
        create.push(t.elapsed());
        let t = Instant::now();
        engine.destroy(&id).await?;
        destroy.push(t.elapsed());

        let (mut bare, took) = bare_vm(engine, sockets, &dir.join(format!("bare{i}")), ip).await?;
        bare_create.push(took);
        if let Some(vm) = bare.vm.take() {
            bare.driver.kill(vm).await?;
        }
        engine.network().release_ip(ip)?;
        engine.network().detach(&bare_port(engine, ip))?;
    }
    report(
        "create -> agent ready",
        create,
        "bare driver spawn -> agent ready",
        bare_create,
    );
    let (p50, p95) = p50_p95(&destroy);
    println!("destroy: p50 {p50:.2?} p95 {p95:.2?}");
    Ok(())
}

async fn execs(p: &Pair) -> BenchResult {
    let (mut e, mut b) = (Vec::new(), Vec::new());
    for _ in 0..EXECS {
        let t = Instant::now();
        p.engine.exec(&p.id, ExecOptions::new(["true"])).await?;
        e.push(t.elapsed());
        let t = Instant::now();
        p.bare.agent.exec(ExecOptions::new(["true"])).await?;
        b.push(t.elapsed());
    }
    report("exec true (engine)", e, "exec true (agent client)", b);
    Ok(())
}

/// The guest's own fork/exec of /bin/true, timed inside the guest.
async fn guest_fork_exec(p: &Pair) -> BenchResult {
    let loop_cmd = "i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done";
    let cmd = format!("time -p sh -c '{loop_cmd}'");
    let r = p
        .engine
        .exec(&p.id, ExecOptions::new(["sh", "-c", &cmd]))
        .await?;
    let text = String::from_utf8_lossy(&r.stderr).into_owned();
    let real: Option<f64> = text
        .lines()
        .find_map(|l| l.strip_prefix("real "))
        .and_then(|v| v.trim().parse().ok());
    match real {
        Some(secs) => println!(
            "guest fork/exec of /bin/true, timed in the guest: {:.2?} each (200 in {secs:.2} s)",
            Duration::from_secs_f64(secs / 200.0)
        ),
        None => println!("guest fork/exec timing unavailable: {text:?}"),
    }
    Ok(())
}

async fn concurrent_execs(p: &Pair) -> BenchResult {
    let (mut e, mut b) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let t = Instant::now();
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (engine, id) = (p.engine.clone(), p.id.clone());
                tokio::spawn(async move { engine.exec(&id, ExecOptions::new(["true"])).await })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        e.push(t.elapsed());
        let t = Instant::now();
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let agent = p.bare.agent.clone();
                tokio::spawn(async move { agent.exec(ExecOptions::new(["true"])).await })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        b.push(t.elapsed());
    }
    report(
        "10 concurrent execs (engine)",
        e,
        "10 concurrent execs (agent client)",
        b,
    );
    Ok(())
}

/// Warm wake + exec vs exec on a hot sandbox; then resume alone (warm ->
/// hot), engine vs the driver on the bare VM.
async fn wakes(p: &mut Pair) -> BenchResult {
    let (engine, id) = (&p.engine, &p.id);
    let (mut e, mut b) = (Vec::new(), Vec::new());
    for _ in 0..WAKES {
        engine.pause(id).await?;
        let t = Instant::now();
        engine.exec(id, ExecOptions::new(["true"])).await?;
        e.push(t.elapsed());
        let t = Instant::now();
        engine.exec(id, ExecOptions::new(["true"])).await?;
        b.push(t.elapsed());
    }
    report("warm wake + exec true", e, "exec true on a hot sandbox", b);

    let (mut e, mut b) = (Vec::new(), Vec::new());
    for _ in 0..EXECS {
        engine.pause(id).await?;
        let t = Instant::now();
        engine.resume(id).await?;
        e.push(t.elapsed());
        let vm = p.bare.vm.as_mut().ok_or("bare VM missing")?;
        p.bare.driver.pause(vm).await?;
        let t = Instant::now();
        p.bare.driver.resume(vm).await?;
        b.push(t.elapsed());
    }
    report(
        "resume (engine, warm -> hot)",
        e,
        "resume (driver: QMP cont)",
        b,
    );
    Ok(())
}

/// The VMM's resident memory hot, warm and cold (leaves the sandbox cold).
async fn memory(p: &Pair) -> BenchResult {
    let (engine, id) = (&p.engine, &p.id);
    let hot = rss_kib(engine.vmm_pid(id).await?);
    engine.pause(id).await?;
    let warm = rss_kib(engine.vmm_pid(id).await?);
    engine.freeze(id).await?;
    let cold_pid = engine.vmm_pid(id).await?;
    println!(
        "VMM resident memory (256 MiB guest): hot {hot} KiB, warm {warm} KiB, cold {} (pid {cold_pid:?})",
        rss_kib(cold_pid)
    );
    Ok(())
}

/// Cold wake + exec vs the driver's restore + exec on the bare VM, and
/// stop time and snapshot size.
async fn cold(p: &mut Pair) -> BenchResult {
    let (engine, id, bare) = (&p.engine, &p.id, &mut p.bare);
    let (mut e, mut b) = (Vec::new(), Vec::new());
    let (mut stop_t, mut snap_size) = (Vec::new(), 0);
    for _ in 0..COLD {
        let t = Instant::now();
        engine.exec(id, ExecOptions::new(["true"])).await?;
        e.push(t.elapsed());
        let t = Instant::now();
        engine.stop(id).await?;
        stop_t.push(t.elapsed());
        engine.start(id).await?;
        engine.pause(id).await?;
        engine.freeze(id).await?;

        let vm = bare.vm.take().ok_or("bare VM missing")?;
        let snap = bare.driver.snapshot(vm, &bare.config).await?;
        snap_size = snap.size_bytes;
        let t = Instant::now();
        bare.vm = Some(bare.driver.restore(&bare.config, &snap).await?);
        bare.agent.exec(ExecOptions::new(["true"])).await?;
        b.push(t.elapsed());
    }
    report(
        "cold wake + exec true (engine)",
        e,
        "driver restore + exec true (no engine)",
        b,
    );
    println!(
        "stop (snapshot to disk): p50 {:.2?}; snapshot size {} KiB",
        p50_p95(&stop_t).0,
        snap_size / 1024
    );
    Ok(())
}

/// Reads `path` in the engine's sandbox to the end.
async fn read_all(p: &Pair, path: &str, opts: ReadOptions) -> BenchResult {
    p.engine
        .read_file(&p.id, path, opts)
        .await?
        .read_all()
        .await?;
    Ok(())
}

/// 1 KiB write + read, engine vs agent client (wakes the sandbox first).
async fn files(p: &Pair) -> BenchResult {
    p.engine.ensure_hot(&p.id).await?;
    let data = vec![b'x'; 1024];
    let (mut e, mut b) = (Vec::new(), Vec::new());
    for _ in 0..EXECS / 2 {
        let t = Instant::now();
        let body = Box::new(std::io::Cursor::new(data.clone()));
        p.engine
            .write_file(&p.id, "/tmp/k", 0o644, 1024, body)
            .await?;
        read_all(p, "/tmp/k", ReadOptions::default()).await?;
        e.push(t.elapsed());
        let t = Instant::now();
        let agent = &p.bare.agent;
        agent
            .write_file("/tmp/k", 0o644, 1024, std::io::Cursor::new(data.clone()))
            .await?;
        agent
            .read_file("/tmp/k", ReadOptions::default())
            .await?
            .read_all()
            .await?;
        b.push(t.elapsed());
    }
    report(
        "1 KiB write + read (engine)",
        e,
        "1 KiB write + read (agent client)",
        b,
    );
    Ok(())
}

/// The first 100 lines of a 10k-line file vs the whole file.
async fn truncated_read(p: &Pair) -> BenchResult {
    let make = ExecOptions::new(["sh", "-c", "seq 1 10000 > /tmp/lines"]);
    p.engine.exec(&p.id, make).await?;
    let (mut e, mut b) = (Vec::new(), Vec::new());
    for _ in 0..EXECS / 4 {
        let t = Instant::now();
        let opts = ReadOptions {
            limit: Some(100),
            ..ReadOptions::default()
        };
        read_all(p, "/tmp/lines", opts).await?;
        e.push(t.elapsed());
        let t = Instant::now();
        read_all(p, "/tmp/lines", ReadOptions::default()).await?;
        b.push(t.elapsed());
    }
    report(
        "read 10k-line file, first 100 lines",
        e,
        "read 10k-line file, whole",
        b,
    );
    Ok(())
}

fn main() -> BenchResult {
    if let Some(reason) = bhatti_testkit::skip_reason(bhatti_testkit::VM) {
        println!("skipping lifecycle bench: {reason}");
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(bench())
}
