//! File reads: whole, empty, binary, unicode, line-based truncation,
//! errors, cancellation.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;

use bhatti_agent::{Error, ErrorCode, ReadOptions};
use common::{Lohar, SOON, eventually};
use tokio::io::AsyncReadExt;

const FIVE_LINES: &str = "l1\nl2\nl3\nl4\nl5\n";

fn opts(offset: i64, limit: i64, max_bytes: i64) -> ReadOptions {
    let nz = |v: i64| (v != 0).then_some(v);
    ReadOptions {
        offset: nz(offset),
        limit: nz(limit),
        max_bytes: nz(max_bytes),
    }
}

#[tokio::test]
async fn reads_whole_file_with_size_and_mode() {
    let l = Lohar::start().await;
    let p = l.path("five.txt");
    std::fs::write(&p, FIVE_LINES).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    let r = l
        .client
        .read_file(&l.spath("five.txt"), ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(r.size(), FIVE_LINES.len() as i64);
    assert_eq!(r.mode(), "0640");
    assert_eq!(r.read_all().await.unwrap(), FIVE_LINES.as_bytes());
}

#[tokio::test]
async fn reads_empty_file() {
    let l = Lohar::start().await;
    std::fs::write(l.path("empty"), b"").unwrap();
    let r = l
        .client
        .read_file(&l.spath("empty"), ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(r.size(), 0);
    assert!(r.read_all().await.unwrap().is_empty());
}

#[tokio::test]
async fn reads_binary_multi_frame_file() {
    let l = Lohar::start().await;
    let data: Vec<u8> = (0..(5u32 << 20) + 3)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(l.path("blob.bin"), &data).unwrap();
    let r = l
        .client
        .read_file(&l.spath("blob.bin"), ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(r.size(), data.len() as i64);
    let got = r.read_all().await.unwrap();
    assert!(got == data, "binary content differs ({} bytes)", got.len());
}

#[tokio::test]
async fn reads_unicode_names() {
    let l = Lohar::start().await;
    let name = "naïve файл 文件 🦀.txt";
    std::fs::write(l.path(name), "ünïcödé\n").unwrap();
    let r = l
        .client
        .read_file(&l.spath(name), ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(r.read_all().await.unwrap(), "ünïcödé\n".as_bytes());
}

#[tokio::test]
async fn truncation_combinations() {
    let l = Lohar::start().await;
    std::fs::write(l.path("five.txt"), FIVE_LINES).unwrap();
    let path = l.spath("five.txt");
    let cases: &[((i64, i64, i64), &str)] = &[
        ((0, 0, 0), FIVE_LINES),
        ((1, 0, 0), FIVE_LINES),
        ((2, 0, 0), "l2\nl3\nl4\nl5\n"),
        ((5, 0, 0), "l5\n"),
        ((0, 2, 0), "l1\nl2\n"),
        ((2, 2, 0), "l2\nl3\n"),
        ((4, 10, 0), "l4\nl5\n"),
        ((0, 0, 4), "l1\nl"),
        ((2, 0, 5), "l2\nl3"),
        ((0, 3, 4), "l1\nl"),
        ((0, 1, 100), "l1\n"),
        ((3, 2, 4), "l3\nl"),
        ((3, 2, 100), "l3\nl4\n"),
        ((6, 0, 0), ""),
        ((100, 5, 10), ""),
    ];
    for ((offset, limit, max_bytes), want) in cases {
        let r = l
            .client
            .read_file(&path, opts(*offset, *limit, *max_bytes))
            .await
            .unwrap_or_else(|e| panic!("offset={offset} limit={limit} max_bytes={max_bytes}: {e}"));
        assert_eq!(r.size(), FIVE_LINES.len() as i64, "size is the total size");
        let got = r.read_all().await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            *want,
            "offset={offset} limit={limit} max_bytes={max_bytes}"
        );
    }
}

#[tokio::test]
async fn read_errors() {
    let l = Lohar::start().await;
    let err = l
        .client
        .read_file(&l.spath(""), ReadOptions::default())
        .await
        .unwrap_err();
    let msg = err.agent_message().unwrap_or_else(|| panic!("{err:?}"));
    assert!(msg.contains("is a directory"), "{msg}");
    assert_eq!(err.agent_code(), Some(ErrorCode::IsADirectory));
    let err = l
        .client
        .read_file(&l.spath("missing"), ReadOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Agent(f)
            if f.message.contains("no such file") && f.code == ErrorCode::NotFound),
        "{err:?}"
    );
}

/// Dropping the reader aborts the read: lohar closes the file at once.
#[tokio::test]
async fn dropping_the_reader_aborts_the_read() {
    let l = Lohar::start().await;
    let p = l.path("big.bin");
    std::fs::write(&p, vec![7u8; 32 << 20]).unwrap();
    let mut r = l
        .client
        .read_file(p.to_str().unwrap(), ReadOptions::default())
        .await
        .unwrap();
    let mut first = [0u8; 16];
    r.read_exact(&mut first).await.unwrap();
    assert_eq!(first, [7u8; 16]);
    let fd_dir = format!("/proc/{}/fd", l.pid());
    let open = |p: &std::path::Path| {
        std::fs::read_dir(&fd_dir)
            .map(|d| {
                d.flatten()
                    .any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == p))
            })
            .unwrap_or(false)
    };
    assert!(open(&p), "lohar should hold the file open mid-read");
    drop(r);
    assert!(
        eventually(SOON, || !open(&p)).await,
        "lohar kept reading after the host closed the connection"
    );
    // And lohar still serves requests.
    l.client.activity().await.unwrap();
}

/// Small regular files are read on the agent's runtime thread; a FIFO must
/// never be (its open or read would stall every connection).
#[tokio::test]
async fn a_fifo_waiting_for_a_writer_does_not_stall_other_reads() {
    let l = Lohar::start().await;
    let fifo = l.path("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    std::fs::write(l.path("five.txt"), FIVE_LINES).unwrap();
    let client = l.client.clone();
    let fifo_path = l.spath("pipe");
    let pending = tokio::spawn(async move {
        let r = client.read_file(&fifo_path, ReadOptions::default()).await?;
        r.read_all().await
    });
    for _ in 0..3 {
        let r = tokio::time::timeout(
            SOON,
            l.client
                .read_file(&l.spath("five.txt"), ReadOptions::default()),
        )
        .await
        .expect("a small read while a FIFO read waits")
        .unwrap();
        assert_eq!(r.read_all().await.unwrap(), FIVE_LINES.as_bytes());
    }
    // The writer comes: the FIFO read completes with what it wrote.
    let writer = std::thread::spawn(move || std::fs::write(fifo, b"through the pipe").unwrap());
    let got = tokio::time::timeout(SOON, pending)
        .await
        .expect("fifo read ends")
        .unwrap()
        .unwrap();
    writer.join().unwrap();
    assert_eq!(got, b"through the pipe");
}
