//! The clone-and-exec step of a piped exec: `clone(CLONE_VM |
//! CLONE_VFORK)` and, in the child, only what lohar's children need before
//! `execve`.
//!
//! glibc's `posix_spawn` does the same clone, but its child walks every
//! signal number (64 `sigaction` calls even with a default set), because
//! it cannot know which signals its caller catches. Each call is an exit
//! to the hypervisor under TCG: the walk was 0.28 ms of a 0.69 ms spawn
//! in the guest. lohar knows its handlers ([`reset_set`]), so its child
//! resets a handful.
//!
//! # What runs in the child
//! The child shares the parent's memory (and its thread's TLS) until it
//! execs or exits, while the parent thread waits in the kernel
//! (`CLONE_VFORK`). So the child runs only async-signal-safe libc
//! wrappers over system calls, on a stack the parent allocated, reading a
//! [`Plan`] the parent built: it allocates nothing, takes no lock and
//! cannot panic. In order:
//! 1. `setpgid(0, 0)`: a new process group (KILL and SIGNAL go to it);
//! 2. stdin: a dup of the pipe's read end, or `/dev/null` opened;
//!    stdout and stderr: dups of the pipes' write ends (every agent
//!    descriptor is close-on-exec; `dup2` clears the flag on the copy);
//! 3. `chdir` to the working directory, if any;
//! 4. every signal in [`reset_set`] back to `SIG_DFL` (the agent's
//!    handlers, and SIGPIPE, which Rust programs ignore and an exec would
//!    keep ignored); other ignored signals (e.g. SIGHUP under `nohup`)
//!    stay ignored, as with `posix_spawn`;
//! 5. an empty signal mask (the parent blocked every signal around the
//!    clone, so no handler of the agent can run in the child before 4);
//! 6. `execve`. If any step fails, the child stores its errno where the
//!    parent reads it and `_exit(127)`s; the parent reaps it (under the
//!    shared spawn gate, like glibc's own `waitpid` of a failed spawn) and
//!    returns the error, as `posix_spawn` did.
//!
//! # Threads, locks, I/O
//! Called on a spawner thread or the runtime's thread, under
//! [`crate::children`]'s shared spawn gate. Credentials are the calling
//! thread's (see [`crate::spawn`]): a clone copies them.

use std::ffi::CStr;
use std::io;
use std::os::fd::RawFd;

/// What the child does; every pointer stays valid until the clone
/// returns (the parent is suspended until the child execs or exits).
pub struct Plan<'a> {
    pub program: &'a CStr,
    /// NULL-terminated.
    pub argv: &'a [*mut libc::c_char],
    /// NULL-terminated.
    pub envp: &'a [*mut libc::c_char],
    /// The stdin pipe's read end; `None` opens `/dev/null`.
    pub stdin: Option<RawFd>,
    pub stdout: RawFd,
    pub stderr: RawFd,
    pub cwd: Option<&'a CStr>,
}

/// Bytes of the child's stack: it calls a few libc wrappers only.
const STACK: usize = 64 * 1024;

/// Signals whose disposition the child sets back to `SIG_DFL`.
///
/// SIGPIPE (ignored by Rust's runtime) and every signal a handler may be
/// installed for in this process: the ones lohar itself catches (tokio's
/// SIGCHLD for reaping, SIGTERM as PID 1) and the other usual ones (in
/// case a later change catches them) unless ignored when the first spawn
/// asks, plus whatever is caught then (a library's handler). Ignored
/// signals other than SIGPIPE stay ignored, as with `posix_spawn`;
/// resetting a signal that has its default already changes nothing.
fn reset_set() -> &'static [libc::c_int] {
    const USUAL: [libc::c_int; 10] = [
        libc::SIGCHLD,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGWINCH,
        libc::SIGPWR,
        libc::SIGALRM,
    ];
    static SET: std::sync::OnceLock<Vec<libc::c_int>> = std::sync::OnceLock::new();
    SET.get_or_init(|| {
        let mut set = vec![libc::SIGPIPE];
        for sig in 1..libc::SIGRTMAX() + 1 {
            if sig == libc::SIGPIPE || sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            // SAFETY: a null new action only reads the disposition into
            // `old`, a valid local; glibc refuses its internal signals
            // (then `asked` is -1 and the signal is skipped).
            let handler = unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                let asked = libc::sigaction(sig, std::ptr::null(), &mut old);
                (asked == 0).then_some(old.sa_sigaction)
            };
            let reset = match handler {
                Some(libc::SIG_IGN) | None => false,
                Some(libc::SIG_DFL) => USUAL.contains(&sig),
                Some(_) => true,
            };
            if reset {
                set.push(sig);
            }
        }
        set
    })
}

/// Clones a child that runs `plan` and execs; returns its pid once it
/// has exec'd, or the error of the step that failed (module docs).
pub fn spawn(plan: &Plan<'_>) -> io::Result<libc::pid_t> {
    let mut child = Child {
        plan,
        signals: reset_set(),
        errno: 0,
    };
    // Only the child writes it, so it needs no zeroing.
    let mut stack = Vec::<u8>::with_capacity(STACK);
    // The stack grows down on every Linux architecture lohar targets:
    // the child starts at the end, 16-byte aligned.
    let top = (stack.as_mut_ptr() as usize + STACK) & !15;
    let blocked = block_all()?;
    // SAFETY: `child_main` only reads `child` (valid: this frame waits
    // for the child to exec or exit, CLONE_VFORK) and writes its errno
    // field; `top` is the aligned end of `stack`, which outlives the
    // clone. Every signal is blocked, so no handler runs on that stack.
    let pid = unsafe {
        libc::clone(
            child_main,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::from_mut(&mut child).cast(),
        )
    };
    let clone_err = io::Error::last_os_error();
    set_mask(&blocked);
    if pid == -1 {
        return Err(clone_err);
    }
    // SAFETY: the child has exec'd or exited (CLONE_VFORK); nothing
    // writes `errno` any more. Volatile: it was written through a
    // pointer the compiler did not see being used.
    let errno = unsafe { std::ptr::read_volatile(&raw const child.errno) };
    if errno != 0 {
        // The child exits at once: reap it here, under the caller's
        // shared spawn gate, so no reaper sees an unknown pid.
        // SAFETY: waits for our own child; a null status is allowed.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        return Err(io::Error::from_raw_os_error(errno));
    }
    Ok(pid)
}

struct Child<'a> {
    plan: &'a Plan<'a>,
    signals: &'static [libc::c_int],
    errno: libc::c_int,
}

/// Blocks every signal on this thread, glibc's internal ones too (its
/// `sigfillset` leaves those out, so the set is all ones and the call is
/// the raw one); returns the mask to restore.
fn block_all() -> io::Result<libc::sigset_t> {
    // SAFETY: local sets, every bit pattern valid; the kernel reads and
    // writes the first 8 bytes (the size passed), which glibc's sigset_t
    // begins with, and ignores the bits of SIGKILL and SIGSTOP.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        std::ptr::write_bytes(&raw mut all, 0xff, 1);
        let mut old: libc::sigset_t = std::mem::zeroed();
        let r = libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &raw const all,
            &raw mut old,
            8usize,
        );
        if r == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(old)
    }
}

/// Sets this thread's signal mask (raw call: see [`block_all`]).
fn set_mask(mask: &libc::sigset_t) {
    // SAFETY: `mask` is an initialised set; no old mask is asked for.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            std::ptr::from_ref(mask),
            std::ptr::null_mut::<libc::sigset_t>(),
            8usize,
        );
    }
}

/// The child: runs the plan and execs; on failure stores errno and exits.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `Child`, alive and not otherwise
    // accessed until this process execs or exits.
    let child = unsafe { &mut *arg.cast::<Child<'_>>() };
    // SAFETY: every call is an async-signal-safe libc wrapper over one
    // system call, with pointers into the plan (valid, see above).
    unsafe {
        let err = run_plan(child.plan, child.signals);
        std::ptr::write_volatile(&raw mut child.errno, err.max(1));
        libc::_exit(127)
    }
}

/// Steps 1-6 of the module docs; returns errno of the failed step (it
/// returns only on failure).
///
/// # Safety
/// Only in the child of [`spawn`]: see the module docs.
unsafe fn run_plan(plan: &Plan<'_>, signals: &[libc::c_int]) -> libc::c_int {
    let errno = || {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    };
    // SAFETY: (for each call) the caller's contract; the pointers come
    // from the plan, valid while the parent waits.
    unsafe {
        if libc::setpgid(0, 0) == -1 {
            return errno();
        }
        let stdin = match plan.stdin {
            Some(fd) => fd,
            None => {
                let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                if fd == -1 {
                    return errno();
                }
                fd
            }
        };
        for (from, to) in [(stdin, 0), (plan.stdout, 1), (plan.stderr, 2)] {
            // dup2 onto itself keeps close-on-exec: clear it instead.
            let r = if from == to {
                libc::fcntl(to, libc::F_SETFD, 0)
            } else {
                libc::dup2(from, to)
            };
            if r == -1 {
                return errno();
            }
        }
        if let Some(dir) = plan.cwd
            && libc::chdir(dir.as_ptr()) == -1
        {
            return errno();
        }
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for &sig in signals {
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::execve(
            plan.program.as_ptr(),
            plan.argv.as_ptr().cast(),
            plan.envp.as_ptr().cast(),
        );
        errno()
    }
}
