//! Stable-Rust smoke version of the `lohar_conn` fuzz target
//! (`fuzz/fuzz_targets/lohar_conn.rs`, run by `scripts/fuzz.sh`): a few
//! thousand seeded pseudo-random and mutated inputs, each on its own
//! connection to the real lohar in test mode, whose TTY session `init`
//! (a raw-mode `cat`) inputs may attach to. Inputs that would start a
//! process or touch a path outside lohar's scratch working directory are
//! skipped ([`fuzz_input::classify`]). Every connection must end (no hang),
//! the reply must be whole frames, a malformed request must get
//! ERROR_CODE `invalid_request` then ERROR, and afterwards lohar must still
//! run, answer, and have logged no panic (a panic in a connection task
//! would only drop that connection).
#![allow(clippy::unwrap_used)]

mod fuzz_input;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use bhatti_proto::{FrameType, MAX_FRAME_LEN, frame, sync_io};
use fuzz_input::Expect;

/// Inputs generated (about a third are skipped or duplicates in effect).
const INPUTS: usize = 3000;
/// A connection lohar keeps open this long is a hang.
const HANG: Duration = Duration::from_secs(20);

/// lohar in test mode in `dir`/cwd, its stderr collected.
struct Lohar {
    child: Child,
    control: PathBuf,
    stderr: Arc<Mutex<String>>,
}

impl Lohar {
    fn start(dir: &Path) -> Self {
        let cwd = dir.join("cwd");
        fuzz_input::populate(&cwd).unwrap();
        let control = dir.join("control.sock");
        // The session "init" inputs attach to (test mode starts it).
        let config = dir.join("config.json");
        let init = serde_json::json!({ "init": fuzz_input::SESSION_SCRIPT });
        std::fs::write(&config, init.to_string()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_lohar"))
            .current_dir(&cwd)
            .env("LOHAR_TEST", "1")
            .env("LOHAR_SOCK", &control)
            .env("LOHAR_FWD_SOCK", dir.join("forward.sock"))
            .env_remove("LOHAR_TOKEN")
            .env("LOHAR_CONFIG", &config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lohar");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                eprintln!("[lohar] {line}");
                log.lock().unwrap().push_str(&line);
                log.lock().unwrap().push('\n');
                let _ = ready_tx.send(());
            }
        });
        // The ready line is lohar's first line on stderr.
        ready_rx.recv_timeout(HANG).expect("lohar ready line");
        Self {
            child,
            control,
            stderr,
        }
    }

    /// Sends `data`, half-closes, returns everything lohar sent until it
    /// closed.
    fn exchange(&self, data: &[u8]) -> Vec<u8> {
        let mut s = UnixStream::connect(&self.control).expect("connect");
        s.set_read_timeout(Some(HANG)).unwrap();
        // lohar may close early on malformed input: a failed write is fine.
        let _ = s.write_all(data);
        let _ = s.shutdown(Shutdown::Write);
        let mut reply = Vec::new();
        match s.read_to_end(&mut reply) {
            Ok(_) => {}
            // lohar answered early and closed with input still unread;
            // what it sent before is in `reply`.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connection not closed by lohar ({e}) for input {data:?}"),
        }
        reply
    }
}

impl Drop for Lohar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// xorshift64*: deterministic, seeded.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values worth splicing into JSON and headers.
const TOKENS: &[&[u8]] = &[
    b"null",
    b"-1",
    b"0",
    b"1e309",
    b"9223372036854775808",
    b"-9223372036854775808",
    b"\"..\"",
    b"\"/\"",
    b"\"\\u0000\"",
    b"[]",
    b"{}",
    b"\"7777\"",
    b"\"-1\"",
    b"\"\"",
    b"true",
    b"\xff\xfe",
];

/// One to four mutations of a seed, like libFuzzer's simplest ones.
fn mutate(rng: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
    for _ in 0..=rng.below(4) {
        let at = rng.below(b.len() + 1);
        let last = b.len().saturating_sub(1);
        match rng.below(8) {
            0 if !b.is_empty() => b[at.min(last)] ^= 1 << rng.below(8),
            1 if !b.is_empty() => b[at.min(last)] = rng.next() as u8,
            2 => b.insert(at, rng.next() as u8),
            3 if at < b.len() => {
                b.remove(at);
            }
            4 => b.truncate(at),
            5 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                b.splice(at..at, t.iter().copied());
            }
            6 if b.len() >= 4 => {
                let len = [
                    0,
                    1,
                    MAX_FRAME_LEN,
                    MAX_FRAME_LEN + 1,
                    u32::MAX,
                    rng.next() as u32,
                ];
                b[..4].copy_from_slice(&len[rng.below(len.len())].to_be_bytes());
            }
            7 if b.len() >= 5 => b[4] = rng.next() as u8,
            _ => b.extend_from_slice(&b.clone()),
        }
    }
    b
}

/// Random bytes, mutated seeds, and frames with random payloads.
fn inputs() -> Vec<Vec<u8>> {
    let mut rng = Rng(0x5eed_1ab0_f00d_cafe);
    let seeds = fuzz_input::seeds();
    let kinds = [
        FrameType::EXEC_REQ,
        FrameType::FILE_READ_REQ,
        FrameType::FILE_WRITE_REQ,
        FrameType::FILE_STAT_REQ,
        FrameType::FILE_LS_REQ,
        FrameType::EXEC_KILL,
        FrameType::FWD_REQ,
        FrameType::STDIN,
    ];
    let mut out = seeds.clone();
    while out.len() < INPUTS {
        let input = match rng.below(4) {
            0 => (0..rng.below(48)).map(|_| rng.next() as u8).collect(),
            1 => {
                let payload: Vec<u8> = (0..rng.below(24)).map(|_| rng.next() as u8).collect();
                frame::encode(kinds[rng.below(kinds.len())], &payload).unwrap()
            }
            _ => {
                let seed = seeds[rng.below(seeds.len())].clone();
                mutate(&mut rng, seed)
            }
        };
        out.push(input);
    }
    out
}

/// The frame types of a reply (already checked to be whole frames).
fn kinds(mut reply: &[u8]) -> Vec<FrameType> {
    let mut out = Vec::new();
    while let frame::ParseResult::Ok(p) = frame::try_parse(reply) {
        out.push(p.kind);
        reply = &reply[p.total_len..];
    }
    out
}

#[test]
fn thousands_of_hostile_inputs_get_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let mut lohar = Lohar::start(dir.path());
    let (mut sent, mut invalid, mut attached) = (0, 0, 0);
    for input in inputs() {
        let Some(expect) = fuzz_input::classify(&input) else {
            continue;
        };
        let reply = lohar.exchange(&input);
        if let Err(e) = fuzz_input::check(expect, &reply) {
            panic!("input {input:?}: {e}");
        }
        sent += 1;
        invalid += usize::from(expect == Expect::InvalidRequest);
        attached += usize::from(kinds(&reply).contains(&FrameType::SESSION_INFO));
    }
    eprintln!("{sent} inputs sent, {invalid} malformed requests, {attached} attached");
    // Not vacuous: most inputs reached lohar, many of them malformed.
    assert!(sent > INPUTS / 2, "only {sent} inputs sent");
    assert!(invalid > 100, "only {invalid} malformed requests");
    assert!(
        attached > 10,
        "only {attached} inputs attached to the session"
    );

    assert!(matches!(lohar.child.try_wait(), Ok(None)), "lohar exited");
    let mut s = UnixStream::connect(&lohar.control).unwrap();
    sync_io::write_frame(&mut s, FrameType::ACTIVITY_REQ, b"").unwrap();
    let resp = sync_io::read_frame(&mut s).unwrap().expect("a reply");
    assert_eq!(resp.kind, FrameType::ACTIVITY_RESP);
    let log = lohar.stderr.lock().unwrap().clone();
    assert!(!log.contains("panicked"), "lohar panicked:\n{log}");
}
