//! The CLI against a real `bhatti serve` with the QEMU engine: one daemon
//! for this binary (temp data dir, loopback port, `--egress none`, its own
//! network namespace), a user from `bhatti user create --json`, then the
//! client commands as real processes, their `--json` output parsed, exit
//! codes and streams checked, and `shell` driven through a pseudo-terminal.
//!
//! Skips (reported ignored, with the reason on stderr) without root, QEMU
//! or the guest images (`cargo xtask images`).

mod support;

use std::io::Write;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use serde_json::Value;
use support::daemon::Daemon;
use support::pty::Pty;

static DAEMON: Mutex<Option<Result<Arc<Daemon>, String>>> = Mutex::new(None);

/// The shared daemon, started by the first trial that needs it.
fn daemon() -> Result<Arc<Daemon>, Failed> {
    let mut slot = DAEMON.lock().map_err(|_| "daemon lock poisoned")?;
    let d = slot.get_or_insert_with(|| Daemon::start().map(Arc::new));
    d.clone().map_err(Failed::from)
}

type Body = fn(&Daemon) -> Result<(), String>;

fn main() {
    let args = Arguments::from_args();
    let reason = support::skip_reason();
    let tests: [(&str, Body); 5] = [
        ("lifecycle_exec_and_json", lifecycle_exec_and_json),
        ("exec_output_is_live", exec_output_is_live),
        (
            "volumes_templates_ports_setup",
            volumes_templates_ports_setup,
        ),
        (
            "files_secrets_and_destroy_many",
            files_secrets_and_destroy_many,
        ),
        (
            "shell_through_a_pty_detach_and_reattach",
            shell_through_a_pty,
        ),
    ];
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            if let Some(r) = &reason {
                // stderr: in `--list` mode stdout is the runner's protocol.
                eprintln!("SKIPPED: {name}: {r}");
            }
            let skip = reason.clone();
            Trial::ignorable_test(name, move || {
                // Run with --include-ignored: still refuse to pretend.
                if let Some(r) = skip {
                    println!("SKIPPED: {r}");
                    return Ok(Completion::ignored_with(r));
                }
                let d = daemon()?;
                f(&d).map(|()| Completion::Completed).map_err(|e| {
                    Failed::from(format!("{e}\n--- daemon log ---\n{}", tail(&d.log())))
                })
            })
            .with_ignored_flag(reason.is_some())
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    // Stop the daemon (and remove its namespace) before exiting.
    if let Ok(mut slot) = DAEMON.lock() {
        slot.take();
    }
    conclusion.exit();
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn ensure(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn lifecycle_exec_and_json(d: &Daemon) -> Result<(), String> {
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
    ensure(table.starts_with("NAME") && table.contains(name), || {
        table.clone()
    })?;

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

    let r = d.json(&["destroy", name])?;
    ensure(r[0]["status"] == "destroyed", || format!("destroy: {r}"))?;
    let o = d.run(&["inspect", &id]);
    ensure(o.status.code() == Some(1), || {
        format!("inspect after destroy: {:?}", o.status)
    })
}

fn files_secrets_and_destroy_many(d: &Daemon) -> Result<(), String> {
    let o = d.run_with_stdin(&["secret", "set", "TOKEN_A"], b"s3cret\n");
    ensure(o.status.success(), || {
        format!("secret set: {}", text(&o.stderr))
    })?;
    let list = d.json(&["secret", "list"])?;
    ensure(
        list.as_array()
            .is_some_and(|a| a.iter().any(|s| s["name"] == "TOKEN_A"))
            && !list.to_string().contains("s3cret"),
        || format!("secret list: {list}"),
    )?;

    let local = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    std::fs::write(local.path(), "config-data").map_err(|e| e.to_string())?;
    let spec = format!("{}:/etc/app.conf", local.path().display());
    let name = "fs-box";
    d.json(&[
        "create", "--name", name, "--memory", "256", "--secret", "TOKEN_A", "--file", &spec,
    ])?;
    let o = d.ok(&["exec", name, "--", "sh", "-c", "echo $TOKEN_A"])?;
    ensure(o == "s3cret\n", || format!("secret in env: {o:?}"))?;
    let o = d.ok(&["file", "read", name, "/etc/app.conf"])?;
    ensure(o == "config-data", || format!("--file: {o:?}"))?;

    // Upload from a pipe (spooled) and from a regular file (streamed).
    let o = d.run_with_stdin(&["file", "write", name, "/tmp/piped.txt"], b"l1\nl2\nl3\n");
    ensure(o.status.success(), || {
        format!("write pipe: {}", text(&o.stderr))
    })?;
    let blob: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut f = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    f.write_all(&blob).map_err(|e| e.to_string())?;
    let file = std::fs::File::open(f.path()).map_err(|e| e.to_string())?;
    let o = d
        .cmd(&["file", "write", name, "/tmp/blob", "--mode", "0600"])
        .stdin(Stdio::from(file))
        .output()
        .map_err(|e| e.to_string())?;
    ensure(o.status.success(), || {
        format!("write file: {}", text(&o.stderr))
    })?;
    let o = d.run(&["file", "read", name, "/tmp/blob"]);
    ensure(o.status.success() && o.stdout == blob, || {
        format!(
            "blob read back: {} bytes, {}",
            o.stdout.len(),
            text(&o.stderr)
        )
    })?;

    let o = d.ok(&[
        "file",
        "read",
        name,
        "/tmp/piped.txt",
        "--offset",
        "2",
        "--limit",
        "1",
    ])?;
    ensure(o == "l2\n", || format!("offset/limit: {o:?}"))?;
    let o = d.ok(&["file", "read", name, "/tmp/piped.txt", "--max-bytes", "4"])?;
    ensure(o == "l1\nl", || format!("max-bytes: {o:?}"))?;
    let v = d.json(&["file", "read", name, "/tmp/piped.txt"])?;
    ensure(v["size"] == 9 && v["content_b64"] == "bDEKbDIKbDMK", || {
        format!("read --json: {v}")
    })?;
    let ls = d.json(&["file", "ls", name, "/tmp"])?;
    let entry = ls
        .as_array()
        .and_then(|a| a.iter().find(|f| f["name"] == "blob"))
        .cloned()
        .unwrap_or(Value::Null);
    ensure(entry["size"] == 300_000 && entry["mode"] == "0600", || {
        format!("ls: {ls}")
    })?;
    let o = d.run(&["file", "read", name, "/no/such/file"]);
    ensure(o.status.code() == Some(1), || {
        format!("missing file: {:?}", o.status)
    })?;

    let ps = d.json(&["ps", name])?;
    ensure(ps.is_array(), || format!("ps: {ps}"))?;

    d.json(&["secret", "delete", "TOKEN_A"])?;
    let list = d.json(&["secret", "list"])?;
    ensure(!list.to_string().contains("TOKEN_A"), || {
        format!("after delete: {list}")
    })?;
    let o = d.run(&["secret", "delete", "TOKEN_A"]);
    ensure(o.status.code() == Some(1), || {
        "deleting a missing secret must fail".into()
    })?;

    // Several at once; one missing: the others still go, exit 1.
    let o = d.run(&["rm", name, "never-existed"]);
    ensure(o.status.code() == Some(1), || format!("rm: {:?}", o.status))?;
    ensure(text(&o.stdout) == format!("destroyed {name}\n"), || {
        text(&o.stdout)
    })?;
    ensure(text(&o.stderr).contains("never-existed"), || {
        text(&o.stderr)
    })
}

const PTY_WAIT: Duration = Duration::from_secs(60);

fn shell_through_a_pty(d: &Daemon) -> Result<(), String> {
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
    ensure(human.starts_with("SESSION"), || human.clone())?;

    d.json(&["destroy", name]).map(|_| ())
}

/// stdout arrives while the command still runs (the NDJSON stream is
/// forwarded event by event); the command waits for a file the test
/// writes only after it has seen the first line.
fn exec_output_is_live(d: &Daemon) -> Result<(), String> {
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

fn volumes_templates_ports_setup(d: &Daemon) -> Result<(), String> {
    let v = d.json(&["volume", "create", "data1", "--size", "32"])?;
    ensure(v["name"] == "data1" && v["size_mb"] == 32, || {
        format!("volume create: {v}")
    })?;
    let vl = d.json(&["volume", "list"])?;
    ensure(vl.to_string().contains("data1"), || {
        format!("volume list: {vl}")
    })?;
    let t = d.json(&[
        "template", "create", "--name", "tpl", "--memory", "256", "--env", "TPL=yes",
    ])?;
    ensure(t["name"] == "tpl", || format!("template create: {t}"))?;
    let tl = d.ok(&["template", "list"])?;
    ensure(tl.starts_with("NAME") && tl.contains("tpl"), || tl.clone())?;

    let name = "vt-box";
    let sb = d.json(&[
        "create",
        "--name",
        name,
        "--template",
        "tpl",
        "--volume",
        "data1:/data",
    ])?;
    ensure(
        sb["memory_mb"] == 256 && sb["template_id"].is_string(),
        || format!("create from template: {sb}"),
    )?;
    let o = d.ok(&[
        "exec",
        name,
        "--",
        "sh",
        "-c",
        "echo $TPL; grep -c ' /data ' /proc/mounts",
    ])?;
    ensure(o == "yes\n1\n", || {
        format!("template env and volume mount: {o:?}")
    })?;
    let o = d.run(&["volume", "delete", "data1"]);
    ensure(
        o.status.code() == Some(1) && text(&o.stderr).contains("409"),
        || format!("delete in-use volume: {:?} {}", o.status, text(&o.stderr)),
    )?;

    // A listening port shows up with its proxy URL; publish/unpublish.
    d.ok(&[
        "exec",
        name,
        "--",
        "sh",
        "-c",
        "busybox httpd -p 8000 -h /tmp",
    ])?;
    let ports = d.json(&["ports", name])?;
    let p8000 = ports
        .as_array()
        .and_then(|a| a.iter().find(|p| p["port"] == 8000))
        .cloned()
        .unwrap_or(Value::Null);
    ensure(p8000["proxy_url"].is_string(), || format!("ports: {ports}"))?;
    let pb = d.json(&["publish", name, "8000", "--alias", "cli-web"])?;
    ensure(pb["alias"] == "cli-web" && pb["port"] == 8000, || {
        format!("publish: {pb}")
    })?;
    let up = d.json(&["unpublish", name, "8000"])?;
    ensure(up["status"] == "unpublished", || format!("unpublish: {up}"))?;

    let e = d.json(&["edit", name, "--name", "vt-renamed", "--allow-cold"])?;
    ensure(e["name"] == "vt-renamed" && e["keep_hot"] == false, || {
        format!("edit: {e}")
    })?;

    let ver = d.json(&["version"])?;
    ensure(ver["server"] == ver["client"], || format!("version: {ver}"))?;

    // setup verifies against the daemon, writes the config, later
    // commands use it with no flags or environment.
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let run_home = |args: &[&str]| {
        std::process::Command::new(support::daemon::bin())
            .args(args)
            .env("HOME", home.path())
            .env_remove("BHATTI_URL")
            .env_remove("BHATTI_TOKEN")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())
    };
    let o = run_home(&["setup", "--url", &d.url, "--token", "bht_wrong"])?;
    ensure(
        o.status.code() == Some(1) && text(&o.stderr).contains("rejected"),
        || format!("setup with a bad key: {}", text(&o.stderr)),
    )?;
    let o = run_home(&["setup", "--url", &d.url, "--token", &d.token])?;
    ensure(o.status.success(), || format!("setup: {}", text(&o.stderr)))?;
    let o = run_home(&["list", "--json"])?;
    let list: Value =
        serde_json::from_slice(&o.stdout).map_err(|e| format!("list via config: {e}"))?;
    ensure(list.to_string().contains("vt-renamed"), || {
        format!("list via config: {list}")
    })?;

    d.json(&["destroy", "vt-renamed"])?;
    d.json(&["template", "delete", "tpl"])?;
    d.json(&["volume", "delete", "data1"])?;
    let vl = d.json(&["volume", "list"])?;
    ensure(!vl.to_string().contains("data1"), || {
        format!("after delete: {vl}")
    })
}
