//! An engine restart: sandboxes with a snapshot come back cold, the
//! others are reported.

use bhatti_engine::sandbox::Lost;

use super::*;

pub(crate) fn engine_restart_recovers_snapshotted_sandboxes() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let (kept, lost) = (id("kept")?, id("lost")?);
        let ip = t.engine.create(kept.clone(), small()).await?.ip;
        t.engine.create(lost.clone(), small()).await?;
        sh(&t.engine, &kept, "echo saved > /workspace/f; sync").await?;
        t.engine.stop(&kept).await?;
        // The daemon goes away: `lost` dies hot, without a snapshot.
        let TestEngine {
            engine,
            _ns: ns,
            dir,
        } = t;
        drop(engine);

        let e = VmEngine::start(driver(), config(&dir, &ns, ImagePaths::from_env())).await?;
        let rec = e.recover().await?;
        ensure(
            rec.len() == 2
                && rec
                    .iter()
                    .any(|r| matches!(r, Recovery::Cold(id) if *id == kept)),
            || format!("recovery: {rec:?}"),
        )?;
        ensure(
            rec.iter().any(|r| {
                matches!(
                    r,
                    Recovery::Unknown {
                        reason: Lost::NoSnapshot,
                        ..
                    }
                )
            }),
            || format!("lost sandbox not reported: {rec:?}"),
        )?;
        ensure(
            matches!(e.status(&lost).await, Err(EngineError::NotFound(_))),
            || "unrecoverable sandbox registered".into(),
        )?;
        let info = e.status(&kept).await?;
        ensure(info.state == SandboxState::Cold && info.ip == ip, || {
            format!("recovered: {info:?}")
        })?;
        let data = sh(&e, &kept, "cat /workspace/f").await?;
        ensure(data == "saved\n", || {
            format!("data after recovery {data:?}")
        })?;
        // Recovering again finds nothing new.
        let again = e.recover().await?;
        ensure(again.len() == 1, || format!("second recovery: {again:?}"))?;
        drop(e);
        drop(ns);
        drop(dir);
        Ok(())
    })
}
