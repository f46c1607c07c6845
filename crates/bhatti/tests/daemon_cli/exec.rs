//! Lifecycle, exec (buffered, `--json`, live output) and the JSON shapes
//! of the client commands.

use std::process::Stdio;

use serde_json::Value;

use crate::support::daemon::Daemon;
use crate::{ensure, text};

#[allow(clippy::too_many_lines)] // one scenario against the shared daemon, step by step
pub fn lifecycle_exec_and_json(d: &Daemon) -> Result<(), String> {
    let name = "lc-box";
    let sb = d.json(&[
        "create",
        "--name",
        name,
        "--memory",
        "256",
        "--env",
        "GREETING=hi",
    ])?;
    ensure(sb["name"] == name && sb["status"] == "running", || {
        format!("create: {sb}")
    })?;
    let id = sb["id"].as_str().ok_or("no id")?.to_owned();

    let list = d.json(&["list"])?;
    let found = list.as_array().is_some_and(|a| {
        a.iter()
            .any(|s| s["id"] == id.as_str() && s["name"] == name)
    });
    ensure(found, || format!("list: {list}"))?;
    let by_id = d.json(&["inspect", &id])?;
    ensure(by_id["name"] == name, || format!("inspect by id: {by_id}"))?;
    let human = d.ok(&["inspect", name])?;
    ensure(human.contains(&id) && human.contains("running"), || {
        human.clone()
    })?;
    let table = d.ok(&["ls"])?;
    ensure(table.starts_with("ID ") && table.contains(name), || {
        table.clone()
    })?;
    let wide = d.ok(&["ls", "-o", "wide"])?;
    ensure(
        wide.lines().next().is_some_and(|h| h.contains("THERMAL")),
        || wide.clone(),
    )?;

    // Streams to the right place, exit code forwarded.
    let o = d.run(&[
        "exec",
        name,
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; echo $GREETING; exit 3",
    ]);
    ensure(o.status.code() == Some(3), || {
        format!("exec code: {:?} {}", o.status, text(&o.stderr))
    })?;
    ensure(text(&o.stdout) == "out\nhi\n", || {
        format!("stdout {:?}", text(&o.stdout))
    })?;
    ensure(text(&o.stderr) == "err\n", || {
        format!("stderr {:?}", text(&o.stderr))
    })?;

    let o = d.ok(&[
        "exec",
        "--env",
        "X=1",
        "--cwd",
        "/tmp",
        &id,
        "--",
        "sh",
        "-c",
        "echo $X; pwd",
    ])?;
    ensure(o == "1\n/tmp\n", || format!("env/cwd: {o:?}"))?;

    let o = d.run(&["exec", "--json", name, "--", "sh", "-c", "echo j; exit 4"]);
    ensure(o.status.code() == Some(4), || {
        format!("exec --json code {:?}", o.status)
    })?;
    let v: Value = serde_json::from_slice(&o.stdout).map_err(|e| format!("exec --json: {e}"))?;
    ensure(v["exit_code"] == 4 && v["stdout"] == "j\n", || {
        format!("exec --json: {v}")
    })?;

    let o = d.run(&["exec", "--timeout", "1", name, "--", "sleep", "60"]);
    ensure(o.status.code() == Some(137), || {
        format!("timeout: {:?} {}", o.status, text(&o.stderr))
    })?;

    let o = d.run(&["exec", "no-such-box", "--", "true"]);
    let err = text(&o.stderr);
    ensure(
        o.status.code() == Some(1) && err.lines().count() == 1 && err.contains("404"),
        || format!("missing sandbox: {:?} {err}", o.status),
    )?;

    let e = d.json(&["edit", name, "--keep-hot"])?;
    ensure(e["keep_hot"] == true, || format!("edit: {e}"))?;

    // Data survives stop/start.
    d.ok(&["exec", name, "--", "sh", "-c", "echo kept > ~/mark"])?;
    let s = d.json(&["stop", name])?;
    ensure(s["status"] == "stopped", || format!("stop: {s}"))?;
    let s = d.json(&["start", name])?;
    ensure(s["status"] == "running", || format!("start: {s}"))?;
    let o = d.ok(&["exec", name, "--", "sh", "-c", "cat ~/mark"])?;
    ensure(o == "kept\n", || format!("after start: {o:?}"))?;
    console(d, name)?;

    let r = d.json(&["destroy", name])?;
    ensure(r[0]["status"] == "destroyed", || format!("destroy: {r}"))?;
    let o = d.run(&["inspect", &id]);
    ensure(o.status.code() == Some(1), || {
        format!("inspect after destroy: {:?}", o.status)
    })
}

/// `console`: the guest's first line (lohar's) is there after a stop
/// and start (the log runs on), `-n 1` prints one line, `--json` wraps
/// it, and `-n` over the daemon's cap is its 400, exit 1.
fn console(d: &Daemon, name: &str) -> Result<(), String> {
    let all = d.ok(&["console", name])?;
    ensure(all.contains("starting as PID 1"), || {
        format!("console: {all:?}")
    })?;
    let one = d.ok(&["console", name, "-n", "1"])?;
    ensure(one.lines().count() == 1 && all.ends_with(&one), || {
        format!("console -n 1: {one:?}")
    })?;
    let j = d.json(&["console", name])?;
    ensure(j["console"] == all.as_str(), || format!("--json: {j}"))?;
    let o = d.run(&["console", name, "-n", "10001"]);
    let err = text(&o.stderr);
    ensure(
        o.status.code() == Some(1) && err.contains("at most"),
        || format!("-n 10001: {:?} {err}", o.status),
    )
}

/// stdout arrives while the command still runs (the NDJSON stream is
/// forwarded event by event); the command waits for a file the test
/// writes only after it has seen the first line.
pub fn exec_output_is_live(d: &Daemon) -> Result<(), String> {
    use std::io::{BufRead, BufReader};
    let name = "live-box";
    d.json(&["create", "--name", name, "--memory", "256"])?;
    let script = "echo first; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo second";
    let mut child = d
        .cmd(&["exec", name, "--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut out = BufReader::new(child.stdout.take().ok_or("stdout")?);
    let mut line = String::new();
    out.read_line(&mut line).map_err(|e| e.to_string())?;
    ensure(line == "first\n", || format!("first line: {line:?}"))?;
    let running = child.try_wait().map_err(|e| e.to_string())?.is_none();
    let o = d.run_with_stdin(&["file", "write", name, "/tmp/go"], b"");
    ensure(o.status.success(), || text(&o.stderr))?;
    ensure(running, || "exec ended before the command did".into())?;
    line.clear();
    out.read_line(&mut line).map_err(|e| e.to_string())?;
    ensure(line == "second\n", || format!("second line: {line:?}"))?;
    let st = child.wait().map_err(|e| e.to_string())?;
    ensure(st.success(), || format!("exec: {st}"))?;
    d.json(&["destroy", name]).map(|_| ())
}
