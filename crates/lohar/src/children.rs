//! Child registry and reaping: the only place that waits for processes.
//!
//! Threads and locks:
//! - The agent reaps on its runtime's thread ([`reap_on_sigchld`]): a task
//!   woken by SIGCHLD takes the spawn gate *exclusively* and the registry
//!   lock, reaps every exited child with `waitpid(-1, WNOHANG)` and hands
//!   each exit code to the registered waiter (a tokio oneshot) or
//!   discards it (orphans re-parented to PID 1). A child's exit wakes the
//!   runtime anyway (its output pipes close), so reaping there costs no
//!   thread hand-off; the agent's other threads block SIGCHLD
//!   ([`block_sigchld`]) so that its handler runs on the runtime's thread
//!   and wakes no sleeping thread.
//! - A process without that runtime (unit tests; PID 1 after its server
//!   stopped) starts a reaper thread instead ([`start_reaper_thread`]): it
//!   loops on `waitid(P_ALL, WEXITED | WNOWAIT)`, which reports an exited
//!   child *without* reaping it, and then reaps the same way. When
//!   there is no child at all (`ECHILD`) it sleeps on a condvar that
//!   [`spawn_with`] signals; a spawn counter read before each `waitid`
//!   makes a spawn in between impossible to miss.
//! - [`spawn_with`] (TTY sessions and piped spawns) holds the spawn gate
//!   *shared* across the spawn and the registration of the new pid (the
//!   registry lock only for the insert). Spawns from several threads run
//!   in parallel, but no reap can take a child before its waiter exists,
//!   nor race the spawn's own `waitpid` of a child whose exec failed
//!   (std's and [`crate::vfork`]'s reap that child inside the spawn,
//!   under the shared gate; a reap then finds it gone).
//! - Lock order: gate, then registry.
//!
//! Nothing else may wait for children: no `Child::wait`, no
//! `tokio::process` (its SIGCHLD reaping would race this module's).

use std::collections::HashMap;
use std::io;
#[cfg(test)]
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Duration;

use tokio::sync::oneshot;

/// Exit code as the protocol reports it: the code, or 128 + signal.
pub type ExitCode = i32;

#[derive(Default)]
struct Registry {
    waiters: HashMap<i32, oneshot::Sender<ExitCode>>,
    /// Children spawned so far; lets the reaper sleep without missing a
    /// spawn that happens between its `ECHILD` and its wait.
    spawned: u64,
}

struct Shared {
    /// Shared by spawns in flight, exclusive for a reap (module docs).
    gate: RwLock<()>,
    registry: Mutex<Registry>,
    spawned: Condvar,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| Shared {
        gate: RwLock::new(()),
        registry: Mutex::new(Registry::default()),
        spawned: Condvar::new(),
    })
}

fn lock() -> MutexGuard<'static, Registry> {
    // A poisoned lock only means another thread panicked while holding it;
    // the map itself is still consistent (every operation is one insert or
    // one remove), so keep going rather than take PID 1 down.
    shared().registry.lock().unwrap_or_else(|e| e.into_inner())
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("{0}")]
    Spawn(#[source] io::Error),
    #[error("cannot start the reaper thread: {0}")]
    Reaper(#[source] io::Error),
    #[error("cannot listen for SIGCHLD: {0}")]
    Signal(#[source] io::Error),
}

/// Whether the reaper thread was started (then [`spawn_with`] wakes it).
/// Set before the thread exists, so that no spawn it must hear of is
/// missed.
static THREAD: AtomicBool = AtomicBool::new(false);

/// Reaps on the current tokio runtime's thread, woken by SIGCHLD (module
/// docs). Call it once, inside the runtime that serves the agent, before
/// anything is spawned; the task lives as long as the runtime.
fn reap_on_sigchld() -> Result<(), ChildError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigchld = signal(SignalKind::child()).map_err(ChildError::Signal)?;
    tokio::spawn(async move {
        loop {
            // First round: children that exited before the handler existed.
            reap_exited();
            if sigchld.recv().await.is_none() {
                return;
            }
        }
    });
    Ok(())
}

/// Starts reaping for the agent: on the runtime ([`reap_on_sigchld`]),
/// or on a thread if SIGCHLD cannot be handled there.
pub fn start_reaping() {
    if let Err(e) = reap_on_sigchld() {
        crate::log!("{e}; reaping on a thread instead");
        if let Err(e) = start_reaper_thread() {
            crate::log!("{e}");
        }
    }
}

/// Blocks SIGCHLD on the calling thread, so that the signal is delivered
/// to the runtime's thread ([`reap_on_sigchld`]). For the agent's other
/// threads; a child spawned from one gets the mask its spawn sets.
pub fn block_sigchld() {
    // SAFETY: plain signal-set operations on a local set; changing this
    // thread's mask affects no other thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Reaps every child that has exited, under the exclusive spawn gate.
/// Also for code that blocks the runtime's thread for good (power-off).
pub fn reap_exited() {
    let _gate = shared().gate.write().unwrap_or_else(|e| e.into_inner());
    let mut reg = lock();
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: plain syscall; `status` is a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        // 0: children left, none exited; -1: none at all (ECHILD).
        if pid <= 0 {
            return;
        }
        if let Some(tx) = reg.waiters.remove(&pid) {
            let _ = tx.send(exit_code(status));
        }
    }
}

/// Starts the reaper thread (once per process), for a process that does
/// not run [`reap_on_sigchld`]: unit tests, and PID 1 once its server has
/// stopped. Both may run at once: every reap is [`reap_exited`], under
/// the exclusive gate.
pub fn start_reaper_thread() -> Result<(), ChildError> {
    if THREAD.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    match std::thread::Builder::new()
        .name("reaper".into())
        .stack_size(64 * 1024)
        .spawn(reaper_loop)
    {
        Ok(_) => Ok(()),
        Err(e) => {
            THREAD.store(false, Ordering::SeqCst);
            Err(ChildError::Reaper(e))
        }
    }
}

/// Spawns `cmd` and registers it; the receiver yields its exit code once
/// the reaper has reaped it. Do not wait on the returned `Child`. (The
/// agent spawns through [`spawn_with`], under the user's credentials.)
#[cfg(test)]
pub fn spawn(cmd: &mut Command) -> Result<(Child, oneshot::Receiver<ExitCode>), ChildError> {
    spawn_with(|| {
        let child = cmd.spawn()?;
        // `id()` of a live child always fits an i32 pid.
        let pid = child.id() as i32;
        Ok((child, pid))
    })
}

/// Runs `start` (which spawns one child and returns it with its pid)
/// under the shared spawn gate and registers the pid. Spawns on several
/// threads run in parallel; no reap happens while any of them is running.
pub fn spawn_with<T>(
    start: impl FnOnce() -> io::Result<(T, i32)>,
) -> Result<(T, oneshot::Receiver<ExitCode>), ChildError> {
    // Poison: see `lock`; the gate guards no data.
    let gate = shared().gate.read().unwrap_or_else(|e| e.into_inner());
    let (child, pid) = start().map_err(ChildError::Spawn)?;
    let (tx, rx) = oneshot::channel();
    let mut reg = lock();
    reg.waiters.insert(pid, tx);
    reg.spawned += 1;
    drop(reg);
    drop(gate);
    if THREAD.load(Ordering::SeqCst) {
        shared().spawned.notify_all();
    }
    Ok((child, rx))
}

fn reaper_loop() {
    loop {
        let seen = lock().spawned;
        match wait_any_nowait() {
            Ok(_) => reap_exited(),
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                // No child at all: sleep until the next spawn. A spawn after
                // `seen` was read is noticed by the counter, so no wake-up
                // is lost; the long timeout is only a safety net (an idle
                // agent does not wake up every second).
                let mut reg = lock();
                while reg.spawned == seen {
                    let (next, timeout) = shared()
                        .spawned
                        .wait_timeout(reg, Duration::from_secs(60))
                        .unwrap_or_else(|e| e.into_inner());
                    reg = next;
                    if timeout.timed_out() {
                        break;
                    }
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => {
                crate::log!("reaper: waitid: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Blocks until some child has exited; returns its pid without reaping it
/// (the pid only says that there is something to reap).
fn wait_any_nowait() -> io::Result<i32> {
    // SAFETY: siginfo_t is plain old data; all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable siginfo_t for the kernel to fill;
    // P_ALL ignores the id argument.
    let r = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: waitid succeeded with WEXITED, so the kernel filled in a
    // SIGCHLD siginfo whose si_pid field is valid.
    Ok(unsafe { info.si_pid() })
}

/// Converts a raw wait status into the protocol's exit code.
pub fn exit_code(status: libc::c_int) -> ExitCode {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        // Stopped/continued are never reported for WEXITED waits.
        -1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        // Raw wait statuses as the kernel encodes them.
        assert_eq!(exit_code(0), 0);
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(9), 137);
        assert_eq!(exit_code(15), 143);
    }

    #[test]
    fn spawned_children_report_their_status_and_failed_execs_do_not_hang() {
        start_reaper_thread().expect("reaper");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (_c, rx) = spawn(Command::new("sh").args(["-c", "exit 7"])).expect("spawn");
            assert_eq!(rx.await.expect("status"), 7);
            let (_c, rx) = spawn(Command::new("sh").args(["-c", "kill -9 $$"])).expect("spawn");
            assert_eq!(rx.await.expect("status"), 137);
            // Exec failure: std reaps it itself; must be a clean error.
            for _ in 0..20 {
                let err = spawn(&mut Command::new("/nonexistent/prog")).expect_err("must fail");
                assert!(err.to_string().contains("No such file"), "{err}");
            }
            // Many concurrent children all get their own status.
            let mut rxs = Vec::new();
            for i in 0..20 {
                let (_c, rx) =
                    spawn(Command::new("sh").args(["-c", &format!("exit {i}")])).expect("spawn");
                rxs.push((i, rx));
            }
            for (i, rx) in rxs {
                assert_eq!(rx.await.expect("status"), i);
            }
        });
    }
}
