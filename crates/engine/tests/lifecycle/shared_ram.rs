//! `QemuDriver::shared_ram`: guest RAM in `<run_dir>/ram`, snapshots of
//! device state only. Memory (a tmpfs file and a running process) and
//! the clock survive stop/start and freeze/wake; the stream is small; a
//! snapshot whose RAM file is missing is refused, never restored into
//! zeroed memory.

use super::*;

pub(crate) fn trials(vm: &[Need]) -> Vec<libtest_mimic::Trial> {
    vec![trial(
        "shared_ram_memory_survives_stop_and_freeze",
        vm,
        memory_survives_stop_and_freeze,
    )]
}

fn shared_driver() -> AnyDriver {
    AnyDriver::Qemu(QemuDriver {
        shared_ram: true,
        ..QemuDriver::default()
    })
}

async fn start_shared() -> Result<TestEngine, Failed> {
    let ns = NetNs::create(&unique_name("btshr"))?;
    let dir = tempfile::tempdir()?;
    let engine =
        VmEngine::start(shared_driver(), config(&dir, &ns, ImagePaths::from_env())).await?;
    Ok(TestEngine {
        engine: Arc::new(engine),
        _ns: ns,
        dir,
    })
}

/// The tmpfs file and the background process the test left in memory.
async fn memory_kept(e: &VmEngine<AnyDriver>, sb: &SandboxId, how: &str) -> TestResult {
    let out = sh(e, sb, "cat /tmp/m; kill -0 $(cat /tmp/pid) && echo alive").await?;
    ensure(out == "in-ram\nalive\n", || format!("{how}: {out:?}"))
}

pub(crate) fn memory_survives_stop_and_freeze() -> TestResult {
    run(async {
        let t = start_shared().await?;
        let e = &t.engine;
        let sb = id("shr")?;
        e.create(sb.clone(), small()).await?;
        let dir = t.sandbox_dir(&sb);
        let ram = dir.join("ram");
        ensure(ram.is_file(), || "no RAM file after create".into())?;
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&ram)?.permissions());
        ensure(mode & 0o077 == 0, || format!("RAM file mode {mode:o}"))?;
        sh(
            e,
            &sb,
            "echo in-ram > /tmp/m; sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > /tmp/pid",
        )
        .await?;

        // Every stop writes device state only.
        e.stop(&sb).await?;
        let snap = std::fs::metadata(dir.join("mem.snap"))?.len();
        ensure(snap < 1 << 20, || {
            format!("device-state stream of {snap} bytes")
        })?;
        ensure(dir.join("mem.snap.shared").is_file(), || "no marker".into())?;
        e.start(&sb).await?;
        memory_kept(e, &sb, "after stop/start").await?;
        ensure(!dir.join("mem.snap.shared").exists(), || {
            "marker left after the restore".into()
        })?;

        e.pause(&sb).await?;
        e.freeze(&sb).await?;
        tokio::time::sleep(CLOCK_NAP).await;
        memory_kept(e, &sb, "after freeze and wake").await?;
        ensure(e.restore_count(&sb)? == 2, || "not restored twice".into())?;
        ensure_on_time(e, &sb, "after a cold wake").await?;

        // An engine restart with the sandbox stopped: recovery keeps the
        // snapshot (and its marker), the start restores the memory.
        e.stop(&sb).await?;
        let TestEngine {
            engine,
            _ns: ns,
            dir: tmp,
        } = t;
        engine.release_all().await;
        drop(engine);
        let t = TestEngine {
            engine: Arc::new(
                VmEngine::start(shared_driver(), config(&tmp, &ns, ImagePaths::from_env())).await?,
            ),
            _ns: ns,
            dir: tmp,
        };
        let e = &t.engine;
        e.recover().await?;
        e.start(&sb).await?;
        memory_kept(e, &sb, "after an engine restart").await?;

        // Without its RAM file the snapshot is refused, and says why.
        e.stop(&sb).await?;
        std::fs::remove_file(&ram)?;
        let r = e.start(&sb).await;
        let info = e.status(&sb).await?;
        let said = format!("{r:?} {info:?}");
        ensure(said.contains("memory file"), || {
            format!("a snapshot without its RAM file: {said}")
        })?;
        e.destroy(&sb).await?;
        ensure(!dir.exists(), || "dir left behind".into())
    })
}
