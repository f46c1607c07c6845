//! An engine restart, as after a daemon crash: a VMM that outlived the
//! engine is adopted with its memory, a snapshotted sandbox comes back
//! cold, one whose VMM died boots from its disk, and an interrupted
//! snapshot or a create that never finished leaves nothing behind.

use super::*;

/// Waits until `id` is published in `state`.
async fn wait_state(
    e: &VmEngine<AnyDriver>,
    id: &SandboxId,
    state: SandboxState,
) -> Result<bhatti_engine::engine::SandboxInfo, Failed> {
    let mut last = None;
    for _ in 0..500 {
        let info = e.status(id).await?;
        if info.state == state {
            return Ok(info);
        }
        last = Some(info);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("{id} never became {state}: {last:?}").into())
}

#[allow(clippy::too_many_lines)] // one restart, checked sandbox by sandbox
pub(crate) fn engine_restart_recovers_snapshotted_sandboxes() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let (kept, died, live, gone) = (id("kept")?, id("died")?, id("live")?, id("gone")?);
        let ip = t.engine.create(kept.clone(), small()).await?.ip;
        let gone_ip = t.engine.create(gone.clone(), small()).await?.ip;
        t.engine.create(died.clone(), small()).await?;
        t.engine.create(live.clone(), small()).await?;
        sh(&t.engine, &kept, "echo saved > /workspace/f; sync").await?;
        sh(&t.engine, &died, "echo synced > /workspace/f; sync").await?;
        // Memory only: a tmpfs file and a background process.
        sh(
            &t.engine,
            &live,
            "echo in-ram > /tmp/m; sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > /tmp/pid",
        )
        .await?;
        t.engine.stop(&kept).await?;

        // A VMM killed behind the engine's back is noticed at once.
        let pid = t.engine.vmm_pid(&died).await?.ok_or("no VMM pid")?;
        let pid = rustix::process::Pid::from_raw(i32::try_from(pid)?).ok_or("pid 0")?;
        rustix::process::kill_process(pid, rustix::process::Signal::KILL)?;
        let info = wait_state(&t.engine, &died, SandboxState::Cold).await?;
        ensure(
            info.note
                .as_deref()
                .is_some_and(|n| n.contains("memory is lost")),
            || format!("no note on a dead VMM: {info:?}"),
        )?;

        // The engine goes away (a restart) and leaves `live`'s VMM running.
        // (A SIGKILLed daemon is tested with the server, in its own process.)
        let live_pid = t.engine.vmm_pid(&live).await?;
        let TestEngine {
            engine,
            _ns: ns,
            dir,
        } = t;
        engine.release_all().await;
        drop(engine);
        // A sandbox whose disk is gone, an interrupted snapshot and an
        // interrupted create, for good measure.
        std::fs::remove_file(dir.path().join("sandboxes/gone/rootfs.qcow2"))?;
        std::fs::write(dir.path().join("sandboxes/kept/mem.snap.tmp"), b"QEVM")?;
        std::fs::create_dir_all(dir.path().join("sandboxes/halfmade"))?;

        let e = VmEngine::start(driver(), config(&dir, &ns, ImagePaths::from_env())).await?;
        let rec = e.recover().await?;
        let held = |id: &SandboxId| {
            rec.iter()
                .any(|r| matches!(r, Recovery::Held(h) if h == id))
        };
        ensure(
            rec.len() == 5 && held(&kept) && held(&died) && held(&live),
            || format!("recovery: {rec:?}"),
        )?;
        ensure(
            rec.iter()
                .any(|r| matches!(r, Recovery::Unknown { dir, .. } if dir.ends_with("gone"))),
            || format!("a sandbox without its disk not reported: {rec:?}"),
        )?;
        // Its address stays taken while its files exist; destroy removes
        // them and frees it.
        let gone_ip = gone_ip.ok_or("no ip")?;
        ensure(e.network().ip_in_use(gone_ip), || {
            "the address of a sandbox left on disk was freed".into()
        })?;
        e.destroy(&gone).await?;
        ensure(
            !dir.path().join("sandboxes/gone").exists() && !e.network().ip_in_use(gone_ip),
            || "destroying a sandbox the engine does not hold left its dir or address".into(),
        )?;
        ensure(
            rec.iter()
                .any(|r| matches!(r, Recovery::Abandoned(a) if a.as_str() == "halfmade")),
            || format!("interrupted create not undone: {rec:?}"),
        )?;
        ensure(!dir.path().join("sandboxes/halfmade").exists(), || {
            "interrupted create's dir left".into()
        })?;
        ensure(
            !dir.path().join("sandboxes/kept/mem.snap.tmp").exists(),
            || "interrupted snapshot left".into(),
        )?;

        // Adopted: same VMM, memory and processes intact.
        let info = e.status(&live).await?;
        ensure(
            info.state == SandboxState::Hot && info.pid == live_pid,
            || format!("not adopted: {info:?}, pid before {live_pid:?}"),
        )?;
        let out = sh(
            &e,
            &live,
            "cat /tmp/m; kill -0 $(cat /tmp/pid) && echo alive",
        )
        .await?;
        ensure(out == "in-ram\nalive\n", || {
            format!("adopted guest: {out:?}")
        })?;

        // Snapshot: cold, data back on wake.
        let info = e.status(&kept).await?;
        ensure(info.state == SandboxState::Cold && info.ip == ip, || {
            format!("recovered: {info:?}")
        })?;
        let data = sh(&e, &kept, "cat /workspace/f").await?;
        ensure(data == "saved\n", || {
            format!("data after recovery {data:?}")
        })?;

        // No snapshot: a boot from its disk, synced files kept.
        let info = e.status(&died).await?;
        ensure(
            info.state == SandboxState::Cold && info.note.is_some(),
            || format!("dead VMM after restart: {info:?}"),
        )?;
        let data = sh(&e, &died, "cat /workspace/f").await?;
        ensure(data == "synced\n", || format!("disk after boot {data:?}"))?;

        // Recovering again finds nothing new.
        let again = e.recover().await?;
        ensure(again.is_empty(), || format!("second recovery: {again:?}"))?;
        for id in [&kept, &died, &live] {
            e.destroy(id).await?;
        }
        ensure(
            bhatti_engine::sandbox::orphans::find(&dir.path().display().to_string()).is_empty(),
            || "VMM process left running".into(),
        )?;
        drop(e);
        drop(ns);
        drop(dir);
        Ok(())
    })
}
