//! Hot, warm, cold and stopped: pausing, snapshotting and waking a
//! sandbox, and its data and clock across the trips.

use super::*;

pub(crate) fn create_exec_destroy() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = &t.engine;
        let sb = id("life")?;
        let info = e.create(sb.clone(), small()).await?;
        ensure(
            info.state == SandboxState::Hot && info.pid.is_some(),
            || format!("after create: {info:?}"),
        )?;
        let out = sh(e, &sb, "echo hello; id -u").await?;
        ensure(out.starts_with("hello\n"), || {
            format!("exec printed {out:?}")
        })?;
        let ip = info.ip.ok_or("no address")?;
        let tap = e.network().tap_name(sb.as_str());
        ensure(e.network().list_taps()? == [tap.clone()], || {
            "TAP missing".into()
        })?;

        e.destroy(&sb).await?;
        ensure(
            matches!(e.status(&sb).await, Err(EngineError::NotFound(_))),
            || "still listed after destroy".into(),
        )?;
        ensure(!t.sandbox_dir(&sb).exists(), || "dir left behind".into())?;
        ensure(e.network().list_taps()?.is_empty(), || "TAP left".into())?;
        ensure(!e.network().ip_in_use(ip), || "address not released".into())?;
        Ok(())
    })
}

pub(crate) fn pause_resume_and_wake_from_warm() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = &t.engine;
        let sb = id("warm")?;
        e.create(sb.clone(), small()).await?;
        e.pause(&sb).await?;
        ensure(e.status(&sb).await?.state == SandboxState::Warm, || {
            "not warm after pause".into()
        })?;
        e.resume(&sb).await?;
        e.pause(&sb).await?;
        tokio::time::sleep(CLOCK_NAP).await;
        // Any agent call wakes it (ensure_hot from warm).
        let out = sh(e, &sb, "echo awake").await?;
        ensure(out == "awake\n", || format!("exec printed {out:?}"))?;
        let st = e.status(&sb).await?.state;
        ensure(st == SandboxState::Hot, || format!("state {st}"))?;
        ensure(e.restore_count(&sb)? == 0, || "warm wake restored".into())?;
        ensure_on_time(e, &sb, "after a warm wake").await
    })
}

pub(crate) fn stop_start_keeps_data_across_two_cycles() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = &t.engine;
        let sb = id("cold")?;
        let ip = e.create(sb.clone(), small()).await?.ip;
        for round in 1..=2 {
            sh(
                e,
                &sb,
                &format!("echo round{round} >> /workspace/data; sync"),
            )
            .await?;
            e.stop(&sb).await?;
            let info = e.status(&sb).await?;
            ensure(
                info.state == SandboxState::Stopped && info.pid.is_none(),
                || format!("after stop: {info:?}"),
            )?;
            let dir = t.sandbox_dir(&sb);
            ensure(driver().saved_snapshot(&dir).is_some(), || {
                format!("no snapshot in {}", dir.display())
            })?;
            // A stopped sandbox does not wake by itself.
            ensure(
                matches!(e.ensure_hot(&sb).await, Err(EngineError::State(_))),
                || "stopped sandbox woke on ensure_hot".into(),
            )?;
            if round == 1 {
                tokio::time::sleep(CLOCK_NAP).await;
            }
            e.start(&sb).await?;
            if round == 1 {
                ensure_on_time(e, &sb, "after a cold start").await?;
            }
            ensure(driver().saved_snapshot(&dir).is_none(), || {
                "snapshot kept after restore".into()
            })?;
            let info = e.status(&sb).await?;
            ensure(info.state == SandboxState::Hot && info.ip == ip, || {
                format!("after start: {info:?}")
            })?;
            let data = sh(e, &sb, "cat /workspace/data").await?;
            let want: String = (1..=round).map(|r| format!("round{r}\n")).collect();
            ensure(data == want, || format!("round {round}: data {data:?}"))?;
        }
        ensure(e.restore_count(&sb)? == 2, || {
            "expected two restores".into()
        })?;
        Ok(())
    })
}

pub(crate) fn concurrent_wakes_of_a_cold_sandbox_restore_once() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = t.engine.clone();
        let sb = id("herd")?;
        e.create(sb.clone(), small()).await?;
        e.pause(&sb).await?;
        e.freeze(&sb).await?;
        ensure(e.status(&sb).await?.state == SandboxState::Cold, || {
            "not cold after freeze".into()
        })?;
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (e, sb) = (e.clone(), sb.clone());
            tasks.push(tokio::spawn(async move {
                e.exec(&sb, ExecOptions::new(["echo", &i.to_string()]))
                    .await
                    .map(|r| (i, r))
            }));
        }
        for task in tasks {
            let (i, r) = task.await??;
            let out = String::from_utf8_lossy(&r.stdout).into_owned();
            ensure(out == format!("{i}\n"), || {
                format!("exec {i} printed {out:?}")
            })?;
        }
        let restores = e.restore_count(&sb)?;
        ensure(restores == 1, || {
            format!("{restores} restores for 20 wakes")
        })?;
        Ok(())
    })
}
