//! Usage history of running sandboxes: one sample ([`SandboxStats`]) of
//! every running sandbox every [`EVERY`], the last [`KEEP`] per sandbox
//! (an hour), in memory. What E2B's `get_metrics` returns as a series
//! ([`crate::e2b::control::metrics`]).
//!
//! Sampling reads the host only (`/proc` of the VMM, the sandbox's files;
//! [`crate::routes::stats::sample`]): it never wakes a sandbox nor counts
//! as its activity, so idle sandboxes cool as before. A cold or stopped
//! sandbox is not sampled (it has no VMM); a destroyed one's history is
//! dropped at the next round. The history does not survive a restart.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bhatti_engine::engine::Engine;
use bhatti_store::sandboxes::{Status, Thermal};
use futures_util::StreamExt;

use crate::routes::stats::{SandboxStats, sample};
use crate::state::Shared;

/// How often running sandboxes are sampled.
pub const EVERY: Duration = Duration::from_secs(5);
/// Samples kept per sandbox (an hour of them).
pub const KEEP: usize = 720;
/// Sandboxes sampled at once.
const PARALLEL: usize = 8;

/// One sample and when it was taken (unix seconds).
#[derive(Debug, Clone)]
pub struct Point {
    pub at: i64,
    pub stats: SandboxStats,
}

/// The samples of every sandbox.
#[derive(Debug, Default)]
pub struct History {
    by_sandbox: Mutex<HashMap<String, VecDeque<Point>>>,
}

impl History {
    /// Adds a sample of sandbox `id`, dropping its oldest past [`KEEP`].
    pub fn record(&self, id: &str, point: Point) {
        let mut map = self
            .by_sandbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let q = map.entry(id.to_owned()).or_default();
        if q.len() == KEEP {
            q.pop_front();
        }
        q.push_back(point);
    }

    /// The samples of `id` taken within `[start, end]` (unix seconds;
    /// either open), oldest first.
    pub fn range(&self, id: &str, start: Option<i64>, end: Option<i64>) -> Vec<Point> {
        let map = self
            .by_sandbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(id).map_or_else(Vec::new, |q| {
            q.iter()
                .filter(|p| start.is_none_or(|s| p.at >= s) && end.is_none_or(|e| p.at <= e))
                .cloned()
                .collect()
        })
    }

    /// Drops the history of sandboxes not in `live`.
    fn retain(&self, live: &HashSet<String>) {
        self.by_sandbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|id, _| live.contains(id));
    }
}

/// Samples every running sandbox each [`EVERY`] until `stop` resolves.
pub async fn run<E: Engine>(st: Shared<E>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => round(&st).await,
        }
    }
}

/// One round: a sample of each running sandbox with a VMM.
async fn round<E: Engine>(st: &Shared<E>) {
    let live = match st.store.list_live_sandboxes() {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "usage history: listing sandboxes");
            return;
        }
    };
    st.history
        .retain(&live.iter().map(|sb| sb.id.clone()).collect());
    let running = live
        .into_iter()
        .filter(|sb| sb.status == Status::Running && sb.thermal != Thermal::Cold);
    futures_util::stream::iter(running)
        .for_each_concurrent(PARALLEL, |sb| async move {
            if let Ok(mut stats) = sample(st, &sb).await {
                // One clock reading for the point's second and its text
                // (a range selects by the one, the SDK shows the other).
                let now = std::time::SystemTime::now();
                stats.sampled_at = humantime::format_rfc3339_millis(now).to_string();
                let point = Point {
                    at: now_unix_of(now),
                    stats,
                };
                st.history.record(&sb.id, point);
            }
        })
        .await;
}

/// Unix seconds of `t`.
fn now_unix_of(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at: i64) -> Point {
        Point {
            at,
            stats: SandboxStats {
                cpu_percent: 1.0,
                memory_bytes: 2,
                memory_mb: 3,
                disk_used_bytes: 4,
                status: "running".into(),
                thermal: "hot".into(),
                sampled_at: String::new(),
            },
        }
    }

    #[test]
    fn keeps_the_last_samples_and_answers_ranges() {
        let h = History::default();
        for at in 0..(KEEP as i64 + 10) {
            h.record("a", point(at));
        }
        let all = h.range("a", None, None);
        assert_eq!(all.len(), KEEP);
        assert_eq!(all[0].at, 10);
        let some: Vec<i64> = h
            .range("a", Some(100), Some(102))
            .iter()
            .map(|p| p.at)
            .collect();
        assert_eq!(some, [100, 101, 102]);
        assert!(h.range("b", None, None).is_empty());
        h.retain(&HashSet::from(["b".to_owned()]));
        assert!(h.range("a", None, None).is_empty());
    }
}
