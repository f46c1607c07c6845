//! Restore-based creates and forks with real microVMs (TCG here), each
//! beside a baseline measured in the same run:
//!
//! | step                                   | baseline                          |
//! |----------------------------------------|-----------------------------------|
//! | create from a snapshot → first exec    | create (boot) → first exec        |
//! | create (restore-based) → first exec    | create (boot) → first exec        |
//! | named snapshot of a hot sandbox: pause | stop (full snapshot to disk)      |
//!
//! and a fork of a 512 MiB sandbox into 4: time per child, and the host
//! memory (VMM RSS) of the parent and each child, right after the fork
//! and after each child wrote 32 MiB more to its tmpfs.
//!
//! Run: `cargo bench -p bhatti-engine --bench fork`
//! (`BHATTI_BENCH_ROUNDS=N`, default 5). Root, QEMU and the images are
//! needed; it prints why it skips otherwise. Everything runs in a network
//! namespace the bench creates, egress `none`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use benchkit::Summary;
use bhatti_engine::engine::{Engine, ExecOptions, SandboxId, SandboxSpec};
use bhatti_engine::image::{ImagePaths, Tier};
use bhatti_engine::netns::{NetNs, unique_name};
use bhatti_engine::qemu::driver::QemuDriver;
use bhatti_engine::sandbox::{EngineConfig, VmEngine};
use bhatti_engine::snapshot::{CloneSpec, SnapshotId};

type BenchResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;
type Eng = Arc<VmEngine<QemuDriver>>;

fn rounds() -> usize {
    std::env::var("BHATTI_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

fn spec(memory_mb: u32) -> SandboxSpec {
    SandboxSpec {
        cpus: 1,
        memory_mb,
        image: Tier::Busybox.into(),
        ..SandboxSpec::default()
    }
}

fn id(s: &str) -> BenchResult<SandboxId> {
    Ok(s.parse()?)
}

async fn sh(e: &Eng, sb: &SandboxId, script: &str) -> BenchResult<String> {
    let r = e.exec(sb, ExecOptions::new(["sh", "-c", script])).await?;
    if r.exit_code != 0 {
        return Err(format!("`{script}` exited {}", r.exit_code).into());
    }
    Ok(String::from_utf8_lossy(&r.stdout).into_owned())
}

fn rss_mib(pid: Option<u32>) -> u64 {
    let Some(pid) = pid else { return 0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
}

fn report(step: &str, s: &[Duration], base: &str, b: &[Duration]) {
    let (Some(s), Some(b)) = (Summary::of(s), Summary::of(b)) else {
        return;
    };
    benchkit::report(base, &b, None);
    benchkit::report(step, &s, Some(&b));
}

/// Create → first exec: boot-based vs restored from a snapshot of an
/// idle, freshly booted sandbox (what a template's snapshot would be).
async fn creates(e: &Eng) -> BenchResult {
    let golden = id("golden")?;
    e.create(golden.clone(), spec(256)).await?;
    sh(e, &golden, "true").await?;
    let snap: SnapshotId = "golden".parse()?;
    e.snapshot(&golden, &snap).await?;
    e.destroy(&golden).await?;
    let (mut boot, mut restore) = (Vec::new(), Vec::new());
    for i in 0..rounds() {
        let b = id(&format!("boot-{i}"))?;
        let t = Instant::now();
        e.create(b.clone(), spec(256)).await?;
        sh(e, &b, "true").await?;
        boot.push(t.elapsed());
        e.destroy(&b).await?;

        let r = id(&format!("restored-{i}"))?;
        let t = Instant::now();
        e.create_from_snapshot(r.clone(), &snap, CloneSpec::default())
            .await?;
        sh(e, &r, "true").await?;
        restore.push(t.elapsed());
        e.destroy(&r).await?;
    }
    e.delete_snapshot(&snap).await?;
    report(
        "create from a snapshot -> first exec",
        &restore,
        "create (boot) -> first exec",
        &boot,
    );
    // Restore-based create: the engine's golden snapshot of the spec.
    e.prepare(&spec(256)).await?;
    let mut golden = Vec::new();
    for i in 0..rounds() {
        let g = id(&format!("golden-{i}"))?;
        let t = Instant::now();
        e.create(g.clone(), spec(256)).await?;
        sh(e, &g, "true").await?;
        golden.push(t.elapsed());
        e.destroy(&g).await?;
    }
    if let (Some(g), Some(b)) = (Summary::of(&golden), Summary::of(&boot)) {
        benchkit::report("create (restore-based) -> first exec", &g, Some(&b));
    }
    Ok(())
}

/// How long a named snapshot pauses a hot sandbox, against a stop.
async fn pauses(e: &Eng) -> BenchResult {
    let sb = id("paused")?;
    e.create(sb.clone(), spec(256)).await?;
    sh(
        e,
        &sb,
        "dd if=/dev/urandom of=/tmp/fill bs=1M count=32 2>/dev/null",
    )
    .await?;
    let (mut snaps, mut stops) = (Vec::new(), Vec::new());
    for i in 0..rounds() {
        let snap: SnapshotId = format!("p{i}").parse()?;
        let info = e.snapshot(&sb, &snap).await?;
        snaps.push(info.paused);
        e.delete_snapshot(&snap).await?;
        let t = Instant::now();
        e.stop(&sb).await?;
        stops.push(t.elapsed());
        e.start(&sb).await?;
    }
    e.destroy(&sb).await?;
    report(
        "named snapshot of a hot sandbox (pause)",
        &snaps,
        "stop (full snapshot to disk)",
        &stops,
    );
    Ok(())
}

/// A 512 MiB sandbox with 64 MiB in its tmpfs, forked into 4.
async fn fork(e: &Eng) -> BenchResult {
    let parent = id("parent")?;
    e.create(parent.clone(), spec(512)).await?;
    sh(
        e,
        &parent,
        "dd if=/dev/urandom of=/tmp/fill bs=1M count=64 2>/dev/null",
    )
    .await?;
    let before = rss_mib(e.vmm_pid(&parent).await?);
    let kids: Vec<SandboxId> = (0..4)
        .map(|i| id(&format!("child-{i}")))
        .collect::<Result<_, _>>()?;
    let t = Instant::now();
    let specs = kids.iter().map(|k| (k.clone(), CloneSpec::default()));
    e.fork(&parent, specs.collect()).await?;
    let took = t.elapsed();
    let mut rss = Vec::new();
    for k in &kids {
        rss.push(rss_mib(e.vmm_pid(k).await?));
    }
    for k in &kids {
        sh(
            e,
            k,
            "dd if=/dev/urandom of=/tmp/more bs=1M count=32 2>/dev/null",
        )
        .await?;
    }
    let mut after = Vec::new();
    for k in &kids {
        after.push(rss_mib(e.vmm_pid(k).await?));
    }
    println!(
        "fork of a 512 MiB sandbox (64 MiB in tmpfs) into 4: {:.0} ms, {:.0} ms per child",
        took.as_secs_f64() * 1e3,
        took.as_secs_f64() * 1e3 / 4.0
    );
    println!("  parent VMM RSS {before} MiB; children right after the fork {rss:?} MiB");
    println!("  children after each wrote 32 MiB more: {after:?} MiB");
    println!(
        "  host memory for 4 children: {} MiB (4 x 512 MiB would be 2048)",
        after.iter().sum::<u64>()
    );
    for k in kids.iter().chain([&parent]) {
        e.destroy(k).await?;
    }
    Ok(())
}

async fn bench() -> BenchResult {
    let ns = NetNs::create(&unique_name("btfork"))?;
    let dir = tempfile::tempdir()?;
    let engine = Arc::new(
        VmEngine::start(
            QemuDriver::default(),
            EngineConfig::new(dir.path(), ImagePaths::from_env(), ns.name()),
        )
        .await?,
    );
    creates(&engine).await?;
    pauses(&engine).await?;
    fork(&engine).await?;
    Ok(())
}

fn main() -> BenchResult {
    if let Some(reason) = bhatti_testkit::skip_reason(bhatti_testkit::VM) {
        println!("skipping fork bench: {reason}");
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(bench())
}
