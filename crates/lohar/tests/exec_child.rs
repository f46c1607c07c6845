//! What a piped exec's child starts with: lohar's own spawn
//! (`src/vfork.rs`) must give it what `posix_spawn` did: an empty signal
//! mask, SIGPIPE back to its default and every other disposition the
//! agent's, a process group of its own, the three pipes (or `/dev/null`)
//! and no other agent descriptor; and every failure between the clone and
//! the exec must come back as a start error, with no child left behind.
#![allow(clippy::unwrap_used)]

mod common;

use bhatti_agent::{Error, ErrorCode, ExecOptions, ExecRequest};
use common::Lohar;

/// A hex mask line (`SigIgn:\t0000000000001000`) of a `/proc/*/status`.
fn mask(status: &str, name: &str) -> u64 {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in {status}"));
    u64::from_str_radix(line.trim(), 16).unwrap()
}

const SIGPIPE_BIT: u64 = 1 << (libc::SIGPIPE - 1);

#[tokio::test]
async fn signals_start_unblocked_and_sigpipe_at_its_default() {
    let l = Lohar::start().await;
    let agent = std::fs::read_to_string(format!("/proc/{}/status", l.pid())).unwrap();
    // Rust's runtime ignores SIGPIPE in the agent; it must not stay so.
    assert_ne!(mask(&agent, "SigIgn:") & SIGPIPE_BIT, 0, "agent: {agent}");
    for stdin_null in [false, true] {
        let req = ExecRequest {
            stdin_null,
            ..ExecRequest::command(["cat", "/proc/self/status"])
        };
        let (_, mut events) = l.client.exec_stream(&req).await.unwrap().into_split();
        let (out, code) = common::read_to_exit(&mut events).await;
        assert_eq!(code, 0);
        let child = String::from_utf8(out).unwrap();
        assert_eq!(mask(&child, "SigBlk:"), 0, "blocked: {child}");
        assert_eq!(mask(&child, "SigCgt:"), 0, "caught: {child}");
        // Other ignored signals (e.g. SIGHUP under nohup) stay ignored,
        // as with posix_spawn; SIGPIPE does not.
        assert_eq!(
            mask(&child, "SigIgn:"),
            mask(&agent, "SigIgn:") & !SIGPIPE_BIT,
            "ignored: {child}"
        );
    }
    // A pipe writer whose reader is gone dies of SIGPIPE, not EPIPE.
    let r = l
        .client
        .exec(ExecOptions::new([
            "/bin/sh",
            "-c",
            "yes | head -n 1 >/dev/null; echo done",
        ]))
        .await
        .unwrap();
    assert_eq!(r.stdout, b"done\n");
    assert!(r.stderr.is_empty(), "yes wrote: {:?}", r.stderr);
}

#[tokio::test]
async fn the_child_leads_its_own_group_with_only_its_stdio() {
    let l = Lohar::start().await;
    // Fields 1 and 5 of /proc/self/stat: pid and process group.
    let r = l
        .client
        .exec(ExecOptions::new(["cat", "/proc/self/stat"]))
        .await
        .unwrap();
    let stat = String::from_utf8(r.stdout).unwrap();
    let fields: Vec<&str> = stat.split(' ').collect();
    assert_eq!(fields[0], fields[4], "pid and group: {stat}");
    // ls's own descriptors: 0-2 and the directory it reads, and none of
    // the agent's: any other must be one lohar holds without
    // close-on-exec (inherited from whoever started it, e.g. this test's
    // shell).
    let r = l
        .client
        .exec(ExecOptions::new(["ls", "/proc/self/fd"]))
        .await
        .unwrap();
    let fds = String::from_utf8(r.stdout).unwrap();
    let fds: Vec<&str> = fds.split_whitespace().collect();
    for n in ["0", "1", "2", "3"] {
        assert!(fds.contains(&n), "{fds:?}");
    }
    for n in fds.iter().filter(|n| !["0", "1", "2", "3"].contains(n)) {
        let info = std::fs::read_to_string(format!("/proc/{}/fdinfo/{n}", l.pid()))
            .unwrap_or_else(|e| panic!("fd {n} of the child is not the agent's: {e}"));
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
            .unwrap();
        assert_eq!(
            flags & libc::O_CLOEXEC as u32,
            0,
            "fd {n} is close-on-exec in lohar"
        );
    }
}

fn start_failure(r: Result<bhatti_agent::ExecResult, Error>) -> String {
    match r {
        Err(Error::Agent(f)) => {
            assert_eq!(f.code, ErrorCode::StartFailed, "{f}");
            f.message
        }
        other => panic!("expected a start failure, got {other:?}"),
    }
}

#[tokio::test]
async fn failures_between_clone_and_exec_are_start_errors() {
    let l = Lohar::start().await;
    // execve refuses a file without execute permission.
    let script = l.path("not-executable");
    std::fs::write(&script, "#!/bin/sh\necho ran\n").unwrap();
    let msg = start_failure(
        l.client
            .exec(ExecOptions::new([script.to_str().unwrap()]))
            .await,
    );
    assert!(msg.to_lowercase().contains("denied"), "{msg}");
    // chdir to a missing directory fails in the child.
    let missing = l.spath("no such dir");
    let msg = start_failure(
        l.client
            .exec(ExecOptions::new(["/bin/true"]).cwd(&missing))
            .await,
    );
    assert!(msg.to_lowercase().contains("no such file"), "{msg}");
    // Neither left a child: lohar has none after them, and the next exec
    // runs.
    let r = l
        .client
        .exec(ExecOptions::new(["echo", "next"]))
        .await
        .unwrap();
    assert_eq!(r.stdout, b"next\n");
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", l.pid())).unwrap();
    assert_eq!(children.trim(), "", "children of lohar");
}
