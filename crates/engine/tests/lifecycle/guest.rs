//! What the guest sees of its sandbox: the spec inside, its peers on the
//! sandbox network (also after a restore), and an agent that reaps what
//! it did not start.

use super::*;

pub(crate) fn trials(vm: &[Need]) -> Vec<libtest_mimic::Trial> {
    vec![
        trial(
            "template_free_spec_is_visible_inside",
            vm,
            template_free_spec_is_visible_inside,
        ),
        trial(
            "the_agent_reaps_orphans_and_reports_exit_codes",
            vm,
            the_agent_reaps_orphans_and_reports_exit_codes,
        ),
        trial(
            "two_vms_reach_each_other_also_after_restore",
            vm,
            two_vms_reach_each_other_also_after_restore,
        ),
    ]
}

pub(crate) fn template_free_spec_is_visible_inside() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = &t.engine;
        let sb = id("spec")?;
        let spec = SandboxSpec {
            cpus: 2,
            memory_mb: 320,
            env: [("BHATTI_T".to_owned(), "forty-two".to_owned())].into(),
            init: Some("echo ran > /tmp/init-ran".into()),
            files: vec![bhatti_engine::engine::FileSpec {
                path: "/etc/hello.txt".into(),
                content: b"hi there\n".to_vec(),
                mode: 0o640,
            }],
            volumes: vec![bhatti_engine::engine::VolumeSpec {
                name: "vol-a".into(),
                mount: "/data".into(),
                size_mb: 16,
                readonly: false,
            }],
            ..small()
        };
        e.create(sb.clone(), spec).await?;
        let mem = sh(e, &sb, "awk '/MemTotal/ {print $2}' /proc/meminfo").await?;
        let kib: u64 = mem.trim().parse().map_err(|_| format!("meminfo {mem:?}"))?;
        ensure((200_000..=330_000).contains(&kib), || {
            format!("MemTotal {kib} KiB")
        })?;
        let env = sh(e, &sb, "echo $BHATTI_T").await?;
        ensure(env == "forty-two\n", || format!("env {env:?}"))?;
        let file = sh(e, &sb, "cat /etc/hello.txt").await?;
        ensure(file == "hi there\n", || format!("file {file:?}"))?;
        // The init script runs in the background at boot.
        let mut ran = String::new();
        for _ in 0..50 {
            ran = sh(e, &sb, "cat /tmp/init-ran 2>/dev/null || true").await?;
            if ran == "ran\n" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ensure(ran == "ran\n", || format!("init marker {ran:?}"))?;
        let mounts = sh(e, &sb, "grep ' /data ' /proc/mounts || true").await?;
        ensure(mounts.contains("ext4"), || {
            format!("volume not mounted: {mounts:?}")
        })?;
        // The volume is the sandbox user's; exec runs as root.
        let owner = sh(e, &sb, "stat -c %u /data; id -u").await?;
        ensure(owner == "1000\n0\n", || {
            format!("volume owner / exec user: {owner:?}")
        })?;
        sh(e, &sb, "echo kept > /data/f; sync").await?;
        e.destroy(&sb).await?;

        // The volume outlives the sandbox and shows up in the next one.
        let vol = t.dir.path().join("volumes").join("vol-a.ext4");
        ensure(vol.exists(), || {
            "volume file deleted with the sandbox".into()
        })?;
        let sb2 = id("spec2")?;
        let spec2 = SandboxSpec {
            cpus: 2,
            volumes: vec![bhatti_engine::engine::VolumeSpec {
                name: "vol-a".into(),
                mount: "/data".into(),
                size_mb: 16,
                readonly: false,
            }],
            ..small()
        };
        e.create(sb2.clone(), spec2.clone()).await?;
        let kept = sh(e, &sb2, "cat /data/f").await?;
        ensure(kept == "kept\n", || format!("volume data {kept:?}"))?;
        // Attached to a running sandbox: a second one cannot take it.
        let busy = e.create(id("spec3")?, spec2).await;
        ensure(matches!(busy, Err(EngineError::VolumeBusy(_))), || {
            format!("second attach: {busy:?}")
        })?;
        // Checked last so that everything above is exercised either way.
        let cpus = sh(e, &sb2, "grep -c ^processor /proc/cpuinfo").await?;
        ensure(cpus.trim() == "2", || {
            format!("the guest sees {cpus:?} CPUs, 2 requested")
        })?;
        Ok(())
    })
}

pub(crate) fn two_vms_reach_each_other_also_after_restore() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = &t.engine;
        let (a, b, c) = (id("net-a")?, id("net-b")?, id("net-c")?);
        let tenant = |t: &str| SandboxSpec {
            tenant: Some(t.into()),
            ..small()
        };
        e.create(a.clone(), tenant("one")).await?;
        let ip_b = e
            .create(b.clone(), tenant("one"))
            .await?
            .ip
            .ok_or("no address")?;
        e.create(c.clone(), tenant("two")).await?;
        sh(
            e,
            &b,
            "mkdir -p /tmp/www && echo pong > /tmp/www/index.html && httpd -p 8080 -h /tmp/www",
        )
        .await?;
        // busybox-static's wget crashes in glibc's resolver; speak HTTP
        // with nc instead.
        let fetch = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc {ip_b} 8080");
        let got = sh(e, &a, &fetch).await?;
        ensure(got.ends_with("pong\n"), || {
            format!("A fetched {got:?} from B")
        })?;
        // Another tenant's guest gets nothing.
        let other = sh(e, &c, &format!("{fetch} -w 3; echo end")).await?;
        ensure(other == "end\n", || format!("C fetched {other:?} from B"))?;

        // Both go cold and come back: addresses, TAPs and the server in B
        // survive, and the host reaches both agents right away.
        for sb in [&a, &b] {
            e.stop(sb).await?;
        }
        // The snapshot holds guest memory: the daemon's alone, whatever
        // the umask of the process (this test's is not the daemon's 077).
        let snap = t.dir.path().join("sandboxes/net-a/mem.snap");
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&snap)?.permissions());
        ensure(mode & 0o777 == 0o600, || {
            format!("{} mode {mode:o}", snap.display())
        })?;
        for sb in [&b, &a] {
            e.start(sb).await?;
        }
        let got = sh(e, &a, &fetch).await?;
        ensure(got.ends_with("pong\n"), || {
            format!("after restore A fetched {got:?}")
        })?;
        Ok(())
    })
}

/// PID 1 reaps what it did not start: orphans re-parented to it leave no
/// zombie, while its own children still report their exit codes.
pub(crate) fn the_agent_reaps_orphans_and_reports_exit_codes() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = &t.engine;
        let sb = id("reap")?;
        e.create(sb.clone(), small()).await?;
        // Twenty orphans: each subshell exits at once and leaves its
        // `sleep` to PID 1, which exits a moment later.
        sh(e, &sb, "for i in $(seq 20); do (sleep 0.2 &); done; exit 0").await?;
        // Exit codes of the agent's own children, while the orphans exit.
        for code in [0, 3, 7, 42] {
            let r = e
                .exec(&sb, ExecOptions::new(["sh", "-c", &format!("exit {code}")]))
                .await?;
            ensure(r.exit_code == code, || {
                format!("`exit {code}` reported {}", r.exit_code)
            })?;
        }
        let count = "grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l";
        let mut zombies = String::new();
        for _ in 0..50 {
            zombies = sh(e, &sb, count).await?;
            if zombies.trim() == "0" {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("{} zombies left after 5 s", zombies.trim()).into())
    })
}
