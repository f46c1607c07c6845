//! The CLI's v1 rows that need no daemon: `user create --max-memory`,
//! `user` finding v1's `data_dir`, a bare `bhatti`, and `bhatti serve`
//! with a v1 config file up to the point where it would start (a flag
//! makes the final validation fail). Everything that talks to a daemon is
//! tested against a real one with real VMs in `daemon_cli::v1`.
//!
//! The CLI rows of V1-COMPAT.md and where they are tested:
//! - config (`BHATTI_URL`/`BHATTI_TOKEN`, `auth_token:`/`api_url:` with
//!   daemon keys): `daemon_cli::v1` (a v1 file is the client's only
//!   configuration); env and flags over the file:
//!   `cli_offline::config_precedence_flag_env_file_default`;
//!   `bhatti serve`'s `$BHATTI_CONFIG`/`./config.yaml`/`~/.bhatti/config.yaml`
//!   and `listen: :8080`: `serve_finds_a_v1_config_…` here,
//!   `bhatti_server::config::tests`, and the `daemon_cli` daemon itself
//!   (started from a v1 file); `user` finding v1's `data_dir`:
//!   `user_finds_the_data_dir_in_the_v1_config`.
//! - `create --env A=1,B=2` and its `ID<TAB>NAME<TAB>IP` line, `list`
//!   columns, `exec NAME -- CMD` (exit code, separate streams), `ps`
//!   columns, `file ls` lines, `secret set NAME VALUE`, `ports`:
//!   `daemon_cli::v1`; exact column layouts also in the CLI's unit tests
//!   (`render::v1_fixed_columns`, `files::v1_ls_lines`).
//! - `user create --max-memory`: `user_create_takes_v1s_max_memory`.
//! - a bare `bhatti` prints help (v1 started the daemon):
//!   `bare_bhatti_prints_help`.

use std::path::Path;
use std::process::{Command, Output, Stdio};

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

fn out(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
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
