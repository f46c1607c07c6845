//! Concurrent writers on one connection never interleave bytes: each frame
//! goes out in a single write of one buffer.

use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::thread;

use bhatti_proto::{FrameType, sync_io};

const PER_THREAD: usize = 1000;

#[test]
fn two_threads_write_1000_frames_each_on_one_socket() {
    let (writer, mut reader) = UnixStream::pair().expect("socketpair");
    let handles: Vec<_> = (0u8..2)
        .map(|t| {
            let mut w = writer.try_clone().expect("clone");
            thread::spawn(move || {
                for i in 0..PER_THREAD {
                    // Varied sizes from 8 bytes to 3 KiB: a writer that split header and
                    // payload into two writes would interleave here.
                    let len = 8 + (i * 37) % 3000;
                    let mut payload = vec![t; len];
                    payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
                    let kind = if t == 0 {
                        FrameType::STDOUT
                    } else {
                        FrameType::STDERR
                    };
                    sync_io::write_frame(&mut w, kind, &payload).expect("write");
                }
            })
        })
        .collect();
    drop(writer);

    let mut next: HashMap<u8, u64> = HashMap::new();
    let mut count = 0;
    let reader_thread = thread::spawn(move || {
        while let Some(f) = sync_io::read_frame(&mut reader).expect("intact frame") {
            let t = if f.kind == FrameType::STDOUT {
                0u8
            } else {
                1u8
            };
            assert_eq!(
                f.kind,
                if t == 0 {
                    FrameType::STDOUT
                } else {
                    FrameType::STDERR
                }
            );
            let seq = u64::from_be_bytes(f.payload[..8].try_into().expect("8 bytes"));
            let expect = next.entry(t).or_default();
            assert_eq!(seq, *expect, "frames of one writer arrive in order");
            *expect += 1;
            let len = 8 + (seq as usize * 37) % 3000;
            assert_eq!(f.payload.len(), len);
            assert!(
                f.payload[8..].iter().all(|b| *b == t),
                "payload bytes intact"
            );
            count += 1;
        }
        count
    });
    for h in handles {
        h.join().expect("writer");
    }
    assert_eq!(reader_thread.join().expect("reader"), 2 * PER_THREAD);
}
