//! Servers of the 1 KiB read in another process (this bench binary
//! started again, [`server_process`]), as lohar is one: the same
//! request/response with the process switch and the cross-process
//! wake-ups a real peer costs, doing less and less of lohar's work.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bhatti_proto::messages::FileReadRequest;
use bhatti_proto::sync_io;

use super::baselines::{reply_with, small_read_reply};

/// Environment variables that make the bench binary serve instead of
/// benching: the socket, and what to do per request ([`Serve`]).
const SOCK_ENV: &str = "LOHAR_BENCH_SERVE_SOCK";
const MODE_ENV: &str = "LOHAR_BENCH_SERVE";

/// What a server process does per request frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// Writes the canned reply: the request/response alone.
    Canned,
    /// Decodes the request and reads the file with lohar's system calls
    /// ([`read_reply`]), on a thread per connection with blocking I/O:
    /// the least a server can do for the read.
    Read,
    /// The same on a current-thread tokio runtime, a task per connection
    /// reading through a buffer, as lohar does: the least a tokio server
    /// can do.
    TokioRead,
}

impl Serve {
    fn name(self) -> &'static str {
        match self {
            Serve::Canned => "canned",
            Serve::Read => "read",
            Serve::TokioRead => "tokio-read",
        }
    }
}

/// When this process was started by [`server_process`]: serves and never
/// returns.
pub fn serve_if_asked() {
    let Some(path) = std::env::var_os(SOCK_ENV).map(PathBuf::from) else {
        return;
    };
    match std::env::var(MODE_ENV).as_deref() {
        Ok("tokio-read") => serve_tokio(path),
        Ok("read") => serve_threads(&path, true),
        _ => serve_threads(&path, false),
    }
    std::process::exit(0)
}

fn serve_threads(path: &Path, read: bool) {
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    for s in listener.incoming() {
        let mut s = s.unwrap();
        std::thread::spawn(move || {
            while let Ok(Some(f)) = sync_io::read_frame(&mut s) {
                let reply = if read {
                    read_reply(&f.payload)
                } else {
                    small_read_reply()
                };
                if s.write_all(&reply).is_err() {
                    return;
                }
            }
        });
    }
}

fn serve_tokio(path: PathBuf) {
    use tokio::io::AsyncWriteExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        loop {
            let (s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = tokio::io::BufReader::with_capacity(8192, r);
                while let Ok(Some(f)) = bhatti_proto::async_io::read_frame(&mut r).await {
                    if w.write_all(&read_reply(&f.payload)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// The reply to a FILE_READ_REQ `payload` with the system calls of
/// lohar's inline small read (non-blocking open, `statx`, `fstatfs`, one
/// read, close).
fn read_reply(payload: &[u8]) -> Vec<u8> {
    use std::os::unix::fs::OpenOptionsExt;
    let req: FileReadRequest = serde_json::from_slice(payload).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&req.path)
        .unwrap();
    let size = file.metadata().unwrap().len();
    rustix::fs::fstatfs(&file).unwrap();
    let mut data = vec![0; usize::try_from(size).unwrap()];
    file.read_exact(&mut data).unwrap();
    reply_with(&data)
}

/// A server process; killed when dropped.
pub struct ServerProcess {
    pub path: PathBuf,
    child: std::process::Child,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Starts this binary again serving `path` the `mode` way.
pub fn server_process(path: PathBuf, mode: Serve) -> ServerProcess {
    let child = Command::new(std::env::current_exe().unwrap())
        .env(SOCK_ENV, &path)
        .env(MODE_ENV, mode.name())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !path.exists() {
        assert!(t.elapsed() < Duration::from_secs(10), "server process");
        std::thread::sleep(Duration::from_millis(5));
    }
    ServerProcess { path, child }
}

/// Sets the CPU affinity of every thread of process `pid` (threads it
/// makes later inherit it from theirs).
pub fn pin_process(pid: u32, cpus: &rustix::thread::CpuSet) {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let tid = task.unwrap().file_name().to_string_lossy().parse().unwrap();
        // A thread that ended meanwhile is fine to miss.
        let _ = rustix::thread::sched_setaffinity(rustix::process::Pid::from_raw(tid), cpus);
    }
}
