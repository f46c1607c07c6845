//! lohar + host client over Unix sockets, with baselines measured in the
//! same run. Prints p50/p95/p99 and ratios.
//!
//! `cargo bench -p lohar` (full) or `cargo bench -p lohar -- --quick`
//! (or `BENCH_QUICK=1`), which finishes in well under a minute;
//! `BENCH_ONLY=exec,small_read,big_read,big_write,concurrent` picks parts;
//! `BENCH_RT=current` runs the client on a current-thread runtime.
//! `LOHAR_BIN=<path>` benches another lohar build (e.g. the last commit's)
//! against the same baselines.
//!
//! - exec `true` through agent + client vs spawning `true` directly, and
//!   through a second lohar started with `LOHAR_EXEC_SYNC=0` (what the
//!   `sync()` before EXIT costs), and with EXIT before that sync as the
//!   engine asks for it (`defer_sync`, protocol version 7);
//! - 1 KiB file read round trip vs a raw Unix-socket request/response of
//!   the same sizes (a thread answering with canned bytes), with a
//!   connection per request and on one reused connection (REUSE, protocol
//!   version 6) against a socket kept open, answered by a thread of the
//!   bench and, for reference, by this binary started again as another
//!   process ([`servers`]) with the canned reply, reading the file with
//!   lohar's system calls (the least a server can do) and doing that on
//!   a tokio runtime (the least a tokio server can do); then the reused
//!   connections again with every process on CPU 0, without the
//!   cross-CPU wake-up that on a 2-CPU PVM host decides the unpinned
//!   figures by itself;
//! - 64 MiB file read and write throughput vs a plain file copy and raw
//!   Unix-socket throughput;
//! - 20 concurrent execs of `true` (wall time and p99) vs 20 threads each
//!   spawning and waiting for one `true` (timed from before their release,
//!   see [`baselines::threads_run`]);
//! - lohar's idle RSS before and after the runs.
#![allow(clippy::unwrap_used, dead_code)]

#[path = "support/baselines.rs"]
mod baselines;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/exec.rs"]
mod exec;
#[path = "support/servers.rs"]
mod servers;
#[path = "support/small_read.rs"]
mod small_read;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use baselines::{
    canned_reused_server, canned_server, raw_request, request_on, rss_kib, small_read_reply,
    socket_pump, threads_run, threads_spawn,
};
use benchkit::{Summary, Target, report, target};
use bhatti_agent::{Client, ExecOptions, ExecRequest, ReadOptions};
use bhatti_proto::messages::{FileReadRequest, json_frame};
use bhatti_proto::{Frame, FrameType, sync_io};
use common::Lohar;
use tokio::io::AsyncReadExt;

const MIB: usize = 1 << 20;
const BIG: usize = 64 * MIB;

struct Sizes {
    exec_iters: usize,
    small_read_iters: usize,
    big_iters: usize,
    batches: usize,
}

fn main() {
    servers::serve_if_asked();
    let quick = std::env::args().any(|a| a == "--quick") || benchkit::quick();
    let sizes = if quick {
        Sizes {
            exec_iters: 200,
            small_read_iters: 1000,
            big_iters: 3,
            batches: 10,
        }
    } else {
        Sizes {
            exec_iters: 1000,
            small_read_iters: 5000,
            big_iters: 10,
            batches: 50,
        }
    };
    // BENCH_RT=current: single-threaded runtime (no cross-thread wake-ups
    // in the client); default: multi-threaded with 2 workers, like a daemon.
    let current = std::env::var("BENCH_RT").is_ok_and(|v| v == "current");
    let rt = if current {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    }
    .unwrap();
    rt.block_on(run(sizes, quick, current));
}

async fn run(n: Sizes, quick: bool, current: bool) {
    println!(
        "lohar agent bench ({} mode, {} runtime, {} CPUs)",
        if quick { "quick" } else { "full" },
        if current {
            "current-thread"
        } else {
            "multi-thread"
        },
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    let l = Lohar::start().await;
    let nosync = Lohar::start_with(common::Options {
        env: vec![("LOHAR_EXEC_SYNC".into(), "0".into())],
        ..common::Options::default()
    })
    .await;
    let rss_start = rss_kib(l.pid());
    // BENCH_ONLY=exec,small_read,... runs a subset.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let on = |name: &str| only.is_empty() || only.split(',').any(|o| o == name);
    if on("exec") {
        exec::exec_true(&l, &nosync, &n).await;
    }
    if on("small_read") {
        small_read::small_read(&l, &n).await;
    }
    if on("big_read") {
        big_read(&l, &n).await;
    }
    if on("big_write") {
        big_write(&l, &n).await;
    }
    if on("concurrent") {
        exec::concurrent_exec(&l, &nosync, &n).await;
    }
    let rss_end = rss_kib(l.pid());
    println!("\nlohar RSS: {rss_start} KiB at start, {rss_end} KiB after the runs");
}

async fn big_read(l: &Lohar, n: &Sizes) {
    let path = l.path("big.bin");
    let data: Vec<u8> = (0..BIG).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    drop(data);
    let p = path.to_str().unwrap().to_owned();
    let mut buf = vec![0u8; MIB];
    let mut agent = Vec::new();
    for i in 0..=n.big_iters {
        let t = Instant::now();
        let mut body = l
            .client
            .read_file(&p, ReadOptions::default())
            .await
            .unwrap();
        let mut total = 0;
        loop {
            let k = body.read(&mut buf).await.unwrap();
            if k == 0 {
                break;
            }
            total += k;
        }
        assert_eq!(total, BIG);
        if i > 0 {
            agent.push(t.elapsed()); // the first run warms the page cache
        }
    }
    let mut file = Vec::new();
    let mut sock = Vec::new();
    let mut raw = Vec::new();
    let req = FileReadRequest {
        path: p.clone(),
        ..FileReadRequest::default()
    };
    let req = json_frame(FrameType::FILE_READ_REQ, &req).unwrap();
    for _ in 0..n.big_iters {
        raw.push(raw_request(&l.control, &req));
        file.push(time(|| {
            let mut f = std::fs::File::open(&path).unwrap();
            let mut total = 0;
            loop {
                let k = f.read(&mut buf).unwrap();
                if k == 0 {
                    break;
                }
                total += k;
            }
            assert_eq!(total, BIG);
        }));
        sock.push(socket_pump());
    }
    println!("\n64 MiB file read ({} runs)", n.big_iters);
    let a = throughput("agent + client", &mut agent);
    throughput("agent, raw blocking frames (no client)", &mut raw);
    throughput("plain file read, 1 MiB buffer (baseline)", &mut file);
    let s = throughput("Unix socket pump, 1 MiB writes (baseline)", &mut sock);
    println!("  agent / socket pump: {:.2}", a / s);
    target("GB/s", a, Target::AtLeast, 1.0);
}

async fn big_write(l: &Lohar, n: &Sizes) {
    let data: Vec<u8> = (0..BIG).map(|i| (i * 17 % 253) as u8).collect();
    let dest = l.spath("written.bin");
    let mut agent = Vec::new();
    for i in 0..=n.big_iters {
        let t = Instant::now();
        l.client
            .write_file(&dest, 0o644, BIG as u64, &data[..])
            .await
            .unwrap();
        if i > 0 {
            agent.push(t.elapsed());
        }
    }
    assert_eq!(std::fs::metadata(&dest).unwrap().len(), BIG as u64);
    let copy = l.path("copy.bin");
    let mut plain = Vec::new();
    let mut plain_sync = Vec::new();
    for _ in 0..n.big_iters {
        plain.push(time(|| {
            let mut f = std::fs::File::create(&copy).unwrap();
            f.write_all(&data).unwrap();
        }));
        plain_sync.push(time(|| {
            let mut f = std::fs::File::create(&copy).unwrap();
            f.write_all(&data).unwrap();
            f.sync_all().unwrap();
        }));
    }
    println!(
        "\n64 MiB file write ({} runs; agent writes temp + fsync + rename)",
        n.big_iters
    );
    let a = throughput("agent + client", &mut agent);
    throughput("plain file write, no fsync (baseline)", &mut plain);
    let ps = throughput("plain file write + fsync (baseline)", &mut plain_sync);
    println!("  agent / plain+fsync: {:.2}", a / ps);
    target("GB/s", a, Target::AtLeast, 1.0);
}

fn time(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// Prints GB/s at p50 (and the best run) for 64 MiB transfers; returns
/// the p50 figure.
fn throughput(label: &str, runs: &mut [Duration]) -> f64 {
    let s = stats(runs);
    let gbps = |d: Duration| BIG as f64 / d.as_secs_f64() / 1e9;
    println!(
        "  {label:<44} p50 {:>6.2} GB/s  best {:>6.2} GB/s  worst {:>6.2} GB/s",
        gbps(s.p50),
        gbps(s.min),
        gbps(s.max)
    );
    gbps(s.p50)
}

/// Percentiles of `v` (benchkit's nearest-rank summary).
fn stats(v: &[Duration]) -> Summary {
    Summary::of(v).expect("at least one sample")
}
