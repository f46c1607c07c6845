//! Creates that fail, and VMMs left behind: whatever went wrong, nothing
//! of the sandbox stays.

use super::*;

pub(crate) fn failed_create_leaves_nothing_behind() -> TestResult {
    run(async {
        // A "kernel" QEMU cannot load: create gets as far as spawning the
        // VMM (dir, rootfs copy, address, TAP, config drive made) and fails.
        let images = tempfile::tempdir()?;
        std::fs::write(images.path().join("vmlinux"), b"not a kernel")?;
        std::fs::write(
            images.path().join(Tier::Busybox.file_name()),
            vec![0u8; 1 << 20],
        )?;
        let t = TestEngine::start(ImagePaths::new(images.path())).await?;
        let e = &t.engine;
        let sb = id("broken")?;
        let res = e.create(sb.clone(), small()).await;
        ensure(matches!(res, Err(EngineError::Driver(_))), || {
            format!("expected a driver error, got {res:?}")
        })?;
        ensure(
            !e.network()
                .ip_in_use(std::net::Ipv4Addr::new(10, 213, 0, 2)),
            || "address not released".into(),
        )?;
        // Egress asked of an engine whose egress is `none`.
        let wants_out = SandboxSpec {
            egress: Some(true),
            ..small()
        };
        let res = e.create(id("eager")?, wants_out).await;
        ensure(
            matches!(
                res,
                Err(EngineError::Network(
                    bhatti_engine::network::NetworkError::NoEgress
                ))
            ),
            || format!("expected NoEgress, got {res:?}"),
        )?;
        ensure(
            !e.network()
                .ip_in_use(std::net::Ipv4Addr::new(10, 213, 0, 2)),
            || "address not released after the egress refusal".into(),
        )?;
        // Missing images are a clear error too.
        let none = TestEngine::start(ImagePaths::new(images.path().join("nope"))).await?;
        let res = none.engine.create(sb.clone(), small()).await;
        ensure(matches!(res, Err(EngineError::Image(_))), || {
            format!("expected an image error, got {res:?}")
        })?;
        ensure(e.list().await.is_empty(), || "listed after failure".into())?;
        ensure(e.network().list_taps()?.is_empty(), || "TAP left".into())?;
        ensure(!t.sandbox_dir(&sb).exists(), || "dir left".into())?;
        ensure(is_empty_dir(&t.dir.path().join("sandboxes")), || {
            "sandboxes dir not empty".into()
        })?;
        // Bad input is an error, not a crash.
        let bad = SandboxSpec { cpus: 0, ..small() };
        ensure(
            matches!(e.create(id("x")?, bad).await, Err(EngineError::Spec(_))),
            || "cpus 0 accepted".into(),
        )?;
        Ok(())
    })
}

pub(crate) fn create_fails_cleanly_when_the_agent_never_answers() -> TestResult {
    run(async {
        // The real kernel with a root filesystem that has no init: the
        // guest panics, the agent never answers, create must undo it all.
        let images = tempfile::tempdir()?;
        let real = ImagePaths::from_env();
        std::fs::copy(real.kernel()?, images.path().join("vmlinux"))?;
        let rootfs = images.path().join(Tier::Busybox.file_name());
        std::fs::File::create(&rootfs)?.set_len(16 << 20)?;
        let out = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&rootfs)
            .output()?;
        ensure(out.status.success(), || "mkfs.ext4 failed".into())?;

        let ns = NetNs::create(&unique_name("btnoag"))?;
        let dir = tempfile::tempdir()?;
        let mut cfg = config(&dir, &ns, ImagePaths::new(images.path()));
        // Long enough that only noticing QEMU's exit ends the wait in time.
        cfg.agent_ready_timeout = Duration::from_secs(600);
        let e = VmEngine::start(driver(), cfg).await?;
        let sb = id("noagent")?;
        let res = tokio::time::timeout(Duration::from_secs(120), e.create(sb.clone(), small()))
            .await
            .map_err(|_| "create did not notice the VMM exit")?;
        ensure(
            matches!(&res, Err(EngineError::NotReady(m)) if m.contains("exited")),
            || format!("expected NotReady (QEMU exited), got {res:?}"),
        )?;
        ensure(e.list().await.is_empty(), || "listed after failure".into())?;
        ensure(e.network().list_taps()?.is_empty(), || "TAP left".into())?;
        ensure(
            !e.network()
                .ip_in_use(std::net::Ipv4Addr::new(10, 213, 0, 2)),
            || "address not released".into(),
        )?;
        ensure(is_empty_dir(&dir.path().join("sandboxes")), || {
            "sandbox dir left".into()
        })?;
        ensure(
            bhatti_engine::sandbox::orphans::find(&dir.path().display().to_string()).is_empty(),
            || "VMM process left running".into(),
        )?;
        Ok(())
    })
}

pub(crate) fn orphan_vmm_processes_are_killed_by_recovery() -> TestResult {
    run(async {
        let ns = NetNs::create(&unique_name("btorph"))?;
        let dir = tempfile::tempdir()?;
        // A stand-in for a VMM left by a crashed daemon: its argv names a
        // file under <data_dir>/sandboxes/ (as QEMU's -drive and -qmp do).
        let sb_dir = dir.path().join("sandboxes").join("old");
        std::fs::create_dir_all(&sb_dir)?;
        let fake = sb_dir.join("vmm");
        std::os::unix::fs::symlink("/bin/sleep", &fake)?;
        let mut orphan = std::process::Command::new(&fake).arg("300").spawn()?;
        let mut bystander = std::process::Command::new("sleep").arg("300").spawn()?;

        let engine = VmEngine::start(driver(), config(&dir, &ns, ImagePaths::from_env())).await?;
        // No sandbox.json: a create that never finished. Its dir goes, and
        // its process, held by no sandbox, is an orphan.
        let rec = engine.recover().await?;
        let mut status = None;
        for _ in 0..100 {
            status = orphan.try_wait()?;
            if status.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let alive = bystander.try_wait()?.is_none();
        let _ = bystander.kill();
        let _ = bystander.wait();
        let _ = orphan.kill();
        let _ = orphan.wait();
        use std::os::unix::process::ExitStatusExt;
        ensure(status.and_then(|s| s.signal()) == Some(9), || {
            format!("orphan not killed: {status:?}")
        })?;
        ensure(alive, || "an unrelated process was killed".into())?;
        ensure(
            matches!(rec.as_slice(), [Recovery::Abandoned(id)] if id.as_str() == "old")
                && !sb_dir.exists(),
            || format!("interrupted create not undone: {rec:?}"),
        )?;
        Ok(())
    })
}

/// A snapshot file that is empty or not a snapshot is refused at once
/// (not after the restore timeout): the guest boots from its disk, says
/// its memory is lost, and keeps what it wrote before the stop, with no
/// `sync` of the caller's: an exec's file (lohar syncs right after its
/// EXIT) and, through the engine's sync before the snapshot, a file a
/// background process wrote after every exec had ended (no exec's sync
/// covers it, and the guest's own writeback waits 5-30 s).
pub(crate) fn broken_snapshot_boots_from_disk() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = &t.engine;
        let sb = id("broken-snap")?;
        e.create(sb.clone(), small()).await?;
        sh(e, &sb, "echo kept > /workspace/f").await?;
        sh(
            e,
            &sb,
            "(sleep 0.2; echo late > /workspace/g.tmp; mv /workspace/g.tmp /workspace/g) \
             </dev/null >/dev/null 2>&1 &",
        )
        .await?;
        // Read, not exec'd: a file read syncs nothing.
        let waited = std::time::Instant::now();
        while e
            .read_file(&sb, "/workspace/g", ReadOptions::default())
            .await
            .is_err()
        {
            ensure(waited.elapsed() < Duration::from_secs(60), || {
                "the background write never happened".into()
            })?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for junk in [&b""[..], b"not a QEMU migration stream"] {
            e.stop(&sb).await?;
            std::fs::write(t.sandbox_dir(&sb).join("mem.snap"), junk)?;
            let started = std::time::Instant::now();
            e.start(&sb).await?;
            let took = started.elapsed();
            let info = e.status(&sb).await?;
            ensure(
                info.state == SandboxState::Hot
                    && info
                        .note
                        .as_deref()
                        .is_some_and(|n| n.contains("could not be restored")),
                || format!("after a junk snapshot ({} bytes): {info:?}", junk.len()),
            )?;
            // A boot, not a 120 s wait for a restore that cannot load.
            ensure(took < Duration::from_secs(60), || {
                format!("start took {took:?}")
            })?;
            let data = sh(e, &sb, "cat /workspace/f /workspace/g").await?;
            ensure(data == "kept\nlate\n", || {
                format!("after the boot: {data:?}")
            })?;
        }
        e.destroy(&sb).await?;
        Ok(())
    })
}
