//! What a daemon restart and a VMM death cost, with real microVMs (TCG
//! here), each beside a baseline measured in the same run:
//!
//! | step                                              | baseline |
//! |---------------------------------------------------|----------|
//! | restart, adopted: new engine + recover + first exec of a hot sandbox | restart of a snapshotted sandbox: recover + first exec (a restore) |
//! | restart, VMM died while down: recover + first exec (a boot from disk) | the same restore |
//! | VMM death noticed (SIGKILL → published Cold)      | SIGKILL → pidfd readable for a plain `sleep` |
//! | exec `true` on an adopted sandbox                 | exec `true` on one the engine created |
//!
//! Run: `cargo bench -p bhatti-engine --bench recovery` (root, QEMU and
//! `cargo xtask images`); it prints why it skips otherwise. `BENCH_QUICK=1`
//! runs fewer rounds. Everything runs in a namespace the bench creates,
//! egress `none`.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use benchkit::Summary;
use bhatti_engine::drivers::AnyDriver;
use bhatti_engine::engine::{Engine, ExecOptions, SandboxId, SandboxSpec};
use bhatti_engine::image::{ImagePaths, Tier};
use bhatti_engine::netns::{NetNs, unique_name};
use bhatti_engine::qemu::driver::QemuDriver;
use bhatti_engine::sandbox::{EngineConfig, VmEngine};
use bhatti_engine::state::SandboxState;

type BenchResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn report(step: &str, s: &[Duration], base: &str, b: &[Duration]) {
    let (Some(s), Some(b)) = (Summary::of(s), Summary::of(b)) else {
        return;
    };
    benchkit::report(base, &b, None);
    benchkit::report(step, &s, Some(&b));
}

fn spec() -> SandboxSpec {
    SandboxSpec {
        cpus: 1,
        memory_mb: 256,
        image: Tier::Busybox.into(),
        ..SandboxSpec::default()
    }
}

async fn engine(dir: &tempfile::TempDir, ns: &NetNs) -> BenchResult<VmEngine<AnyDriver>> {
    let cfg = EngineConfig::new(dir.path(), ImagePaths::from_env(), ns.name());
    Ok(VmEngine::start(AnyDriver::Qemu(QemuDriver::default()), cfg).await?)
}

async fn exec_true(e: &VmEngine<AnyDriver>, id: &SandboxId) -> BenchResult<Duration> {
    let t = Instant::now();
    let r = e.exec(id, ExecOptions::new(["true"])).await?;
    if r.exit_code != 0 {
        return Err("exec true failed".into());
    }
    Ok(t.elapsed())
}

/// How one restart is set up before the engine goes away.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Before {
    /// Left running: the next engine adopts it.
    Running,
    /// Stopped: the next engine restores its snapshot.
    Snapshotted,
    /// Its VMM killed while no engine runs: the next boots it from disk.
    Died,
}

/// A new engine's recover plus the first exec, for a sandbox prepared as
/// `before` by the previous engine.
async fn restart(before: Before) -> BenchResult<Duration> {
    let (dir, ns) = (tempfile::tempdir()?, NetNs::create(&unique_name("bbrec"))?);
    let id: SandboxId = "rec".parse()?;
    let e = engine(&dir, &ns).await?;
    e.create(id.clone(), spec()).await?;
    let pid = e.vmm_pid(&id).await?;
    match before {
        Before::Running => {}
        Before::Snapshotted => e.stop(&id).await?,
        Before::Died => {}
    }
    e.release_all().await;
    drop(e);
    if before == Before::Died
        && let Some(p) = pid.and_then(|p| rustix::process::Pid::from_raw(p.cast_signed()))
    {
        rustix::process::kill_process(p, rustix::process::Signal::KILL)?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let t = Instant::now();
    let e = engine(&dir, &ns).await?;
    e.recover().await?;
    exec_true(&e, &id).await?;
    let took = t.elapsed();
    e.destroy(&id).await?;
    Ok(took)
}

/// SIGKILL of a hot sandbox's VMM until the engine publishes it Cold.
async fn death_noticed(e: &VmEngine<AnyDriver>, id: &SandboxId) -> BenchResult<Duration> {
    if e.status(id).await?.state != SandboxState::Hot {
        exec_true(e, id).await?;
    }
    let pid = e.vmm_pid(id).await?.ok_or("no VMM")?;
    let mut events = e.subscribe();
    let p = rustix::process::Pid::from_raw(pid.cast_signed()).ok_or("pid 0")?;
    let t = Instant::now();
    rustix::process::kill_process(p, rustix::process::Signal::KILL)?;
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(30), events.recv()).await??;
        if ev.id == *id && ev.state == SandboxState::Cold {
            return Ok(t.elapsed());
        }
    }
}

/// SIGKILL of a plain child until its pidfd is readable (the floor).
async fn raw_death() -> BenchResult<Duration> {
    let mut child = std::process::Command::new("sleep").arg("100").spawn()?;
    let pid = rustix::process::Pid::from_raw(child.id().cast_signed()).ok_or("pid 0")?;
    let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())?;
    // SAFETY: `fd` is an owned pidfd moved into the AsyncFd, which owns it
    // until dropped; nothing else closes it.
    let afd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    }
    .map_err(std::io::Error::from)?;
    let t = Instant::now();
    rustix::process::pidfd_send_signal(afd.get_ref().as_fd(), rustix::process::Signal::KILL)?;
    let _ = afd.readable().await?;
    let took = t.elapsed();
    child.wait()?;
    Ok(took)
}

async fn bench() -> BenchResult {
    let rounds = benchkit::iterations(8, 3);
    let (mut adopted, mut restored, mut booted) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        adopted.push(restart(Before::Running).await?);
        restored.push(restart(Before::Snapshotted).await?);
        booted.push(restart(Before::Died).await?);
    }
    let restore = "restart: recover + exec (restore)";
    report(
        "restart: recover + exec (adopted)",
        &adopted,
        restore,
        &restored,
    );
    report(
        "restart: recover + exec (disk boot)",
        &booted,
        restore,
        &restored,
    );

    let (dir, ns) = (tempfile::tempdir()?, NetNs::create(&unique_name("bbdie"))?);
    let e = engine(&dir, &ns).await?;
    let id: SandboxId = "die".parse()?;
    e.create(id.clone(), spec()).await?;
    let (mut noticed, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..rounds * 2 {
        noticed.push(death_noticed(&e, &id).await?);
        raw.push(raw_death().await?);
    }
    report(
        "VMM death published",
        &noticed,
        "pidfd readable after SIGKILL",
        &raw,
    );

    // Exec on an adopted VMM against one this engine created.
    let other: SandboxId = "made".parse()?;
    e.create(other.clone(), spec()).await?;
    e.release_all().await;
    drop(e);
    let e = engine(&dir, &ns).await?;
    e.recover().await?;
    exec_true(&e, &id).await?;
    let fresh: SandboxId = "fresh".parse()?;
    e.create(fresh.clone(), spec()).await?;
    let (mut on_adopted, mut on_fresh) = (Vec::new(), Vec::new());
    for _ in 0..benchkit::iterations(200, 30) {
        on_adopted.push(exec_true(&e, &other).await?);
        on_fresh.push(exec_true(&e, &fresh).await?);
    }
    report(
        "exec true (adopted VMM)",
        &on_adopted,
        "exec true (created VMM)",
        &on_fresh,
    );
    for id in [&id, &other, &fresh] {
        e.destroy(id).await?;
    }
    Ok(())
}

fn main() -> BenchResult {
    if let Some(reason) = bhatti_testkit::skip_reason(bhatti_testkit::VM) {
        println!("skipping recovery bench: {reason}");
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(bench())
}
