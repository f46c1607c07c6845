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
pub fn reply_with(data: &[u8]) -> Vec<u8> {
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
