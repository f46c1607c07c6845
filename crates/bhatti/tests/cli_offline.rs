//! The client without a working daemon, as a real process: usage errors
//! (exit 2), a daemon that is not listening (exit 1 and how to start it),
//! the server's error message on one stderr line, config precedence
//! (flag > env > ~/.bhatti/config.yaml > default) seen on the wire, and
//! `setup`, `version --client`, `completion`. Every socket is loopback;
//! the "server" in the precedence tests is a one-shot loopback listener
//! that records the request and answers with an API error.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread::JoinHandle;

/// A loopback port nobody listens on.
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// `bhatti args…` with HOME at `home` and no BHATTI_* variables.
fn bhatti(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bhatti"));
    c.args(args)
        .env("HOME", home)
        .env_remove("BHATTI_URL")
        .env_remove("BHATTI_TOKEN")
        .env_remove("BHATTI_DATA_DIR")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run bhatti")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Answers one HTTP request with `status` and `body`; returns the
/// request head (lower-cased header names kept as sent).
fn one_shot(status: &str, body: &'static str) -> (u16, JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let status = status.to_owned();
    let h = std::thread::spawn(move || {
        let (s, _) = l.accept().expect("accept");
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let mut w: TcpStream = s;
        let _ = write!(
            w,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        head
    });
    (port, h)
}

#[test]
fn daemon_not_running_says_how_to_start_it() {
    let home = tempfile::tempdir().expect("tempdir");
    let url = format!("http://127.0.0.1:{}", dead_port());
    for args in [
        vec!["list", "--json"],
        vec!["exec", "box", "--", "true"],
        vec!["inspect", "box"],
        vec!["shell", "box"],
        vec!["secret", "list"],
    ] {
        // Right after the command name: `exec` takes everything after `--`.
        let mut a = args.clone();
        a.splice(1..1, ["--url", url.as_str()]);
        let o = bhatti(home.path(), &a, &[]);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?}: nothing on stdout");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(
            err.contains("bhatti serve") && err.contains(&url),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let home = tempfile::tempdir().expect("tempdir");
    for args in [
        vec!["create", "--env", "NOEQUALS"],
        vec!["create", "--volume", "data"],
        vec!["create", "--volume", "data:relative"],
        vec!["create", "--file", "nothing-after"],
        vec!["exec", "box"],
        vec!["exec", "box", "--timeout", "0", "--", "true"],
        vec!["edit", "box", "--keep-hot", "--allow-cold"],
        vec!["destroy"],
        vec!["shell", "box", "--new", "--session", "s1"],
        vec!["completion", "powershell"],
        vec!["publish", "box", "70000"],
        vec!["no-such-command"],
    ] {
        let o = bhatti(home.path(), &args, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn server_error_message_on_one_line_with_exit_1() {
    let home = tempfile::tempdir().expect("tempdir");
    let (port, h) = one_shot(
        "404 Not Found",
        r#"{"error":"sandbox \"ghost\" not found"}"#,
    );
    let url = format!("http://127.0.0.1:{port}");
    let o = bhatti(
        home.path(),
        &["inspect", "ghost", "--url", &url, "--json"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty(), "--json prints nothing on failure");
    assert_eq!(
        stderr(&o),
        "bhatti: sandbox \"ghost\" not found (HTTP 404)\n"
    );
    let head = h.join().expect("server");
    assert!(head.starts_with("GET /sandboxes/ghost HTTP/1.1"), "{head}");
}

/// Writes `~/.bhatti/config.yaml` under `home`.
fn write_config(home: &Path, url: &str, token: &str) {
    let dir = home.join(".bhatti");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("config.yaml"),
        format!("url: {url}\ntoken: {token}\n"),
    )
    .expect("write config");
}

fn auth_header(head: &str) -> String {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("authorization")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default()
}

#[test]
fn config_precedence_flag_env_file_default() {
    let home = tempfile::tempdir().expect("tempdir");

    // File only: its URL and token are used.
    let (port, h) = one_shot("401 Unauthorized", r#"{"error":"unknown API key"}"#);
    write_config(home.path(), &format!("http://127.0.0.1:{port}"), "bht_file");
    let o = bhatti(home.path(), &["list"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown API key"), "{}", stderr(&o));
    assert_eq!(auth_header(&h.join().expect("server")), "Bearer bht_file");

    // Env over file.
    let (port, h) = one_shot("401 Unauthorized", r#"{"error":"unknown API key"}"#);
    let env_url = format!("http://127.0.0.1:{port}");
    let o = bhatti(
        home.path(),
        &["list"],
        &[("BHATTI_URL", &env_url), ("BHATTI_TOKEN", "bht_env")],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(auth_header(&h.join().expect("server")), "Bearer bht_env");

    // Flags over env.
    let (port, h) = one_shot("401 Unauthorized", r#"{"error":"unknown API key"}"#);
    let flag_url = format!("http://127.0.0.1:{port}");
    let o = bhatti(
        home.path(),
        &["list", "--url", &flag_url, "--token", "bht_flag"],
        &[("BHATTI_URL", &env_url), ("BHATTI_TOKEN", "bht_env")],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(auth_header(&h.join().expect("server")), "Bearer bht_flag");

    // Nothing anywhere: the default URL (whatever is there, the error names it).
    let empty = tempfile::tempdir().expect("tempdir");
    let o = bhatti(empty.path(), &["version", "--json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["url"], "http://127.0.0.1:8080/");
}

#[test]
fn setup_writes_0600_config_and_refuses_a_dead_daemon() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().expect("tempdir");
    let cfg = home.path().join(".bhatti/config.yaml");
    let url = format!("http://127.0.0.1:{}", dead_port());

    let o = bhatti(
        home.path(),
        &["setup", "--url", &url, "--token", "bht_x"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("bhatti serve"), "{}", stderr(&o));
    assert!(!cfg.exists(), "nothing saved when verification fails");

    let o = bhatti(home.path(), &["setup"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--token"), "{}", stderr(&o));

    let o = bhatti(
        home.path(),
        &[
            "setup",
            "--url",
            &url,
            "--token",
            "bht_x",
            "--no-verify",
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["url"], url.as_str());
    let mode = std::fs::metadata(&cfg)
        .expect("config")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&cfg).expect("read");
    assert!(text.contains("bht_x") && text.contains(&url), "{text}");

    // Later commands use it.
    let o = bhatti(home.path(), &["list"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&url), "{}", stderr(&o));
}

#[test]
fn version_client_and_completions() {
    let home = tempfile::tempdir().expect("tempdir");
    let o = bhatti(home.path(), &["version", "--client", "--json"], &[]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["client"], env!("CARGO_PKG_VERSION"));

    let url = format!("http://127.0.0.1:{}", dead_port());
    let o = bhatti(home.path(), &["version", "--url", &url], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("client: {}\n", env!("CARGO_PKG_VERSION"))
    );

    for (shell, marker) in [
        ("bash", "complete"),
        ("zsh", "#compdef bhatti"),
        ("fish", "complete -c bhatti"),
    ] {
        let o = bhatti(home.path(), &["completion", shell], &[]);
        assert!(o.status.success(), "{shell}");
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(s.contains(marker) && s.contains("kill-session"), "{shell}");
    }
}

#[test]
fn bad_config_file_is_reported() {
    let home = tempfile::tempdir().expect("tempdir");
    let dir = home.path().join(".bhatti");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("config.yaml"), "url: [unclosed\n").expect("write");
    let o = bhatti(home.path(), &["list"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a valid config file"),
        "{}",
        stderr(&o)
    );
}
