//! The VMM's confinement, seen from the host and from the guest, with real
//! QEMU microVMs (TCG here), the real kernel, busybox rootfs and lohar as
//! PID 1:
//! - each VMM runs in its own cgroup with the spec's CPU quota, weight and
//!   memory limit, under QEMU's seccomp filter; the group is gone once
//!   the VMM is (stop, freeze, destroy) and back after a start or wake;
//! - in the guest only root reads the kernel log (`dmesg_restrict`).
//!
//! Every test has its own data dir and network namespace (egress `none`).
//! Reported as ignored, with the reason, without root, QEMU, the images
//! (`cargo xtask images`) or a writable cgroup hierarchy.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bhatti_agent::ExecOptions as AgentExec;
use bhatti_engine::cgroup::{self, Limits};
use bhatti_engine::engine::{Engine, ExecOptions, SandboxId, SandboxSpec};
use bhatti_engine::image::{ImagePaths, Tier};
use bhatti_engine::netns::{NetNs, unique_name};
use bhatti_engine::qemu::driver::QemuDriver;
use bhatti_engine::qemu::launch::SECCOMP;
use bhatti_engine::sandbox::{EngineConfig, VmEngine};
use libtest_mimic::{Arguments, Failed, Trial};
use support::vm::{TestVm, default_config, run_ok, runtime};
use support::{Need, ensure, trial};

type TestResult = Result<(), Failed>;

fn main() {
    let args = Arguments::from_args();
    let vm = [Need::Root, Need::Qemu, Need::Images];
    let trials = vec![
        cgroup_trial(
            "vmm_cgroup_has_the_spec_limits_and_goes_with_the_vmm",
            vmm_cgroup_follows_the_vmm,
        ),
        trial(
            "guest_kernel_log_is_root_only",
            &vm,
            guest_kernel_log_is_root_only,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}

/// A VM trial that also needs a writable cpu + memory cgroup hierarchy.
fn cgroup_trial(name: &str, f: fn() -> TestResult) -> Trial {
    let vm = [Need::Root, Need::Qemu, Need::Images];
    if support::skip_reason(&vm).is_none()
        && let Some(reason) = cgroups_unusable()
    {
        eprintln!("SKIPPED: {name}: {reason}");
        return Trial::test(name, || Ok(())).with_ignored_flag(true);
    }
    trial(name, &vm, f)
}

fn cgroups_unusable() -> Option<String> {
    if std::env::var("BHATTI_VMM_CGROUPS").is_ok_and(|v| v == "0") {
        return Some("BHATTI_VMM_CGROUPS=0".into());
    }
    let probe = tempfile::tempdir().ok()?;
    let made = cgroup::VmmCgroup::make(
        &cgroup::name_for(probe.path()),
        Limits {
            cpus: 1,
            memory_mib: 64,
        },
    );
    match made {
        Some(cg) => {
            cg.remove();
            None
        }
        None => Some("no writable cgroup hierarchy with cpu and memory".into()),
    }
}

/// The dirs of `pid`'s cpu and memory groups (v2: the same dir twice).
fn groups_of(pid: u32) -> Result<(PathBuf, PathBuf), Failed> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let root = Path::new("/sys/fs/cgroup");
    let find = |controller: &str| {
        text.lines().find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, list, path) = (p.next()?, p.next()?, p.next()?);
            let hit = if controller.is_empty() {
                list.is_empty()
            } else {
                list.split(',').any(|c| c == controller)
            };
            hit.then(|| path.trim_start_matches('/').to_owned())
        })
    };
    if root.join("cgroup.controllers").exists() {
        let dir = root.join(find("").ok_or("no v2 line")?);
        return Ok((dir.clone(), dir));
    }
    let cpu = root.join("cpu").join(find("cpu").ok_or("no cpu line")?);
    let mem = root
        .join("memory")
        .join(find("memory").ok_or("no memory line")?);
    Ok((cpu, mem))
}

fn read(dir: &Path, file: &str) -> Result<String, Failed> {
    Ok(std::fs::read_to_string(dir.join(file))
        .map_err(|e| format!("{}: {e}", dir.join(file).display()))?
        .trim()
        .to_owned())
}

/// Checks that `pid` is in a group named `name` with `limits`, and runs
/// under seccomp; returns the group's dirs.
fn check_confined(pid: u32, name: &str, limits: Limits) -> Result<Vec<PathBuf>, Failed> {
    let (cpu, mem) = groups_of(pid)?;
    for dir in [&cpu, &mem] {
        ensure(dir.file_name().is_some_and(|n| n == name), || {
            format!(
                "VMM {pid} is in {}, not in a group named {name}",
                dir.display()
            )
        })?;
        ensure(
            read(dir, "cgroup.procs")?
                .lines()
                .any(|l| l == pid.to_string()),
            || format!("{pid} not listed in {}", dir.display()),
        )?;
    }
    let quota = limits.quota_us();
    if cpu == mem {
        ensure(
            read(&cpu, "cpu.max")? == format!("{quota} {}", cgroup::PERIOD_US),
            || "cpu.max".into(),
        )?;
        ensure(
            read(&mem, "memory.max")? == limits.memory_bytes().to_string(),
            || "memory.max".into(),
        )?;
    } else {
        let got = (
            read(&cpu, "cpu.cfs_quota_us")?,
            read(&cpu, "cpu.cfs_period_us")?,
            read(&cpu, "cpu.shares")?,
            read(&mem, "memory.limit_in_bytes")?,
        );
        let want = (
            quota.to_string(),
            cgroup::PERIOD_US.to_string(),
            (1024 * (limits.cpus + 1)).to_string(),
            limits.memory_bytes().to_string(),
        );
        ensure(got == want, || {
            format!("limits (quota, period, shares, memory) {got:?}, expected {want:?}")
        })?;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    ensure(status.lines().any(|l| l == "Seccomp:\t2"), || {
        "QEMU runs without a seccomp filter".into()
    })?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
    ensure(
        cmdline.split(|b| *b == 0).any(|a| a == SECCOMP.as_bytes()),
        || "no -sandbox argument".into(),
    )?;
    Ok(vec![cpu, mem])
}

fn gone(dirs: &[PathBuf]) -> TestResult {
    for d in dirs {
        ensure(!d.exists(), || format!("{} left behind", d.display()))?;
    }
    Ok(())
}

fn vmm_cgroup_follows_the_vmm() -> TestResult {
    runtime()?.block_on(async {
        let ns = NetNs::create(&unique_name("btvmm"))?;
        let dir = tempfile::tempdir()?;
        let engine = VmEngine::start(
            QemuDriver::default(),
            EngineConfig::new(dir.path(), ImagePaths::from_env(), ns.name()),
        )
        .await?;
        let id: SandboxId = "cg".parse()?;
        let spec = SandboxSpec {
            cpus: 2,
            memory_mb: 256,
            image: Tier::Busybox.into(),
            ..SandboxSpec::default()
        };
        let limits = Limits {
            cpus: 2,
            memory_mib: 256,
        };
        let name = cgroup::name_for(&dir.path().join("sandboxes").join("cg"));
        engine.create(id.clone(), spec).await?;
        let pid = engine.vmm_pid(&id).await?.ok_or("no VMM pid")?;
        let dirs = check_confined(pid, &name, limits)?;

        // A guest that uses most of its RAM (tmpfs takes at most half, so
        // two files in two tmpfs mounts) stays inside the limit: the VMM
        // is not OOM-killed. It leaves the guest 40 MiB: filling every
        // tmpfs (330 MiB in a 256 MiB guest) runs the guest's OOM killer
        // out of victims, and a guest kernel panic is not what this tests.
        let fill = "left=$(( $(awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo) - 40 )); \
                    for d in /tmp /dev/shm; do \
                    n=$(( left > 110 ? 110 : left )); \
                    [ $n -gt 0 ] && dd if=/dev/zero of=$d/fill bs=1M count=$n 2>/dev/null; \
                    left=$(( left - n )); \
                    done; grep -E '^(MemFree|Shmem):' /proc/meminfo";
        let r = engine
            .exec(&id, ExecOptions::new(["sh", "-c", fill]))
            .await?;
        println!(
            "after filling: {}",
            String::from_utf8_lossy(&r.stdout).trim()
        );
        let r = engine.exec(&id, ExecOptions::new(["true"])).await?;
        ensure(r.exit_code == 0, || "exec after filling RAM failed".into())?;
        ensure(engine.vmm_pid(&id).await? == Some(pid), || {
            "the VMM was replaced while the guest filled its RAM".into()
        })?;
        let peak = ["memory.max_usage_in_bytes", "memory.peak"]
            .iter()
            .find_map(|f| read(&dirs[1], f).ok())
            .unwrap_or_default();
        println!(
            "VMM memory peak {peak} bytes, limit {}",
            limits.memory_bytes()
        );

        // Stop snapshots and ends the VMM: its group goes with it.
        engine.stop(&id).await?;
        gone(&dirs)?;
        engine.start(&id).await?;
        let r = engine.exec(&id, ExecOptions::new(["true"])).await?;
        ensure(r.exit_code == 0, || "exec after start failed".into())?;
        let pid2 = engine.vmm_pid(&id).await?.ok_or("no VMM pid after start")?;
        ensure(pid2 != pid, || "start kept the old VMM".into())?;
        let dirs = check_confined(pid2, &name, limits)?;

        // Pause keeps the VMM; freeze (cold) ends it; the next exec wakes a
        // new one.
        engine.pause(&id).await?;
        engine.freeze(&id).await?;
        gone(&dirs)?;
        let r = engine.exec(&id, ExecOptions::new(["true"])).await?;
        ensure(r.exit_code == 0, || "exec after freeze failed".into())?;
        let pid3 = engine.vmm_pid(&id).await?.ok_or("no VMM pid after wake")?;
        let dirs = check_confined(pid3, &name, limits)?;

        engine.destroy(&id).await?;
        gone(&dirs)
    })
}

/// `dmesg` fails for the sandbox user (uid 1000) and works for root (the
/// default user of exec).
fn guest_kernel_log_is_root_only() -> TestResult {
    let t = TestVm::boot_with(default_config())?;
    runtime()?.block_on(async {
        let c = t.ready_client().await?;
        let sysctl = run_ok(&c, &["cat", "/proc/sys/kernel/dmesg_restrict"]).await?;
        ensure(sysctl.trim() == "1", || {
            format!("dmesg_restrict is {sysctl:?}")
        })?;
        let dmesg = AgentExec::new(["dmesg"]).timeout(Duration::from_secs(30));
        let r = c.exec(dmesg.clone().user("lohar")).await?;
        ensure(r.exit_code != 0 && r.stdout.is_empty(), || {
            format!(
                "uid 1000 read the kernel log (exit {}, {} bytes)",
                r.exit_code,
                r.stdout.len()
            )
        })?;
        let r = c.exec(dmesg).await?;
        let out = String::from_utf8_lossy(&r.stdout);
        ensure(r.exit_code == 0 && out.contains("Linux version"), || {
            format!(
                "root could not read the kernel log (exit {}): {out:.200}",
                r.exit_code
            )
        })
    })
}
