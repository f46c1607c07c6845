//! A daemon in its own process, for crash tests: this test binary
//! re-executed with [`CHILD_ENV`] naming its config (and, to crash it at a
//! named point, `BHATTI_FAULT`), killed with SIGKILL or aborted, started
//! again on the same data dir and namespace. Also what the host shows of
//! it: VMM processes and TAPs, read from `/proc` and `ip`, not the API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bhatti_server::config::ServerConfig;
use bhatti_store::Store;
use bhatti_store::users::Limits;
use libtest_mimic::Failed;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestResult, Timers, cleanup, config, ensure, eventually, run};

/// Runs `scenario` against a [`Crashable`] daemon with its own data dir
/// (`prefix`) and namespace, prints the daemon's log tail if it fails,
/// and cleans up (VMMs, namespace) whatever happened.
pub fn crash_test<F>(prefix: &str, t: Timers, scenario: F) -> TestResult
where
    F: for<'a> FnOnce(
        &'a mut Crashable,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = TestResult> + 'a>>,
{
    let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
    let netns = bhatti_engine::netns::unique_name("btc");
    let mut d = Crashable::new(dir.path(), &netns, t)?;
    let res = run(scenario(&mut d));
    if res.is_err() {
        println!("daemon log tail:\n{}", d.log_tail());
    }
    drop(d);
    cleanup(dir.path(), &netns);
    res
}

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

/// A daemon process that a test may kill and start again.
pub struct Crashable {
    pub dir: PathBuf,
    pub netns: String,
    pub url: String,
    pub key: String,
    pub http: reqwest::Client,
    cfg_path: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Drop for Crashable {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Crashable {
    /// Writes the config (daemon on a free loopback port) and a user.
    pub fn new(dir: &Path, netns: &str, t: Timers) -> Result<Self, Failed> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cfg: ServerConfig = config(dir, netns, t);
        cfg.listen = format!("127.0.0.1:{port}").parse()?;
        let cfg_path = dir.join("test-config.json");
        std::fs::write(&cfg_path, serde_json::to_vec(&cfg)?)?;
        let key = {
            let store = Store::open(&cfg.state_db())?;
            bhatti_server::users::create(&store, "alice", Limits::default(), 0)?.key
        };
        Ok(Self {
            dir: dir.to_owned(),
            netns: netns.to_owned(),
            url: format!("http://127.0.0.1:{port}"),
            key,
            http: reqwest::Client::new(),
            cfg_path,
            log: dir.join("daemon.log"),
            child: None,
        })
    }

    /// Starts the daemon (aborting at `fault`, if given) and waits until
    /// it serves.
    pub async fn start(&mut self, fault: Option<&str>) -> Result<(), Failed> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.env(CHILD_ENV, &self.cfg_path)
            .env_remove(bhatti_engine::sandbox::fault::ENV)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(point) = fault {
            cmd.env(bhatti_engine::sandbox::fault::ENV, point);
        }
        self.child = Some(cmd.spawn()?);
        let (http, url) = (&self.http, &self.url);
        eventually(Duration::from_secs(60), || async {
            Ok(http
                .get(format!("{url}/health"))
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200))
        })
        .await?;
        Ok(())
    }

    /// SIGKILL: no graceful shutdown at all.
    pub fn kill9(&mut self) -> Result<(), Failed> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// SIGTERM: a graceful stop; waits until the daemon has exited (0).
    pub async fn term(&mut self) -> Result<(), Failed> {
        let mut c = self.child.take().ok_or("no daemon running")?;
        let pid = rustix::process::Pid::from_raw(i32::try_from(c.id())?).ok_or("pid 0")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        let status = tokio::task::spawn_blocking(move || c.wait()).await??;
        ensure(status.success(), || {
            format!("daemon exited {status} on SIGTERM")
        })
    }

    /// Waits for the daemon to die on its own (a fault point aborted it).
    pub async fn wait_aborted(&mut self) -> Result<(), Failed> {
        let mut c = self.child.take().ok_or("no daemon running")?;
        let status = tokio::task::spawn_blocking(move || c.wait()).await??;
        ensure(!status.success(), || format!("daemon exited {status}"))
    }

    /// One API call: status and JSON body (`Null` when not JSON).
    pub async fn call(
        &self,
        m: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), Failed> {
        let mut r = self
            .http
            .request(m, format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .timeout(Duration::from_secs(180));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await?;
        let s = resp.status().as_u16();
        Ok((s, resp.json().await.unwrap_or(Value::Null)))
    }

    /// Runs `script` in sandbox `sb`; fails unless it exits 0; its stdout.
    pub async fn sh(&self, sb: &str, script: &str) -> Result<String, Failed> {
        let (s, v) = self
            .call(
                Method::POST,
                &format!("/sandboxes/{sb}/exec"),
                Some(json!({"cmd": ["sh", "-c", script], "timeout_sec": 120})),
            )
            .await?;
        ensure(s == 200 && v["exit_code"] == 0, || {
            format!("{sb} `{script}`: {s} {v}")
        })?;
        Ok(v["stdout"].as_str().unwrap_or_default().to_owned())
    }

    /// The sandbox named `name` as the API shows it.
    pub async fn get(&self, name: &str) -> Result<Value, Failed> {
        let (s, v) = self
            .call(Method::GET, &format!("/sandboxes/{name}"), None)
            .await?;
        ensure(s == 200, || format!("get {name}: {s} {v}"))?;
        Ok(v)
    }

    /// Creates sandbox `name` (256 MiB).
    pub async fn create(&self, name: &str, keep_hot: bool) -> Result<Value, Failed> {
        let (s, v) = self
            .call(
                Method::POST,
                "/sandboxes",
                Some(json!({"name": name, "memory_mb": 256, "keep_hot": keep_hot})),
            )
            .await?;
        ensure(s == 201, || format!("create {name}: {s} {v}"))?;
        Ok(v)
    }

    /// Pids of the VMM processes of sandbox `id` (by its QMP socket).
    pub fn vmm_pids(&self, id: &str) -> Vec<i32> {
        let sock = self.dir.join("sandboxes").join(id).join("qmp.sock");
        bhatti_engine::sandbox::orphans::find(&sock.to_string_lossy())
    }

    /// Pids of every VMM process of this data dir.
    pub fn all_vmm_pids(&self) -> Vec<i32> {
        let root = format!("{}/", self.dir.join("sandboxes").display());
        bhatti_engine::sandbox::orphans::find(&root)
    }

    /// The TAP devices in the daemon's namespace.
    pub fn taps(&self) -> Result<Vec<String>, Failed> {
        let out = Command::new("ip")
            .args(["-n", &self.netns, "-o", "link", "show", "type", "tun"])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_owned())
            .collect())
    }

    /// The sandbox dirs in the data dir.
    pub fn sandbox_dirs(&self) -> Result<Vec<String>, Failed> {
        let mut out: Vec<String> = std::fs::read_dir(self.dir.join("sandboxes"))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Fails unless the host holds exactly `vmms` VMM processes, `taps`
    /// TAPs and `dirs` sandbox dirs for this daemon.
    pub fn ensure_host(
        &self,
        vmms: usize,
        taps: usize,
        dirs: usize,
        when: &str,
    ) -> Result<(), Failed> {
        let (p, t, d) = (self.all_vmm_pids(), self.taps()?, self.sandbox_dirs()?);
        ensure(
            p.len() == vmms && t.len() == taps && d.len() == dirs,
            || {
                format!(
                    "{when}: host has VMMs {p:?}, TAPs {t:?}, dirs {d:?}; wanted {vmms}/{taps}/{dirs}"
                )
            },
        )
    }

    /// The last lines of the daemon's log (for a failure report).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}
