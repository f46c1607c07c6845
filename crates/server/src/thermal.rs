//! The thermal manager: every tick, each running sandbox that is idle
//! (no API touch, no shell, stream or proxied connection in flight; see
//! [`crate::activity`]) is cooled one step — hot → warm (vCPUs paused)
//! after `warm_after`, warm → cold (snapshot on disk, VMM gone) after
//! `cold_after`. `keep_hot` sandboxes are left alone. Waking is not done
//! here: every operation that needs the VM wakes it
//! ([`crate::state::AppState::wake`]).
//!
//! The decision is the pure function [`decide`]; [`AppState::thermal_tick`] applies it.
//!
//! The manager only asks the engine; the new state reaches the store
//! through [`crate::mirror`], like every other change.
//!
//! # Threads, locks, I/O
//! One task. Each step is one engine call (under that sandbox's engine
//! lock); reading a sandbox's state never waits for that lock. A sandbox
//! that is woken between the idle check and the step is simply woken
//! again by its next request.

use std::time::{Duration, Instant};

use bhatti_engine::engine::Engine;
use bhatti_engine::state::SandboxState;

use crate::service::engine_id;
use crate::state::AppState;

/// One cooling step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Pause,
    Freeze,
}

/// What to do with a running sandbox in `state`, idle for `idle` (`None`
/// while busy).
pub fn decide(
    state: SandboxState,
    idle: Option<Duration>,
    keep_hot: bool,
    warm_after: Duration,
    cold_after: Duration,
) -> Option<Step> {
    let idle = idle?;
    if keep_hot {
        return None;
    }
    match state {
        SandboxState::Hot if idle >= warm_after => Some(Step::Pause),
        SandboxState::Warm if idle >= cold_after => Some(Step::Freeze),
        _ => None,
    }
}

impl<E: Engine> AppState<E> {
    /// One pass over the running sandboxes; returns the steps taken.
    pub async fn thermal_tick(&self) -> Vec<(String, Step)> {
        let rows = match self.store.list_live_sandboxes() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "thermal: listing sandboxes");
                return Vec::new();
            }
        };
        let mut done = Vec::new();
        // The engine's state decides; the rows give keep_hot (a sandbox
        // the engine does not hold is skipped).
        for sb in rows {
            let Ok(eid) = engine_id(&sb) else { continue };
            let Ok(info) = self.engine.status(&eid).await else {
                continue;
            };
            let idle = self.activity.idle_for(&sb.id, Instant::now());
            let step = decide(
                info.state,
                idle,
                sb.keep_hot,
                self.settings.warm_after,
                self.settings.cold_after,
            );
            let Some(step) = step else { continue };
            let res = match step {
                Step::Pause => self.engine.pause(&eid).await,
                Step::Freeze => self.engine.freeze(&eid).await,
            };
            match res {
                Ok(()) => {
                    tracing::info!(sandbox = %sb.id, ?step, "thermal");
                    done.push((sb.id.clone(), step));
                }
                // Woken or stopped in between: the next tick looks again.
                Err(e) => tracing::debug!(sandbox = %sb.id, error = %e, "thermal step skipped"),
            }
        }
        done
    }
}

/// Runs the manager until `stop` resolves.
pub async fn run<E: Engine>(
    state: std::sync::Arc<AppState<E>>,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut tick = tokio::time::interval(state.settings.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => { state.thermal_tick().await; }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooling_decisions() {
        let (w, c) = (Duration::from_secs(30), Duration::from_secs(600));
        let s = |x| Some(Duration::from_secs(x));
        use SandboxState::*;
        assert_eq!(decide(Hot, s(29), false, w, c), None);
        assert_eq!(decide(Hot, s(30), false, w, c), Some(Step::Pause));
        assert_eq!(decide(Hot, s(3000), true, w, c), None, "keep_hot");
        assert_eq!(decide(Hot, None, false, w, c), None, "busy");
        assert_eq!(decide(Warm, s(599), false, w, c), None);
        assert_eq!(decide(Warm, s(600), false, w, c), Some(Step::Freeze));
        assert_eq!(decide(Warm, None, false, w, c), None, "busy");
        for st in [Cold, Stopped, Destroyed] {
            assert_eq!(decide(st, s(100_000), false, w, c), None);
        }
    }
}
