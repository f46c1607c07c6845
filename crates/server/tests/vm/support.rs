//! Shared support of the daemon's VM tests: prerequisite checks that turn
//! into "ignored" trials with a printed reason, and [`TestDaemon`], the
//! real daemon (QEMU engine, busybox tier) in-process, with its own data
//! dir and its own network namespace (egress none), listening on an
//! ephemeral loopback port. Dropping it kills whatever VMM processes of
//! its data dir remain, deletes the namespace, then the directory.

use std::sync::Arc;
use std::time::Duration;

use bhatti_engine::engine::Engine;
use bhatti_engine::image::ImagePaths;
use bhatti_engine::netns::{NetNs, unique_name};
use bhatti_server::config::{Egress, EngineKind, ServerConfig};
use bhatti_server::daemon::{Daemon, DaemonEngine, DaemonError};
use bhatti_server::state::AppState;
use bhatti_store::users::Limits;
use bhatti_testkit::{DAEMON, Need};
use libtest_mimic::{Failed, Trial};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

pub type TestResult = Result<(), Failed>;

/// A trial reported as ignored, with `SKIPPED: <reason>`, when the host
/// cannot run the daemon's VMs.
pub fn trial<F>(name: &str, f: F) -> Trial
where
    F: FnOnce() -> TestResult + Send + 'static,
{
    bhatti_testkit::trial(name, DAEMON, f)
}

/// [`trial`] that also needs `extra`.
pub fn trial_needing<F>(name: &str, extra: &[Need], f: F) -> Trial
where
    F: FnOnce() -> TestResult + Send + 'static,
{
    bhatti_testkit::trial(name, &[DAEMON, extra].concat(), f)
}

/// Runs a trial's body on its own runtime.
pub fn run<F: std::future::Future<Output = TestResult>>(f: F) -> TestResult {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(f)
}

/// Fails the trial with `msg` unless `cond`.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> TestResult {
    if cond { Ok(()) } else { Err(msg().into()) }
}

/// Thermal settings of a test daemon.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    pub warm_after: u64,
    pub cold_after: u64,
    pub tick: u64,
}

impl Default for Timers {
    /// Long enough that nothing cools during a test.
    fn default() -> Self {
        Self {
            warm_after: 3600,
            cold_after: 7200,
            tick: 1,
        }
    }
}

/// A test daemon's configuration in `dir` with namespace `netns`.
pub fn config(dir: &std::path::Path, netns: &str, t: Timers) -> ServerConfig {
    ServerConfig {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().expect("address"),
        engine: EngineKind::Qemu,
        egress: Egress::None,
        netns: netns.to_owned(),
        warm_after_secs: t.warm_after,
        cold_after_secs: t.cold_after,
        tick_secs: t.tick,
        image: "busybox".into(),
        public_domain: None,
        ..ServerConfig::default()
    }
}

/// The real daemon, in-process.
pub struct TestDaemon {
    pub url: String,
    /// Key of the user `alice` (limits: defaults).
    pub key: String,
    pub state: Arc<AppState<DaemonEngine>>,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), DaemonError>>>,
    netns: String,
    dir: tempfile::TempDir,
}

impl TestDaemon {
    pub async fn start(t: Timers) -> Result<Self, Failed> {
        Self::start_with(t, |_| {}).await
    }

    /// [`TestDaemon::start`] with `edit` applied to its configuration.
    pub async fn start_with(
        t: Timers,
        edit: impl FnOnce(&mut ServerConfig),
    ) -> Result<Self, Failed> {
        let dir = tempfile::Builder::new().prefix("bhatti-srv-").tempdir()?;
        let netns = unique_name("bts");
        let mut cfg = config(dir.path(), &netns, t);
        edit(&mut cfg);
        let daemon = Daemon::start(&cfg, ImagePaths::from_env()).await?;
        let url = format!("http://{}", daemon.listener.local_addr()?);
        let state = daemon.state.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(daemon.serve(async move {
            let _ = rx.await;
        }));
        let mut d = Self {
            url,
            key: String::new(),
            state,
            http: reqwest::Client::new(),
            stop: Some(tx),
            task: Some(task),
            netns,
            dir,
        };
        d.key = d.user("alice", Limits::default())?;
        Ok(d)
    }

    /// Creates a user and returns its key.
    pub fn user(&self, name: &str, limits: Limits) -> Result<String, Failed> {
        Ok(bhatti_server::users::create(&self.state.store, name, limits, 0)?.key)
    }

    /// A request with `key` (or none when empty).
    pub fn req_as(&self, key: &str, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.url));
        if key.is_empty() {
            r
        } else {
            r.bearer_auth(key)
        }
    }

    /// A request as alice.
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.req_as(&self.key, method, path)
    }

    /// Sends and returns (status, JSON body or Null).
    pub async fn call(&self, r: RequestBuilder) -> Result<(StatusCode, Value), Failed> {
        let resp = r.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, v))
    }

    /// Sends and fails unless the status is `want`.
    pub async fn expect(&self, r: RequestBuilder, want: u16) -> Result<Value, Failed> {
        let (s, v) = self.call(r).await?;
        ensure(s.as_u16() == want, || {
            format!("expected {want}, got {s}: {v}")
        })?;
        Ok(v)
    }

    /// Creates a small sandbox as alice.
    pub async fn create(&self, name: &str) -> Result<Value, Failed> {
        let body = json!({"name": name, "memory_mb": 256});
        self.expect(self.req(Method::POST, "/sandboxes").json(&body), 201)
            .await
    }

    /// Runs `sh -c script` as alice; fails unless it exits 0; returns stdout.
    pub async fn sh(&self, sb: &str, script: &str) -> Result<String, Failed> {
        let body = json!({"cmd": ["sh", "-c", script], "timeout_sec": 60});
        let v = self
            .expect(
                self.req(Method::POST, &format!("/sandboxes/{sb}/exec"))
                    .json(&body),
                200,
            )
            .await?;
        ensure(v["exit_code"] == 0, || format!("`{script}`: {v}"))?;
        Ok(v["stdout"].as_str().unwrap_or_default().to_owned())
    }

    /// Destroys every VM, stops serving and waits for the server.
    pub async fn finish(mut self) -> TestResult {
        for info in self.state.engine.list().await {
            let _ = self.state.engine.destroy(&info.id).await;
        }
        self.stop_serving().await
    }

    /// A graceful stop (what SIGTERM does) and a wait for the server; the
    /// VMs it leaves running are killed by the drop.
    pub async fn stop_serving(&mut self) -> TestResult {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(60), task).await???;
        }
        Ok(())
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        cleanup(self.dir.path(), &self.netns);
    }
}

/// Kills VMM processes of a data dir and deletes the namespace.
pub fn cleanup(dir: &std::path::Path, netns: &str) {
    bhatti_engine::sandbox::orphans::kill_all(&dir.join("sandboxes"));
    bhatti_engine::sandbox::orphans::kill_all(&dir.join(bhatti_engine::sandbox::golden::GOLDENS));
    if let Ok(ns) = NetNs::open(netns) {
        let _ = ns.delete();
    }
}

/// Polls `f` until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut f: F) -> Result<T, Failed>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, Failed>>,
{
    let end = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > end {
            return Err(format!("condition not met within {limit:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends raw bytes to the daemon and returns the response's status line.
pub async fn raw_status(url: &str, request: &[u8]) -> Result<String, Failed> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let addr = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(request).await?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).await?;
    Ok(line)
}
