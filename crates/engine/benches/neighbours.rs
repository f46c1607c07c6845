//! Noisy neighbours and the cost of confining the VMM, with real microVMs
//! (busybox tier, 1 vCPU, 256 MiB, TCG here):
//!
//! 1. `exec true` in a guest while two other guests are idle (baseline)
//!    and while both spin a CPU hog, once with every VMM in the caller's
//!    cgroup (`BHATTI_VMM_CGROUPS=0`) and once in per-VMM cgroups
//!    ([`bhatti_engine::cgroup`]). Each configuration runs in a child
//!    process of this bench (the cgroup layout is chosen once per
//!    process). Target: p50 under hogs at most 2x idle. Also prints how
//!    much host CPU each hog VMM used.
//! 2. QEMU's seccomp filter: boot → agent ready and `exec true`, with and
//!    without `-sandbox`, interleaved in the same run.
//!
//! Run: `cargo bench -p bhatti-engine --bench neighbours [-- seccomp]`
//! (root, QEMU and `cargo xtask images`); it prints why it skips
//! otherwise. A name after `--` runs only the part it matches.
//! `BENCH_QUICK=1` for a smoke run. Everything runs in namespaces the
//! bench creates, egress `none`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use benchkit::{Summary, Target, iterations, report, target};
use bhatti_agent::{Client, ExecOptions as AgentExec};
use bhatti_engine::engine::{Engine, ExecOptions, SandboxId, SandboxSpec};
use bhatti_engine::image::{ImagePaths, Tier, config_drive, copy_rootfs};
use bhatti_engine::netns::{NetNs, unique_name};
use bhatti_engine::qemu::driver::QemuDriver;
use bhatti_engine::qemu::launch::{Accel, GuestNet, LaunchSpec, clock};
use bhatti_engine::sandbox::{EngineConfig, VmEngine};
use support::vm::{GATEWAY, GUEST_IP, NetnsConnector, TAP, default_config};
use support::{Need, skip_reason};

type BenchResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Set in the child that measures one neighbour configuration.
const CHILD_ENV: &str = "BHATTI_BENCH_NEIGHBOURS_CHILD";

/// Child runs per configuration.
const ROUNDS: usize = 2;

const HOG: &str = "setsid sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 &";

fn main() {
    if let Some(r) = skip_reason(&[Need::Root, Need::Qemu, Need::Images]) {
        println!("SKIPPED: neighbours bench: {r}");
        return;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    let res = if std::env::var_os(CHILD_ENV).is_some() {
        rt.block_on(neighbours_child())
    } else {
        // A bench-name filter, like libtest's: `-- seccomp` runs one part.
        let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
        let want = |part: &str| only.as_deref().is_none_or(|o| part.contains(o));
        let mut res = Ok(());
        if want("neighbours") {
            res = neighbours();
        }
        if res.is_ok() && want("seccomp") {
            res = rt.block_on(seccomp());
        }
        res
    };
    if let Err(e) = res {
        eprintln!("neighbours bench failed: {e}");
        std::process::exit(1);
    }
}

/// Runs the neighbour measurement in two children and reports both.
fn neighbours() -> BenchResult {
    println!("exec `true` in a guest, two other guests idle vs spinning a CPU hog");
    println!(
        "(host: {} cores; a TCG vCPU that spins takes a whole host core)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // Alternate the two configurations, so load from elsewhere on the
    // host hits both alike.
    let configs = [("no cgroups", false), ("per-VMM cgroups", true)];
    let mut raw: Vec<(Vec<Duration>, Vec<Duration>, Vec<String>)> =
        vec![Default::default(), Default::default()];
    for _ in 0..ROUNDS {
        for ((label, cgroups), acc) in configs.iter().zip(raw.iter_mut()) {
            let mut cmd = Command::new(std::env::current_exe()?);
            cmd.env(CHILD_ENV, "1");
            if !cgroups {
                cmd.env("BHATTI_VMM_CGROUPS", "0");
            }
            let out = cmd.output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                return Err(format!(
                    "{label} child failed ({}): {text}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                )
                .into());
            }
            acc.0.extend(samples(&text, "idle")?);
            acc.1.extend(samples(&text, "hogs")?);
            acc.2.extend(
                text.lines()
                    .filter(|l| l.starts_with("hog "))
                    .map(str::to_owned),
            );
        }
    }
    let mut results = Vec::new();
    for ((label, _), (idle, hogs, lines)) in configs.iter().zip(raw) {
        let idle = Summary::of(&idle).ok_or("no idle samples")?;
        let hogs = Summary::of(&hogs).ok_or("no hog samples")?;
        println!("{label}:");
        report("  exec true, neighbours idle", &idle, None);
        report("  exec true, two CPU hogs", &hogs, Some(&idle));
        for line in lines {
            println!("  {line}");
        }
        results.push((label, idle, hogs));
    }
    for (label, idle, hogs) in &results {
        target(
            &format!("p50 under hogs / idle, {label}"),
            hogs.ratio(idle),
            Target::AtMost,
            2.0,
        );
    }
    if let [(_, _, without), (_, _, with)] = &results[..] {
        println!(
            "  p50 under hogs, cgroups vs none: {:.2}x; p99 {:.2?} vs {:.2?}",
            with.ratio(without),
            with.p99,
            without.p99
        );
    }
    Ok(())
}

/// Parses the child's `samples <name> <µs> <µs> ...` line.
fn samples(text: &str, name: &str) -> BenchResult<Vec<Duration>> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("samples {name} ")))
        .ok_or_else(|| format!("no {name} samples in: {text}"))?;
    Ok(line
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .map(Duration::from_micros)
        .collect())
}

/// One configuration: three guests, the neighbour measured idle, then
/// with hogs in the other two.
async fn neighbours_child() -> BenchResult {
    let n = iterations(40, 10);
    let ns = NetNs::create(&unique_name("btnb"))?;
    let dir = tempfile::tempdir()?;
    let engine = VmEngine::start(
        QemuDriver::default(),
        EngineConfig {
            // Three guests on a loaded host boot slowly.
            agent_ready_timeout: Duration::from_secs(120),
            ..EngineConfig::new(dir.path(), ImagePaths::from_env(), ns.name())
        },
    )
    .await?;
    let spec = SandboxSpec {
        cpus: 1,
        memory_mb: 256,
        image: Tier::Busybox.into(),
        ..SandboxSpec::default()
    };
    let ids: Vec<SandboxId> = ["nb", "hog1", "hog2"]
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    for id in &ids {
        engine.create(id.clone(), spec.clone()).await?;
    }
    let res = async {
        let nb = &ids[0];
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = exec_samples(&engine, nb, n).await?;
        let mut hog_pids = Vec::new();
        for id in &ids[1..] {
            let r = engine.exec(id, ExecOptions::new(["sh", "-c", HOG])).await?;
            if r.exit_code != 0 {
                return Err(format!("hog did not start in {id}").into());
            }
            hog_pids.push(engine.vmm_pid(id).await?.ok_or("no hog pid")?);
        }
        let before: Vec<u64> = hog_pids.iter().map(|p| cpu_ticks(*p)).collect();
        let t = Instant::now();
        // Let the hogs reach their steady state.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let hogs = exec_samples(&engine, nb, n).await?;
        let wall = t.elapsed().as_secs_f64();
        for (pid, b) in hog_pids.iter().zip(before) {
            let used = (cpu_ticks(*pid) - b) as f64 / 100.0;
            println!("hog VMM {pid}: {:.2} host cores", used / wall);
        }
        println!("samples idle {}", micros(&idle));
        println!("samples hogs {}", micros(&hogs));
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    }
    .await;
    for id in &ids {
        engine.destroy(id).await?;
    }
    res
}

async fn exec_samples(
    engine: &VmEngine<QemuDriver>,
    id: &SandboxId,
    n: usize,
) -> BenchResult<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        let r = engine.exec(id, ExecOptions::new(["true"])).await?;
        if r.exit_code != 0 {
            return Err("exec true failed".into());
        }
        if i >= n / 10 {
            out.push(t.elapsed());
        }
        // Spread the samples over the hogs' scheduling periods.
        tokio::time::sleep(Duration::from_millis(23)).await;
    }
    Ok(out)
}

fn micros(v: &[Duration]) -> String {
    v.iter()
        .map(|d| d.as_micros().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// utime + stime of `pid`, in clock ticks (100 per second).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat; 12 and 13 here.
    get(11) + get(12)
}

/// Boot → agent ready and `exec true` with and without QEMU's seccomp
/// filter, interleaved.
async fn seccomp() -> BenchResult {
    let boots = iterations(8, 2);
    let execs = iterations(40, 10);
    let (mut boot_on, mut boot_off, mut exec_on, mut exec_off) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..boots {
        for seccomp in [true, false] {
            let (boot, mut ex) = seccomp_run(seccomp, execs).await?;
            if seccomp {
                boot_on.push(boot);
                exec_on.append(&mut ex);
            } else {
                boot_off.push(boot);
                exec_off.append(&mut ex);
            }
        }
    }
    println!("QEMU seccomp filter (-sandbox), {boots} boots each, interleaved:");
    let s = |v: &[Duration]| Summary::of(v).ok_or("no samples");
    report("  boot -> agent ready, no seccomp", &s(&boot_off)?, None);
    report(
        "  boot -> agent ready, seccomp",
        &s(&boot_on)?,
        Some(&s(&boot_off)?),
    );
    report("  exec true, no seccomp", &s(&exec_off)?, None);
    report("  exec true, seccomp", &s(&exec_on)?, Some(&s(&exec_off)?));
    Ok(())
}

/// One VM started from a bare [`LaunchSpec`] (no engine, no cgroup).
async fn seccomp_run(seccomp: bool, execs: usize) -> BenchResult<(Duration, Vec<Duration>)> {
    let paths = ImagePaths::from_env();
    let dir = tempfile::tempdir()?;
    let rootfs = dir.path().join("rootfs.ext4");
    copy_rootfs(&paths.rootfs(Tier::Busybox)?, &rootfs)?;
    let ns = NetNs::create(&unique_name("btsc"))?;
    ns.add_tap(TAP, Some(&format!("{GATEWAY}/24")))?;
    let config = default_config();
    let drive = dir.path().join("config.ext4");
    config_drive::build(&config, &drive)?;
    let mut spec = LaunchSpec::new(paths.kernel()?, rootfs, dir.path());
    spec.accel = Accel::auto();
    spec.guest_tsc_khz = clock::host_tsc_khz();
    spec.config_drive = Some(drive);
    spec.die_with_parent = true;
    spec.cgroup = None;
    spec.seccomp = seccomp;
    spec.net = Some(GuestNet {
        tap: TAP.into(),
        // Locally administered, the guest address (172.31.0.2) in hex.
        mac: "06:00:ac:1f:00:02".into(),
        guest_ip: GUEST_IP,
        gateway: GATEWAY,
        prefix_len: 24,
    });
    spec.netns = Some(ns.name().to_owned());
    let t = Instant::now();
    let vm = spec.spawn()?;
    let client = Client::new(NetnsConnector {
        ns: ns.name().to_owned(),
        ip: GUEST_IP,
    })
    .with_token(&config.token);
    if let Err(e) = client.wait_ready(Duration::from_secs(120)).await {
        return Err(format!("{e}; console:\n{}", vm.console_tail(20)).into());
    }
    let boot = t.elapsed();
    let mut ex = Vec::with_capacity(execs);
    for _ in 0..execs {
        let t = Instant::now();
        let r = client.exec(AgentExec::new(["true"])).await?;
        if r.exit_code != 0 {
            return Err("exec true failed".into());
        }
        ex.push(t.elapsed());
    }
    Ok((boot, ex))
}
