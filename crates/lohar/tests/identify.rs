//! Identify lines on the console input (`LOHAR_CONSOLE_INPUT`, a FIFO in
//! test mode): the token and the environment are replaced, connections
//! from before are closed while processes keep running, and wrong auth,
//! garbage and over-long lines change nothing.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;

use bhatti_agent::{Client, Error, ExecOptions, ShellOptions};
use bhatti_proto::config::GuestConfig;
use bhatti_proto::identify::{ENTROPY_LEN, Identity, LINE_PREFIX, MAX_LINE_LEN};
use bhatti_proto::messages::ExecRequest;
use common::{Lohar, Options, SOON, alive, eventually, wait_file};

const T1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const T2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const T3: &str = "3333333333333333333333333333333333333333333333333333333333333333";

async fn start() -> (Lohar, File) {
    let config = GuestConfig {
        env: BTreeMap::from([("A".into(), "old".into()), ("KEEP".into(), "x".into())]),
        ..GuestConfig::default()
    };
    let l = Lohar::start_with(Options {
        token: Some(T1.into()),
        config: Some(config),
        console_input: true,
        ..Options::default()
    })
    .await;
    // lohar holds the FIFO open for reading (and writing) before its ready
    // line, so this open does not block.
    let console = File::options().write(true).open(l.path("console")).unwrap();
    (l, console)
}

fn identity(auth: &str, token: &str, sandbox: &str) -> Identity {
    Identity {
        auth: auth.into(),
        token: token.into(),
        sandbox_id: sandbox.into(),
        hostname: sandbox.into(),
        mac: "02:00:0a:00:00:05".into(),
        ip: Ipv4Addr::new(10, 0, 0, 5),
        prefix_len: 24,
        gateway: Ipv4Addr::new(10, 0, 0, 1),
        entropy: "07".repeat(ENTROPY_LEN),
        env: None,
    }
}

fn client(l: &Lohar, token: &str) -> Client {
    l.anonymous().with_token(token)
}

/// `echo $A-$KEEP` through a client with `token`.
async fn env_seen(l: &Lohar, token: &str) -> Result<String, Error> {
    let r = client(l, token)
        .exec(ExecOptions::new(["/bin/sh", "-c", "echo \"$A-$KEEP\""]))
        .await?;
    Ok(String::from_utf8_lossy(&r.stdout).trim().to_owned())
}

fn refused(r: Result<String, Error>) -> bool {
    matches!(r, Err(Error::AuthRefused(_)))
}

#[tokio::test]
async fn identify_replaces_the_token_and_the_environment() {
    let (l, mut console) = start().await;
    assert_eq!(env_seen(&l, T1).await.unwrap(), "old-x");
    let mut id = identity(T1, T2, "child-1");
    id.env = Some(BTreeMap::from([("A".into(), "new".into())]));
    console.write_all(id.to_line().as_bytes()).unwrap();
    l.wait_log("bhatti-identify: ok child-1").await;
    assert!(refused(env_seen(&l, T1).await), "the old token still works");
    assert_eq!(env_seen(&l, T2).await.unwrap(), "new-");
    assert_eq!(
        l.logged("test mode: MAC, address, hostname and entropy skipped"),
        1
    );
}

#[tokio::test]
async fn wrong_auth_garbage_and_over_long_lines_change_nothing() {
    let (mut l, mut console) = start().await;
    let mut wrong = identity("not-the-token", T3, "wrong");
    wrong.env = Some(BTreeMap::new());
    console.write_all(wrong.to_line().as_bytes()).unwrap();
    l.wait_log("identify as wrong: wrong auth; ignored").await;
    console
        .write_all(b"hello\n\0\xff\x1b[2J junk\r\n\n")
        .unwrap();
    // A valid identify, but longer than lohar takes: dropped whole.
    let mut long = identity(T1, T3, "long");
    long.env = Some(BTreeMap::from([("PAD".into(), "p".repeat(MAX_LINE_LEN))]));
    console.write_all(long.to_line().as_bytes()).unwrap();
    // An identify line that does not parse: an error line, nothing else.
    console
        .write_all(format!("{LINE_PREFIX}zz\n").as_bytes())
        .unwrap();
    l.wait_log("bhatti-identify: error identify payload:").await;
    assert!(l.running());
    assert_eq!(env_seen(&l, T1).await.unwrap(), "old-x");
    assert!(refused(env_seen(&l, T3).await));
    // The lines are handled in order: once this one is applied, the ones
    // before it were all seen.
    console
        .write_all(identity(T1, T2, "after-junk").to_line().as_bytes())
        .unwrap();
    l.wait_log("bhatti-identify: ok after-junk").await;
    assert_eq!(
        l.logged("bhatti-identify: ok"),
        1,
        "only one identify applied"
    );
    assert_eq!(env_seen(&l, T2).await.unwrap(), "old-x");
    assert!(refused(env_seen(&l, T3).await));
}

#[tokio::test]
async fn a_second_identify_authenticates_with_the_new_token() {
    let (l, mut console) = start().await;
    console
        .write_all(identity(T1, T2, "child-1").to_line().as_bytes())
        .unwrap();
    l.wait_log("bhatti-identify: ok child-1").await;
    // The parent's token no longer identifies; the child's does.
    console
        .write_all(identity(T1, T3, "stale").to_line().as_bytes())
        .unwrap();
    let mut again = identity(T2, T3, "grandchild");
    again.env = Some(BTreeMap::from([("A".into(), "g".into())]));
    console.write_all(again.to_line().as_bytes()).unwrap();
    l.wait_log("bhatti-identify: ok grandchild").await;
    assert_eq!(l.logged("identify as stale: wrong auth; ignored"), 1);
    assert!(refused(env_seen(&l, T2).await));
    assert_eq!(env_seen(&l, T3).await.unwrap(), "g-");
}

#[tokio::test]
async fn connections_from_before_are_closed_and_processes_keep_running() {
    let (l, mut console) = start().await;
    let old = client(&l, T1);
    // A background session, detached.
    let script = format!("echo $$ > '{}'; exec sleep 60", l.spath("bg.pid"));
    let bg = old
        .shell(&ShellOptions::new(["/bin/sh", "-c", &script]))
        .await
        .unwrap();
    let bg_id = bg.id().to_owned();
    drop(bg);
    let bg_pid: i32 = wait_file(&l.path("bg.pid")).await.parse().unwrap();
    // An attached session and a long piped exec, both open.
    let mut attached = old.shell(&ShellOptions::new(["/bin/cat"])).await.unwrap();
    let script = format!("echo $$ > '{}'; exec sleep 60", l.spath("exec.pid"));
    let mut stream = old
        .exec_stream(&ExecRequest::command(["/bin/sh", "-c", &script]))
        .await
        .unwrap();
    let exec_pid: i32 = wait_file(&l.path("exec.pid")).await.parse().unwrap();

    console
        .write_all(identity(T1, T2, "child-1").to_line().as_bytes())
        .unwrap();
    l.wait_log("bhatti-identify: ok child-1").await;
    // Both connections end without an EXIT.
    let ended = tokio::time::timeout(SOON, attached.next()).await.unwrap();
    assert!(matches!(ended, Err(Error::Closed(_))), "{ended:?}");
    let ended = tokio::time::timeout(SOON, stream.next()).await.unwrap();
    assert!(matches!(ended, Err(Error::Closed(_))), "{ended:?}");
    // Their processes and the background session go on.
    assert!(alive(bg_pid) && alive(exec_pid));
    let new = client(&l, T2);
    let sessions = new.list_sessions().await.unwrap();
    assert_eq!(
        sessions.iter().filter(|s| s.running).count(),
        2,
        "{sessions:?}"
    );
    assert!(
        sessions
            .iter()
            .any(|s| s.session_id == bg_id && !s.attached)
    );
    // A connection made after the identify stays.
    let mut s = new.attach(&bg_id).await.unwrap();
    assert!(s.info.attached);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(100), s.next())
            .await
            .is_err(),
        "a connection made after the identify was closed"
    );
    drop(s);
    new.kill_session(&bg_id).await.unwrap();
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(exec_pid).unwrap(),
        rustix::process::Signal::KILL,
    );
    assert!(eventually(SOON, || !alive(bg_pid)).await);
}
