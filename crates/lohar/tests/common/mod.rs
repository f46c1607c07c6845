//! Shared harness of lohar's integration tests: starts the real `lohar`
//! binary in test mode (`LOHAR_TEST=1`, Unix sockets in a fresh temp dir),
//! waits for its ready line on stderr and for the control socket to answer,
//! hands out a [`Client`], and kills lohar when dropped.
//!
//! lohar's stderr is relayed by a thread into the test's output (shown when
//! a test fails). Helpers for processes (`/proc` checks) and waiting with
//! generous deadlines live here too, so that no test sleeps to synchronise.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bhatti_agent::{Client, Event, Events};
use bhatti_proto::config::GuestConfig;

/// Generous deadline for anything that should happen "soon".
pub const SOON: Duration = Duration::from_secs(10);

/// How to start lohar.
#[derive(Default)]
pub struct Options {
    pub token: Option<String>,
    pub config: Option<GuestConfig>,
    pub env: Vec<(String, String)>,
    /// Make a FIFO `console` in the temp dir and pass it as
    /// `LOHAR_CONSOLE_INPUT` (identify lines, see `identify.rs`).
    pub console_input: bool,
}

/// A running lohar in test mode.
pub struct Lohar {
    child: Child,
    pub dir: tempfile::TempDir,
    pub control: PathBuf,
    pub forward: PathBuf,
    /// A client with the right token (if any).
    pub client: Client,
    /// Every line lohar printed on stderr so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Lohar {
    /// lohar without token or config.
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("control.sock");
        let forward = dir.path().join("forward.sock");
        // LOHAR_BIN: another build (the bench compares against an older one).
        let bin = std::env::var_os("LOHAR_BIN")
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_lohar").into());
        let mut cmd = Command::new(bin);
        // Relative paths in requests land in the test's own dir.
        cmd.current_dir(dir.path())
            .env("LOHAR_TEST", "1")
            .env("LOHAR_SOCK", &control)
            .env("LOHAR_FWD_SOCK", &forward)
            .env_remove("LOHAR_TOKEN")
            .env_remove("LOHAR_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(t) = &opts.token {
            cmd.env("LOHAR_TOKEN", t);
        }
        if let Some(cfg) = &opts.config {
            let path = dir.path().join("config.json");
            std::fs::write(&path, serde_json::to_vec(cfg).unwrap()).unwrap();
            cmd.env("LOHAR_CONFIG", &path);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        if opts.console_input {
            let fifo = dir.path().join("console");
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &fifo,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from(0o600),
                0,
            )
            .unwrap();
            cmd.env("LOHAR_CONSOLE_INPUT", &fifo);
        }
        let mut child = cmd.spawn().expect("spawn lohar");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            let mut first = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[lohar] {line}");
                lines.lock().unwrap().push(line);
                if let Some(tx) = first.take() {
                    let _ = tx.send(());
                }
            }
        });
        // The ready line: the first line lohar prints on stderr.
        if rx.recv_timeout(SOON).is_err() {
            let status = child.try_wait().ok().flatten();
            let _ = child.kill();
            panic!("lohar printed no ready line within {SOON:?} (exit status: {status:?})");
        }
        let mut client = Client::unix(&control, &forward);
        if let Some(t) = &opts.token {
            client = client.with_token(t);
        }
        let mut lohar = Self {
            child,
            dir,
            control,
            forward,
            client,
            log,
        };
        if let Err(e) = lohar.client.wait_ready(SOON).await {
            let status = lohar.child.try_wait().ok().flatten();
            panic!("lohar not answering after its ready line: {e} (exit status: {status:?})");
        }
        lohar
    }

    /// A client without a token.
    pub fn anonymous(&self) -> Client {
        Client::unix(&self.control, &self.forward)
    }

    /// A path inside the test's temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `path(name)` as a `String` for requests.
    pub fn spath(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_owned()
    }

    /// Waits until lohar has printed a line containing `needle`.
    pub async fn wait_log(&self, needle: &str) {
        let ok = eventually(SOON, || {
            self.log.lock().unwrap().iter().any(|l| l.contains(needle))
        })
        .await;
        assert!(ok, "lohar did not log {needle:?} within {SOON:?}");
    }

    /// How many lines lohar printed that contain `needle`.
    pub fn logged(&self, needle: &str) -> usize {
        let log = self.log.lock().unwrap();
        log.iter().filter(|l| l.contains(needle)).count()
    }

    /// lohar's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether lohar is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Lohar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a process is alive (exists and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            // State is the first field after the ")" closing the command name.
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X') | None)
        }
    }
}

/// Polls `cond` every 20 ms until it holds or `within` passes.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for a file to appear and returns its trimmed content.
pub async fn wait_file(path: &Path) -> String {
    let ok = eventually(SOON, || {
        std::fs::read_to_string(path).is_ok_and(|s| s.ends_with('\n'))
    })
    .await;
    assert!(ok, "{} did not appear", path.display());
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

/// Reads events, collecting stdout, until `pred(stdout)` holds. Panics on
/// exit, error or timeout, showing what was collected.
pub async fn read_until(events: &mut Events, pred: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut out = Vec::new();
    let res = tokio::time::timeout(SOON, async {
        while !pred(&out) {
            match events.next().await {
                Ok(Some(Event::Stdout(b))) => out.extend_from_slice(&b),
                Ok(Some(Event::Stderr(b))) => out.extend_from_slice(&b),
                other => return Err(format!("{other:?}")),
            }
        }
        Ok(())
    })
    .await;
    match res {
        Ok(Ok(())) => out,
        Ok(Err(ev)) => panic!(
            "stream ended ({ev}) before the expected output; got {:?}",
            String::from_utf8_lossy(&out)
        ),
        Err(_) => panic!(
            "timed out waiting for output; got {:?}",
            String::from_utf8_lossy(&out)
        ),
    }
}

/// Reads events until EXIT, returning (stdout+stderr, exit code).
/// A streamed `echo WORD` on `c`, read to its EXIT, which must print the
/// word and exit 0.
pub async fn streamed_echo(c: &Client, word: &str) {
    let req = bhatti_agent::ExecRequest::command(["echo", word]);
    let mut s = c.exec_stream(&req).await.unwrap();
    let (out, code) = read_to_exit(&mut s.events).await;
    assert_eq!((out, code), (format!("{word}\n").into_bytes(), 0));
}

pub async fn read_to_exit(events: &mut Events) -> (Vec<u8>, i32) {
    let mut out = Vec::new();
    let res = tokio::time::timeout(SOON, async {
        loop {
            match events.next().await {
                Ok(Some(Event::Stdout(b) | Event::Stderr(b))) => out.extend_from_slice(&b),
                Ok(Some(Event::Exit(c))) => return Ok(c),
                other => return Err(format!("{other:?}")),
            }
        }
    })
    .await;
    match res {
        Ok(Ok(code)) => (out, code),
        Ok(Err(ev)) => panic!(
            "expected EXIT, got {ev}; output {:?}",
            String::from_utf8_lossy(&out)
        ),
        Err(_) => panic!(
            "no EXIT within {SOON:?}; output {:?}",
            String::from_utf8_lossy(&out)
        ),
    }
}

/// Whether `hay` contains `needle`.
pub fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len().max(1))
        .any(|w| w == needle.as_bytes())
}
