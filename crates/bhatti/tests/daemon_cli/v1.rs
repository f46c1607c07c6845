//! A bhatti v1 user against the real daemon (itself started from a v1
//! config file): the client configured only by a v1 `~/.bhatti/config.yaml`
//! (`api_url:`/`auth_token:` beside daemon keys, no flags or environment),
//! v1's flags, and v1's plain output of `create`, `list`, `exec`, `ps`,
//! `file ls` read the way a v1 script reads them; `ports` with and
//! without a sandbox (`GET /ports`).

use std::process::{Command, Output, Stdio};

use crate::support::daemon::{self, Daemon};
use crate::{ensure, text};

/// Runs `bhatti args…` with HOME holding a v1 config and no BHATTI_*.
fn v1_cli(home: &std::path::Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut c = Command::new(daemon::bin());
    c.args(args)
        .env("HOME", home)
        .env_remove("BHATTI_URL")
        .env_remove("BHATTI_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = c.spawn().expect("spawn bhatti");
    if let Some(input) = stdin {
        let mut w = child.stdin.take().expect("stdin");
        w.write_all(input).expect("write stdin");
    }
    child.wait_with_output().expect("wait bhatti")
}

fn ok(o: &Output, what: &str) -> Result<String, String> {
    ensure(o.status.success(), || {
        format!("{what}: {:?} {}", o.status, text(&o.stderr))
    })?;
    Ok(text(&o.stdout))
}

#[allow(clippy::too_many_lines)] // one scenario against the shared daemon, step by step
pub fn v1_config_flags_and_output(d: &Daemon) -> Result<(), String> {
    let log = d.log();
    ensure(
        log.contains("firecracker_bin: ignored — this build runs VMs under QEMU")
            && log.contains("engine: firecracker: this build has no Firecracker driver"),
        || format!("the daemon's v1 config warnings: {log}"),
    )?;

    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = home.path().join(".bhatti");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let cfg = format!(
        "engine: firecracker\nlisten: :8080\ndata_dir: /nonexistent\napi_url: {}\n\
         auth_token: {}\nfirecracker_bin: /usr/local/bin/firecracker\njail_uid: 10000\n",
        d.url, d.token
    );
    std::fs::write(dir.join("config.yaml"), cfg).map_err(|e| e.to_string())?;
    let run = |args: &[&str]| v1_cli(home.path(), args, None);

    // create: ID<TAB>NAME<TAB>IP, with comma-separated --env.
    let name = "v1-box";
    let line = ok(
        &run(&[
            "create",
            "--name",
            name,
            "--memory",
            "256",
            "--env",
            "A=1,B=two",
        ]),
        "create",
    )?;
    let fields: Vec<&str> = line.trim_end_matches('\n').split('\t').collect();
    ensure(
        line.ends_with('\n')
            && line.lines().count() == 1
            && fields.len() == 3
            && fields[1] == name
            && fields[2].parse::<std::net::Ipv4Addr>().is_ok(),
        || format!("create line: {line:?}"),
    )?;
    let id = fields[0].to_owned();

    // list: v1's header and a row `ID NAME STATUS IP`.
    let list = ok(&run(&["list"]), "list")?;
    let header = format!("{:<20} {:<20} {:<10} {:<16}", "ID", "NAME", "STATUS", "IP");
    ensure(list.lines().next() == Some(header.as_str()), || {
        format!("list header: {list:?}")
    })?;
    let row: Option<Vec<&str>> = list
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|c| c.first() == Some(&id.as_str()));
    ensure(
        row.as_deref() == Some(&[id.as_str(), name, "running", fields[2]][..]),
        || format!("list row: {list:?}"),
    )?;

    // exec: `--` then the command, streams apart, exit code forwarded.
    let o = run(&[
        "exec",
        name,
        "--",
        "sh",
        "-c",
        "echo $A-$B; echo e >&2; mkdir -p /tmp/v1dir; exit 5",
    ]);
    ensure(
        o.status.code() == Some(5) && text(&o.stdout) == "1-two\n" && text(&o.stderr) == "e\n",
        || {
            format!(
                "exec: {:?} {:?} {:?}",
                o.status,
                text(&o.stdout),
                text(&o.stderr)
            )
        },
    )?;

    // file ls: `d0755     4096 name` lines.
    let o = v1_cli(
        home.path(),
        &["file", "write", name, "/tmp/v1.txt", "--mode", "0640"],
        Some(b"hello v1\n"),
    );
    ok(&o, "file write")?;
    let ls = ok(&run(&["file", "ls", name, "/tmp"]), "file ls")?;
    let has = |want: &str| ls.lines().any(|l| l == want);
    ensure(has("-0640        9 v1.txt"), || {
        format!("file line: {ls:?}")
    })?;
    let dir_line = ls.lines().find(|l| l.ends_with(" v1dir")).unwrap_or("");
    ensure(
        dir_line.len() == "d0755 ".len() + 8 + " v1dir".len()
            && dir_line.starts_with('d')
            && dir_line[1..5].bytes().all(|b| (b'0'..=b'7').contains(&b)),
        || format!("dir line: {ls:?}"),
    )?;

    // ports: v1's container_port/host_port read; without a sandbox, all.
    ok(
        &run(&[
            "exec",
            name,
            "--",
            "sh",
            "-c",
            "busybox httpd -p 8001 -h /tmp",
        ]),
        "httpd",
    )?;
    let ports = ok(&run(&["ports", name]), "ports")?;
    let row: Vec<&str> = ports
        .lines()
        .find(|l| l.starts_with("8001 "))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    ensure(
        row.len() == 3 && row[1].parse::<u16>().is_ok() && row[2].contains("/proxy/8001"),
        || format!("ports: {ports:?}"),
    )?;
    let mut all = String::new();
    for _ in 0..50 {
        all = ok(&run(&["ports"]), "ports (all)")?;
        if all
            .lines()
            .any(|l| l.starts_with(&format!("{id} ")) && l.contains(" 8001 "))
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    ensure(
        all.lines()
            .any(|l| l.starts_with(&format!("{id} ")) && l.contains(" 8001 ")),
        || format!("ports (all): {all:?}"),
    )?;

    // ps: v1's header.
    let ps = ok(&run(&["ps", name]), "ps")?;
    let header = format!(
        "{:<10} {:<40} {:<8} {:<8}",
        "ID", "COMMAND", "RUNNING", "ATTACHED"
    );
    ensure(ps.lines().next() == Some(header.as_str()), || {
        format!("ps: {ps:?}")
    })?;

    // secret set NAME VALUE (positional), injected at create.
    ok(
        &run(&["secret", "set", "V1_SECRET", "positional"]),
        "secret set",
    )?;
    let secrets = ok(&run(&["secret", "list", "--json"]), "secret list")?;
    ensure(secrets.contains("V1_SECRET"), || secrets.clone())?;
    ok(&run(&["secret", "delete", "V1_SECRET"]), "secret delete")?;

    ok(&run(&["destroy", &id]), "destroy").map(|_| ())
}
