//! Real microVM boots: the busybox tier under QEMU `-M microvm` with a TAP
//! inside a test-created network namespace, driven through the host agent
//! client. Each trial boots its own VM in its own temp dir and namespace.
//! Without root, QEMU or the built images (`cargo xtask images`), trials
//! are reported as ignored with `SKIPPED: <reason>`.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use bhatti_agent::{Error as AgentError, Event, ExecOptions, ReadOptions, ShellOptions};
use bhatti_engine::image::Tier;
use bhatti_engine::qemu::launch::{
    Accel, BootFailure, Drive, LaunchSpec, clock, kvm_is_pvm, probe_runs_guest,
};
use bhatti_proto::config::{GuestConfig, GuestFile, GuestUser, GuestVolume};
use libtest_mimic::{Arguments, Failed};
use support::vm::{TestVm, VmOptions, default_config, run_ok, runtime};
use support::{Need, ensure, trial};

fn main() {
    let args = Arguments::from_args();
    let vm = &[Need::Root, Need::Qemu, Need::Images];
    let trials = vec![
        trial("accel_probe_runs_guest_code", &[Need::Qemu], accel_probe),
        trial(
            "auto_accel_picks_kvm_only_where_it_boots_the_kernel",
            vm,
            auto_accel_matches_kvm,
        ),
        trial("bare_kernel_boots_trivial_init", vm, bare_kernel_boot),
        trial("exec_runs_as_uid_1000", vm, exec_as_user),
        trial("guest_clock_is_fine_grained_and_on_time", vm, guest_clock),
        trial("config_drive_env_hostname_files", vm, config_drive_applied),
        trial("init_session_output", vm, init_session),
        trial("file_write_then_read", vm, file_round_trip),
        trial("tty_session", vm, tty_session),
        trial("volume_mounted_at_its_path", vm, volume_mounted),
        trial("token_required", vm, token_required),
        trial("sigterm_powers_off_cleanly", vm, sigterm_powers_off),
        trial("corrupt_rootfs_error_has_console_tail", vm, corrupt_rootfs),
        trial(
            "minimal_tier_tools_and_sudo",
            &[Need::Root, Need::Qemu, Need::Images, Need::MinimalImage],
            minimal_tier,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn accel_probe() -> Result<(), Failed> {
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
fn auto_accel_matches_kvm() -> Result<(), Failed> {
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

fn bare_kernel_boot() -> Result<(), Failed> {
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

fn exec_as_user() -> Result<(), Failed> {
    let t = TestVm::boot(VmOptions::default())?;
    runtime()?.block_on(async {
        let c = t.client();
        c.wait_ready(Duration::from_secs(30)).await?;
        let ids = run_ok(
            &c,
            &[
                "sh",
                "-c",
                "id -u; id -g; echo $HOME; pwd; id -G; \
                 grep -E '^(Uid|Gid|CapPrm|CapEff):' /proc/self/status",
            ],
        )
        .await?;
        let lines: Vec<String> = ids
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        // Real, effective, saved and filesystem ids all the user's, only
        // the user's group, and no capabilities left.
        ensure(
            lines
                == [
                    "1000",
                    "1000",
                    "/home/lohar",
                    "/home/lohar",
                    "1000",
                    "Uid: 1000 1000 1000 1000",
                    "Gid: 1000 1000 1000 1000",
                    "CapPrm: 0000000000000000",
                    "CapEff: 0000000000000000",
                ],
            || format!("unexpected identity: {lines:?}"),
        )
    })
}

/// Under TCG the guest keeps a TSC clock (told the host's frequency)
/// instead of 4 ms jiffies, and that clock runs at the host's rate.
fn guest_clock() -> Result<(), Failed> {
    let t = TestVm::boot(VmOptions::default())?;
    runtime()?.block_on(async {
        let c = t.client();
        c.wait_ready(Duration::from_secs(30)).await?;
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

fn config_drive_applied() -> Result<(), Failed> {
    let cfg = GuestConfig {
        env: BTreeMap::from([("BHATTI_TEST".into(), "from-config".into())]),
        files: vec![
            GuestFile {
                path: "/home/lohar/note.txt".into(),
                content_b64: "aGVsbG8gZnJvbSB0aGUgY29uZmlnIGRyaXZl".into(),
                mode: "0640".into(),
                root_owned: false,
            },
            GuestFile {
                path: "/etc/bhatti/secret".into(),
                content_b64: "czNjcjN0".into(),
                mode: "0600".into(),
                root_owned: true,
            },
        ],
        ..default_config()
    };
    let t = TestVm::boot(VmOptions {
        config: Some(cfg),
        ..VmOptions::default()
    })?;
    runtime()?.block_on(async {
        let c = t.client();
        c.wait_ready(Duration::from_secs(30)).await?;
        let env = run_ok(&c, &["sh", "-c", "echo $BHATTI_TEST"]).await?;
        ensure(env.trim() == "from-config", || format!("env: {env:?}"))?;
        let host = run_ok(&c, &["hostname"]).await?;
        ensure(host.trim() == "vmtest-box", || {
            format!("hostname: {host:?}")
        })?;
        let note = run_ok(&c, &["cat", "/home/lohar/note.txt"]).await?;
        ensure(note == "hello from the config drive", || {
            format!("note: {note:?}")
        })?;
        let st = run_ok(
            &c,
            &[
                "stat",
                "-c",
                "%a %u",
                "/home/lohar/note.txt",
                "/etc/bhatti/secret",
            ],
        )
        .await?;
        ensure(
            st.lines().collect::<Vec<_>>() == ["640 1000", "600 0"],
            || format!("modes/owners: {st:?}"),
        )?;
        // Root-owned 0600: the sandbox user cannot read it.
        let r = c
            .exec(ExecOptions::new(["cat", "/etc/bhatti/secret"]))
            .await?;
        ensure(r.exit_code != 0, || "uid 1000 read a root-only file".into())
    })
}

fn init_session() -> Result<(), Failed> {
    let cfg = GuestConfig {
        init: Some("echo INIT-RAN-$((40 + 2)) as $(id -u)".into()),
        ..default_config()
    };
    let t = TestVm::boot(VmOptions {
        config: Some(cfg),
        ..VmOptions::default()
    })?;
    runtime()?.block_on(async {
        let c = t.client();
        c.wait_ready(Duration::from_secs(30)).await?;
        let mut s = c.attach("init").await?;
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !String::from_utf8_lossy(&out).contains("INIT-RAN-42 as 1000") {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, s.next()).await {
                Ok(Ok(Some(Event::Stdout(b)))) => out.extend_from_slice(&b),
                Ok(Ok(Some(_) | None)) | Err(_) => break,
                Ok(Err(e)) => return Err(e.into()),
            }
        }
        let text = String::from_utf8_lossy(&out);
        ensure(text.contains("INIT-RAN-42 as 1000"), || {
            format!("init session output: {text:?}")
        })
    })
}

fn file_round_trip() -> Result<(), Failed> {
    let t = TestVm::boot(VmOptions::default())?;
    runtime()?.block_on(async {
        let c = t.client();
        c.wait_ready(Duration::from_secs(30)).await?;
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        c.write_file("/workspace/blob.bin", 0o640, data.len() as u64, &data[..])
            .await?;
        let back = c
            .read_file("/workspace/blob.bin", ReadOptions::default())
            .await?
            .read_all()
            .await?;
        ensure(back == data, || {
            format!("read {} bytes, wrote {}", back.len(), data.len())
        })?;
        let st = run_ok(&c, &["stat", "-c", "%a %u %s", "/workspace/blob.bin"]).await?;
        ensure(st.trim() == "640 1000 300000", || format!("stat: {st:?}"))
    })
}

fn tty_session() -> Result<(), Failed> {
    let t = TestVm::boot(VmOptions::default())?;
    runtime()?.block_on(async {
        let c = t.client();
        c.wait_ready(Duration::from_secs(30)).await?;
        let mut s = c
            .shell(&ShellOptions::new(["/bin/sh"]).size(30, 100))
            .await?;
        s.write(b"tty; stty size; echo TTY-$((6 * 7))\n").await?;
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !String::from_utf8_lossy(&out).contains("TTY-42") {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, s.next()).await {
                Ok(Ok(Some(Event::Stdout(b)))) => out.extend_from_slice(&b),
                Ok(Ok(other)) => return Err(format!("session ended early: {other:?}").into()),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => break,
            }
        }
        let text = String::from_utf8_lossy(&out).into_owned();
        ensure(text.contains("/dev/pts/"), || {
            format!("no pty in: {text:?}")
        })?;
        ensure(text.contains("30 100"), || {
            format!("window size not applied: {text:?}")
        })?;
        ensure(text.contains("TTY-42"), || format!("no output: {text:?}"))?;
        s.write(b"exit 3\n").await?;
        let code = tokio::time::timeout(Duration::from_secs(30), s.wait()).await??;
        ensure(code == 3, || format!("shell exit code {code}"))
    })
}

fn volume_mounted() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let staging = dir.path().join("vol");
    std::fs::create_dir(&staging)?;
    std::fs::write(staging.join("hello.txt"), "volume content\n")?;
    let img = dir.path().join("vol.ext4");
    std::fs::File::create(&img)?.set_len(16 << 20)?;
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "vol", "-d"])
        .arg(&staging)
        .arg(&img)
        .output()?;
    ensure(out.status.success(), || format!("mkfs: {out:?}"))?;
    let cfg = GuestConfig {
        volumes: vec![GuestVolume {
            device: "/dev/vdc".into(),
            mount: "/data".into(),
            readonly: false,
        }],
        ..default_config()
    };
    let t = TestVm::boot(VmOptions {
        config: Some(cfg),
        volumes: vec![Drive {
            path: img.clone(),
            readonly: false,
        }],
        ..VmOptions::default()
    })?;
    runtime()?.block_on(async {
        let c = t.client();
        c.wait_ready(Duration::from_secs(30)).await?;
        let content = run_ok(&c, &["cat", "/data/hello.txt"]).await?;
        ensure(content == "volume content\n", || {
            format!("volume file: {content:?}")
        })?;
        let mounts = run_ok(&c, &["cat", "/proc/mounts"]).await?;
        ensure(
            mounts.lines().any(|l| l.starts_with("/dev/vdc /data ")),
            || format!("/data not mounted from /dev/vdc:\n{mounts}"),
        )
    })
}

fn token_required() -> Result<(), Failed> {
    let t = TestVm::boot(VmOptions::default())?;
    runtime()?.block_on(async {
        t.client().wait_ready(Duration::from_secs(30)).await?;
        for (label, client) in [
            ("wrong token", t.client_with_token("not-the-token")),
            ("no token", t.client_with_token("")),
        ] {
            let r = client.exec(ExecOptions::new(["true"])).await;
            ensure(matches!(r, Err(AgentError::AuthRefused(_))), || {
                format!("{label} was not refused: {r:?}")
            })?;
        }
        run_ok(&t.client(), &["true"]).await.map(drop)
    })
}

fn sigterm_powers_off() -> Result<(), Failed> {
    let cfg = GuestConfig {
        user: GuestUser {
            name: "root".into(),
            uid: 0,
            gid: 0,
            home: "/root".into(),
        },
        ..default_config()
    };
    let mut t = TestVm::boot(VmOptions {
        config: Some(cfg),
        ..VmOptions::default()
    })?;
    runtime()?.block_on(async {
        let c = t.client();
        c.wait_ready(Duration::from_secs(30)).await?;
        // Leave a file that must survive: power-off syncs first.
        run_ok(&c, &["sh", "-c", "echo durable > /root/after-term"]).await?;
        // The connection may drop or hang as the guest goes down; the
        // outcome is judged by QEMU exiting, below.
        let kill = c.exec(ExecOptions::new(["kill", "-TERM", "1"]).timeout(Duration::from_secs(5)));
        let _ = tokio::time::timeout(Duration::from_secs(10), kill).await;
        Ok::<(), Failed>(())
    })?;
    let status = t.vm.wait_exit(Duration::from_secs(60))?;
    ensure(status.is_some(), || {
        format!(
            "QEMU still running 60 s after SIGTERM to lohar (a guest without ACPI must \
             shut down by restarting):\n{}",
            t.vm.console_tail(20)
        )
    })?;
    let rootfs = t.path("rootfs.ext4");
    let fsck = Command::new("e2fsck").arg("-fn").arg(&rootfs).output()?;
    ensure(fsck.status.success(), || {
        format!(
            "rootfs not clean after power-off: {}",
            String::from_utf8_lossy(&fsck.stdout)
        )
    })?;
    let dump = Command::new("debugfs")
        .args(["-R", "cat /root/after-term"])
        .arg(&rootfs)
        .output()?;
    ensure(
        String::from_utf8_lossy(&dump.stdout).trim() == "durable",
        || "file written before SIGTERM is missing after power-off".into(),
    )
}

fn corrupt_rootfs() -> Result<(), Failed> {
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

fn minimal_tier() -> Result<(), Failed> {
    let t = TestVm::boot(VmOptions {
        tier: Tier::Minimal,
        ..VmOptions::default()
    })?;
    runtime()?.block_on(async {
        let c = t.client();
        c.wait_ready(Duration::from_secs(60)).await?;
        let out = run_ok(
            &c,
            &[
                "bash",
                "-c",
                "id -un; python3 -c 'print(6*7)'; git --version; curl --version | head -n1; \
                 ip -V; ps --version; test -s /etc/ssl/certs/ca-certificates.crt && echo certs; \
                 sudo -n id -u; stat -c %u /workspace",
            ],
        )
        .await?;
        let lines: Vec<&str> = out.lines().collect();
        let want = |i: usize, p: &str| lines.get(i).is_some_and(|l| l.starts_with(p));
        ensure(
            want(0, "lohar")
                && want(1, "42")
                && want(2, "git version")
                && want(3, "curl ")
                && want(4, "ip utility")
                && want(5, "ps from procps")
                && want(6, "certs")
                && want(7, "0")
                && want(8, "1000"),
            || format!("minimal tier check output:\n{out}"),
        )
    })
}
