//! One owner of sandbox state: a user's stop, the thermal manager's steps
//! and a request's wake race on one sandbox, many times over, and every
//! time the store ends equal to the engine (the engine owns the state;
//! the store mirrors it by sequence number, see `bhatti_server::mirror`).

use std::time::Duration;

use bhatti_engine::engine::{Engine, SandboxId};
use bhatti_engine::state::SandboxState;
use bhatti_server::mirror::store_state;
use libtest_mimic::Failed;

use crate::support::{TestDaemon, TestResult, Timers, ensure, eventually, run};

/// Rounds of the race; each starts from hot, warm or cold in turn.
const ROUNDS: usize = 24;

pub fn stop_tick_and_wake_race() -> TestResult {
    run(async {
        // Cool at once, but only when the test ticks (the manager's own
        // tick is an hour away).
        let d = TestDaemon::start(Timers {
            warm_after: 0,
            cold_after: 0,
            tick: 3600,
        })
        .await?;
        let v = d.create("race").await?;
        let id: SandboxId = v["id"].as_str().unwrap_or_default().parse()?;
        let st = &d.state;
        let mut seen = std::collections::BTreeSet::new();
        for round in 0..ROUNDS {
            // The starting point: hot, warm or cold.
            match round % 3 {
                1 => st.engine.pause(&id).await?,
                2 => {
                    st.engine.pause(&id).await?;
                    st.engine.freeze(&id).await?;
                }
                _ => {}
            }
            let row = st.store.sandbox_by_id(id.as_str())?;
            let stop = async {
                // Let the others start first in odd rounds.
                if round % 2 == 1 {
                    tokio::task::yield_now().await;
                }
                st.stop_sandbox(&row).await.map(drop)
            };
            let tick = async {
                let a = st.thermal_tick().await;
                let b = st.thermal_tick().await;
                a.len() + b.len()
            };
            let wake = async { st.wake(&row).await.map(drop) };
            let (stopped, _, woke) = tokio::join!(stop, tick, wake);
            // Either may lose the race (409): that is the API's answer,
            // not a failure. What must hold is the end state.
            let engine_state = settled(&d, &id).await?;
            seen.insert(engine_state.as_str());
            ensure(stopped.is_ok() || woke.is_ok(), || {
                format!("round {round}: neither stop ({stopped:?}) nor wake ({woke:?}) worked")
            })?;
            if engine_state == SandboxState::Stopped {
                st.start_sandbox(&st.store.sandbox_by_id(id.as_str())?)
                    .await?;
            }
            st.engine.ensure_hot(&id).await?;
            settled(&d, &id).await?;
        }
        ensure(seen.contains("stopped"), || {
            format!("stop never won: {seen:?}")
        })?;
        // Memory and disk survived every round.
        let out = d.sh("race", "echo alive").await?;
        ensure(out == "alive\n", || format!("after the race: {out:?}"))?;
        d.finish().await
    })
}

/// Waits until the store shows the engine's state (the mirror task runs
/// on its own), and fails if it does not within a few seconds.
async fn settled(d: &TestDaemon, id: &SandboxId) -> Result<SandboxState, Failed> {
    let st = &d.state;
    eventually(Duration::from_secs(10), || async {
        let info = st.engine.status(id).await?;
        let row = st.store.sandbox_by_id(id.as_str())?;
        let want = store_state(info.state);
        Ok((want == Some((row.status, row.thermal))).then_some(info.state))
    })
    .await
    .map_err(|e| {
        let row = st.store.sandbox_by_id(id.as_str());
        Failed::from(format!(
            "store never matched the engine: {e:?}; row {row:?}"
        ))
    })
}
