//! Exec through HTTP: buffered results, NDJSON streaming that delivers the
//! first event while the command is still running, timeouts, errors.

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestDaemon, TestResult, Timers, ensure, run};

#[allow(clippy::too_many_lines)] // one scenario on one daemon, step by step
pub fn buffered_and_streaming() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        d.create("ex").await?;
        let exec = "/sandboxes/ex/exec";

        // Buffered: exit code, both streams, env and cwd.
        let body = json!({"cmd": ["sh", "-c", "echo out $GREETING; pwd; echo err >&2; exit 3"],
                          "env": {"GREETING": "hi"}, "cwd": "/tmp"});
        let v = d.expect(d.req(Method::POST, exec).json(&body), 200).await?;
        ensure(
            v["exit_code"] == 3 && v["stdout"] == "out hi\n/tmp\n" && v["stderr"] == "err\n",
            || format!("buffered: {v}"),
        )?;
        // Stdin is closed without a timeout: `cat` ends at once.
        let v = d
            .expect(
                d.req(Method::POST, exec).json(&json!({"cmd": ["cat"]})),
                200,
            )
            .await?;
        ensure(v["exit_code"] == 0 && v["stdout"] == "", || {
            format!("cat: {v}")
        })?;
        // And with a timeout: `cat` still ends at once, not at the
        // deadline (the KILL of a timeout is tested below).
        let t = std::time::Instant::now();
        let body = json!({"cmd": ["cat"], "timeout_sec": 60});
        let v = d.expect(d.req(Method::POST, exec).json(&body), 200).await?;
        ensure(
            v["exit_code"] == 0 && v.get("timed_out").is_none_or(|t| t == false),
            || format!("cat with a timeout: {v}"),
        )?;
        ensure(t.elapsed() < std::time::Duration::from_secs(30), || {
            format!("cat with a timeout took {:?}", t.elapsed())
        })?;
        // A program that does not exist is the request's fault.
        let (s, e) = d
            .call(
                d.req(Method::POST, exec)
                    .json(&json!({"cmd": ["/no/such/program"]})),
            )
            .await?;
        ensure(s == 400 && e["error"].is_string(), || {
            format!("missing program: {s} {e}")
        })?;
        // timeout_sec kills the process group.
        let body =
            json!({"cmd": ["sh", "-c", "sleep 30 & sleep 30; echo never"], "timeout_sec": 1});
        let v = d.expect(d.req(Method::POST, exec).json(&body), 200).await?;
        ensure(
            v["exit_code"] == 137 && v["timed_out"] == true && v["stdout"] == "",
            || format!("timeout: {v}"),
        )?;
        let left = d.sh("ex", "ps | grep -c '[s]leep 30' || true").await?;
        ensure(left.trim() == "0", || {
            format!("sleeps left after the kill: {left}")
        })?;

        // Streaming: the first event arrives while the command waits for a
        // file that is only created after that event was received.
        let script =
            "echo first; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo second >&2; exit 7";
        let resp = d
            .req(Method::POST, exec)
            .header("accept", "application/x-ndjson")
            .json(&json!({"cmd": ["sh", "-c", script]}))
            .send()
            .await?;
        ensure(
            resp.headers()
                .get("content-type")
                .is_some_and(|v| v == "application/x-ndjson"),
            || format!("content type {:?}", resp.headers().get("content-type")),
        )?;
        let mut body = resp.bytes_stream();
        let mut buf = Vec::new();
        let mut events: Vec<Value> = Vec::new();
        let mut released = false;
        while let Some(chunk) = body.next().await {
            buf.extend_from_slice(&chunk?);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                events.push(serde_json::from_slice(&line)?);
            }
            if !released && events.iter().any(|e| e["data"] == "first\n") {
                ensure(!events.iter().any(|e| e["type"] == "exit"), || {
                    format!("exit before release: {events:?}")
                })?;
                d.sh("ex", "touch /tmp/go").await?;
                released = true;
            }
        }
        ensure(released, || {
            format!("never saw the first event: {events:?}")
        })?;
        let n = events.len();
        ensure(
            n >= 3
                && events[n - 2] == json!({"type": "stderr", "data": "second\n"})
                && events[n - 1] == json!({"type": "exit", "exit_code": 7}),
            || format!("stream: {events:?}"),
        )?;
        // Streaming errors are events too.
        let text = d
            .req(Method::POST, exec)
            .header("accept", "application/x-ndjson")
            .json(&json!({"cmd": ["/no/such/program"]}))
            .send()
            .await?
            .text()
            .await?;
        let last: Value = serde_json::from_str(text.trim().lines().last().unwrap_or("null"))?;
        ensure(last["type"] == "error" && last["data"].is_string(), || {
            format!("error event: {text}")
        })?;
        d.finish().await
    })
}
