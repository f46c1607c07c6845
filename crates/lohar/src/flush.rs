//! The `sync()` before a piped exec's EXIT (PROTOCOL.md), soon after it
//! (`defer_sync`, protocol version 7), and SYNC_REQ's: on a dedicated
//! thread, coalesced.
//!
//! A waiting caller ([`sync`]) needs *a* `sync()` that starts after it
//! arrives and has finished before it returns: that one covers everything
//! its command wrote. Callers that arrive while a sync runs share the
//! next one, so a burst of 20 execs costs about two syncs, not 20 side by
//! side; a lone exec costs one, as before.
//!
//! A deferred exec's sync ([`start_sync`]) waits until no other deferred
//! exec has ended for [`QUIET`], and at most [`MAX_DELAY`] after the
//! first one still unsynced: a host that sends request after request does
//! not have each one share the guest's CPU with the last exec's sync
//! (inside a TCG guest that cost the request after an exec 0.4 ms), and a
//! run of execs shares one sync. A waiting caller's sync covers the
//! deferred ones too. So a VMM that dies can lose what execs wrote in the
//! last [`MAX_DELAY`] plus one sync's time before it, and no more.
//!
//! # Threads, locks, I/O
//! - One `flush` thread, made once by [`start`] (an exec never needs a
//!   new thread; see [`crate::spawner`] for why). It waits on `WAKE` for
//!   a waiting caller or a deferred sync that is due, takes every waiting
//!   caller and the deferred mark, runs `sync()` and answers them all.
//! - [`sync`] queues a oneshot under `STATE`'s lock and awaits it. Before
//!   [`start`] (unit tests), it runs the sync on the blocking pool.
//! - [`start_sync`] marks a deferred sync under the same lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How long no deferred exec may have ended before their sync starts.
pub const QUIET: Duration = Duration::from_millis(5);
/// The longest a deferred exec's sync waits for quiet.
pub const MAX_DELAY: Duration = Duration::from_millis(20);

/// Callers waiting for a sync, and the deferred execs not synced yet.
struct State {
    waiting: Vec<oneshot::Sender<()>>,
    /// (when the first unsynced deferred exec ended, when the last did).
    deferred: Option<(Instant, Instant)>,
}

impl State {
    /// When the deferred sync is due, if one is pending.
    fn due(&self) -> Option<Instant> {
        self.deferred
            .map(|(first, last)| (last + QUIET).min(first + MAX_DELAY))
    }
}

static STATE: Mutex<State> = Mutex::new(State {
    waiting: Vec::new(),
    deferred: None,
});
static WAKE: Condvar = Condvar::new();
static STARTED: OnceLock<()> = OnceLock::new();
/// Syncs run by the flush thread (tests and counters).
static SYNCS: AtomicU64 = AtomicU64::new(0);

fn state() -> MutexGuard<'static, State> {
    // Poison: a Vec and an Option, consistent after any change.
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the flush thread (once per process).
pub fn start() -> std::io::Result<()> {
    if STARTED.get().is_some() {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("flush".into())
        .stack_size(64 * 1024)
        .spawn(flusher)?;
    let _ = STARTED.set(());
    Ok(())
}

fn flusher() {
    crate::children::block_sigchld();
    loop {
        let batch = {
            let mut s = state();
            loop {
                if !s.waiting.is_empty() {
                    break;
                }
                let now = Instant::now();
                s = match s.due() {
                    Some(due) if due <= now => break,
                    Some(due) => {
                        let wait = due - now;
                        WAKE.wait_timeout(s, wait)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                    None => WAKE.wait(s).unwrap_or_else(|e| e.into_inner()),
                };
            }
            s.deferred = None;
            std::mem::take(&mut s.waiting)
        };
        rustix::fs::sync();
        SYNCS.fetch_add(1, Ordering::SeqCst);
        for caller in batch {
            let _ = caller.send(());
        }
    }
}

/// Has a `sync()` start within [`MAX_DELAY`] (sooner when things are
/// quiet, see the module docs), without waiting for it: a later [`sync`]
/// finishes after it.
pub fn start_sync() {
    if STARTED.get().is_none() {
        drop(tokio::task::spawn_blocking(rustix::fs::sync));
        return;
    }
    let now = Instant::now();
    let mut s = state();
    let pending = s.deferred;
    s.deferred = Some(pending.map_or((now, now), |(first, _)| (first, now)));
    drop(s);
    // With a deferral pending, the flush thread sleeps until its due time
    // and finds the new (never earlier) one when it wakes: no wake-up, no
    // context switch per exec. Without, it may wait for work unbounded.
    if pending.is_none() {
        WAKE.notify_one();
    }
}

/// Returns once a `sync()` that started after this call began has
/// finished.
pub async fn sync() {
    if STARTED.get().is_none() {
        let _ = tokio::task::spawn_blocking(rustix::fs::sync).await;
        return;
    }
    let (tx, rx) = oneshot::channel();
    state().waiting.push(tx);
    WAKE.notify_one();
    // The flush thread never drops a caller unanswered.
    let _ = rx.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn a_burst_shares_syncs_and_everyone_is_covered() {
        start().expect("flush thread");
        runtime().block_on(async {
            let before = SYNCS.load(Ordering::SeqCst);
            let tasks: Vec<_> = (0..20)
                .map(|_| {
                    tokio::spawn(async {
                        let arrived = SYNCS.load(Ordering::SeqCst);
                        sync().await;
                        // The sync that covered this caller finished after
                        // it arrived.
                        assert!(SYNCS.load(Ordering::SeqCst) > arrived);
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("task");
            }
            let ran = SYNCS.load(Ordering::SeqCst) - before;
            assert!((1..20).contains(&ran), "{ran} syncs for 20 callers");
        });
    }

    #[test]
    fn deferred_syncs_run_unasked_and_a_waiting_sync_takes_them() {
        start().expect("flush thread");
        runtime().block_on(async {
            let before = SYNCS.load(Ordering::SeqCst);
            for _ in 0..5 {
                start_sync();
            }
            // Due after QUIET; no waiting caller hurries it. (Generous:
            // other tests of this process may sync meanwhile too.)
            let deadline = Instant::now() + Duration::from_secs(30);
            while SYNCS.load(Ordering::SeqCst) == before {
                assert!(Instant::now() < deadline, "the deferred sync never ran");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            assert!(state().deferred.is_none(), "the mark outlived its sync");
            // A waiting caller's sync takes a pending deferral with it.
            start_sync();
            sync().await;
            assert!(state().deferred.is_none(), "a deferral outlived a sync");
        });
    }
}
