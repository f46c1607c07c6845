//! Codec cost against the raw cost of moving the same bytes, measured in
//! the same run (`cargo bench -p bhatti-proto`; `BENCH_QUICK=1` for a smoke
//! run). Prints p50/p95/p99 per operation and the p50 ratio to its baseline:
//! - frame write of 1, 8 and 32 KiB payloads vs a plain copy of the same
//!   bytes into a reused buffer; frame read vs copying the payload into a
//!   new buffer (the least any decoder returning an owned payload does).
//!   The encoded bytes sit at an odd offset inside a larger buffer: with
//!   exact power-of-two sizes, a fresh destination 4 KiB-aligned against
//!   the source hits x86's 4K-aliasing slow path in `memcpy`, which would
//!   measure the allocator's address choice instead of the codec;
//! - a 1 KiB frame round trip over a Unix socket pair vs the same 1 KiB sent
//!   raw over another socket pair;
//! - JSON encoding of an exec request (into a frame).

use std::hint::black_box;
use std::io::{Cursor, Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;

use benchkit::{iterations, measure, report, report_throughput};
use bhatti_proto::messages::{self, ExecRequest};
use bhatti_proto::{FrameType, sync_io};

const SIZES: [usize; 3] = [1024, 8 * 1024, 32 * 1024];

fn codec() {
    let samples = iterations(2000, 200);
    for size in SIZES {
        let payload = vec![0x5au8; size];
        let mut out = Vec::with_capacity(size + 5);
        let copy = measure(samples, 64, || {
            out.clear();
            out.extend_from_slice(black_box(&payload));
            black_box(&out);
        });
        report_throughput(&format!("baseline copy {size} B"), &copy, size as u64, None);

        let write = measure(samples, 64, || {
            out.clear();
            sync_io::write_frame(&mut out, FrameType::STDOUT, black_box(&payload)).expect("write");
            black_box(&out);
        });
        report_throughput(
            &format!("frame write {size} B"),
            &write,
            size as u64,
            Some(&copy),
        );

        let mut buf = vec![0u8; 200];
        sync_io::write_frame(&mut buf, FrameType::STDOUT, &payload).expect("write");
        let wire = &buf[200..];
        let owned = measure(samples, 64, || {
            black_box(black_box(&wire[5..]).to_vec());
        });
        report_throughput(
            &format!("baseline copy to new {size} B"),
            &owned,
            size as u64,
            None,
        );
        let read = measure(samples, 64, || {
            let f = sync_io::read_frame(&mut Cursor::new(black_box(wire)))
                .expect("read")
                .expect("frame");
            black_box(f);
        });
        report_throughput(
            &format!("frame read {size} B"),
            &read,
            size as u64,
            Some(&owned),
        );
    }
}

/// The other end of a socket pair: reads `n` bytes, writes them back.
fn echo_peer(mut s: UnixStream, n: usize) {
    let mut buf = vec![0u8; n];
    while s.read_exact(&mut buf).is_ok() {
        if s.write_all(&buf).is_err() {
            break;
        }
    }
}

fn socket_round_trip() {
    let samples = iterations(20_000, 2000);
    let payload = vec![7u8; 1024];

    let (mut a, b) = UnixStream::pair().expect("pair");
    let peer = thread::spawn(move || echo_peer(b, 1024));
    let mut back = vec![0u8; 1024];
    let raw = measure(samples, 1, || {
        a.write_all(&payload).expect("write");
        a.read_exact(&mut back).expect("read");
    });
    drop(a);
    peer.join().expect("peer");
    report("baseline raw 1 KiB socket round trip", &raw, None);

    let (mut a, b) = UnixStream::pair().expect("pair");
    let peer = thread::spawn(move || echo_peer(b, 1024 + 5));
    let framed = measure(samples, 1, || {
        sync_io::write_frame(&mut a, FrameType::STDIN, &payload).expect("write");
        let f = sync_io::read_frame(&mut a).expect("read").expect("frame");
        black_box(f);
    });
    drop(a);
    peer.join().expect("peer");
    report("frame 1 KiB socket round trip", &framed, Some(&raw));
}

fn json() {
    let req = ExecRequest {
        argv: vec!["bash".into(), "-lc".into(), "make test".into()],
        env: [("CI".to_string(), "1".to_string())].into(),
        cwd: Some("/workspace".into()),
        ..ExecRequest::default()
    };
    let s = measure(iterations(2000, 200), 64, || {
        black_box(messages::json_frame(FrameType::EXEC_REQ, black_box(&req)).expect("encode"));
    });
    report("exec request JSON encode + frame", &s, None);
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--bench` absent;
    // only measure when invoked by `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    codec();
    socket_round_trip();
    json();
}
