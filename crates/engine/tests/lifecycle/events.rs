//! The engine owns a sandbox's state and publishes every change: one
//! event per transition, numbered in order, and a status read that never
//! waits for a lifecycle operation in progress.

use std::task::Poll;

use bhatti_engine::engine::StateEvent;

use super::*;

/// Receives the next event within a generous limit.
async fn next(rx: &mut tokio::sync::broadcast::Receiver<StateEvent>) -> Result<StateEvent, Failed> {
    Ok(tokio::time::timeout(Duration::from_secs(30), rx.recv()).await??)
}

pub(crate) fn every_transition_is_published_in_order() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = &t.engine;
        let mut rx = e.subscribe();
        let sb = id("events")?;
        e.create(sb.clone(), small()).await?;
        e.pause(&sb).await?;
        e.freeze(&sb).await?;
        e.ensure_hot(&sb).await?;
        // No-ops publish nothing.
        e.ensure_hot(&sb).await?;
        e.stop(&sb).await?;
        e.start(&sb).await?;
        e.destroy(&sb).await?;
        let want = [
            SandboxState::Hot,
            SandboxState::Warm,
            SandboxState::Cold,
            SandboxState::Hot,
            SandboxState::Stopped,
            SandboxState::Hot,
            SandboxState::Destroyed,
        ];
        let mut last = 0;
        for (i, state) in want.into_iter().enumerate() {
            let ev = next(&mut rx).await?;
            ensure(ev.id == sb && ev.state == state && ev.seq > last, || {
                format!("event {i}: {ev:?}, wanted {state} after seq {last}")
            })?;
            last = ev.seq;
        }
        ensure(rx.try_recv().is_err(), || "an event too many".into())?;
        Ok(())
    })
}

pub(crate) fn status_never_waits_for_a_snapshot_in_progress() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = &t.engine;
        let sb = id("reader")?;
        e.create(sb.clone(), small()).await?;
        e.pause(&sb).await?;
        let before = e.status(&sb).await?;
        // The freeze holds the sandbox's lock across a QMP round trip and a
        // snapshot file write, so it cannot finish on its first poll; the
        // status read must finish on its first poll all the same.
        let mut freeze = std::pin::pin!(e.freeze(&sb));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        ensure(freeze.as_mut().poll(&mut cx).is_pending(), || {
            "the freeze finished at once".into()
        })?;
        let mut read = std::pin::pin!(e.status(&sb));
        let during = match read.as_mut().poll(&mut cx) {
            Poll::Ready(r) => r?,
            Poll::Pending => return Err("status waited for the freeze".into()),
        };
        ensure(
            during.state == SandboxState::Warm && during.seq == before.seq,
            || format!("during the freeze: {during:?}"),
        )?;
        freeze.await?;
        let after = e.status(&sb).await?;
        ensure(
            after.state == SandboxState::Cold && after.pid.is_none() && after.seq > before.seq,
            || format!("after the freeze: {after:?}"),
        )?;
        e.destroy(&sb).await?;
        Ok(())
    })
}
