//! What the daemon knows about each sandbox's use: the last time an API
//! call touched it and how many long operations (shell, streaming exec,
//! file transfer, proxied connection) are in flight. The thermal manager
//! cools only sandboxes that are idle by this measure.
//!
//! # Threads, locks, I/O
//! One `std::sync::Mutex` around a map, held for a lookup or an update
//! and never across an await. No I/O.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Entry {
    last: Instant,
    busy: u32,
}

/// Per-sandbox activity, keyed by sandbox id.
#[derive(Debug, Default)]
pub struct Activity {
    map: Mutex<HashMap<String, Entry>>,
}

impl Activity {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> T) -> T {
        f(&mut self.map.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Records an API touch now.
    pub fn touch(&self, id: &str) {
        let now = Instant::now();
        self.with(|m| {
            m.entry(id.to_owned())
                .and_modify(|e| e.last = now)
                .or_insert(Entry { last: now, busy: 0 });
        });
    }

    /// Marks a long operation in flight until the guard drops (which
    /// counts as a touch too).
    pub fn busy(self: &Arc<Self>, id: &str) -> BusyGuard {
        let now = Instant::now();
        self.with(|m| {
            let e = m
                .entry(id.to_owned())
                .or_insert(Entry { last: now, busy: 0 });
            e.busy += 1;
            e.last = now;
        });
        BusyGuard {
            activity: self.clone(),
            id: id.to_owned(),
        }
    }

    /// How long the sandbox has been idle at `now`; `None` while an
    /// operation is in flight. A sandbox never seen counts as touched now
    /// (after a daemon restart nothing is cooled before its timeout).
    pub fn idle_for(&self, id: &str, now: Instant) -> Option<Duration> {
        self.with(|m| {
            let e = m
                .entry(id.to_owned())
                .or_insert(Entry { last: now, busy: 0 });
            (e.busy == 0).then(|| now.saturating_duration_since(e.last))
        })
    }

    /// Drops what is known about a destroyed sandbox.
    pub fn forget(&self, id: &str) {
        self.with(|m| m.remove(id));
    }
}

/// Keeps a sandbox busy (see [`Activity::busy`]).
#[derive(Debug)]
pub struct BusyGuard {
    activity: Arc<Activity>,
    id: String,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let now = Instant::now();
        self.activity.with(|m| {
            if let Some(e) = m.get_mut(&self.id) {
                e.busy = e.busy.saturating_sub(1);
                e.last = now;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_sandboxes_are_never_idle_and_release_counts_as_touch() {
        let a = Arc::new(Activity::new());
        let t0 = Instant::now();
        assert_eq!(a.idle_for("x", t0), Some(Duration::ZERO));
        let later = t0 + Duration::from_secs(5);
        assert_eq!(a.idle_for("x", later), Some(Duration::from_secs(5)));
        let g1 = a.busy("x");
        let g2 = a.busy("x");
        assert_eq!(a.idle_for("x", later + Duration::from_secs(60)), None);
        drop(g1);
        assert_eq!(a.idle_for("x", later + Duration::from_secs(60)), None);
        drop(g2);
        let idle = a.idle_for("x", Instant::now() + Duration::from_secs(1));
        assert!(
            idle.is_some_and(|d| d <= Duration::from_secs(2)),
            "{idle:?}"
        );
        a.forget("x");
    }
}
