//! KILL of piped execs (the whole process group) and host disconnects
//! (which must not kill the child).
#![allow(clippy::unwrap_used)]

mod common;

use bhatti_agent::{Event, ExecRequest};
use common::{Lohar, SOON, alive, eventually, read_to_exit, read_until, wait_file};

fn sh(script: &str) -> ExecRequest {
    ExecRequest::command(["/bin/sh", "-c", script])
}

#[tokio::test]
async fn kill_sleep_exits_137() {
    let l = Lohar::start().await;
    let mut s = l
        .client
        .exec_stream(&sh("echo started; exec sleep 30"))
        .await
        .unwrap();
    read_until(&mut s.events, |o| o == b"started\n").await;
    s.input.kill().await.unwrap();
    let (_, code) = read_to_exit(&mut s.events).await;
    assert_eq!(code, 137);
}

#[tokio::test]
async fn kill_reaches_the_whole_process_group() {
    let l = Lohar::start().await;
    let grandchild = l.path("grandchild.pid");
    // The shell starts a background child and waits; KILL must take both.
    let script = format!(
        "sleep 30 & echo $! > '{}'; echo ready; wait",
        grandchild.display()
    );
    let mut s = l.client.exec_stream(&sh(&script)).await.unwrap();
    read_until(&mut s.events, |o| o == b"ready\n").await;
    let pid: i32 = wait_file(&grandchild).await.parse().unwrap();
    assert!(alive(pid));
    s.input.kill().await.unwrap();
    let (_, code) = read_to_exit(&mut s.events).await;
    assert_eq!(code, 137);
    assert!(
        eventually(SOON, || !alive(pid)).await,
        "child of the child ({pid}) survived KILL"
    );
}

#[tokio::test]
async fn host_disconnect_does_not_kill_the_child() {
    let l = Lohar::start().await;
    let pidfile = l.path("pid");
    let done = l.path("done");
    let script = format!(
        "echo $$ > '{}'; echo up; sleep 1; echo finished > '{}'",
        pidfile.display(),
        done.display()
    );
    let mut s = l.client.exec_stream(&sh(&script)).await.unwrap();
    read_until(&mut s.events, |o| o == b"up\n").await;
    let pid: i32 = wait_file(&pidfile).await.parse().unwrap();
    drop(s);
    // The script keeps running and completes its work after the disconnect.
    assert_eq!(wait_file(&done).await, "finished");
    assert!(eventually(SOON, || !alive(pid)).await);
}

#[tokio::test]
async fn events_arrive_as_they_happen() {
    let l = Lohar::start().await;
    let gate = l.path("gate");
    // The second line is printed only after the test has seen the first.
    let script = format!(
        "echo first; while [ ! -e '{}' ]; do sleep 0.01; done; echo second >&2; exit 7",
        gate.display()
    );
    let mut s = l.client.exec_stream(&sh(&script)).await.unwrap();
    assert_eq!(
        s.next().await.unwrap(),
        Some(Event::Stdout(b"first\n".to_vec()))
    );
    std::fs::write(&gate, b"").unwrap();
    assert_eq!(
        s.next().await.unwrap(),
        Some(Event::Stderr(b"second\n".to_vec()))
    );
    assert_eq!(s.next().await.unwrap(), Some(Event::Exit(7)));
    assert_eq!(s.next().await.unwrap(), None);
}
