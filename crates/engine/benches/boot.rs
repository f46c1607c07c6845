//! Boot-time bench: QEMU start → lohar answering the agent protocol, against
//! a baseline of the same kernel and rootfs booting a trivial init
//! (`/bin/sh -c "echo BOOT-OK"`), measured in the same run. Also reports
//! lohar's idle RSS inside the guest. The agent boot is measured twice,
//! interleaved: with the launcher's TCG timer arguments (`noapictimer`,
//! [`bhatti_engine::qemu::launch::TCG_BOOT_ARGS`]) and without them (the
//! old command line, whose APIC timer calibration costs ~200-250 ms under
//! TCG). Needs root, QEMU and the images
//! (`cargo xtask images`); prints `SKIPPED: <reason>` otherwise.
//!
//! `cargo bench -p bhatti-engine --bench boot` (BHATTI_BENCH_BOOTS=N, default 10).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use benchkit::Summary;
use bhatti_agent::ExecOptions;
use support::vm::{TestVm, VmOptions};
use support::{Need, skip_reason};

fn main() {
    if let Some(r) = skip_reason(&[Need::Root, Need::Qemu, Need::Images]) {
        println!("SKIPPED: boot bench: {r}");
        return;
    }
    let n: usize = std::env::var("BHATTI_BENCH_BOOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
        .max(1);
    if std::env::var_os("BHATTI_BENCH_CONSOLE").is_some()
        && let Err(e) = trace_one()
    {
        eprintln!("boot trace failed: {e}");
    }
    if let Err(e) = run(n) {
        eprintln!("boot bench failed: {e}");
        std::process::exit(1);
    }
    if let Err(e) = engine_creates(n) {
        eprintln!("engine create bench failed: {e}");
        std::process::exit(1);
    }
}

fn run(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut bare = Vec::new();
    let mut agent = Vec::new();
    let mut old = Vec::new();
    let mut rss = None;
    // Interleave the two kinds so host noise hits both alike.
    for i in 0..n {
        let mut t = TestVm::start(VmOptions {
            config: None,
            init: Some("/bin/sh".into()),
            extra_cmdline: vec!["-c".into(), "\"echo BOOT-OK; reboot -f\"".into()],
            ..VmOptions::default()
        })
        .map_err(failed)?;
        t.vm.wait_for_console("BOOT-OK", Duration::from_secs(120))?;
        bare.push(t.spawned_at.elapsed());
        drop(t);

        let t = TestVm::start(VmOptions::default()).map_err(failed)?;
        let client = t.client();
        rt.block_on(poll_ready(&client))?;
        agent.push(t.spawned_at.elapsed());
        old.push(agent_ready(&rt, false)?);
        if i == 0 {
            std::thread::sleep(Duration::from_secs(2));
            let r = rt.block_on(client.exec(ExecOptions::new(["cat", "/proc/1/status"])))?;
            let status = String::from_utf8_lossy(&r.stdout).into_owned();
            rss = status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "));
        }
        eprint!(".");
    }
    eprintln!();
    println!("boot: {n} boots each, QEMU start → ready (TCG unless KVM can run guests)");
    println!("  bare kernel → trivial init : {}", stats(&bare));
    println!("  lohar agent ready (TCP)    : {}", stats(&agent));
    println!("  same, old TCG cmdline      : {}", stats(&old));
    if let (Some(a), Some(b)) = (Summary::of(&agent), Summary::of(&bare)) {
        println!("  ratio agent/bare p50: {:.2}", a.ratio(&b));
    }
    if let (Some(a), Some(o)) = (Summary::of(&agent), Summary::of(&old)) {
        println!("  ratio agent/old-cmdline p50: {:.2}", a.ratio(&o));
    }
    println!(
        "lohar idle RSS in guest (PID 1, 2 s after ready): {}",
        rss.unwrap_or_else(|| "unknown".into())
    );
    Ok(())
}

/// The engine's create → ready (rootfs copy, config drive, network,
/// cgroup, QEMU, agent), with the TCG timer arguments and without them,
/// interleaved; each engine in a namespace of its own.
fn engine_creates(n: usize) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use bhatti_engine::engine::{Engine, SandboxId, SandboxSpec};
    use bhatti_engine::image::{ImagePaths, Tier};
    use bhatti_engine::netns::{NetNs, unique_name};
    use bhatti_engine::qemu::driver::QemuDriver;
    use bhatti_engine::sandbox::{EngineConfig, VmEngine};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut engines = Vec::new();
        for fast in [true, false] {
            let ns = NetNs::create(&unique_name("btboot"))?;
            let dir = tempfile::tempdir()?;
            let driver = QemuDriver {
                tcg_fast_timer: fast,
                ..QemuDriver::default()
            };
            let config = EngineConfig::new(dir.path(), ImagePaths::from_env(), ns.name());
            engines.push((VmEngine::start(driver, config).await?, ns, dir));
        }
        let mut took = [Vec::new(), Vec::new()];
        for i in 0..n {
            for (k, (engine, _, _)) in engines.iter().enumerate() {
                let id: SandboxId = format!("b{i}").parse()?;
                let spec = SandboxSpec {
                    cpus: 1,
                    memory_mb: 256,
                    image: Tier::Busybox.into(),
                    ..SandboxSpec::default()
                };
                let t = std::time::Instant::now();
                engine.create(id.clone(), spec).await?;
                took[k].push(t.elapsed());
                engine.destroy(&id).await?;
            }
            eprint!(".");
        }
        eprintln!();
        println!("engine create → agent ready ({n} each, interleaved)");
        println!("  new TCG cmdline            : {}", stats(&took[0]));
        println!("  old TCG cmdline            : {}", stats(&took[1]));
        if let (Some(a), Some(o)) = (Summary::of(&took[0]), Summary::of(&took[1])) {
            println!("  ratio new/old p50: {:.2}", a.ratio(&o));
        }
        Ok(())
    })
}

/// Waits for the agent the way the engine's create does: an activity
/// probe every 10 ms, 250 ms per attempt. (`Client::wait_ready` backs off
/// exponentially up to 200 ms, which rounds every boot up to its next
/// probe and hid a 250 ms change in this bench.)
async fn poll_ready(client: &bhatti_agent::Client) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let probe = tokio::time::timeout(Duration::from_millis(250), client.activity());
        if let Ok(Ok(_)) = probe.await {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err("agent not ready in 120 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One agent boot with `printk.time=1` and no `quiet`: prints the guest
/// console with the host's QEMU-start → ready time, for tracing the boot.
fn trace_one() -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let t = TestVm::start(VmOptions {
        quiet: false,
        extra_cmdline: vec!["printk.time=1".into()],
        ..VmOptions::default()
    })
    .map_err(failed)?;
    rt.block_on(poll_ready(&t.client()))?;
    let took = t.spawned_at.elapsed();
    println!("--- traced boot console ---\n{}", t.vm.console());
    println!("--- QEMU start → ready: {took:.2?} ---");
    Ok(())
}

/// QEMU start → lohar ready, with or without the TCG timer arguments.
fn agent_ready(
    rt: &tokio::runtime::Runtime,
    tcg_fast_timer: bool,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let t = TestVm::start(VmOptions {
        tcg_fast_timer,
        ..VmOptions::default()
    })
    .map_err(failed)?;
    rt.block_on(poll_ready(&t.client()))?;
    Ok(t.spawned_at.elapsed())
}

fn failed(f: libtest_mimic::Failed) -> String {
    f.message().unwrap_or("VM start failed").to_owned()
}

/// Nearest-rank percentiles (benchkit's), printed in milliseconds.
fn stats(v: &[Duration]) -> String {
    let Some(s) = Summary::of(v) else {
        return "no samples".into();
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "min {:>7.1} ms  p50 {:>7.1} ms  p95 {:>7.1} ms  p99 {:>7.1} ms",
        ms(s.min),
        ms(s.p50),
        ms(s.p95),
        ms(s.p99)
    )
}
