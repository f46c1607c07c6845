//! What the guest makes of its config: the config drive, volumes,
//! power-off on SIGTERM, and the minimal tier's tools.

use super::*;

pub(crate) fn config_drive_applied() -> Result<(), Failed> {
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
    let t = TestVm::boot_with(cfg)?;
    runtime()?.block_on(async {
        let c = t.ready_client().await?;
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
            .exec(ExecOptions::new(["cat", "/etc/bhatti/secret"]).user("lohar"))
            .await?;
        ensure(r.exit_code != 0, || "uid 1000 read a root-only file".into())
    })
}

pub(crate) fn volume_mounted() -> Result<(), Failed> {
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
        let c = t.ready_client().await?;
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

pub(crate) fn sigterm_powers_off() -> Result<(), Failed> {
    let cfg = GuestConfig {
        user: GuestUser {
            name: "root".into(),
            uid: 0,
            gid: 0,
            home: "/root".into(),
        },
        ..default_config()
    };
    let mut t = TestVm::boot_with(cfg)?;
    runtime()?.block_on(async {
        let c = t.ready_client().await?;
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

pub(crate) fn minimal_tier() -> Result<(), Failed> {
    let t = TestVm::boot(VmOptions {
        tier: Tier::Minimal,
        ..VmOptions::default()
    })?;
    runtime()?.block_on(async {
        let c = t.client();
        c.wait_ready(Duration::from_secs(60)).await?;
        let out = run_ok_as(
            &c,
            Some("lohar"),
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
