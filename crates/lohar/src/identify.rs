//! Re-identification of a guest restored from another sandbox's snapshot
//! (a fork child, or a sandbox created from a named snapshot): it wakes
//! with the parent's MAC, address, hostname and agent token, and the host
//! tells it who it is now with one line on the serial console's input
//! (the format and its reasons: [`bhatti_proto::identify`]).
//!
//! At start-up, before serving (so it is already reading when a snapshot
//! is taken), [`start`] opens the console (`/dev/ttyS0`; test mode: the
//! FIFO named by `LOHAR_CONSOLE_INPUT`), turns off canonical mode, echo,
//! signals and input translation (output settings stay, so the kernel's
//! and lohar's console output look as before) and starts one thread that
//! reads it. The thread splits lines on `\n`, drops a line longer than
//! [`MAX_LINE_LEN`] up to its newline, ignores lines without
//! [`LINE_PREFIX`], and applies each identify line in order:
//!
//! 1. `auth` must equal the current token (constant time; an agent without
//!    a token takes the empty string); otherwise the line is logged and
//!    ignored.
//! 2. VM only ([`vm`]): the NIC's MAC, its address, netmask and default
//!    route, the hostname (`sethostname`, `/etc/hostname`, `/etc/hosts`),
//!    and the entropy mixed into the pool, then a CRNG reseed. A failed
//!    step is reported and the others still run. Test mode logs that it
//!    skips them.
//! 3. `env`, when present, becomes the sandbox environment of every later
//!    command.
//! 4. `token` becomes the AUTH token. That closes every connection
//!    authenticated before (they were the parent's host's; see
//!    [`crate::server`]); processes they started keep running. Last, so a
//!    client that gets in with the new token sees everything else done,
//!    and after the address change, so what those sockets still send
//!    (their FIN) carries a source address the guest no longer has and
//!    never leaves it (the host's connections to the parent, whose
//!    4-tuples and sequence numbers these share, are not disturbed).
//! 5. `bhatti-identify: ok <sandbox_id>` (or `bhatti-identify: error
//!    <why>`) goes to the console (test mode: lohar's log on stderr).
//!
//! A later identify authenticates with the token the previous one set (a
//! child forked again). Nothing a line contains can end lohar.

mod vm;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bhatti_proto::identify::{Identity, LINE_PREFIX, MAX_LINE_LEN};

use crate::agent::Agent;

/// The console whose input carries identify lines in a VM.
pub const CONSOLE: &str = "/dev/ttyS0";

/// Why the identify reader could not start (lohar serves on without it).
#[derive(Debug, thiserror::Error)]
pub enum IdentifyError {
    #[error("identify: open {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("identify: cannot start its thread: {0}")]
    Thread(#[source] io::Error),
}

/// What applying an identity may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// PID-1 mode: every step, the network ones on `iface`.
    Vm { iface: String },
    /// Test mode: token, environment and connections only.
    Test,
}

/// Opens `path`, sets its terminal input to raw (VM mode) and starts the
/// thread that reads and applies identify lines.
pub fn start(agent: Arc<Agent>, path: &Path, mode: Mode) -> Result<(), IdentifyError> {
    use rustix::fs::OFlags;
    // Read-write: a FIFO opened so never reads end of file when a writer
    // goes, and the result line is written back on a console.
    let fd = rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| IdentifyError::Open {
        path: path.display().to_string(),
        source: e.into(),
    })?;
    if matches!(mode, Mode::Vm { .. })
        && let Err(e) = raw_input(&fd)
    {
        crate::log!("identify: {}: termios: {e}", path.display());
    }
    let console = File::from(fd);
    std::thread::Builder::new()
        .name("identify".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            crate::children::block_sigchld();
            read_loop(console, &agent, &mode)
        })
        .map(drop)
        .map_err(IdentifyError::Thread)
}

/// Non-canonical input without echo, signals or translation; one byte is
/// enough for a read to return. Output settings are left alone.
fn raw_input(fd: &OwnedFd) -> rustix::io::Result<()> {
    use rustix::termios::{self, InputModes, LocalModes, OptionalActions, SpecialCodeIndex};
    let mut t = termios::tcgetattr(fd)?;
    t.local_modes -= LocalModes::ICANON
        | LocalModes::ECHO
        | LocalModes::ECHONL
        | LocalModes::ISIG
        | LocalModes::IEXTEN;
    t.input_modes -= InputModes::ICRNL
        | InputModes::INLCR
        | InputModes::IGNCR
        | InputModes::IXON
        | InputModes::ISTRIP;
    t.special_codes[SpecialCodeIndex::VMIN] = 1;
    t.special_codes[SpecialCodeIndex::VTIME] = 0;
    termios::tcsetattr(fd, OptionalActions::Now, &t)
}

fn read_loop(mut console: File, agent: &Agent, mode: &Mode) {
    let mut lines = Lines::default();
    let mut buf = vec![0u8; 4096];
    let mut failures = 0u32;
    loop {
        let n = match console.read(&mut buf) {
            Ok(n) if n > 0 => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            res => {
                // End of file (a hung-up terminal) or an error: wait and
                // read again, more slowly each time, logging the first.
                if failures == 0 {
                    let why = res
                        .err()
                        .map_or("end of file".to_owned(), |e| e.to_string());
                    crate::log!("identify: console read: {why}; retrying");
                }
                failures = failures.saturating_add(1);
                std::thread::sleep(Duration::from_millis(100) * failures.min(50));
                continue;
            }
        };
        failures = 0;
        lines.push(&buf[..n], |line| {
            if let Some(result) = handle_line(line, agent, mode) {
                report(&mut console, mode, &result);
            }
        });
    }
}

/// Splits a byte stream into lines of at most [`MAX_LINE_LEN`] bytes
/// (newline included); longer lines are dropped up to their newline.
#[derive(Debug, Default)]
struct Lines {
    buf: Vec<u8>,
    skipping: bool,
}

impl Lines {
    /// Feeds `data`, calling `line` with each complete line (without its
    /// `\n`).
    fn push(&mut self, mut data: &[u8], mut line: impl FnMut(&[u8])) {
        while !data.is_empty() {
            let (part, end) = match data.iter().position(|&b| b == b'\n') {
                Some(i) => (&data[..i], true),
                None => (data, false),
            };
            data = &data[(part.len() + usize::from(end)).min(data.len())..];
            if !self.skipping {
                if self.buf.len() + part.len() + usize::from(end) > MAX_LINE_LEN {
                    crate::log!("identify: console line over {MAX_LINE_LEN} bytes dropped");
                    self.skipping = true;
                    self.buf = Vec::new();
                } else {
                    self.buf.extend_from_slice(part);
                }
            }
            if end {
                if !self.skipping {
                    line(&self.buf);
                }
                self.skipping = false;
                if self.buf.capacity() > 64 * 1024 {
                    self.buf = Vec::new();
                } else {
                    self.buf.clear();
                }
            }
        }
    }
}

/// Applies one console line if it is an identify line. Returns the result
/// to report: `Ok(sandbox id)` or `Err(why)`; `None` for a line that is not
/// an identify line or whose `auth` is wrong (logged).
fn handle_line(line: &[u8], agent: &Agent, mode: &Mode) -> Option<Result<String, String>> {
    // From the prefix on: bytes left in the line before it (a partial line
    // from before a snapshot) do not hide it.
    let prefix = LINE_PREFIX.as_bytes();
    let at = line.windows(prefix.len()).position(|w| w == prefix)?;
    let id = match Identity::from_line(&line[at..]) {
        Ok(id) => id,
        Err(e) => {
            crate::log!("identify: {e}");
            return Some(Err(e.to_string()));
        }
    };
    let sandbox = printable(&id.sandbox_id);
    if !agent.token_matches(id.auth.as_bytes()) {
        crate::log!("identify as {sandbox}: wrong auth; ignored");
        return None;
    }
    let errors = apply(agent, id, mode);
    Some(if errors.is_empty() {
        Ok(sandbox)
    } else {
        Err(errors.join("; "))
    })
}

/// Applies an authenticated identity (module doc, steps 2-4). Returns the
/// failed steps.
fn apply(agent: &Agent, id: Identity, mode: &Mode) -> Vec<String> {
    if id.token.is_empty() {
        return vec!["empty token; nothing changed".to_owned()];
    }
    let errors = match mode {
        Mode::Vm { iface } => vm::apply(iface, &id),
        Mode::Test => {
            crate::log!("identify: test mode: MAC, address, hostname and entropy skipped");
            Vec::new()
        }
    };
    if let Some(env) = id.env {
        agent.set_env(env);
    }
    agent.replace_token(id.token.into_bytes());
    errors
}

/// Writes the result line: on the console in a VM, in the log in test mode.
fn report(console: &mut File, mode: &Mode, result: &Result<String, String>) {
    let line = match result {
        Ok(sandbox) => format!("bhatti-identify: ok {sandbox}"),
        Err(why) => format!("bhatti-identify: error {}", printable(why)),
    };
    match mode {
        Mode::Vm { .. } => {
            if let Err(e) = console.write_all(format!("{line}\n").as_bytes()) {
                crate::log!("identify: console write: {e}; {line}");
            }
        }
        Mode::Test => crate::log!("{line}"),
    }
}

/// `s` on one line: control characters become `?`, at most 200 chars.
fn printable(s: &str) -> String {
    s.chars()
        .take(200)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for c in chunks {
            lines.push(c, |l| out.push(l.to_vec()));
        }
        out
    }

    #[test]
    fn lines_split_across_reads() {
        assert_eq!(
            split(&[b"ab", b"c\nd\n\nef", b"g\n"]),
            vec![b"abc".to_vec(), b"d".to_vec(), Vec::new(), b"efg".to_vec()]
        );
        assert!(split(&[b"no newline yet"]).is_empty());
    }

    #[test]
    fn an_over_long_line_is_dropped_up_to_its_newline() {
        let long = vec![b'x'; MAX_LINE_LEN];
        let out = split(&[b"a\n", &long, b"yy\nb\n"]);
        assert_eq!(out, vec![b"a".to_vec(), b"b".to_vec()]);
        // Exactly the limit, newline included, still passes.
        let fits = vec![b'x'; MAX_LINE_LEN - 1];
        let out = split(&[&fits, b"\n"]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), MAX_LINE_LEN - 1);
    }

    /// VM mode on a PTY standing in for the serial console: the input
    /// settings, no echo of the line, the steps that cannot succeed here
    /// reported after the rest was done, the result line on the console.
    #[test]
    fn a_console_gets_raw_input_and_a_result_line() {
        use bhatti_proto::config::GuestConfig;
        use rustix::termios::{InputModes, LocalModes};
        let pty = crate::pty::open(24, 80).expect("pty");
        let name = rustix::pty::ptsname(&pty.master, Vec::new()).expect("ptsname");
        let me = crate::env::Identity {
            switch_to: None,
            home: "/".into(),
            user: None,
            default_cwd: None,
        };
        let limits = crate::agent::Limits::default();
        let agent = Arc::new(Agent::new(
            Some(b"t1".to_vec()),
            GuestConfig::default(),
            me,
            limits,
        ));
        let path = Path::new(name.to_str().expect("utf-8 pts name"));
        let mode = Mode::Vm {
            iface: "nosuchif0".into(),
        };
        start(agent.clone(), path, mode).expect("start");
        let t = rustix::termios::tcgetattr(&pty.slave).expect("tcgetattr");
        assert!(
            !t.local_modes
                .intersects(LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG)
        );
        assert!(
            !t.input_modes
                .intersects(InputModes::ICRNL | InputModes::IXON)
        );

        let mut console = File::from(pty.master);
        let mut reader = console.try_clone().expect("clone");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut b = [0u8; 1];
            while !out.ends_with(b"\n") && reader.read(&mut b).is_ok_and(|n| n == 1) {
                out.push(b[0]);
            }
            let _ = tx.send(String::from_utf8_lossy(&out).into_owned());
        });
        let id = Identity {
            auth: "t1".into(),
            token: "t2".into(),
            sandbox_id: "child-1".into(),
            // Empty: this test must not rename the machine it runs on.
            hostname: String::new(),
            mac: "not-a-mac".into(),
            ip: std::net::Ipv4Addr::new(10, 0, 0, 5),
            prefix_len: 24,
            gateway: std::net::Ipv4Addr::new(10, 0, 0, 1),
            entropy: String::new(),
            env: None,
        };
        console.write_all(id.to_line().as_bytes()).expect("write");
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("a result line");
        // The first thing on the console is the result, not an echo.
        assert!(line.starts_with("bhatti-identify: error MAC: "), "{line:?}");
        assert!(line.contains("address: nosuchif0"), "{line:?}");
        assert!(
            agent.token_matches(b"t2"),
            "the token is replaced all the same"
        );
    }

    #[test]
    fn printable_keeps_one_short_line() {
        assert_eq!(printable("a\nb\u{1b}c"), "a?b?c");
        assert_eq!(printable(&"z".repeat(500)).len(), 200);
    }
}
