//! lohar — the guest agent: PID 1 and the frame-protocol server inside
//! every sandbox (see PROTOCOL.md).
//!
//! Modes:
//! - test mode (`LOHAR_TEST=1`): serves the protocol on the Unix sockets
//!   `LOHAR_SOCK` (control) and `LOHAR_FWD_SOCK` (forward) as the current
//!   user; see the crate README for the optional variables
//!   (`LOHAR_CONSOLE_INPUT` stands in for the console, [`identify`]).
//! - PID-1 mode (`getpid() == 1`, or `--init`): boot duties ([`init`]),
//!   then the same server on TCP (and vsock) ports 1024/1025.
//!
//! Threads: one tokio current-thread runtime runs every connection; the
//! blocking pool does file I/O; [`spawner::THREADS`] spawner threads run
//! the piped execs' spawns ([`vfork`], in parallel, see [`spawner`]); one
//! `flush` thread runs the `sync()` before an exec's EXIT ([`flush`]).
//! Children are reaped on the runtime's thread when SIGCHLD arrives
//! ([`children`]); every other thread blocks SIGCHLD. All but the
//! blocking pool are made once at start-up ([`start_workers`]).

mod agent;
mod children;
mod command;
mod conn;
mod env;
mod flush;
mod handlers;
mod identify;
mod init;
mod kept;
mod log;
mod pty;
mod ring;
mod rtc;
mod run_as;
mod server;
mod sessions;
mod spawn;
mod spawner;
mod testmode;
mod users;
mod vfork;
mod vsock;

use std::process::ExitCode;

fn main() -> ExitCode {
    tune_malloc();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        eprintln!("{}", USAGE);
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--version") {
        eprintln!("lohar {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if std::env::var("LOHAR_TEST").is_ok_and(|v| v == "1") {
        return testmode::run();
    }
    if std::process::id() == 1 || args.iter().any(|a| a == "--init") {
        init::run();
    }
    eprintln!("{}", USAGE);
    ExitCode::from(2)
}

const USAGE: &str = "\
lohar: the bhatti guest agent
  as PID 1 (or with --init): boots the sandbox and serves ports 1024/1025
  LOHAR_TEST=1 LOHAR_SOCK=<path> LOHAR_FWD_SOCK=<path> lohar: test mode on Unix sockets
    optional: LOHAR_TOKEN=<token>  LOHAR_CONFIG=<config.json>  LOHAR_DEBUG=1
      LOHAR_CONSOLE_INPUT=<fifo> (identify lines, as the console carries them in a VM)";

/// Keeps glibc malloc from holding on to memory after bursts (large file
/// and output buffers): big blocks come from mmap and go straight back,
/// the heap top is trimmed early, and threads share two arenas at most.
fn tune_malloc() {
    // SAFETY: mallopt only changes allocator parameters; it is called
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 * 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
    }
}

/// Starts the threads every mode needs before it serves: the spawner
/// threads and the flush thread. (Reaping starts inside the runtime:
/// [`children::start_reaping`].)
fn start_workers() -> Result<(), String> {
    spawner::start().map_err(|e| format!("cannot start the spawner threads: {e}"))?;
    flush::start().map_err(|e| format!("cannot start the flush thread: {e}"))
}

/// Builds the runtime every mode uses: one thread for all connections, a
/// blocking pool whose idle threads exit quickly (small idle RSS) and
/// leave SIGCHLD to the runtime's thread.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_start(children::block_sigchld)
        .thread_keep_alive(std::time::Duration::from_secs(2))
        .thread_stack_size(512 * 1024)
        .build()
}
