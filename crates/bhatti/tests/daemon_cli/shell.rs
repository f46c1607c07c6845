//! `bhatti shell` driven through a pseudo-terminal: typing, detach and
//! reattach.

use std::time::Duration;

use serde_json::Value;

use crate::ensure;
use crate::support::daemon::Daemon;
use crate::support::pty::Pty;

const PTY_WAIT: Duration = Duration::from_secs(60);

pub fn shell_through_a_pty(d: &Daemon) -> Result<(), String> {
    let name = "sh-box";
    d.json(&["create", "--name", name, "--memory", "256"])?;

    let mut p = Pty::spawn(d.cmd(&["shell", name]))?;
    // Input typed before the prompt may be flushed by the shell's line
    // editor (as over ssh): wait for it.
    p.expect_any_after(0, &["$ ", "# "], PTY_WAIT)?;
    p.send(b"echo hel''lo-$((6*7))\r")?;
    p.expect_after(0, "hello-42", PTY_WAIT)?;
    let mark = p.len();
    p.send(&[0x1c])?;
    p.expect_after(mark, "detached", PTY_WAIT)?;
    let st = p.wait(PTY_WAIT)?;
    ensure(st.success(), || format!("detach exit: {st}"))?;

    let ps = d.json(&["ps", name])?;
    let shells: Vec<&Value> = ps
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|s| s["tty"] == true && s["running"] == true)
                .collect()
        })
        .unwrap_or_default();
    ensure(shells.len() == 1 && shells[0]["attached"] == false, || {
        format!("ps after detach: {ps}")
    })?;

    // Reattach by default: the scrollback comes back.
    let mut p = Pty::spawn(d.cmd(&["sh", name]))?;
    p.expect_after(0, "hello-42", PTY_WAIT)?;
    p.send(b"exit 7\r")?;
    let st = p.wait(PTY_WAIT)?;
    ensure(st.code() == Some(7), || {
        format!("shell exit: {st}; output {:?}", p.output())
    })?;

    // Initial size from the local terminal, SIGWINCH resizes, --new starts
    // a second shell, kill-session ends it.
    let mut p = Pty::spawn(d.cmd(&["shell", "--new", name]))?;
    p.expect_any_after(0, &["$ ", "# "], PTY_WAIT)?;
    let mark = p.len();
    p.send(b"stty size\r")?;
    p.expect_after(mark, "24 80", PTY_WAIT)?;
    p.resize(30, 100)?;
    let mark = p.len();
    p.send(b"stty size\r")?;
    p.expect_after(mark, "30 100", PTY_WAIT)?;
    let ps = d.json(&["ps", name])?;
    let attached: Vec<String> = ps
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|s| s["running"] == true && s["attached"] == true)
                .filter_map(|s| s["session_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ensure(attached.len() == 1, || {
        format!("ps with --new shell attached: {ps}")
    })?;
    let killed = d.json(&["kill-session", name, &attached[0]])?;
    ensure(killed["status"] == "killed", || {
        format!("kill-session: {killed}")
    })?;
    let st = p.wait(PTY_WAIT)?;
    ensure(!st.success(), || format!("killed shell exit: {st}"))?;
    let human = d.ok(&["ps", name])?;
    ensure(human.starts_with("ID         COMMAND "), || human.clone())?;

    d.json(&["destroy", name]).map(|_| ())
}
