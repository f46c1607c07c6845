//! `--user` on `create`, `template create`, `exec`, `shell` and
//! `file write`, against v1's rule when it is absent (commands as root,
//! files written through the API owned by `lohar`, uid 1000).

use std::time::Duration;

use crate::support::daemon::Daemon;
use crate::support::pty::Pty;
use crate::{ensure, text};

const PTY_WAIT: Duration = Duration::from_secs(60);

/// `exec SB -- CMD…` (with `pre` flags before the sandbox) must succeed;
/// its stdout.
fn exec(d: &Daemon, pre: &[&str], sb: &str, cmd: &[&str]) -> Result<String, String> {
    let mut a = vec!["exec"];
    a.extend_from_slice(pre);
    a.push(sb);
    a.push("--");
    a.extend_from_slice(cmd);
    d.ok(&a)
}

/// The owner uid of `path` in `sb`.
fn owner(d: &Daemon, sb: &str, path: &str) -> Result<String, String> {
    exec(d, &[], sb, &["stat", "-c", "%u", path])
}

/// `file write` of a few bytes (with `pre` flags) that must succeed.
fn write(d: &Daemon, pre: &[&str], sb: &str, path: &str) -> Result<(), String> {
    let mut a = vec!["file", "write"];
    a.extend_from_slice(pre);
    a.extend_from_slice(&[sb, path]);
    let o = d.run_with_stdin(&a, b"x\n");
    ensure(o.status.success(), || {
        format!("bhatti {a:?}: {}", text(&o.stderr))
    })
}

pub fn user_flags(d: &Daemon) -> Result<(), String> {
    let sb = "users-box";
    d.json(&["create", "--name", sb, "--memory", "256"])?;
    let h = d.ok(&["inspect", sb])?;
    ensure(!h.contains("user:"), || format!("inspect, no user: {h}"))?;

    // Commands: root unless --user says otherwise.
    let o = exec(d, &[], sb, &["id", "-u"])?;
    ensure(o == "0\n", || format!("exec default: {o:?}"))?;
    let o = exec(d, &["--user", "lohar"], sb, &["id", "-u"])?;
    ensure(o == "1000\n", || format!("exec --user lohar: {o:?}"))?;
    let o = exec(d, &["--user", "1000"], sb, &["id", "-un"])?;
    ensure(o == "lohar\n", || format!("exec --user 1000: {o:?}"))?;

    // Files: lohar's unless --user says otherwise.
    write(d, &["--user", "root"], sb, "/root/x")?;
    let o = owner(d, sb, "/root/x")?;
    ensure(o == "0\n", || format!("write --user root: {o:?}"))?;
    write(d, &[], sb, "/root/y")?;
    let o = owner(d, sb, "/root/y")?;
    ensure(o == "1000\n", || format!("write default: {o:?}"))?;

    // A malformed user is the daemon's 400, an unknown one the guest's
    // error: one line naming it, exit 1.
    for (bad, says) in [("no such", "400"), ("nosuchuser", "unknown user")] {
        let o = d.run(&["exec", "--user", bad, sb, "--", "true"]);
        let err = text(&o.stderr);
        ensure(
            o.status.code() == Some(1)
                && err.lines().count() == 1
                && err.contains(says)
                && err.contains(bad),
            || format!("exec --user {bad:?}: {:?} {err}", o.status),
        )?;
    }

    // A new shell as lohar.
    let mut p = Pty::spawn(d.cmd(&["shell", "--new", "--user", "lohar", sb]))?;
    p.expect_any_after(0, &["$ ", "# "], PTY_WAIT)?;
    p.send(b"echo uid=$(id -u)\r")?;
    p.expect_after(0, "uid=1000", PTY_WAIT)?;
    p.send(b"exit\r")?;
    let st = p.wait(PTY_WAIT)?;
    ensure(st.success(), || format!("shell exit: {st}"))?;

    d.json(&["destroy", sb])?;
    sandbox_and_template_users(d)
}

/// `create --user` and `template create --user`: the sandbox's default
/// for its commands and files, shown by `inspect`.
fn sandbox_and_template_users(d: &Daemon) -> Result<(), String> {
    let sb = "users-lohar";
    let v = d.json(&["create", "--name", sb, "--memory", "256", "--user", "lohar"])?;
    ensure(v["user"] == "lohar", || format!("create --user: {v}"))?;
    let h = d.ok(&["inspect", sb])?;
    ensure(
        h.lines()
            .any(|l| l.starts_with("user:") && l.ends_with(" lohar")),
        || format!("inspect user: {h}"),
    )?;
    let o = exec(d, &[], sb, &["id", "-u"])?;
    ensure(o == "1000\n", || format!("exec in a lohar sandbox: {o:?}"))?;
    let o = exec(d, &["--user", "root"], sb, &["id", "-u"])?;
    ensure(o == "0\n", || format!("exec --user root: {o:?}"))?;
    d.json(&["destroy", sb])?;

    // A template's user: here root, so files written without --user are
    // root's instead of lohar's.
    let t = d.json(&[
        "template",
        "create",
        "--name",
        "users-tpl",
        "--user",
        "root",
    ])?;
    ensure(t["user"] == "root", || {
        format!("template create --user: {t}")
    })?;
    let sb = "users-tpl-box";
    let v = d.json(&[
        "create",
        "--name",
        sb,
        "--memory",
        "256",
        "--template",
        "users-tpl",
    ])?;
    ensure(v["user"] == "root", || format!("create from template: {v}"))?;
    write(d, &[], sb, "/tmp/t")?;
    let o = owner(d, sb, "/tmp/t")?;
    ensure(o == "0\n", || format!("write in a root sandbox: {o:?}"))?;
    d.json(&["destroy", sb])?;
    d.json(&["template", "delete", "users-tpl"])?;
    Ok(())
}
