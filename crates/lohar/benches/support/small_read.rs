//! The 1 KiB read parts of the agent bench: a connection per request and
//! one reused connection, unpinned and on one CPU (see the bench's module
//! docs).

use super::*;
use crate::servers::{Serve, ServerProcess, pin_process, server_process};

pub async fn small_read(l: &Lohar, n: &Sizes) {
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
    let procs = [Serve::Canned, Serve::Read, Serve::TokioRead]
        .map(|mode| server_process(l.path(&format!("{mode:?}.sock")), mode));
    let connect = |path: &Path| StdUnixStream::connect(path).unwrap();
    let mut agent = connect(&l.control);
    sync_io::write_frame(&mut agent, FrameType::REUSE, &[]).unwrap();
    let mut conns = [
        agent,
        connect(&canned),
        connect(&procs[0].path),
        connect(&procs[1].path),
    ];
    let mut times: [Vec<Duration>; 4] = Default::default();
    let mut agent_kept = vec![];
    let pooled = l.client.clone().with_reuse();
    for _ in 0..n.small_read_iters {
        for (c, t) in conns.iter_mut().zip(&mut times) {
            t.push(request_on(c, req));
        }
        let t = Instant::now();
        let body = pooled
            .read_file(path, ReadOptions::default())
            .await
            .unwrap();
        let data = body.read_all().await.unwrap();
        agent_kept.push(t.elapsed());
        assert_eq!(data.len(), 1024);
    }
    let [rk, sk, pk, fk] = times.map(|t| stats(&t));
    println!("  one connection for all requests (protocol version 6, REUSE):");
    let ak = stats(&agent_kept);
    report("agent + client, reused connection", &ak, None);
    report("agent, raw blocking frames, reused", &rk, None);
    report("raw Unix socket, reused (baseline)", &sk, None);
    report("the same, server in another process", &pk, None);
    report("least file server, another process", &fk, None);
    println!(
        "  p50 ratio raw frames/socket in another process (the wake-ups of a \
         second process, lohar's too): {:.2}",
        rk.p50.as_secs_f64() / pk.p50.as_secs_f64()
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
    one_cpu(l, n, req, &canned, &procs);
}

/// Requests in a row to one server on one CPU. A server's reply wakes
/// the client, which then runs before the server has finished its loop
/// (back to `epoll_wait` or `read`); that rest runs while the client waits
/// for the next reply. Requests to servers taken in turns would bill each
/// server for the rest of the one before it: that moved a server's p50 by
/// up to 2 µs with its place in the turn. In a row, each request pays for
/// its own server's rest, which is the server's whole cost per request.
const BLOCK: usize = 50;

/// The reused 1 KiB read with the client, lohar and the servers on CPU 0:
/// what the request costs without the cross-CPU wake-up, whose price on
/// this host (a PVM guest) decides the unpinned figures by itself. There,
/// lohar, the canned process and a minimal C server doing lohar's system
/// calls each land at ~6-10 µs in some runs and ~50-65 µs in others.
/// Servers take turns by [`BLOCK`]s of requests.
fn one_cpu(l: &Lohar, n: &Sizes, req: &Frame, thread: &Path, procs: &[ServerProcess; 3]) {
    let mut one = rustix::thread::CpuSet::new();
    one.set(0);
    let all = rustix::thread::sched_getaffinity(None).unwrap();
    // This process too: the canned thread serving a new connection
    // inherits its listener thread's CPUs.
    let mut pids = vec![std::process::id(), l.pid()];
    pids.extend(procs.iter().map(ServerProcess::pid));
    for &pid in &pids {
        pin_process(pid, &one);
    }
    let connect = |path: &Path| StdUnixStream::connect(path).unwrap();
    let mut agent = connect(&l.control);
    sync_io::write_frame(&mut agent, FrameType::REUSE, &[]).unwrap();
    let mut conns = vec![agent, connect(thread)];
    conns.extend(procs.iter().map(|p| connect(&p.path)));
    let mut times: [Vec<Duration>; 5] = Default::default();
    for _ in 0..n.small_read_iters.div_ceil(BLOCK - 1) {
        for (c, t) in conns.iter_mut().zip(&mut times) {
            // The first request of a block also pays for the end of the
            // previous server's last request (see BLOCK): not kept.
            request_on(c, req);
            for _ in 1..BLOCK {
                t.push(request_on(c, req));
            }
        }
    }
    for &pid in &pids {
        pin_process(pid, &all);
    }
    let [agent, thread, canned, read, tokio] = times.map(|t| stats(&t));
    println!("  reused, every process on CPU 0:");
    report("agent, raw blocking frames, reused", &agent, None);
    report("raw Unix socket, reused (baseline)", &thread, None);
    report("canned reply, another process", &canned, None);
    report("least file server, another process", &read, None);
    report("least tokio file server, another process", &tokio, None);
    let over = |a: &Summary, b: &Summary| a.p50.as_secs_f64() / b.p50.as_secs_f64();
    println!(
        "  p50 ratios of raw frames, one CPU: canned thread {:.2}, least file \
         server {:.2}, least tokio file server {:.2}",
        over(&agent, &thread),
        over(&agent, &read),
        over(&agent, &tokio)
    );
    // The floor for any server that reads the file: the least one over
    // the same canned reply. The thread is not lohar's peer: it serves
    // without switching address spaces.
    println!(
        "  p50 ratio least file server/canned reply in another process, one \
         CPU (the least any file server costs): {:.2}",
        over(&read, &canned)
    );
    target(
        "p50 ratio raw frames/canned reply in another process, both reused, one CPU",
        over(&agent, &canned),
        Target::AtMost,
        1.2,
    );
}
