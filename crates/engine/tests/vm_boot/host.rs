//! The host side of a boot: choosing the accelerator, a bare kernel
//! boot, the guest clock under TCG, and a broken rootfs.

use super::*;

pub(crate) fn accel_probe() -> Result<(), Failed> {
    ensure(probe_runs_guest(Accel::Tcg), || {
        "TCG probe did not run guest code; the probe itself is broken".into()
    })?;
    println!("accelerator chosen by auto: {:?}", Accel::auto());
    Ok(())
}

/// The decision of `Accel::auto` checked against reality: our kernel,
/// booted under KVM with a root device that does not exist, must reach its
/// "VFS: Unable to mount root" panic (QEMU then exits) exactly when auto
/// picks KVM. A KVM that cannot boot a standard kernel (PVM) hangs early
/// instead; a host without /dev/kvm fails at once.
pub(crate) fn auto_accel_matches_kvm() -> Result<(), Failed> {
    let paths = bhatti_engine::image::ImagePaths::from_env();
    let dir = tempfile::tempdir()?;
    let rootfs = dir.path().join("rootfs.ext4");
    bhatti_engine::image::copy_rootfs(&paths.rootfs(Tier::Busybox)?, &rootfs)?;
    let mut spec = LaunchSpec::new(paths.kernel()?, rootfs, dir.path());
    spec.accel = Accel::Kvm;
    spec.qmp_socket = None;
    spec.die_with_parent = true;
    spec.extra_cmdline = vec!["root=/dev/bhatti-none".into()];
    let mut vm = spec.spawn()?;
    // Under a working KVM this takes well under a second.
    let exited = vm.wait_exit(Duration::from_secs(10))?.is_some();
    let kvm_boots = exited && vm.console().contains("Kernel panic");
    let auto = Accel::auto();
    println!(
        "KVM boots the kernel: {kvm_boots}; pvm: {}; auto: {auto:?}",
        kvm_is_pvm(std::path::Path::new("/sys/module"))
    );
    ensure((auto == Accel::Kvm) == kvm_boots, || {
        format!(
            "auto picked {auto:?} but KVM {} boot the kernel; console tail:\n{}",
            if kvm_boots { "can" } else { "cannot" },
            vm.console_tail(10)
        )
    })
}

pub(crate) fn bare_kernel_boot() -> Result<(), Failed> {
    let mut t = TestVm::start(VmOptions {
        config: None,
        init: Some("/bin/sh".into()),
        extra_cmdline: vec!["-c".into(), "\"echo BOOT-OK; reboot -f\"".into()],
        ..VmOptions::default()
    })?;
    t.vm.wait_for_console("BOOT-OK", Duration::from_secs(60))?;
    let status = t.vm.wait_exit(Duration::from_secs(30))?;
    ensure(status.is_some(), || {
        format!(
            "QEMU still running after the guest rebooted:\n{}",
            t.vm.console_tail(20)
        )
    })
}

/// Under TCG the guest keeps a TSC clock (told the host's frequency)
/// instead of 4 ms jiffies, and that clock runs at the host's rate.
pub(crate) fn guest_clock() -> Result<(), Failed> {
    let t = TestVm::boot(VmOptions::default())?;
    runtime()?.block_on(async {
        let c = t.ready_client().await?;
        let source = run_ok(
            &c,
            &[
                "cat",
                "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            ],
        )
        .await?;
        // `tsc-early` until the kernel's delayed switch to `tsc` (about a
        // second after boot under TCG); both count in nanoseconds.
        let want: Option<&[&str]> = match (Accel::auto(), clock::host_tsc_khz()) {
            (Accel::Kvm, _) => Some(&["kvm-clock"]),
            (Accel::Tcg, Some(_)) => Some(&["tsc", "tsc-early"]),
            // Not invariant: the kernel chooses; the rate is still checked.
            (Accel::Tcg, None) => None,
        };
        println!("guest clocksource: {}", source.trim());
        if let Some(want) = want {
            ensure(want.contains(&source.trim()), || {
                format!("guest clocksource {source:?}, expected one of {want:?}")
            })?;
        }
        let guest_now = || async {
            let out = run_ok(&c, &["cat", "/proc/uptime"]).await?;
            let up: f64 = out
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| Failed::from(format!("uptime: {out:?}")))?;
            Ok::<_, Failed>((Instant::now(), up))
        };
        let (h0, g0) = guest_now().await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (h1, g1) = guest_now().await?;
        let host = h1.duration_since(h0).as_secs_f64();
        let ratio = (g1 - g0) / host;
        println!("guest/host clock rate over {host:.2} s: {ratio:.4}");
        // /proc/uptime has 10 ms steps and each read is one exec away.
        ensure((0.97..=1.03).contains(&ratio), || {
            format!("guest clock runs at {ratio:.4}x the host's")
        })
    })
}

pub(crate) fn corrupt_rootfs() -> Result<(), Failed> {
    fn smash_superblock(p: &std::path::Path) -> std::io::Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(p)?;
        f.seek(SeekFrom::Start(0))?;
        f.write_all(&vec![0xa5; 64 << 10])?;
        f.sync_all()
    }
    let mut t = TestVm::start(VmOptions {
        damage_rootfs: Some(smash_superblock),
        ..VmOptions::default()
    })?;
    let err = match t.wait_listening(Duration::from_secs(60)) {
        Ok(()) => return Err("a VM with a corrupt rootfs booted".into()),
        Err(e) => e,
    };
    ensure(matches!(err.reason, BootFailure::Exited { .. }), || {
        format!("expected QEMU to exit on the guest panic, got: {err}")
    })?;
    let msg = err.to_string();
    ensure(msg.contains("VFS") || msg.contains("Kernel panic"), || {
        format!("boot error lacks the console tail:\n{msg}")
    })
}
