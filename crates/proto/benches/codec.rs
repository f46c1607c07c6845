//! Codec throughput against the raw cost of the same bytes moving without
//! framing, measured in the same run:
//! - frame write / read of 1, 8 and 32 KiB payloads vs a plain `memcpy` of
//!   the same bytes;
//! - a 1 KiB frame round trip over a Unix socket pair vs the same 1 KiB
//!   sent raw over the same kind of socket pair;
//! - JSON encoding of an exec request.
//!
//! `cargo bench -p bhatti-proto` (criterion prints time and throughput per
//! case; compare each `frame/*` line with its `baseline/*` line).

use std::hint::black_box;
use std::io::{Cursor, Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;

use bhatti_proto::messages::{self, ExecRequest};
use bhatti_proto::{FrameType, sync_io};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const SIZES: [usize; 3] = [1024, 8 * 1024, 32 * 1024];

fn write_read(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    for size in SIZES {
        let payload = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(
            BenchmarkId::new("baseline_memcpy", size),
            &payload,
            |b, p| {
                let mut out = Vec::with_capacity(size + 5);
                b.iter(|| {
                    out.clear();
                    out.extend_from_slice(black_box(p));
                    black_box(&out);
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("frame_write", size), &payload, |b, p| {
            let mut out = Vec::with_capacity(size + 5);
            b.iter(|| {
                out.clear();
                sync_io::write_frame(&mut out, FrameType::STDOUT, black_box(p)).expect("write");
                black_box(&out);
            })
        });
        let mut wire = Vec::new();
        sync_io::write_frame(&mut wire, FrameType::STDOUT, &payload).expect("write");
        g.bench_with_input(BenchmarkId::new("frame_read", size), &wire, |b, w| {
            b.iter(|| {
                let f = sync_io::read_frame(&mut Cursor::new(black_box(w)))
                    .expect("read")
                    .expect("frame");
                black_box(f);
            })
        });
    }
    g.finish();
}

/// An echo peer on the other end of a socket pair: reads `n` bytes, writes
/// them back.
fn echo_peer(mut s: UnixStream, n: usize) {
    let mut buf = vec![0u8; n];
    while s.read_exact(&mut buf).is_ok() {
        if s.write_all(&buf).is_err() {
            break;
        }
    }
}

fn socket_round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("socket_rtt_1k");
    let payload = vec![7u8; 1024];
    g.throughput(Throughput::Bytes(1024));

    let (mut a, b) = UnixStream::pair().expect("pair");
    let t = thread::spawn(move || echo_peer(b, 1024));
    let mut back = vec![0u8; 1024];
    g.bench_function("baseline_raw", |bch| {
        bch.iter(|| {
            a.write_all(&payload).expect("write");
            a.read_exact(&mut back).expect("read");
        })
    });
    drop(a);
    t.join().expect("peer");

    let (mut a, b) = UnixStream::pair().expect("pair");
    let t = thread::spawn(move || echo_peer(b, 1024 + 5));
    g.bench_function("frame", |bch| {
        bch.iter(|| {
            sync_io::write_frame(&mut a, FrameType::STDIN, &payload).expect("write");
            let f = sync_io::read_frame(&mut a).expect("read").expect("frame");
            black_box(f);
        })
    });
    drop(a);
    t.join().expect("peer");
    g.finish();
}

fn json(c: &mut Criterion) {
    let req = ExecRequest {
        argv: vec!["bash".into(), "-lc".into(), "make test".into()],
        env: [("CI".to_string(), "1".to_string())].into(),
        cwd: Some("/workspace".into()),
        ..ExecRequest::default()
    };
    c.bench_function("json/exec_request_encode", |b| {
        b.iter(|| black_box(messages::json_frame(FrameType::EXEC_REQ, black_box(&req))))
    });
}

criterion_group!(benches, write_read, socket_round_trip, json);
criterion_main!(benches);
