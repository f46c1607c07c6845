//! The cancel-safe frame reader: frames of every size in any split, a
//! `recv` cancelled at every point losing nothing, the end of the stream
//! between and inside frames, bad lengths refused at once.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bhatti_proto::frame::{self, Frame, FrameError, FrameType, MAX_PAYLOAD_LEN};
use bhatti_proto::frame_reader::{FrameReader, READ_BUF};
use tokio::io::AsyncWriteExt;

fn frames() -> Vec<Frame> {
    let sizes = [0, 1, 27, READ_BUF - 5, READ_BUF, READ_BUF + 1, 300_000, 7];
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let payload: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
            Frame::new(FrameType::STDIN, payload)
        })
        .collect()
}

fn wire(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        frame::encode_into(&mut out, f.kind, &f.payload).unwrap();
    }
    out
}

/// Writes `bytes` in pieces of `piece` bytes with a yield between them.
async fn trickle(mut w: tokio::io::DuplexStream, bytes: Vec<u8>, piece: usize) {
    for chunk in bytes.chunks(piece) {
        w.write_all(chunk).await.unwrap();
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn frames_of_every_size_arrive_whole_in_any_split() {
    let want = frames();
    for piece in [1, 3, 5, 4096, READ_BUF + 3, 1 << 20] {
        let (r, w) = tokio::io::duplex(64 * 1024);
        let writer = tokio::spawn(trickle(w, wire(&want), piece));
        let mut reader = FrameReader::new(r);
        for f in &want {
            assert_eq!(
                reader.recv().await.unwrap().as_ref(),
                Some(f),
                "piece {piece}"
            );
        }
        writer.await.unwrap();
        assert!(reader.recv().await.unwrap().is_none(), "clean end");
        assert!(reader.recv().await.unwrap().is_none(), "still the end");
    }
}

#[tokio::test]
async fn a_cancelled_recv_loses_nothing() {
    let want = frames();
    let (r, w) = tokio::io::duplex(1024);
    let writer = tokio::spawn(trickle(w, wire(&want), 7));
    let mut reader = FrameReader::new(r);
    let mut got = Vec::new();
    let mut cancelled = 0;
    while got.len() < want.len() {
        // Lose the race against a ready branch often: every cancellation
        // point inside a frame is hit.
        tokio::select! {
            biased;
            f = reader.recv() => got.push(f.unwrap().expect("a frame")),
            () = tokio::task::yield_now() => cancelled += 1,
        }
    }
    writer.await.unwrap();
    assert_eq!(got, want);
    assert!(cancelled > 100, "only {cancelled} cancellations");
}

#[tokio::test]
async fn the_stream_ending_inside_a_frame_is_truncation() {
    let whole = frame::encode(FrameType::STDOUT, &[9; 20_000]).unwrap();
    for cut in [1, 4, 5, 6, 100, 19_999] {
        let (r, mut w) = tokio::io::duplex(64 * 1024);
        w.write_all(&whole[..cut]).await.unwrap();
        drop(w);
        let mut reader = FrameReader::new(r);
        match reader.recv().await {
            Err(FrameError::Truncated { got, want }) => {
                assert_eq!(got, cut);
                assert_eq!(want, if cut < 5 { 5 } else { whole.len() });
            }
            other => panic!("cut {cut}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_bad_length_fails_as_soon_as_its_four_bytes_are_in() {
    let too_long = (MAX_PAYLOAD_LEN as u32 + 2).to_be_bytes();
    for (len, what) in [([0u8; 4], "zero"), (too_long, "too long")] {
        let (r, mut w) = tokio::io::duplex(64);
        // Four bytes and silence: the writer stays open.
        w.write_all(&len).await.unwrap();
        let mut reader = FrameReader::new(r);
        let res = tokio::time::timeout(Duration::from_secs(5), reader.recv()).await;
        match res.expect(what) {
            Err(FrameError::ZeroLength | FrameError::LengthTooLarge(_)) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
}
