//! File writes: content, empty, binary, unicode, permissions, parent dirs,
//! overwrite, atomicity under concurrent readers, negative size, temp file
//! cleanup on a dropped connection.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bhatti_agent::{Error, ReadOptions};
use bhatti_proto::messages::{FileWriteRequest, json_frame};
use bhatti_proto::{ErrorCode, FrameType, sync_io};
use common::{Lohar, SOON, eventually};

async fn put(l: &Lohar, name: &str, mode: u32, data: &[u8]) {
    l.client
        .write_file(&l.spath(name), mode, data.len() as u64, data)
        .await
        .unwrap_or_else(|e| panic!("write {name}: {e}"));
}

fn perm(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn writes_content_and_reads_it_back() {
    let l = Lohar::start().await;
    put(&l, "hello.txt", 0o644, b"hello, file\n").await;
    assert_eq!(
        std::fs::read(l.path("hello.txt")).unwrap(),
        b"hello, file\n"
    );
    let r = l
        .client
        .read_file(&l.spath("hello.txt"), ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(r.mode(), "0644");
    assert_eq!(r.read_all().await.unwrap(), b"hello, file\n");
}

#[tokio::test]
async fn writes_empty_file() {
    let l = Lohar::start().await;
    put(&l, "empty", 0o600, b"").await;
    let m = std::fs::metadata(l.path("empty")).unwrap();
    assert!(m.is_file());
    assert_eq!(m.len(), 0);
}

#[tokio::test]
async fn writes_binary_multi_frame_content() {
    let l = Lohar::start().await;
    let data: Vec<u8> = (0..(4u32 << 20) + 1)
        .map(|i| (i.wrapping_mul(40503) >> 7) as u8)
        .collect();
    put(&l, "blob.bin", 0o644, &data).await;
    let got = std::fs::read(l.path("blob.bin")).unwrap();
    assert!(got == data, "binary content differs ({} bytes)", got.len());
}

#[tokio::test]
async fn writes_unicode_names() {
    let l = Lohar::start().await;
    let name = "résumé файл 文件 🦀.txt";
    put(&l, name, 0o644, "ünïcödé".as_bytes()).await;
    assert_eq!(std::fs::read_to_string(l.path(name)).unwrap(), "ünïcödé");
}

#[tokio::test]
async fn honours_permissions() {
    let l = Lohar::start().await;
    for (name, mode) in [
        ("a", 0o600),
        ("b", 0o755),
        ("c", 0o640),
        ("d", 0o777),
        ("e", 0o400),
    ] {
        put(&l, name, mode, b"x").await;
        assert_eq!(perm(&l.path(name)), mode, "{name}: {mode:o}");
    }
    // Overwriting changes the mode too.
    put(&l, "a", 0o751, b"y").await;
    assert_eq!(perm(&l.path("a")), 0o751);
    assert_eq!(std::fs::read(l.path("a")).unwrap(), b"y");
}

#[tokio::test]
async fn creates_parent_directories() {
    let l = Lohar::start().await;
    put(&l, "deep/er/still/file.txt", 0o644, b"nested").await;
    assert_eq!(
        std::fs::read(l.path("deep/er/still/file.txt")).unwrap(),
        b"nested"
    );
}

#[tokio::test]
async fn short_source_is_refused_by_the_client() {
    let l = Lohar::start().await;
    let err = l
        .client
        .write_file(&l.spath("short"), 0o644, 10, &b"abc"[..])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
    let dir = l.dir.path().to_owned();
    // Nothing is left behind: no target, no temp file.
    let empty = eventually(SOON, || {
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .all(|e| e.file_name().to_string_lossy().ends_with(".sock"))
    })
    .await;
    assert!(
        empty,
        "leftovers: {:?}",
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect::<Vec<_>>()
    );
}

/// Readers racing with writers see the old or the new content, never a mix
/// or a partial file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_under_concurrent_readers() {
    let l = Lohar::start().await;
    const LEN: usize = 2 << 20;
    let path = l.path("atomic.bin");
    put(&l, "atomic.bin", 0o644, &vec![b'A'; LEN]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (stop, reads, path) = (stop.clone(), reads.clone(), path.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let data = std::fs::read(&path).unwrap();
                assert_eq!(data.len(), LEN, "partial file seen");
                let first = data[0];
                assert!(first == b'A' || first == b'B', "unexpected byte {first}");
                assert!(
                    data.iter().all(|b| *b == first),
                    "mixed old and new content"
                );
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    for i in 0..12 {
        let byte = if i % 2 == 0 { b'B' } else { b'A' };
        put(&l, "atomic.bin", 0o644, &vec![byte; LEN]).await;
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("reader saw a torn file");
    assert!(reads.load(Ordering::Relaxed) > 0);
}

fn raw_write_req(l: &Lohar, name: &str, size: i64) -> UnixStream {
    let mut s = UnixStream::connect(&l.control).unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    let req = FileWriteRequest {
        path: l.spath(name),
        mode: "0644".into(),
        size,
        user: None,
    };
    let f = json_frame(FrameType::FILE_WRITE_REQ, &req).unwrap();
    sync_io::write_frame(&mut s, f.kind, &f.payload).unwrap();
    s
}

#[tokio::test]
async fn negative_size_is_refused() {
    let l = Lohar::start().await;
    let mut s = raw_write_req(&l, "neg", -1);
    let code = sync_io::read_frame(&mut s).unwrap().expect("a reply");
    assert_eq!(code.kind, FrameType::ERROR_CODE);
    assert_eq!(
        ErrorCode::from_payload(&code.payload),
        ErrorCode::InvalidRequest
    );
    let f = sync_io::read_frame(&mut s).unwrap().expect("the ERROR");
    assert_eq!(f.kind, FrameType::ERROR);
    assert!(f.text().contains("size must be >= 0"), "{}", f.text());
    assert!(!l.path("neg").exists());
}

#[tokio::test]
async fn dropped_connection_removes_the_temp_file() {
    let l = Lohar::start().await;
    let sub = l.path("sub");
    std::fs::create_dir(&sub).unwrap();
    let mut s = raw_write_req(&l, "sub/target", 1000);
    sync_io::write_frame(&mut s, FrameType::STDIN, &[1u8; 100]).unwrap();
    // The data goes to a temp file beside the target while it streams...
    let started = eventually(SOON, || std::fs::read_dir(&sub).unwrap().next().is_some()).await;
    assert!(started, "no temp file beside the target during the write");
    assert!(
        !sub.join("target").exists(),
        "target visible before the write completed"
    );
    // ...and vanishes when the connection drops mid-write.
    drop(s);
    let clean = eventually(SOON, || std::fs::read_dir(&sub).unwrap().next().is_none()).await;
    assert!(
        clean,
        "left in the directory: {:?}",
        std::fs::read_dir(&sub)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect::<Vec<_>>()
    );
}

/// A relative path whose first directory is missing: the directory is
/// made and synced (its parent is the working directory, not "").
#[tokio::test]
async fn relative_path_with_a_new_first_directory() {
    let l = Lohar::start().await;
    l.client
        .write_file("newdir/f", 0o644, 3, &b"abc"[..])
        .await
        .expect("write under a new relative directory");
    assert_eq!(
        std::fs::read(l.dir.path().join("newdir/f")).unwrap(),
        b"abc"
    );
}
