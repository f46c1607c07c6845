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
//!   process (`LOHAR_BENCH_CANNED_SOCK`), once with the canned reply and
//!   once reading the file with lohar's system calls
//!   (`LOHAR_BENCH_CANNED_FILE`: the least a server can do); then the
//!   reused connections again with the client, lohar and both processes
//!   on CPU 0, without the cross-CPU wake-up that on a 2-CPU PVM host
//!   decides the unpinned figures by itself;
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

use std::io::{Read, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use baselines::{
    CannedProcess, canned_process, canned_reused_server, canned_server, pin_process, raw_request,
    request_on, rss_kib, small_read_reply, socket_pump, threads_run, threads_spawn,
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
    baselines::serve_canned_if_asked();
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
        small_read(&l, &n).await;
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

async fn small_read(l: &Lohar, n: &Sizes) {
    let path = l.path("small.bin");
    std::fs::write(&path, vec![b'k'; 1024]).unwrap();
    let p = path.to_str().unwrap().to_owned();
    for _ in 0..50 {
        l.client
            .read_file(&p, ReadOptions::default())
            .await
            .unwrap()
            .read_all()
            .await
            .unwrap();
    }
    let mut agent = Vec::with_capacity(n.small_read_iters);
    let mut local = Vec::with_capacity(n.small_read_iters);
    let mut raw = Vec::with_capacity(n.small_read_iters);
    let mut act = Vec::with_capacity(n.small_read_iters);
    let req = FileReadRequest {
        path: p.clone(),
        ..FileReadRequest::default()
    };
    let req = json_frame(FrameType::FILE_READ_REQ, &req).unwrap();
    let act_req = Frame::new(FrameType::ACTIVITY_REQ, Vec::new());
    let canned = canned_server(l.path("canned.sock"), small_read_reply());
    let mut sock = Vec::with_capacity(n.small_read_iters);
    for _ in 0..n.small_read_iters {
        sock.push(raw_request(&canned, &req));
        raw.push(raw_request(&l.control, &req));
        act.push(raw_request(&l.control, &act_req));
        let t = Instant::now();
        let body = l
            .client
            .read_file(&p, ReadOptions::default())
            .await
            .unwrap();
        let data = body.read_all().await.unwrap();
        agent.push(t.elapsed());
        assert_eq!(data.len(), 1024);
        let t = Instant::now();
        let data = std::fs::read(&path).unwrap();
        local.push(t.elapsed());
        assert_eq!(data.len(), 1024);
    }
    let a = stats(&agent);
    let d = stats(&local);
    println!("\n1 KiB file read round trip ({} runs)", n.small_read_iters);
    report("agent + client", &a, None);
    report("agent, raw blocking frames (no client)", &stats(&raw), None);
    report("ACTIVITY_REQ, raw blocking frames", &stats(&act), None);
    report("local std::fs::read (reference)", &d, None);
    let s = stats(&sock);
    report("raw Unix socket, same sizes (baseline)", &s, None);
    println!(
        "  p50 ratio agent + client/socket: {:.2}",
        a.p50.as_secs_f64() / s.p50.as_secs_f64()
    );
    println!(
        "  p50 ratio raw frames/socket, a connection per request: {:.3}",
        stats(&raw).p50.as_secs_f64() / s.p50.as_secs_f64()
    );
    small_read_reused(l, n, &req, &p).await;
}

/// The 1 KiB read on one connection for all requests (protocol version 6,
/// REUSE) against a socket kept open, interleaved.
async fn small_read_reused(l: &Lohar, n: &Sizes, req: &Frame, path: &str) {
    let canned = canned_reused_server(l.path("canned2.sock"), small_read_reply());
    let other = canned_process(l.path("canned3.sock"), None);
    let server = canned_process(l.path("canned4.sock"), Some(Path::new(path)));
    let (mut sock_kept, mut raw_kept, mut agent_kept) = (vec![], vec![], vec![]);
    let (mut proc_kept, mut server_kept) = (vec![], vec![]);
    let mut kept_sock = StdUnixStream::connect(&canned).unwrap();
    let mut kept_proc = StdUnixStream::connect(&other.path).unwrap();
    let mut kept_server = StdUnixStream::connect(&server.path).unwrap();
    let mut kept_agent = StdUnixStream::connect(&l.control).unwrap();
    sync_io::write_frame(&mut kept_agent, FrameType::REUSE, &[]).unwrap();
    let pooled = l.client.clone().with_reuse();
    for _ in 0..n.small_read_iters {
        sock_kept.push(request_on(&mut kept_sock, req));
        proc_kept.push(request_on(&mut kept_proc, req));
        server_kept.push(request_on(&mut kept_server, req));
        raw_kept.push(request_on(&mut kept_agent, req));
        let t = Instant::now();
        let body = pooled
            .read_file(path, ReadOptions::default())
            .await
            .unwrap();
        let data = body.read_all().await.unwrap();
        agent_kept.push(t.elapsed());
        assert_eq!(data.len(), 1024);
    }
    println!("  one connection for all requests (protocol version 6, REUSE):");
    let ak = stats(&agent_kept);
    report("agent + client, reused connection", &ak, None);
    let rk = stats(&raw_kept);
    report("agent, raw blocking frames, reused", &rk, None);
    let sk = stats(&sock_kept);
    report("raw Unix socket, reused (baseline)", &sk, None);
    let pk = stats(&proc_kept);
    report("the same, server in another process", &pk, None);
    println!(
        "  p50 ratio raw frames/socket in another process (the wake-ups of a \
         second process, lohar's too): {:.2}",
        rk.p50.as_secs_f64() / pk.p50.as_secs_f64()
    );
    let fk = stats(&server_kept);
    report("the same, reading the file (lohar's syscalls)", &fk, None);
    println!(
        "  p50 ratio raw frames/least file server in another process (lohar's \
         own work; on 2 CPUs of this host both pay a cross-CPU wake-up): {:.2}",
        rk.p50.as_secs_f64() / fk.p50.as_secs_f64()
    );
    println!(
        "  p50 ratio agent + client, reused/socket, reused: {:.2}",
        ak.p50.as_secs_f64() / sk.p50.as_secs_f64()
    );
    target(
        "p50 ratio raw frames/socket, both reused",
        rk.p50.as_secs_f64() / sk.p50.as_secs_f64(),
        Target::AtMost,
        1.2,
    );
    small_read_one_cpu(l, n, req, &canned, [&other, &server]);
}

/// The reused 1 KiB read with the client, lohar and the servers on CPU 0:
/// what the request costs without the cross-CPU wake-up, whose price on
/// this host (a PVM guest) decides the unpinned figures by itself. There,
/// lohar, the canned process and a minimal C server doing lohar's system
/// calls each land at ~6-10 µs in some runs and ~50-65 µs in others.
fn small_read_one_cpu(
    l: &Lohar,
    n: &Sizes,
    req: &Frame,
    thread: &Path,
    [canned, server]: [&CannedProcess; 2],
) {
    let mut one = rustix::thread::CpuSet::new();
    one.set(0);
    let all = rustix::thread::sched_getaffinity(None).unwrap();
    // This process too: the canned thread serving a new connection
    // inherits its listener thread's CPUs.
    let pids = [std::process::id(), l.pid(), canned.pid(), server.pid()];
    for pid in pids {
        pin_process(pid, &one);
    }
    let kept = |path: &Path| StdUnixStream::connect(path).unwrap();
    let mut agent = kept(&l.control);
    sync_io::write_frame(&mut agent, FrameType::REUSE, &[]).unwrap();
    let mut conns = [agent, kept(thread), kept(&canned.path), kept(&server.path)];
    let mut times: [Vec<Duration>; 4] = Default::default();
    for _ in 0..n.small_read_iters {
        for (c, t) in conns.iter_mut().zip(&mut times) {
            t.push(request_on(c, req));
        }
    }
    for pid in pids {
        pin_process(pid, &all);
    }
    let [agent, thread, canned, server] = times.map(|t| stats(&t));
    println!("  reused, every process on CPU 0:");
    report("agent, raw blocking frames, reused", &agent, None);
    report("raw Unix socket, reused (baseline)", &thread, None);
    report("canned reply, another process", &canned, None);
    report("least file server, another process", &server, None);
    println!(
        "  p50 ratio raw frames/canned reply in another process, one CPU: {:.2}",
        agent.p50.as_secs_f64() / canned.p50.as_secs_f64()
    );
    println!(
        "  p50 ratio raw frames/least file server, one CPU: {:.2}",
        agent.p50.as_secs_f64() / server.p50.as_secs_f64()
    );
    target(
        "p50 ratio raw frames/socket, both reused, one CPU",
        agent.p50.as_secs_f64() / thread.p50.as_secs_f64(),
        Target::AtMost,
        1.2,
    );
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
