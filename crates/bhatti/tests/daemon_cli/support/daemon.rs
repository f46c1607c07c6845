//! One `bhatti serve` for a test binary: temp data dir, loopback port,
//! `--egress none`, its own network namespace; stopped (SIGTERM, then
//! SIGKILL) and its namespace deleted when dropped. Its config is a v1
//! file given by `$BHATTI_CONFIG` ([`v1_daemon_config`]).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long the daemon may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Daemon {
    child: Child,
    pub url: String,
    pub token: String,
    pub netns: String,
    dir: tempfile::TempDir,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bhatti")
}

/// A bhatti v1 daemon config (Go's keys) listening on loopback `port`.
pub fn v1_daemon_config(port: u16) -> String {
    format!(
        "engine: firecracker\nlisten: 127.0.0.1:{port}\napi_url: http://127.0.0.1:{port}\n\
         firecracker_bin: /usr/local/bin/firecracker\nfirecracker_kernel: /var/lib/bhatti/vmlinux\n\
         firecracker_rootfs: /var/lib/bhatti/rootfs.ext4\njail_uid: 10000\njail_gid: 10000\n\
         backup:\n  s3_bucket: backups\n"
    )
}

impl Daemon {
    pub fn start() -> Result<Daemon, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let data = dir.path().join("data");
        let out = Command::new(bin())
            .args([
                "user",
                "create",
                "--name",
                "cli-test",
                "--max-sandboxes",
                "10",
                "--json",
            ])
            .arg("--data-dir")
            .arg(&data)
            .env_remove("BHATTI_DATA_DIR")
            .output()
            .map_err(|e| format!("bhatti user create: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "bhatti user create failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("user create --json output: {e}"))?;
        let token = v["key"]
            .as_str()
            .ok_or("no key in user create output")?
            .to_owned();

        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("free port: {e}"))?
            .port();
        let netns = format!("bhcli{}", std::process::id());
        // The daemon reads a v1 config file (v1 daemon keys it ignores
        // with a warning, CLI keys, v1's listen form); flags add ours.
        let v1_config = dir.path().join("v1-config.yaml");
        std::fs::write(&v1_config, v1_daemon_config(port))
            .map_err(|e| format!("v1 config: {e}"))?;
        let log = std::fs::File::create(dir.path().join("serve.log"))
            .map_err(|e| format!("log file: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        let child = Command::new(bin())
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .args(["--egress", "none", "--netns", &netns, "--image", "busybox"])
            .env_remove("BHATTI_DATA_DIR")
            .env("BHATTI_CONFIG", &v1_config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("spawn bhatti serve: {e}"))?;
        let mut d = Daemon {
            child,
            url: format!("http://127.0.0.1:{port}"),
            token,
            netns,
            dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(d);
            }
            if let Ok(Some(st)) = d.child.try_wait() {
                return Err(format!("bhatti serve exited ({st}): {}", d.log()));
            }
            if Instant::now() > deadline {
                return Err(format!("bhatti serve did not listen in time: {}", d.log()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A `bhatti` client command aimed at this daemon (env, not flags, so
    /// `exec … -- cmd` stays simple); HOME is a temp dir.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .env("BHATTI_URL", &self.url)
            .env("BHATTI_TOKEN", &self.token)
            .env("HOME", self.home());
        c
    }

    /// Runs a client command with `stdin` as its input.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        use std::io::Write;
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bhatti");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin).expect("write stdin");
        drop(input);
        child.wait_with_output().expect("wait bhatti")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("run bhatti")
    }

    /// Runs a client command that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String, String> {
        let o = self.run(args);
        if !o.status.success() {
            return Err(format!(
                "bhatti {args:?} failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// Runs a client command with `--json` that must succeed; its JSON.
    pub fn json(&self, args: &[&str]) -> Result<serde_json::Value, String> {
        let mut a = vec![args[0], "--json"];
        a.extend_from_slice(&args[1..]);
        let out = self.ok(&a)?;
        serde_json::from_str(&out)
            .map_err(|e| format!("bhatti {a:?}: not one JSON document ({e}): {out}"))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .stderr(Stdio::null())
            .status();
    }
}
