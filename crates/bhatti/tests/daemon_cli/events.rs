//! `bhatti events` as a real process against the shared daemon: with
//! `--json` each event is one JSON line (created, stopped, destroyed of a
//! sandbox this trial drives, in order); without, human lines
//! (`HH:MM:SS NAME created (running/hot)`). Other trials' sandboxes may
//! show up too: only this trial's sandbox is looked at.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::ensure;
use crate::support::daemon::Daemon;

const NAME: &str = "ev-cli";
const LONG: Duration = Duration::from_secs(120);

/// A running `bhatti events …` and its stdout lines.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn start(d: &Daemon, args: &[&str]) -> Result<Self, String> {
        let mut child = d
            .cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn bhatti events: {e}"))?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self { child, lines })
    }

    /// The next line that mentions this trial's sandbox.
    fn next_ours(&self) -> Result<String, String> {
        loop {
            let line = self
                .lines
                .recv_timeout(LONG)
                .map_err(|e| format!("no event line: {e}"))?;
            if line.contains(NAME) {
                return Ok(line);
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn events_command(d: &Daemon) -> Result<(), String> {
    let json = Watch::start(d, &["events", "--json"])?;
    let human = Watch::start(d, &["events"])?;
    // The streams are open once the daemon counts them; give them a moment.
    std::thread::sleep(Duration::from_secs(2));
    d.json(&["create", "--name", NAME, "--memory", "256"])?;
    d.ok(&["stop", NAME])?;
    d.ok(&["destroy", NAME])?;
    let mut got = Vec::new();
    for _ in 0..3 {
        let line = json.next_ours()?;
        let v: Value = serde_json::from_str(&line).map_err(|e| format!("{line}: {e}"))?;
        got.push(format!(
            "{}:{}",
            v["type"].as_str().unwrap_or("?"),
            v["state"].as_str().unwrap_or("?")
        ));
    }
    ensure(
        got == [
            "created:running/hot",
            "state:stopped",
            "destroyed:destroyed",
        ],
        || format!("json events: {got:?}"),
    )?;
    let first = human.next_ours()?;
    let shape = first.len() > 9
        && first.as_bytes()[2] == b':'
        && first[9..] == format!("{NAME} created (running/hot)");
    ensure(shape, || format!("human line: {first:?}"))
}
