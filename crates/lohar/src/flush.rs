//! The `sync()` before a piped exec's EXIT (PROTOCOL.md), on a dedicated
//! thread, coalesced.
//!
//! A caller needs *a* `sync()` that starts after it arrives and has
//! finished before it returns: that one covers everything its command
//! wrote. Callers that arrive while a sync runs share the next one, so a
//! burst of 20 execs costs about two syncs, not 20 side by side; a lone
//! exec costs one, as before.
//!
//! # Threads, locks, I/O
//! - One `flush` thread, made once by [`start`] (an exec never needs a
//!   new thread; see [`crate::spawner`] for why). It waits on `WAKE` for
//!   a non-empty queue, takes every queued caller, runs `sync()` and
//!   answers them all.
//! - [`sync`] queues a oneshot under `QUEUE`'s lock and awaits it. Before
//!   [`start`] (unit tests), it runs the sync on the blocking pool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

use tokio::sync::oneshot;

static QUEUE: Mutex<Vec<oneshot::Sender<()>>> = Mutex::new(Vec::new());
static WAKE: Condvar = Condvar::new();
static STARTED: OnceLock<()> = OnceLock::new();
/// Syncs run by the flush thread (tests and counters).
static SYNCS: AtomicU64 = AtomicU64::new(0);

fn queue() -> MutexGuard<'static, Vec<oneshot::Sender<()>>> {
    // Poison: the queue is a plain Vec, consistent after any push or take.
    QUEUE.lock().unwrap_or_else(|e| e.into_inner())
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
            let mut q = queue();
            while q.is_empty() {
                q = WAKE.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            std::mem::take(&mut *q)
        };
        rustix::fs::sync();
        SYNCS.fetch_add(1, Ordering::SeqCst);
        for caller in batch {
            let _ = caller.send(());
        }
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
    queue().push(tx);
    WAKE.notify_one();
    // The flush thread never drops a caller unanswered.
    let _ = rx.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_shares_syncs_and_everyone_is_covered() {
        start().expect("flush thread");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
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
}
