//! A local registry for import tests: Debian's `docker-registry` on
//! 127.0.0.1 and a free port, plain HTTP, htpasswd auth for one user,
//! killed on drop. Nothing leaves the machine.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The registry binary (the `docker-registry` package).
pub const BIN: &str = "/usr/bin/docker-registry";

#[derive(Debug)]
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl Registry {
    /// Starts a registry only `user` with `password` can use.
    pub fn start(user: &str, password: &str) -> Result<Registry, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("free port: {e}"))?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let hash = bcrypt::hash(password, 4).map_err(|e| format!("bcrypt: {e}"))?;
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(&htpasswd, format!("{user}:{hash}\n")).map_err(|e| e.to_string())?;
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\nauth:\n  htpasswd:\n    realm: test\n    path: {}\n",
            dir.path().join("storage").display(),
            htpasswd.display()
        );
        let conf = dir.path().join("config.yml");
        std::fs::write(&conf, config).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.path().join("log")).map_err(|e| e.to_string())?;
        let child = Command::new(BIN)
            .arg("serve")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{BIN}: {e}"))?;
        let r = Registry { addr, dir, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(&r.addr).is_err() {
            if Instant::now() > deadline {
                return Err(format!("the registry did not listen: {}", r.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(r)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
