//! The CLI as a bhatti v1 user drives it, without a real daemon: a v1
//! `~/.bhatti/config.yaml` (`api_url:`/`auth_token:` beside daemon keys),
//! v1's flags (`--env A=1,B=2`, `secret set NAME VALUE`, `user create
//! --max-memory`) seen on the wire, and v1's plain output of `create`,
//! `list`, `ps` and `file ls` byte for byte. The "daemon" is a loopback
//! listener answering one canned response per connection and recording
//! the request. `bhatti serve` with a v1 config file is checked up to the
//! point where it would start (a flag makes the final validation fail).
//!
//! The CLI rows of V1-COMPAT.md and where they are tested (here unless
//! named; `daemon_cli::v1` repeats them against a real daemon and VMs):
//! - config (`BHATTI_URL`/`BHATTI_TOKEN`, `auth_token:`/`api_url:` with
//!   daemon keys): `create_reads_the_v1_config_…`; env and flags over the
//!   file: `cli_offline::config_precedence_flag_env_file_default`;
//!   `bhatti serve`'s `$BHATTI_CONFIG`/`./config.yaml`/`~/.bhatti/config.yaml`
//!   and `listen: :8080`: `serve_finds_a_v1_config_…` and
//!   `bhatti_server::config::tests`; `user` finding v1's `data_dir`:
//!   `user_finds_the_data_dir_in_the_v1_config`.
//! - `create --env A=1,B=2` and its `ID<TAB>NAME<TAB>IP` line:
//!   `create_reads_the_v1_config_…`.
//! - `list` columns `ID NAME STATUS IP`: `list_prints_v1_columns_…`.
//! - `exec NAME -- CMD`, exit code, separate streams: `daemon_cli::v1`
//!   (and `daemon_cli::exec`).
//! - `ps` columns, `file ls` lines: `ps_and_file_ls_print_v1_lines`.
//! - `secret set NAME VALUE`: `secret_value_positional_…`.
//! - `user create --max-memory`: `user_create_takes_v1s_max_memory`.
//! - a bare `bhatti` prints help (v1 started the daemon):
//!   `bare_bhatti_prints_help`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread::JoinHandle;

/// A v1 config file shared by the daemon and the CLI.
const V1_CONFIG: &str = "\
engine: firecracker
listen: :8080
data_dir: /nonexistent/bhatti-v1
api_url: URL
auth_token: bht_v1token
firecracker_bin: /usr/local/bin/firecracker
firecracker_kernel: /var/lib/bhatti/vmlinux
firecracker_rootfs: /var/lib/bhatti/rootfs.ext4
jail_uid: 10000
domain:
  proxy_zone: apps.example.com
backup:
  s3_bucket: b
";

/// A request as the fake daemon saw it.
struct Seen {
    head: String,
    body: Vec<u8>,
}

/// Answers one HTTP request with `status` and `body`.
fn daemon(status: &str, body: &str) -> (String, JoinHandle<Seen>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://127.0.0.1:{}", l.local_addr().expect("addr").port());
    let (status, reply) = (status.to_owned(), body.to_owned());
    let h = std::thread::spawn(move || {
        let (s, _) = l.accept().expect("accept");
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        let mut head = String::new();
        let mut len = 0;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
            head.push_str(&line);
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).expect("body");
        let mut w = s;
        let _ = write!(
            w,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
            reply.len()
        );
        Seen { head, body }
    });
    (url, h)
}

/// `bhatti args…` with HOME at `home` holding a v1 config that points at
/// `url`, and no BHATTI_* variables.
fn bhatti(home: &Path, url: &str, args: &[&str]) -> Output {
    let dir = home.join(".bhatti");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("config.yaml"), V1_CONFIG.replace("URL", url)).expect("config");
    Command::new(env!("CARGO_BIN_EXE_bhatti"))
        .args(args)
        .env("HOME", home)
        .env_remove("BHATTI_URL")
        .env_remove("BHATTI_TOKEN")
        .env_remove("BHATTI_DATA_DIR")
        .env_remove("BHATTI_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run bhatti")
}

fn out(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json_body(s: &Seen) -> serde_json::Value {
    serde_json::from_slice(&s.body).expect("JSON body")
}

#[test]
fn create_reads_the_v1_config_sends_comma_env_and_prints_one_line() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, h) = daemon(
        "201 Created",
        r#"{"id":"sb_0a1b","name":"dev","status":"running","ip":"10.10.0.2","created_at":"2026-03-22T10:00:00Z"}"#,
    );
    let o = bhatti(
        home.path(),
        &url,
        &[
            "create", "--name", "dev", "--cpus", "0.5", "--env", "A=1,B=2", "--env", "C=x,y",
        ],
    );
    assert_eq!(out(&o), "sb_0a1b\tdev\t10.10.0.2\n");
    let seen = h.join().expect("server");
    assert!(seen.head.starts_with("POST /sandboxes "), "{}", seen.head);
    assert!(
        seen.head.contains("Bearer bht_v1token"),
        "auth_token: {}",
        seen.head
    );
    let b = json_body(&seen);
    assert_eq!(
        b["env"],
        serde_json::json!({"A": "1", "B": "2", "C": "x,y"})
    );
    assert_eq!(b["cpus"], 1, "v1's fractional --cpus, rounded up");
}

#[test]
fn list_prints_v1_columns_and_wide_reads_rfc3339() {
    let home = tempfile::tempdir().expect("tempdir");
    let items = r#"[{"id":"sb_0a1b","name":"dev","status":"running","ip":"10.10.0.2","thermal":"hot","created_at":"2026-03-22T10:00:00Z"},
                    {"id":"sb_ffff","name":"old","status":"stopped","ip":null,"created_at":"2026-03-22T09:00:00Z"}]"#;
    let (url, h) = daemon("200 OK", items);
    let got = out(&bhatti(home.path(), &url, &["list"]));
    let want = [
        ("ID", "NAME", "STATUS", "IP"),
        ("sb_0a1b", "dev", "running", "10.10.0.2"),
        ("sb_ffff", "old", "stopped", ""),
    ]
    .iter()
    .map(|(a, b, c, d)| format!("{a:<20} {b:<20} {c:<10} {d:<16}\n"))
    .collect::<String>();
    assert_eq!(got, want, "v1's printf layout");
    assert!(
        h.join()
            .expect("server")
            .head
            .starts_with("GET /sandboxes ")
    );

    let (url, _h) = daemon("200 OK", items);
    let wide = out(&bhatti(home.path(), &url, &["ls", "-o", "wide"]));
    let row = wide.lines().nth(1).unwrap_or_default();
    assert!(wide.starts_with("ID") && wide.contains("THERMAL"), "{wide}");
    assert!(row.ends_with("ago"), "created_at as an age: {wide}");
}

#[test]
fn ps_and_file_ls_print_v1_lines() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, _h) = daemon(
        "200 OK",
        r#"[{"session_id":"s1","argv":"sleep 60","running":true,"attached":false,"tty":false,"exit_code":null,"created_at":1774173600}]"#,
    );
    let got = out(&bhatti(home.path(), &url, &["ps", "dev"]));
    assert_eq!(
        got,
        format!(
            "{:<10} {:<40} {:<8} {:<8}\n{:<10} {:<40} {:<8} {:<8}\n",
            "ID", "COMMAND", "RUNNING", "ATTACHED", "s1", "sleep 60", "true", "false"
        )
    );

    let (url, h) = daemon(
        "200 OK",
        r#"[{"name":"src","size":4096,"mode":"0755","is_dir":true,"mtime":1774173600},
            {"name":"a.txt","size":12,"mode":"0644","is_dir":false,"mtime":1774173600}]"#,
    );
    let got = out(&bhatti(
        home.path(),
        &url,
        &["file", "ls", "dev", "/workspace"],
    ));
    assert_eq!(got, "d0755     4096 src\n-0644       12 a.txt\n");
    let head = h.join().expect("server").head;
    assert!(
        head.contains("ls=true") && head.contains("path=%2Fworkspace"),
        "{head}"
    );
}

#[test]
fn secret_value_positional_and_ports_read_container_port() {
    let home = tempfile::tempdir().expect("tempdir");
    let (url, h) = daemon(
        "201 Created",
        r#"{"name":"API_KEY","created_at":"2026-03-22T10:00:00Z","updated_at":"2026-03-22T10:00:00Z"}"#,
    );
    out(&bhatti(
        home.path(),
        &url,
        &["secret", "set", "API_KEY", "sk-abc"],
    ));
    let b = json_body(&h.join().expect("server"));
    assert_eq!(
        (b["name"].as_str(), b["value"].as_str()),
        (Some("API_KEY"), Some("sk-abc"))
    );

    let (url, h) = daemon(
        "200 OK",
        r#"[{"sandbox_id":"sb_0a1b","container_port":3000,"host_port":41234,"proxy_url":"/sandboxes/sb_0a1b/proxy/3000/"}]"#,
    );
    let got = out(&bhatti(home.path(), &url, &["ports"]));
    assert!(h.join().expect("server").head.starts_with("GET /ports "));
    let row = got.lines().nth(1).unwrap_or_default();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        ["sb_0a1b", "3000", "41234", "/sandboxes/sb_0a1b/proxy/3000/"],
        "{got}"
    );
}

#[test]
fn user_create_takes_v1s_max_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = Command::new(env!("CARGO_BIN_EXE_bhatti"))
        .args(["user", "create", "--name", "v1user", "--max-sandboxes", "3"])
        .args([
            "--max-cpus",
            "2",
            "--max-memory",
            "2048",
            "--json",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("run");
    let v: serde_json::Value = serde_json::from_str(&out(&o)).expect("json");
    assert_eq!(
        (&v["max_sandboxes"], &v["max_cpus"], &v["max_memory_mb"]),
        (&3.into(), &2.into(), &2048.into())
    );
}

#[test]
fn user_finds_the_data_dir_in_the_v1_config() {
    let t = tempfile::tempdir().expect("tempdir");
    let (home, data) = (t.path().join("home"), t.path().join("v1data"));
    std::fs::create_dir_all(home.join(".bhatti")).expect("mkdir");
    std::fs::write(
        home.join(".bhatti/config.yaml"),
        format!(
            "listen: :8080\nauth_token: x\ndata_dir: {}\n",
            data.display()
        ),
    )
    .expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_bhatti"))
        .args(["user", "create", "--name", "op", "--json"])
        .current_dir(t.path())
        .env("HOME", &home)
        .env_remove("BHATTI_DATA_DIR")
        .env_remove("BHATTI_CONFIG")
        .output()
        .expect("run");
    out(&o);
    assert!(
        data.join("state.db").is_file(),
        "the store in v1's data_dir"
    );
}

#[test]
fn bare_bhatti_prints_help() {
    let o = Command::new(env!("CARGO_BIN_EXE_bhatti"))
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("Usage: bhatti <COMMAND>") && err.contains("serve"),
        "{err}"
    );
}

/// `bhatti serve` with `--tick 0`: it loads its config, prints what it
/// read, then fails the final check before starting anything.
fn serve_dry(cwd: &Path, home: &Path, env: &[(&str, &Path)], args: &[&str]) -> (i32, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bhatti"));
    c.arg("serve")
        .args(args)
        .args(["--tick", "0"])
        .current_dir(cwd)
        .env("HOME", home)
        .env_remove("BHATTI_DATA_DIR")
        .env_remove("BHATTI_CONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().expect("run serve");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn serve_finds_a_v1_config_and_says_what_it_ignores() {
    let t = tempfile::tempdir().expect("tempdir");
    let (cwd, home, data) = (
        t.path().join("cwd"),
        t.path().join("home"),
        t.path().join("data"),
    );
    for d in [&cwd, &home.join(".bhatti"), &data] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let v1 = V1_CONFIG.replace("URL", "http://127.0.0.1:1");
    let home_cfg = home.join(".bhatti/config.yaml");
    std::fs::write(&home_cfg, &v1).expect("write");
    let data_flag = ["--data-dir", data.to_str().expect("utf-8")];

    // ~/.bhatti/config.yaml when there is no ./config.yaml.
    let (code, err) = serve_dry(&cwd, &home, &[], &data_flag);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("config {}", home_cfg.display())),
        "{err}"
    );
    for w in [
        "warning: ",
        "firecracker_bin: ignored — this build runs VMs under QEMU; see engine:",
        "engine: firecracker: this build has no Firecracker driver",
        "jail_uid: ignored",
        "backup: ignored",
        "domain.proxy_zone: used as public_domain",
    ] {
        assert!(err.contains(w), "{w}: {err}");
    }
    assert!(err.contains("tick_secs must be at least 1"), "{err}");
    assert!(
        !err.contains("api_url") && !err.contains("auth_token"),
        "{err}"
    );

    // ./config.yaml comes before ~/.bhatti/config.yaml; $BHATTI_CONFIG first.
    std::fs::write(cwd.join("config.yaml"), "listen: :9090\n").expect("write");
    let (_, err) = serve_dry(&cwd, &home, &[], &data_flag);
    assert!(
        err.contains(&format!("config {}", cwd.join("config.yaml").display()))
            && !err.contains("firecracker_bin"),
        "{err}"
    );
    let (_, err) = serve_dry(&cwd, &home, &[("BHATTI_CONFIG", &home_cfg)], &data_flag);
    assert!(err.contains("firecracker_bin: ignored"), "{err}");

    // Our typo is an error naming the key.
    std::fs::write(
        cwd.join("config.yaml"),
        "listen: :9090\nwarm_afer_secs: 1\n",
    )
    .expect("w");
    let (code, err) = serve_dry(&cwd, &home, &[], &data_flag);
    assert!(code == 1 && err.contains("warm_afer_secs"), "{err}");

    // A missing $BHATTI_CONFIG is a warning; the search goes on, as in v1.
    std::fs::remove_file(cwd.join("config.yaml")).expect("rm");
    let missing = t.path().join("missing.yaml");
    let (_, err) = serve_dry(&cwd, &home, &[("BHATTI_CONFIG", &missing)], &data_flag);
    assert!(
        err.contains("missing.yaml: no such file") && err.contains("firecracker_bin: ignored"),
        "{err}"
    );
}
