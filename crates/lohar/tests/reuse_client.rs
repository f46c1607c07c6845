//! The client's reused connections (`Client::with_reuse`, protocol version
//! 6) against a real lohar: one connection carries request after request,
//! a dead idle connection is replaced without running anything twice, and
//! operations that own their connection leave the pool alone.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bhatti_agent::{Client, ExecOptions, ExecRequest, ReadOptions};
use common::{Lohar, SOON};

#[tokio::test]
async fn sequential_requests_share_one_connection() {
    let l = Lohar::start().await;
    let c = l.client.clone().with_reuse();
    let file = l.spath("a.txt");
    c.write_file(&file, 0o644, 3, &b"abc"[..]).await.unwrap();
    assert_eq!(c.idle_connections(), 1);
    for i in 0..5 {
        let body = c.read_file(&file, ReadOptions::default()).await.unwrap();
        assert_eq!(body.read_all().await.unwrap(), b"abc");
        assert_eq!(c.stat(&file).await.unwrap().size, 3);
        let out = c
            .exec(ExecOptions::new([
                "/bin/sh",
                "-c",
                &format!("echo {i}; exit {i}"),
            ]))
            .await
            .unwrap();
        assert_eq!(
            (out.stdout, out.exit_code),
            (format!("{i}\n").into_bytes(), i)
        );
        let out = c.exec(ExecOptions::new(["cat"]).stdin("in")).await.unwrap();
        assert_eq!(out.stdout, b"in");
        assert!(!c.ls(&l.spath(".")).await.unwrap().is_empty());
        c.activity().await.unwrap();
        // One at a time: the same connection each time.
        assert_eq!(c.idle_connections(), 1, "round {i}");
    }
    // A big write streams from its source on a connection of its own,
    // which is kept afterwards too.
    let big = vec![7u8; 3 << 20];
    c.write_file(&file, 0o600, big.len() as u64, big.as_slice())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), big);
    // Errors are answers: the connection stays usable.
    let missing = c.stat(&l.spath("missing")).await.unwrap_err();
    assert!(missing.agent_message().is_some(), "{missing}");
    c.activity().await.unwrap();
    // A reader dropped halfway closes its connection instead of keeping it.
    let before = c.idle_connections();
    let partial = c.read_file(&file, ReadOptions::default()).await.unwrap();
    assert_eq!(c.idle_connections(), before - 1);
    drop(partial);
    assert_eq!(c.idle_connections(), before - 1);
    // Every request found its idle connection alive: none was resent.
    assert_eq!(c.stale_connections(), 0);
    c.forget_connections();
    assert_eq!(c.idle_connections(), 0);
}

#[tokio::test]
async fn concurrent_requests_keep_a_few_connections() {
    let l = Lohar::start().await;
    let c = l.client.clone().with_reuse();
    let runs = (0..12).map(|i| {
        let c = c.clone();
        async move {
            let out = c
                .exec(ExecOptions::new(["/bin/sh", "-c", &format!("echo {i}")]))
                .await
                .unwrap();
            assert_eq!(out.stdout, format!("{i}\n").into_bytes());
        }
    });
    futures_join(runs).await;
    let idle = c.idle_connections();
    assert!((1..=bhatti_agent::pool::MAX_IDLE).contains(&idle), "{idle}");
}

async fn futures_join(runs: impl Iterator<Item = impl Future<Output = ()> + Send + 'static>) {
    let mut set = tokio::task::JoinSet::new();
    for r in runs {
        set.spawn(r);
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

/// A client with one idle connection to an agent that has since died; a
/// new agent (returned) answers at the same path.
async fn idle_connection_to_a_dead_agent() -> (Lohar, tempfile::TempDir, Client) {
    let first = Lohar::start().await;
    let second = Lohar::start().await;
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("control.sock");
    std::os::unix::fs::symlink(&first.control, &link).unwrap();
    let c = Client::unix(&link, &first.forward).with_reuse();
    c.activity().await.unwrap();
    assert_eq!(c.idle_connections(), 1);

    let pid = rustix::process::Pid::from_raw(first.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    assert!(common::eventually(SOON, || !common::alive(first.pid() as i32)).await);
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&second.control, &link).unwrap();
    (second, dir, c)
}

/// An idle connection whose agent went away is replaced by a new one, and
/// the request (an exec that appends to a file) runs exactly once.
#[tokio::test]
async fn a_dead_idle_connection_is_replaced_and_nothing_runs_twice() {
    let (second, _dir, c) = idle_connection_to_a_dead_agent().await;
    let log = second.spath("runs.log");
    let cmd = format!("echo ran >> {log}");
    let out = c
        .exec(ExecOptions::new(["/bin/sh", "-c", &cmd]))
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "ran\n");
    assert_eq!(c.stale_connections(), 1, "the dead one was found");
    assert_eq!(c.idle_connections(), 1);
    // Reads and stats take the same path.
    c.stat(&log).await.unwrap();
}

/// A streamed exec (which cannot be sent again once its output is read)
/// passes over an idle connection its agent closed. Over a Unix socket the
/// request's write to it fails as well, so this holds even without the
/// look before the write; `tcp.rs` has the case only that look catches.
#[tokio::test]
async fn a_streamed_exec_skips_an_idle_connection_its_agent_closed() {
    let (_second, _dir, c) = idle_connection_to_a_dead_agent().await;
    common::streamed_echo(&c, "hi").await;
    assert_eq!(c.stale_connections(), 1, "the closed one was skipped");
    assert_eq!(c.idle_connections(), 1);
}

/// A streamed exec takes an idle connection and, read to its EXIT and
/// dropped, gives it back; stdin ends without a half-close.
#[tokio::test]
async fn streamed_execs_reuse_their_connection() {
    let l = Lohar::start().await;
    let c = l.client.clone().with_reuse();
    c.activity().await.unwrap();
    for i in 0..3 {
        let mut s = c.exec_stream(&ExecRequest::command(["cat"])).await.unwrap();
        assert_eq!(c.idle_connections(), 0, "the idle one was taken");
        let input = format!("in{i}");
        s.input.write_stdin(input.as_bytes()).await.unwrap();
        s.input.close_stdin().await.unwrap();
        let (out, code) = common::read_to_exit(&mut s.events).await;
        assert_eq!((out, code), (input.into_bytes(), 0));
        drop(s);
        assert_eq!(c.idle_connections(), 1, "round {i}");
        c.stat(&l.spath(".")).await.unwrap();
    }
    assert_eq!(
        c.stale_connections(),
        0,
        "each stream's connection served on"
    );
    // Dropped before its EXIT: the connection is closed, not kept.
    let s = c
        .exec_stream(&ExecRequest::command(["sleep", "1"]))
        .await
        .unwrap();
    drop(s);
    assert_eq!(c.idle_connections(), 0);
    c.activity().await.unwrap();
}

/// Sessions and timeouts never hand their connection to the pool.
#[tokio::test]
async fn owned_connections_stay_out_of_the_pool() {
    let l = Lohar::start().await;
    let c = l.client.clone().with_reuse();
    c.activity().await.unwrap();
    let shell = bhatti_agent::ShellOptions::new(["/bin/sh", "-c", "sleep 0.2; exit 4"]);
    let mut shell = c.shell(&shell).await.unwrap();
    assert_eq!(c.idle_connections(), 1, "a session opens its own");
    let (_, code) = common::read_to_exit(&mut shell.events).await;
    assert_eq!(code, 4);
    drop(shell);
    assert_eq!(c.idle_connections(), 1);
    let r = c
        .exec(ExecOptions::new(["sleep", "5"]).timeout(Duration::from_millis(200)))
        .await;
    assert!(matches!(r, Err(bhatti_agent::Error::Timeout(_))), "{r:?}");
    // The connection that timed out is gone; the pool still works.
    assert_eq!(c.idle_connections(), 0);
    c.activity().await.unwrap();
    assert_eq!(c.idle_connections(), 1);
}
