//! Protocol version 5 against the real lohar: kept piped execs (attach
//! after the first connection dropped, replay then live output and exit,
//! several attachers, stdin / end of stdin / signals from an attacher,
//! the list, the bounded ring, bad input) and the empty STDIN frame that
//! ends a plain piped exec's input while KILL and SIGNAL still work.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::os::unix::net::UnixStream;

use bhatti_agent::{Error, ErrorCode, Event, ExecRequest, Kept, feature};
use bhatti_proto::{FrameType, sync_io};
use common::{Lohar, Options, SOON, alive, read_to_exit, read_until};

fn sh(script: &str) -> ExecRequest {
    ExecRequest::command(["/bin/sh", "-c", script])
}

fn code(e: &Error) -> ErrorCode {
    e.agent_code()
        .unwrap_or_else(|| panic!("expected an agent error, got {e:?}"))
}

/// Reads until EXIT, keeping stdout and stderr apart.
async fn split_to_exit(k: &mut Kept) -> (Vec<u8>, Vec<u8>, i32) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = tokio::time::timeout(SOON, async {
        loop {
            match k.next().await.unwrap() {
                Some(Event::Stdout(b)) => out.extend_from_slice(&b),
                Some(Event::Stderr(b)) => err.extend_from_slice(&b),
                Some(Event::Exit(c)) => return c,
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .expect("no exit in time");
    (out, err, code)
}

#[tokio::test]
async fn caps_lists_keep_and_stdin_eof() {
    let l = Lohar::start().await;
    let caps = l.client.caps().await.unwrap();
    assert!(caps.version >= 5);
    assert!(caps.has(feature::KEEP) && caps.has(feature::STDIN_EOF));
}

#[tokio::test]
async fn attach_after_the_first_connection_dropped_replays_then_streams_live() {
    let l = Lohar::start().await;
    let script = "echo one; echo err1 >&2; read x; echo \"got $x\"; echo err2 >&2; exit 3";
    let mut first = l.client.exec_kept(&sh(script)).await.unwrap();
    let info = first.info.clone();
    assert!(
        info.id.starts_with('k') && info.running && info.stdin_open,
        "{info:?}"
    );
    assert_eq!((info.attached, info.dropped, info.exit_code), (1, 0, None));
    read_until(&mut first.events, |o| common::contains(o, "err1")).await;
    drop(first);
    assert!(
        alive(info.pid),
        "a host disconnect must not kill a kept command"
    );

    let mut again = l.client.attach_kept(&info.id).await.unwrap();
    assert_eq!((again.info.pid, again.info.dropped), (info.pid, 0));
    assert_eq!(again.info.replay, 9, "one\\n + err1\\n");
    // The replay: stdout and stderr as they came.
    assert_eq!(
        again.next().await.unwrap(),
        Some(Event::Stdout(b"one\n".to_vec()))
    );
    assert_eq!(
        again.next().await.unwrap(),
        Some(Event::Stderr(b"err1\n".to_vec()))
    );
    again.input.write_stdin(b"hello\n").await.unwrap();
    let (out, err, code) = split_to_exit(&mut again).await;
    assert_eq!(
        (out.as_slice(), err.as_slice(), code),
        (&b"got hello\n"[..], &b"err2\n"[..], 3)
    );

    // Exited: still listed, and an attach replays everything, then EXIT.
    let list = l.client.list_kept().await.unwrap();
    let entry = list.commands.iter().find(|c| c.id == info.id).unwrap();
    assert_eq!(
        (entry.running, entry.exit_code, entry.stdin_open),
        (false, Some(3), false)
    );
    let mut late = l.client.attach_kept(&info.id).await.unwrap();
    assert_eq!(late.info.exit_code, Some(3));
    let (out, err, code) = split_to_exit(&mut late).await;
    assert_eq!(out, b"one\ngot hello\n");
    assert_eq!((err.as_slice(), code), (&b"err1\nerr2\n"[..], 3));
}

#[tokio::test]
async fn two_attachers_both_see_live_output_and_the_exit() {
    let l = Lohar::start().await;
    let script = "echo ready; read a; echo \"A=$a\"; read b; echo \"B=$b\"";
    let mut first = l.client.exec_kept(&sh(script)).await.unwrap();
    read_until(&mut first.events, |o| o == b"ready\n").await;
    let mut second = l.client.attach_kept(&first.info.id).await.unwrap();
    assert_eq!(second.info.attached, 2);
    let mut third = l.client.attach_kept(&first.info.id).await.unwrap();
    read_until(&mut second.events, |o| o == b"ready\n").await;
    read_until(&mut third.events, |o| o == b"ready\n").await;
    // Input from two connections reaches the one stdin.
    second.input.write_stdin(b"x\n").await.unwrap();
    read_until(&mut first.events, |o| o == b"A=x\n").await;
    third.input.write_stdin(b"y\n").await.unwrap();
    let (out, code) = read_to_exit(&mut first.events).await;
    assert_eq!((out.as_slice(), code), (&b"B=y\n"[..], 0));
    for k in [&mut second, &mut third] {
        let (out, code) = read_to_exit(&mut k.events).await;
        assert_eq!((out.as_slice(), code), (&b"A=x\nB=y\n"[..], 0));
    }
}

#[tokio::test]
async fn end_of_stdin_signal_and_kill_from_an_attacher() {
    let l = Lohar::start().await;
    let mut first = l
        .client
        .exec_kept(&sh("cat; echo eof; exec sleep 30"))
        .await
        .unwrap();
    first.input.write_stdin(b"in\n").await.unwrap();
    read_until(&mut first.events, |o| o == b"in\n").await;
    // Half-closing (or dropping) the first connection detaches it; stdin
    // stays open for the next one.
    first.input.close_stdin().await.unwrap();
    drop(first);
    let mut k = l
        .client
        .attach_kept(&l.client.list_kept().await.unwrap().commands[0].id)
        .await
        .unwrap();
    assert!(k.info.stdin_open && k.info.running);
    k.input.write_stdin(b"more\n").await.unwrap();
    read_until(&mut k.events, |o| o == b"in\nmore\n").await;
    k.input.end_stdin().await.unwrap();
    read_until(&mut k.events, |o| o == b"eof\n").await;
    let listed = l.client.list_kept().await.unwrap().commands[0].clone();
    assert!(!listed.stdin_open && listed.running);
    k.input.signal(15).await.unwrap();
    assert_eq!(read_to_exit(&mut k.events).await.1, 143);

    let mut k = l
        .client
        .exec_kept(&sh("echo up; exec sleep 30"))
        .await
        .unwrap();
    read_until(&mut k.events, |o| o == b"up\n").await;
    let mut other = l.client.attach_kept(&k.info.id).await.unwrap();
    other.input.kill().await.unwrap();
    assert_eq!(read_to_exit(&mut k.events).await.1, 137);
    assert_eq!(read_to_exit(&mut other.events).await.1, 137);
}

#[tokio::test]
async fn list_shows_kept_commands_and_nothing_else() {
    let l = Lohar::start().await;
    // A plain exec and a TTY session are not kept commands.
    let plain = l
        .client
        .exec(bhatti_agent::ExecOptions::new(["true"]))
        .await
        .unwrap();
    assert_eq!(plain.exit_code, 0);
    assert!(l.client.list_kept().await.unwrap().commands.is_empty());

    std::fs::create_dir(l.path("w")).unwrap();
    let req = ExecRequest {
        cwd: Some(l.spath("w")),
        tag: Some("my-tag".into()),
        ..sh("echo hi; exec sleep 30")
    };
    let mut k = l.client.exec_kept(&req).await.unwrap();
    read_until(&mut k.events, |o| o == b"hi\n").await;
    let list = l.client.list_kept().await.unwrap();
    assert!(!list.truncated);
    let [c] = list.commands.as_slice() else {
        panic!("{list:?}")
    };
    assert_eq!(c.argv, ["/bin/sh", "-c", "echo hi; exec sleep 30"]);
    assert_eq!(
        (c.cwd.as_deref(), c.tag.as_deref()),
        (Some(l.spath("w").as_str()), Some("my-tag"))
    );
    assert!(c.running && c.pid > 0 && alive(c.pid) && !c.argv_cut);
    assert_eq!((c.attached, c.id.as_str()), (1, k.info.id.as_str()));
    k.input.kill().await.unwrap();
    read_to_exit(&mut k.events).await;
}

#[tokio::test]
async fn exec_without_keep_is_unchanged() {
    let l = Lohar::start().await;
    // Raw bytes: the first frame is output, not KEPT_INFO.
    let mut s = UnixStream::connect(&l.control).unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    let req = bhatti_proto::messages::json_frame(FrameType::EXEC_REQ, &sh("echo x")).unwrap();
    sync_io::write_frame(&mut s, req.kind, &req.payload).unwrap();
    let f = sync_io::read_frame(&mut s).unwrap().unwrap();
    assert_eq!(
        (f.kind, f.payload.as_slice()),
        (FrameType::STDOUT, &b"x\n"[..])
    );
    let f = sync_io::read_frame(&mut s).unwrap().unwrap();
    assert_eq!(f.kind, FrameType::EXIT);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    // A half-close still ends a plain exec's input (v1).
    let mut c = l.client.exec_stream(&sh("cat; echo done")).await.unwrap();
    c.input.write_stdin(b"a\n").await.unwrap();
    c.input.close_stdin().await.unwrap();
    let (out, code) = read_to_exit(&mut c.events).await;
    assert_eq!((out.as_slice(), code), (&b"a\ndone\n"[..], 0));
    assert!(l.client.list_kept().await.unwrap().commands.is_empty());
}

#[tokio::test]
async fn the_ring_keeps_the_newest_output_and_counts_the_rest() {
    let l = Lohar::start().await;
    let script = "printf START; head -c 200000 /dev/zero | tr '\\0' a; printf END";
    let k = l.client.exec_kept(&sh(script)).await.unwrap();
    let id = k.info.id.clone();
    drop(k);
    let exited = async {
        loop {
            let list = l.client.list_kept().await.unwrap();
            if list.commands.iter().any(|c| c.id == id && !c.running) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(SOON, exited)
        .await
        .expect("the command did not end");
    let mut late = l.client.attach_kept(&id).await.unwrap();
    let (out, _, code) = split_to_exit(&mut late).await;
    assert_eq!(code, 0);
    assert_eq!(out.len(), 64 * 1024);
    assert!(out.ends_with(b"aaaEND") && !common::contains(&out, "START"));
    assert_eq!(late.info.dropped as usize + out.len(), 5 + 200_000 + 3);
    assert_eq!(late.info.replay as usize, out.len());
}

#[tokio::test]
async fn bad_kept_requests_get_clear_errors() {
    let l = Lohar::start().await;
    let e = l.client.attach_kept("k999").await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::SessionNotFound);
    assert!(e.to_string().contains("\"k999\" not found"), "{e}");
    let e = l.client.attach_kept(&"x".repeat(5000)).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::SessionNotFound);
    assert!(e.to_string().len() < 400, "the id is quoted short: {e}");
    let long = ExecRequest {
        tag: Some("t".repeat(bhatti_proto::kept::MAX_TAG + 1)),
        ..sh("true")
    };
    let e = l.client.exec_kept(&long).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::InvalidRequest);
    assert!(e.to_string().contains("tag"), "{e}");
    // Malformed KEPT_ATTACH JSON.
    let mut s = UnixStream::connect(&l.control).unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    sync_io::write_frame(&mut s, FrameType::KEPT_ATTACH, b"{nope").unwrap();
    let f = sync_io::read_frame(&mut s).unwrap().unwrap();
    assert_eq!(f.kind, FrameType::ERROR_CODE);
    assert!(String::from_utf8_lossy(&f.payload).contains("invalid_request"));
    assert_eq!(
        sync_io::read_frame(&mut s).unwrap().unwrap().kind,
        FrameType::ERROR
    );
    // A command that cannot start is not kept.
    let e = l
        .client
        .exec_kept(&ExecRequest::command(["/nonexistent/x"]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::StartFailed);
    assert!(l.client.list_kept().await.unwrap().commands.is_empty());
    // The agent still serves.
    let ok = l
        .client
        .exec(bhatti_agent::ExecOptions::new(["true"]))
        .await
        .unwrap();
    assert_eq!(ok.exit_code, 0);
}

#[tokio::test]
async fn signal_reaches_a_plain_exec_after_end_of_stdin() {
    let l = Lohar::start().await;
    let mut s = l
        .client
        .exec_stream(&sh("cat >/dev/null; echo closed; exec sleep 30"))
        .await
        .unwrap();
    s.input.write_stdin(b"data\n").await.unwrap();
    s.input.end_stdin().await.unwrap();
    read_until(&mut s.events, |o| o == b"closed\n").await;
    s.input.signal(15).await.unwrap();
    assert_eq!(read_to_exit(&mut s.events).await.1, 143);
    // KILL too.
    let mut s = l
        .client
        .exec_stream(&sh("cat >/dev/null; echo closed; exec sleep 30"))
        .await
        .unwrap();
    s.input.end_stdin().await.unwrap();
    read_until(&mut s.events, |o| o == b"closed\n").await;
    s.input.kill().await.unwrap();
    assert_eq!(read_to_exit(&mut s.events).await.1, 137);
}

#[tokio::test]
async fn kept_commands_are_bounded_in_number_and_time() {
    let l = Lohar::start_with(Options {
        env: vec![("LOHAR_KEPT_LIMITS".into(), "2,1,2".into())],
        ..Options::default()
    })
    .await;
    let mut a = l
        .client
        .exec_kept(&sh("echo a; exec sleep 30"))
        .await
        .unwrap();
    let mut b = l
        .client
        .exec_kept(&sh("echo b; exec sleep 30"))
        .await
        .unwrap();
    let e = l.client.exec_kept(&sh("true")).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::LimitReached, "{e}");
    assert!(e.to_string().contains("limit 2"), "{e}");
    // A plain exec is not limited by it.
    let ok = l
        .client
        .exec(bhatti_agent::ExecOptions::new(["true"]))
        .await
        .unwrap();
    assert_eq!(ok.exit_code, 0);
    // Exited ones: only the newest one stays.
    a.input.kill().await.unwrap();
    assert_eq!(read_to_exit(&mut a.events).await.1, 137);
    b.input.kill().await.unwrap();
    assert_eq!(read_to_exit(&mut b.events).await.1, 137);
    let ids: Vec<String> = l
        .client
        .list_kept()
        .await
        .unwrap()
        .commands
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, [b.info.id.clone()]);
    let e = l.client.attach_kept(&a.info.id).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::SessionNotFound);
    // And not for longer than the retention time (2 s here).
    let mut gone = false;
    for _ in 0..(SOON.as_millis() / 100) {
        if l.client.list_kept().await.unwrap().commands.is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "an exited kept command outlived its retention");
}
