//! Streaming exec driven from two tasks (backpressure both ways) and many
//! execs at once; a streaming exec supervised to a deadline.
#![allow(clippy::unwrap_used)]

mod common;

use bhatti_agent::{Event, ExecOptions, ExecRequest, ShellOptions, Supervised};
use common::{Lohar, SOON, contains, read_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_stream_pumps_8_mib_through_cat() {
    let l = Lohar::start().await;
    let s = l
        .client
        .exec_stream(&ExecRequest::command(["cat"]))
        .await
        .unwrap();
    let (mut input, mut events) = s.into_split();
    let data: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 253) as u8).collect();
    let expected = data.clone();
    // The writer runs while the reader drains: neither side may deadlock on
    // full socket buffers.
    let writer = tokio::spawn(async move {
        for chunk in data.chunks(300_000) {
            input.write_stdin(chunk).await.unwrap();
        }
        input.close_stdin().await.unwrap();
    });
    let mut got = Vec::with_capacity(expected.len());
    let code = tokio::time::timeout(SOON, async {
        loop {
            match events.next().await.unwrap() {
                Some(Event::Stdout(b)) => got.extend_from_slice(&b),
                Some(Event::Exit(c)) => return c,
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .expect("cat finished");
    writer.await.unwrap();
    assert_eq!(code, 0);
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "stdin/stdout round trip corrupted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_execs_keep_their_output_apart() {
    let l = Lohar::start().await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let c = l.client.clone();
            tokio::spawn(async move {
                let script = format!("seq {i} 1 $(({i} + 20000)); echo err-{i} >&2; exit {i}");
                let r = c
                    .exec(ExecOptions::new(["/bin/sh", "-c", &script]))
                    .await
                    .unwrap();
                let want: String = (0..=20_000).map(|k| format!("{}\n", i + k)).collect();
                assert!(r.stdout == want.as_bytes(), "exec {i}: stdout differs");
                assert_eq!(r.stderr, format!("err-{i}\n").as_bytes());
                assert_eq!(r.exit_code, i);
            })
        })
        .collect();
    for t in tasks {
        tokio::time::timeout(SOON, t).await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_session_typed_from_another_task() {
    let l = Lohar::start().await;
    let s = l
        .client
        .shell(&ShellOptions::new(["/bin/sh"]))
        .await
        .unwrap();
    let (info, mut input, mut events) = s.into_split();
    let typist = tokio::spawn(async move {
        input.write_stdin(b"echo split-$((3*3))\n").await.unwrap();
        input
    });
    read_until(&mut events, |o| contains(o, "split-9")).await;
    let mut input = typist.await.unwrap();
    input.write_stdin(b"exit 4\n").await.unwrap();
    assert_eq!(events.wait().await.unwrap(), 4);
    assert!(info.session_id.starts_with('s'));
}

#[tokio::test]
async fn supervised_exec_kills_at_the_deadline_and_keeps_the_output() {
    let l = Lohar::start().await;
    let req = ExecRequest::command(["/bin/sh", "-c", "echo before; exec sleep 30"]);
    let stream = l.client.exec_stream(&req).await.unwrap();
    let run = Supervised::new(stream, Some(std::time::Duration::from_millis(500))).await;
    let r = tokio::time::timeout(SOON, run.collect(1 << 20))
        .await
        .expect("killed in time")
        .unwrap();
    assert!(r.timed_out, "{r:?}");
    assert_eq!(r.exit_code, 137, "SIGKILL");
    assert_eq!(r.stdout, b"before\n");
}

#[tokio::test]
async fn supervised_exec_without_deadline_closes_stdin_and_caps_output() {
    let l = Lohar::start().await;
    // `cat` ends only because stdin was closed; 64 KiB of output is cut
    // at the 1 KiB cap.
    let req = ExecRequest::command(["/bin/sh", "-c", "cat; head -c 65536 /dev/zero"]);
    let stream = l.client.exec_stream(&req).await.unwrap();
    let run = Supervised::new(stream, None).await;
    let r = tokio::time::timeout(SOON, run.collect(1024))
        .await
        .expect("finished")
        .unwrap();
    assert!(!r.timed_out && r.exit_code == 0, "{r:?}");
    assert_eq!(r.stdout.len(), 1024);
    assert!(r.stdout_truncated && !r.stderr_truncated);
}
