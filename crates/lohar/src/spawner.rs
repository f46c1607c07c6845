//! Dedicated threads that run the piped execs' spawns ([`crate::vfork`]).
//!
//! A vfork-style spawn stalls its thread until the child execs (about a
//! millisecond under TCG). On the runtime's one thread that stalls every
//! connection and makes concurrent execs spawn one after another. So
//! spawns run here instead, on [`THREADS`] threads made once at start-up:
//! an exec never needs a new thread, which matters when the guest's RAM
//! is full (then a thread may not be creatable, and the blocking pool
//! would leave the exec waiting for one).
//!
//! # Threads, locks, I/O
//! - [`start`] makes the threads; they share one job channel (the receiver
//!   behind a mutex: one idle thread waits in `recv`, the others wait for
//!   the mutex) and run each job to completion.
//! - [`run`] sends a job and awaits its result on a oneshot. Before
//!   [`start`] (unit tests), if every thread is gone, or on a machine with
//!   one CPU (a default sandbox), the job runs inline on the caller's
//!   thread.
//! - A spawn still takes [`crate::children`]'s shared spawn gate, so the
//!   reaper never reaps a pid before its waiter exists. Credentials are
//!   switched per thread with raw syscalls ([`crate::spawn`]), so a
//!   switch on one spawner thread changes no other thread.

use std::io;
use std::sync::{Arc, Mutex, OnceLock, mpsc};

use tokio::sync::oneshot;

/// Spawner threads: enough to keep two cores busy with children between
/// their clone and exec, few enough to cost nothing idle.
pub const THREADS: usize = 4;

type Job = Box<dyn FnOnce() + Send>;

static JOBS: OnceLock<mpsc::Sender<Job>> = OnceLock::new();

/// Starts the spawner threads (once per process).
pub fn start() -> io::Result<()> {
    if JOBS.get().is_some() {
        return Ok(());
    }
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..THREADS {
        let rx = rx.clone();
        std::thread::Builder::new()
            .name(format!("spawner-{i}"))
            .stack_size(128 * 1024)
            .spawn(move || worker(&rx))?;
    }
    let _ = JOBS.set(tx);
    Ok(())
}

fn worker(rx: &Mutex<mpsc::Receiver<Job>>) {
    crate::children::block_sigchld();
    loop {
        // Poison: only a panic between `lock` and `recv`, which cannot
        // panic; the receiver stays usable either way.
        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        match job {
            // A panicking job must not take the thread with it: its
            // caller sees the dropped reply, the thread serves the next.
            Ok(job) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            Err(mpsc::RecvError) => return,
        }
    }
}

/// Runs `f` on a spawner thread and returns its result; `None` if it
/// panicked. On a machine with one CPU it runs on the caller's thread:
/// there the hand-off to another thread buys no parallelism and costs two
/// context switches per exec (each expensive under TCG).
pub async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    if one_cpu() {
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok();
    }
    let (reply, result) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = reply.send(f());
    });
    match JOBS.get() {
        Some(jobs) => {
            if let Err(mpsc::SendError(job)) = jobs.send(job) {
                job();
            }
        }
        None => job(),
    }
    result.await.ok()
}

/// Whether this machine runs lohar on one CPU (asked once).
fn one_cpu() -> bool {
    static ONE: OnceLock<bool> = OnceLock::new();
    *ONE.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() == 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_the_spawner_threads_and_survive_a_panic() {
        start().expect("spawner threads");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let name = run(|| std::thread::current().name().map(str::to_owned)).await;
            assert!(
                one_cpu() || name.flatten().is_some_and(|n| n.starts_with("spawner-")),
                "ran on a spawner thread"
            );
            let panicked = run(|| -> u8 { panic!("job panics") }).await;
            assert_eq!(panicked, None);
            // Every thread still serves jobs after the panic.
            let all: Vec<_> = (0..THREADS * 3).map(|i| run(move || i * 2)).collect();
            for (i, r) in all.into_iter().enumerate() {
                assert_eq!(r.await, Some(i * 2));
            }
        });
    }
}
