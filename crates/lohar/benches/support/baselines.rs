//! Raw baselines of the lohar bench: what the same work costs without the
//! agent (canned socket replies, spawns from plain threads, a socket pump),
//! and raw blocking requests to the agent without the client.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use bhatti_proto::messages::json_frame;
use bhatti_proto::{Frame, FrameType, sync_io};

use super::{BIG, MIB};

/// The bytes lohar answers a full read of a 1 KiB file with.
pub fn small_read_reply() -> Vec<u8> {
    reply_with(&[b'k'; 1024])
}

/// FILE_READ_RESP (mode 0644), `data` as one STDOUT frame, EXIT 0.
fn reply_with(data: &[u8]) -> Vec<u8> {
    let resp = bhatti_proto::messages::FileReadResponse {
        size: data.len() as i64,
        mode: "0644".into(),
    };
    let resp = json_frame(FrameType::FILE_READ_RESP, &resp).unwrap();
    let mut out = bhatti_proto::frame::encode(resp.kind, &resp.payload).unwrap();
    out.extend(bhatti_proto::frame::encode(FrameType::STDOUT, data).unwrap());
    out.extend(bhatti_proto::frame::encode(FrameType::EXIT, &0i32.to_be_bytes()).unwrap());
    out
}

/// A thread serving `path`: per connection, reads one frame, writes
/// `reply` and closes: a raw request/response of the same sizes, without
/// any agent work.
pub fn canned_server(path: PathBuf, reply: Vec<u8>) -> PathBuf {
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let mut s = s.unwrap();
            if sync_io::read_frame(&mut s).unwrap().is_some() {
                s.write_all(&reply).unwrap();
            }
        }
    });
    path
}

/// A thread serving `path` like [`canned_server`], but answering every
/// frame of a connection until it closes: the baseline of a reused
/// connection.
pub fn canned_reused_server(path: PathBuf, reply: Vec<u8>) -> PathBuf {
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let mut s = s.unwrap();
            let reply = reply.clone();
            std::thread::spawn(move || {
                while let Ok(Some(_)) = sync_io::read_frame(&mut s) {
                    if s.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    path
}

/// Environment variable that makes the bench binary serve canned replies
/// instead of benching ([`canned_process`]).
pub const CANNED_ENV: &str = "LOHAR_BENCH_CANNED_SOCK";

/// With [`CANNED_ENV`]: the file whose read the canned process does per
/// request, with the system calls of lohar's inline small read.
pub const CANNED_FILE_ENV: &str = "LOHAR_BENCH_CANNED_FILE";

/// When this process was started by [`canned_process`]: serves the 1 KiB
/// read reply on every frame of every connection and never returns.
pub fn serve_canned_if_asked() {
    let Some(path) = std::env::var_os(CANNED_ENV) else {
        return;
    };
    let listener = std::os::unix::net::UnixListener::bind(PathBuf::from(path)).unwrap();
    let file = std::env::var_os(CANNED_FILE_ENV).map(PathBuf::from);
    for s in listener.incoming() {
        let mut s = s.unwrap();
        let file = file.clone();
        std::thread::spawn(move || {
            while let Ok(Some(_)) = sync_io::read_frame(&mut s) {
                let reply = file.as_deref().map_or_else(small_read_reply, read_reply);
                if s.write_all(&reply).is_err() {
                    return;
                }
            }
        });
    }
}

/// The least work a 1 KiB read can be served with: the system calls of
/// lohar's inline small read (non-blocking open, `statx`, `fstatfs`, one
/// read, close), then the same reply bytes, with no JSON and no runtime.
fn read_reply(path: &std::path::Path) -> Vec<u8> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .unwrap();
    let size = file.metadata().unwrap().len();
    rustix::fs::fstatfs(&file).unwrap();
    let mut data = vec![0; usize::try_from(size).unwrap()];
    file.read_exact(&mut data).unwrap();
    reply_with(&data)
}

/// The canned server of [`canned_reused_server`] in another process (this
/// bench binary started again), as lohar is: the same request/response
/// with the process switch and cross-process wake-ups a real peer costs.
/// Killed when the returned guard drops.
pub struct CannedProcess {
    pub path: PathBuf,
    child: std::process::Child,
}

impl Drop for CannedProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl CannedProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
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

/// `file`: serve [`read_reply`]s of it instead of a canned reply.
pub fn canned_process(path: PathBuf, file: Option<&std::path::Path>) -> CannedProcess {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    if let Some(file) = file {
        cmd.env(CANNED_FILE_ENV, file);
    }
    let child = cmd.env(CANNED_ENV, &path).spawn().unwrap();
    let t = Instant::now();
    while !path.exists() {
        assert!(t.elapsed() < Duration::from_secs(10), "canned process");
        std::thread::sleep(Duration::from_millis(5));
    }
    CannedProcess { path, child }
}

/// Wall time of `k` threads each spawning `true` and waiting for it,
/// started together.
pub fn threads_spawn(k: usize) -> Duration {
    threads_run(k, || {
        assert!(Command::new("true").status().unwrap().success());
    })
}

/// Wall time of `k` threads each running `f` once, started together.
///
/// The clock starts before the main thread releases the barrier, not
/// after: once released, the `k` threads (and their children) may take
/// both CPUs before the main thread runs again, so a clock read after
/// `wait` missed a variable part of the batch (single batches of 20
/// spawns of `true` timed at 0.2 ms, when 20 of them need ~14 ms of CPU).
/// Thread creation stays outside: the agent's spawner threads exist too.
pub fn threads_run(k: usize, f: impl Fn() + Sync) -> Duration {
    let ready = std::sync::Barrier::new(k + 1);
    let go = std::sync::Barrier::new(k + 1);
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..k)
            .map(|_| {
                scope.spawn(|| {
                    ready.wait();
                    go.wait();
                    f();
                })
            })
            .collect();
        // Every thread is created and parked in `go` before the clock
        // starts.
        ready.wait();
        let t = Instant::now();
        go.wait();
        for th in threads {
            th.join().unwrap();
        }
        t.elapsed()
    })
}

/// VmRSS of `pid` in KiB (0 when unreadable).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Pushes 64 MiB through a Unix socket pair in 1 MiB writes.
pub fn socket_pump() -> Duration {
    let (mut a, mut b) = StdUnixStream::pair().unwrap();
    let t = Instant::now();
    let writer = std::thread::spawn(move || {
        let chunk = vec![7u8; MIB];
        for _ in 0..BIG / MIB {
            a.write_all(&chunk).unwrap();
        }
    });
    let mut buf = vec![0u8; MIB];
    let mut total = 0;
    while total < BIG {
        total += b.read(&mut buf).unwrap();
    }
    writer.join().unwrap();
    t.elapsed()
}

/// One request on a fresh blocking connection, frames read until EXIT,
/// ERROR, a one-shot reply or EOF: the agent's cost without the client.
pub fn raw_request(control: &std::path::Path, req: &Frame) -> Duration {
    let t = Instant::now();
    let mut s = StdUnixStream::connect(control).unwrap();
    sync_io::write_frame(&mut s, req.kind, &req.payload).unwrap();
    while let Some(f) = sync_io::read_frame(&mut s).unwrap() {
        if matches!(
            f.kind,
            FrameType::EXIT | FrameType::ERROR | FrameType::ACTIVITY_RESP
        ) {
            break;
        }
    }
    t.elapsed()
}

/// One request on a connection kept open (sent REUSE when it is the
/// agent's): frames read until the reply's last.
pub fn request_on(s: &mut StdUnixStream, req: &Frame) -> Duration {
    let t = Instant::now();
    sync_io::write_frame(s, req.kind, &req.payload).unwrap();
    while let Some(f) = sync_io::read_frame(s).unwrap() {
        if matches!(
            f.kind,
            FrameType::EXIT | FrameType::ERROR | FrameType::ACTIVITY_RESP
        ) {
            break;
        }
    }
    t.elapsed()
}
