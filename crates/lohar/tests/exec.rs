//! Piped exec through the client: output, exit codes, errors, env, cwd,
//! large output, stdin.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use bhatti_agent::{Error, ErrorCode, Event, ExecOptions, ExecRequest};
use bhatti_proto::config::GuestConfig;
use common::{Lohar, Options, SOON, read_to_exit};

fn sh(script: &str) -> ExecOptions {
    ExecOptions::new(["/bin/sh", "-c", script])
}

#[tokio::test]
async fn echo_returns_stdout_and_exit_zero() {
    let l = Lohar::start().await;
    let r = l
        .client
        .exec(ExecOptions::new(["echo", "hello", "world"]))
        .await
        .unwrap();
    assert_eq!(r.exit_code, 0);
    assert_eq!(r.stdout, b"hello world\n");
    assert!(r.stderr.is_empty());
}

#[tokio::test]
async fn exit_codes_are_passed_through() {
    let l = Lohar::start().await;
    for code in [0, 1, 2, 42, 255] {
        let r = l.client.exec(sh(&format!("exit {code}"))).await.unwrap();
        assert_eq!(r.exit_code, code, "exit {code}");
    }
}

#[tokio::test]
async fn signal_death_is_128_plus_signal() {
    let l = Lohar::start().await;
    let r = l.client.exec(sh("kill -TERM $$")).await.unwrap();
    assert_eq!(r.exit_code, 128 + 15);
    let r = l.client.exec(sh("kill -KILL $$")).await.unwrap();
    assert_eq!(r.exit_code, 128 + 9);
}

#[tokio::test]
async fn command_not_found_is_start_error_without_exit() {
    let l = Lohar::start().await;
    let err = l
        .client
        .exec(ExecOptions::new(["/definitely/not/here"]))
        .await
        .unwrap_err();
    match err {
        Error::Agent(f) => {
            // The message names the program that could not start.
            assert!(
                f.message.starts_with("start: /definitely/not/here: "),
                "message: {f}"
            );
            assert_eq!(f.code, ErrorCode::StartFailed);
        }
        other => panic!("expected agent error, got {other:?}"),
    }
    // Streaming: exactly one ERROR event and nothing after it (no EXIT).
    let mut s = l
        .client
        .exec_stream(&ExecRequest::command(["no-such-command-xyz"]))
        .await
        .unwrap();
    match s.next().await.unwrap() {
        Some(Event::Error(f)) => {
            assert!(f.message.starts_with("start: "), "message: {f}");
            assert_eq!(f.code, ErrorCode::StartFailed);
        }
        other => panic!("expected ERROR, got {other:?}"),
    }
    assert!(s.next().await.unwrap().is_none());
}

#[tokio::test]
async fn empty_argv_is_an_error() {
    let l = Lohar::start().await;
    let err = l
        .client
        .exec(ExecOptions::new(Vec::<String>::new()))
        .await
        .unwrap_err();
    assert_eq!(err.agent_message(), Some("empty argv"), "{err:?}");
    assert_eq!(err.agent_code(), Some(ErrorCode::InvalidRequest));
}

#[tokio::test]
async fn stderr_is_kept_apart_from_stdout() {
    let l = Lohar::start().await;
    let r = l
        .client
        .exec(sh(
            "echo out1; echo err1 >&2; echo out2; echo err2 >&2; exit 3",
        ))
        .await
        .unwrap();
    assert_eq!(r.stdout, b"out1\nout2\n");
    assert_eq!(r.stderr, b"err1\nerr2\n");
    assert_eq!(r.exit_code, 3);
}

#[tokio::test]
async fn env_merges_defaults_then_config_then_request() {
    let mut env = BTreeMap::new();
    env.insert("FROM_CONFIG".to_owned(), "config".to_owned());
    env.insert("OVERRIDE_ME".to_owned(), "config".to_owned());
    env.insert("LANG".to_owned(), "C.UTF-8".to_owned());
    let l = Lohar::start_with(Options {
        config: Some(GuestConfig {
            env,
            ..GuestConfig::default()
        }),
        ..Options::default()
    })
    .await;
    let r = l
        .client
        .exec(
            ExecOptions::new(["/usr/bin/env"])
                .env("OVERRIDE_ME", "request")
                .env("FROM_REQUEST", "request"),
        )
        .await
        .unwrap();
    assert_eq!(r.exit_code, 0);
    let out = String::from_utf8(r.stdout).unwrap();
    let vars: BTreeMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(
        vars.get("PATH"),
        Some(&"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    );
    assert_eq!(vars.get("TERM"), Some(&"xterm-256color"));
    assert!(
        vars.get("HOME").is_some_and(|h| h.starts_with('/')),
        "HOME: {:?}",
        vars.get("HOME")
    );
    assert_eq!(
        vars.get("LANG"),
        Some(&"C.UTF-8"),
        "config env beats defaults"
    );
    assert_eq!(vars.get("FROM_CONFIG"), Some(&"config"));
    assert_eq!(
        vars.get("OVERRIDE_ME"),
        Some(&"request"),
        "request env beats config"
    );
    assert_eq!(vars.get("FROM_REQUEST"), Some(&"request"));
}

#[tokio::test]
async fn default_lang_is_set() {
    let l = Lohar::start().await;
    let r = l.client.exec(sh("printf %s \"$LANG\"")).await.unwrap();
    assert_eq!(r.stdout, b"en_US.UTF-8");
}

#[tokio::test]
async fn cwd_is_honoured() {
    let l = Lohar::start().await;
    let dir = l.path("work dir");
    std::fs::create_dir(&dir).unwrap();
    let r = l
        .client
        .exec(ExecOptions::new(["pwd"]).cwd(dir.to_str().unwrap()))
        .await
        .unwrap();
    assert_eq!(r.exit_code, 0);
    assert_eq!(
        String::from_utf8(r.stdout).unwrap().trim_end(),
        dir.to_str().unwrap()
    );
}

#[tokio::test]
async fn large_output_arrives_intact() {
    let l = Lohar::start().await;
    // ~2.4 MiB of numbered lines on stdout and 1 MiB+ on stderr at once.
    let r = l
        .client
        .exec(sh("seq 1 350000; seq 1 200000 >&2"))
        .await
        .unwrap();
    let expect_out: String = (1..=350_000).map(|i| format!("{i}\n")).collect();
    let expect_err: String = (1..=200_000).map(|i| format!("{i}\n")).collect();
    assert!(expect_out.len() > 2 << 20 && expect_err.len() > 1 << 20);
    assert_eq!(r.exit_code, 0);
    assert!(
        r.stdout == expect_out.as_bytes(),
        "stdout differs ({} bytes)",
        r.stdout.len()
    );
    assert!(
        r.stderr == expect_err.as_bytes(),
        "stderr differs ({} bytes)",
        r.stderr.len()
    );
}

#[tokio::test]
async fn binary_output_checksum() {
    let l = Lohar::start().await;
    let src = l.path("random.bin");
    let data: Vec<u8> = (0..(3u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    let r = l
        .client
        .exec(ExecOptions::new(["cat", src.to_str().unwrap()]))
        .await
        .unwrap();
    assert_eq!(r.stdout.len(), data.len());
    assert!(r.stdout == data, "binary output corrupted");
}

#[tokio::test]
async fn output_cap_keeps_the_head() {
    let l = Lohar::start().await;
    let r = l
        .client
        .exec(sh("seq 1 100000").output_cap(10))
        .await
        .unwrap();
    assert_eq!(r.exit_code, 0);
    assert_eq!(r.stdout, b"1\n2\n3\n4\n5\n");
    assert!(r.stdout_truncated);
    assert!(!r.stderr_truncated);
}

#[tokio::test]
async fn stdin_is_streamed_and_half_close_ends_cat() {
    let l = Lohar::start().await;
    let mut s = l
        .client
        .exec_stream(&ExecRequest::command(["cat"]))
        .await
        .unwrap();
    // Echo round trips prove streaming (each chunk comes back before the next goes).
    for word in ["alpha\n", "beta\n", "gamma\n"] {
        s.input.write_stdin(word.as_bytes()).await.unwrap();
        let got = common::read_until(&mut s.events, |o| o.ends_with(word.as_bytes())).await;
        assert_eq!(got, word.as_bytes());
    }
    s.input.close_stdin().await.unwrap();
    let (rest, code) = read_to_exit(&mut s.events).await;
    assert!(rest.is_empty());
    assert_eq!(code, 0);
}

#[tokio::test]
async fn buffered_stdin_large_roundtrip() {
    let l = Lohar::start().await;
    let data: Vec<u8> = (0..(3u32 << 20) + 17).map(|i| (i % 251) as u8).collect();
    let r = l
        .client
        .exec(ExecOptions::new(["cat"]).stdin(data.clone()))
        .await
        .unwrap();
    assert_eq!(r.exit_code, 0);
    assert!(
        r.stdout == data,
        "stdin round trip corrupted ({} bytes)",
        r.stdout.len()
    );
}

#[tokio::test]
async fn timeout_kills_the_command() {
    let l = Lohar::start().await;
    let pidfile = l.path("pid");
    let script = format!("echo $$ > '{}'; exec sleep 30", pidfile.display());
    let err = l
        .client
        .exec(sh(&script).timeout(std::time::Duration::from_millis(500)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    let pid: i32 = common::wait_file(&pidfile).await.parse().unwrap();
    assert!(
        common::eventually(SOON, || !common::alive(pid)).await,
        "timed-out command {pid} still running"
    );
}
