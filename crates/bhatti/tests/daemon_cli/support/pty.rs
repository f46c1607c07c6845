//! A process on a pseudo-terminal (rustix pty): its stdin, stdout and
//! stderr are the pty's slave side; a reader thread collects everything
//! the process writes so the test can wait for text.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};

#[derive(Debug)]
pub struct Pty {
    child: Child,
    master: std::fs::File,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    /// Spawns `cmd` with a 24×80 pseudo-terminal as its stdio.
    pub fn spawn(mut cmd: Command) -> Result<Pty, String> {
        let master: OwnedFd =
            openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
                .map_err(|e| format!("openpt: {e}"))?;
        grantpt(&master).map_err(|e| format!("grantpt: {e}"))?;
        unlockpt(&master).map_err(|e| format!("unlockpt: {e}"))?;
        let name = ptsname(&master, Vec::new()).map_err(|e| format!("ptsname: {e}"))?;
        let name = name
            .to_str()
            .map_err(|e| format!("pts name: {e}"))?
            .to_owned();
        let ws = rustix::termios::Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&master, ws).map_err(|e| format!("winsize: {e}"))?;
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&name)
            .map_err(|e| format!("open {name}: {e}"))?;
        let clone = |f: &std::fs::File| f.try_clone().map(Stdio::from).map_err(|e| e.to_string());
        cmd.stdin(clone(&slave)?)
            .stdout(clone(&slave)?)
            .stderr(clone(&slave)?);
        let child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
        drop(slave);
        let master = std::fs::File::from(master);
        let mut reader = master.try_clone().map_err(|e| e.to_string())?;
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&out);
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            // EIO once the last slave fd closes: the process is gone.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut o) = sink.lock() {
                    o.extend_from_slice(&buf[..n]);
                }
            }
        });
        Ok(Pty { child, master, out })
    }

    /// Everything the process has written so far (lossy UTF-8).
    pub fn output(&self) -> String {
        self.out
            .lock()
            .map(|o| String::from_utf8_lossy(&o).into_owned())
            .unwrap_or_default()
    }

    /// How many bytes have been written so far.
    pub fn len(&self) -> usize {
        self.out.lock().map(|o| o.len()).unwrap_or(0)
    }

    /// Waits until the output after byte `from` contains `needle`.
    pub fn expect_after(&self, from: usize, needle: &str, timeout: Duration) -> Result<(), String> {
        self.expect_any_after(from, &[needle], timeout)
    }

    /// Waits until the output after byte `from` contains one of `needles`.
    pub fn expect_any_after(
        &self,
        from: usize,
        needles: &[&str],
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self
                .out
                .lock()
                .map(|o| String::from_utf8_lossy(&o[from.min(o.len())..]).into_owned())
                .unwrap_or_default();
            if needles.iter().any(|n| got.contains(n)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no {needles:?} within {timeout:?}; output so far: {got:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sets the terminal size and sends SIGWINCH to the process (it is not
    /// the session leader of this pty, so the kernel would not).
    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), String> {
        let ws = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&self.master, ws).map_err(|e| format!("winsize: {e}"))?;
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::WINCH)
            .map_err(|e| format!("SIGWINCH: {e}"))
    }

    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.master
            .write_all(bytes)
            .and_then(|()| self.master.flush())
            .map_err(|e| format!("write to pty: {e}"))
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Ok(st);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err(format!(
                    "did not exit within {timeout:?}; output: {:?}",
                    self.output()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
