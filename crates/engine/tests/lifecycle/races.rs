//! Agent requests racing lifecycle changes: a request whose sandbox is
//! stopped while it runs ends at once with `Interrupted` (it used to wait
//! for its 60 s timeout), and one racing a stop either is served or says
//! so; the sandbox serves the next request either way.

use std::time::Instant;

use super::*;

pub(crate) fn trials(vm: &[Need]) -> Vec<libtest_mimic::Trial> {
    vec![trial(
        "requests_racing_stops_end_promptly",
        vm,
        requests_racing_stops,
    )]
}

/// Rounds of (exec ‖ stop).
const ROUNDS: usize = 10;
/// Far longer than a stop and a wake under load, far shorter than the
/// agent's 60 s reply timeout.
const PROMPT: Duration = Duration::from_secs(30);

async fn exec_or_interrupted(e: &VmEngine<AnyDriver>, sb: &SandboxId, script: &str) -> TestResult {
    let start = Instant::now();
    let r = e.exec(sb, ExecOptions::new(["sh", "-c", script])).await;
    ensure(start.elapsed() < PROMPT, || {
        format!("`{script}` took {:?}: {r:?}", start.elapsed())
    })?;
    match r {
        Ok(x) if x.exit_code == 0 => Ok(()),
        // Interrupted by the stop, or refused because it came after it
        // (the engine wakes no stopped sandbox; the server starts it).
        Err(EngineError::Interrupted(_) | EngineError::State(_)) => Ok(()),
        other => Err(format!("`{script}`: {other:?}").into()),
    }
}

fn requests_racing_stops() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = &t.engine;
        let sb = id("race")?;
        e.create(sb.clone(), small()).await?;
        // A long exec and a stop a moment later: interrupted, not hung.
        let (long, stopped) = tokio::join!(e.exec(&sb, ExecOptions::new(["sleep", "40"])), async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            e.stop(&sb).await
        });
        stopped?;
        ensure(matches!(long, Err(EngineError::Interrupted(_))), || {
            format!("an exec whose sandbox stopped: {long:?}")
        })?;
        for round in 0..ROUNDS {
            if e.status(&sb).await?.state == SandboxState::Stopped {
                e.start(&sb).await?;
            }
            let (done, _) = tokio::join!(exec_or_interrupted(e, &sb, "true"), async {
                if round % 2 == 0 {
                    tokio::task::yield_now().await;
                }
                e.stop(&sb).await
            });
            done.map_err(|err| format!("round {round}: {err:?}"))?;
        }
        if e.status(&sb).await?.state == SandboxState::Stopped {
            e.start(&sb).await?;
        }
        sh(e, &sb, "true").await?;
        e.destroy(&sb).await?;
        Ok(())
    })
}
