//! Recovery after the daemon is killed with SIGKILL: the daemon runs as a
//! child process (this test binary re-executed with
//! [`CHILD_ENV`] naming its config), holding a cold sandbox, a stopped
//! one and a hot one. After the kill and a restart on the same data dir
//! and namespace, the cold one wakes with its data, the stopped one
//! starts with its data, and the hot one (its VMM gone without a
//! snapshot) is `unknown` with the reason, and can be deleted.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bhatti_engine::netns::unique_name;
use bhatti_store::Store;
use bhatti_store::users::Limits;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestResult, Timers, cleanup, config, ensure, eventually, run};

/// When set, the test binary runs the daemon with the config in this file.
pub const CHILD_ENV: &str = "BHATTI_TEST_DAEMON_CONFIG";

/// The child side: run the daemon and exit.
pub fn child(path: &str) -> ! {
    let code = match std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .and_then(|cfg| bhatti_server::daemon::run(&cfg).map_err(|e| e.to_string()))
    {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("test daemon: {e}");
            1
        }
    };
    std::process::exit(code)
}

struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(cfg_path: &std::path::Path, log: &std::path::Path) -> Result<Proc, libtest_mimic::Failed> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let child = Command::new(std::env::current_exe()?)
        .env(CHILD_ENV, cfg_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    Ok(Proc { child })
}

pub fn sigkill_and_restart() -> TestResult {
    let dir = tempfile::Builder::new().prefix("bhatti-rec-").tempdir()?;
    let netns = unique_name("btr");
    let res = scenario(dir.path(), &netns);
    cleanup(dir.path(), &netns);
    if res.is_err() {
        let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        println!(
            "daemon log tail:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    res
}

#[allow(clippy::too_many_lines)] // one scenario on one daemon, step by step
fn scenario(dir: &std::path::Path, netns: &str) -> TestResult {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut cfg = config(
        dir,
        netns,
        Timers {
            warm_after: 2,
            cold_after: 4,
            tick: 1,
        },
    );
    cfg.listen = format!("127.0.0.1:{port}").parse()?;
    let cfg_path = dir.join("test-config.json");
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg)?)?;
    let key = {
        let store = Store::open(&cfg.state_db())?;
        bhatti_server::users::create(&store, "alice", Limits::default(), 0)?.key
    };
    let log = dir.join("daemon.log");
    let url = format!("http://127.0.0.1:{port}");
    run(async move {
        let http = reqwest::Client::new();
        let call = |m: Method, p: &str, body: Option<Value>| {
            let mut r = http.request(m, format!("{url}{p}")).bearer_auth(&key);
            if let Some(b) = body {
                r = r.json(&b);
            }
            async move {
                let resp = r.send().await?;
                let s = resp.status().as_u16();
                let v: Value = resp.json().await.unwrap_or(Value::Null);
                Ok::<_, libtest_mimic::Failed>((s, v))
            }
        };
        let wait_up = || async {
            eventually(Duration::from_secs(60), || async {
                Ok(http
                    .get(format!("{url}/health"))
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status() == 200))
            })
            .await
        };
        let sh = |sb: &'static str, script: &'static str| {
            let call = &call;
            async move {
                let (s, v) = call(
                    Method::POST,
                    &format!("/sandboxes/{sb}/exec"),
                    Some(json!({"cmd": ["sh", "-c", script], "timeout_sec": 60})),
                )
                .await?;
                ensure(s == 200 && v["exit_code"] == 0, || {
                    format!("{sb} `{script}`: {s} {v}")
                })?;
                Ok::<_, libtest_mimic::Failed>(v["stdout"].as_str().unwrap_or_default().to_owned())
            }
        };

        let mut daemon = spawn(&cfg_path, &log)?;
        wait_up().await?;
        for (name, keep_hot) in [("cold", false), ("stopped", false), ("hot", true)] {
            let (s, v) = call(
                Method::POST,
                "/sandboxes",
                Some(json!({"name": name, "memory_mb": 256, "keep_hot": keep_hot})),
            )
            .await?;
            ensure(s == 201, || format!("create {name}: {s} {v}"))?;
        }
        sh("cold", "echo cold-data > \"$HOME/f\"").await?;
        sh("stopped", "echo stopped-data > \"$HOME/f\"").await?;
        let (s, _) = call(Method::POST, "/sandboxes/stopped/stop", None).await?;
        ensure(s == 200, || format!("stop: {s}"))?;
        eventually(Duration::from_secs(120), || async {
            let (_, v) = call(Method::GET, "/sandboxes/cold", None).await?;
            Ok((v["thermal"] == "cold").then_some(()))
        })
        .await?;

        // SIGKILL: no graceful shutdown at all.
        daemon.child.kill()?;
        daemon.child.wait()?;
        drop(daemon);
        let _daemon = spawn(&cfg_path, &log)?;
        wait_up().await?;

        let (_, list) = call(Method::GET, "/sandboxes", None).await?;
        let by = |n: &str| {
            list.as_array()
                .and_then(|a| a.iter().find(|s| s["name"] == n).cloned())
                .unwrap_or(Value::Null)
        };
        ensure(
            by("cold")["status"] == "running" && by("cold")["thermal"] == "cold",
            || format!("cold after restart: {list}"),
        )?;
        ensure(by("stopped")["status"] == "stopped", || {
            format!("stopped after restart: {list}")
        })?;
        let hot = by("hot");
        ensure(
            hot["status"] == "unknown"
                && hot["status_reason"].as_str().is_some_and(|r| !r.is_empty()),
            || format!("hot after restart: {list}"),
        )?;

        let out = sh("cold", "cat \"$HOME/f\"").await?;
        ensure(out == "cold-data\n", || format!("cold data: {out:?}"))?;
        let (s, v) = call(Method::POST, "/sandboxes/stopped/start", None).await?;
        ensure(s == 200 && v["status"] == "running", || {
            format!("start: {s} {v}")
        })?;
        let out = sh("stopped", "cat \"$HOME/f\"").await?;
        ensure(out == "stopped-data\n", || format!("stopped data: {out:?}"))?;
        let (s, _) = call(
            Method::POST,
            "/sandboxes/hot/exec",
            Some(json!({"cmd": ["true"]})),
        )
        .await?;
        ensure(s == 409, || format!("exec on unknown: {s}"))?;
        for n in ["hot", "cold", "stopped"] {
            let (s, v) = call(Method::DELETE, &format!("/sandboxes/{n}"), None).await?;
            ensure(s == 200, || format!("delete {n}: {s} {v}"))?;
        }
        Ok(())
    })
}
