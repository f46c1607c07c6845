//! The `sync()` before a piped exec's EXIT (PROTOCOL.md), coalesced.
//!
//! A caller needs *a* `sync()` that starts after it arrives and has
//! finished before it returns: that one covers everything its command
//! wrote. Concurrent callers share syncs: while one runs, callers that
//! arrive meanwhile queue, and the next sync (started after all of them
//! arrived) serves them all. So a burst of 20 execs costs about two
//! syncs, not 20 running side by side; a lone exec costs one, as before.
//!
//! # Threads, locks, I/O
//! - `STARTED` counts syncs started; a caller reads it on arrival.
//! - `LOCK` (a tokio mutex, held across the await) serialises the syncs;
//!   under it `DONE` is the number of the last finished sync. A caller
//!   that gets the lock and finds `DONE` beyond what it read on arrival
//!   is covered by a sync that started after it came, and returns.
//! - The `sync()` itself runs on the blocking pool (it can take long
//!   under write load), never on the runtime's thread.

use std::sync::atomic::{AtomicU64, Ordering};

static STARTED: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU64 = AtomicU64::new(0);
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Returns once a `sync()` that started after this call began has
/// finished.
pub async fn sync() {
    let arrived = STARTED.load(Ordering::SeqCst);
    let _turn = LOCK.lock().await;
    if DONE.load(Ordering::SeqCst) > arrived {
        return;
    }
    let mine = STARTED.fetch_add(1, Ordering::SeqCst) + 1;
    // A failed join (the runtime shutting down) still leaves nothing
    // better to do than to go on.
    let _ = tokio::task::spawn_blocking(rustix::fs::sync).await;
    DONE.store(mine, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_shares_syncs_and_everyone_is_covered() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let before = DONE.load(Ordering::SeqCst);
            let started = STARTED.load(Ordering::SeqCst);
            let tasks: Vec<_> = (0..20)
                .map(|_| {
                    tokio::spawn(async {
                        let arrived = STARTED.load(Ordering::SeqCst);
                        sync().await;
                        // A sync newer than the caller's arrival finished.
                        assert!(DONE.load(Ordering::SeqCst) > arrived);
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("task");
            }
            let ran = STARTED.load(Ordering::SeqCst) - started;
            assert!((1..20).contains(&ran), "{ran} syncs for 20 callers");
            assert!(DONE.load(Ordering::SeqCst) > before);
        });
    }
}
