//! `scripts/install.sh` and `deploy/bhatti.service` (docs/install.md).
//!
//! - the script's `--help`, and its `--dry-run` plan from a clone and from
//!   a release found next to it: every action listed, nothing done;
//! - a real install from a release (this build's `bhatti` and the image
//!   cache's images) into temp dirs (prefix, data dir, image cache, unit
//!   dir, CLI config), then a second run that changes nothing (root only:
//!   the script refuses to run otherwise; no packages, no daemon, no
//!   systemctl);
//! - the unit: the keys that keep VMs across a restart, checked by parsing
//!   it, and `systemd-analyze verify` when it is present;
//! - shellcheck over every script (`scripts/*.sh`, `.ci/run`) when it is
//!   present (scripts/setup.sh installs it).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn install_sh(args: &[&str]) -> Output {
    Command::new(root().join("scripts/install.sh"))
        .args(args)
        .env_remove("SUDO_USER")
        .env_remove("BHATTI_CACHE_DIR")
        .output()
        .expect("run scripts/install.sh")
}

fn ok(out: &Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "install.sh failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn systemd_runs() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

#[test]
fn help_names_every_flag_and_unknown_flags_fail() {
    let (help, _) = ok(&install_sh(&["--help"]));
    for flag in [
        "--prefix",
        "--data-dir",
        "--cache-dir",
        "--listen",
        "--on-shutdown",
        "--operator",
        "--cli-config",
        "--no-systemd",
        "--no-packages",
        "--dry-run",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    let bad = install_sh(&["--no-such-flag"]);
    assert!(!bad.status.success());
    let bad = install_sh(&["--dry-run", "--on-shutdown", "maybe"]);
    assert!(!bad.status.success());
}

#[test]
fn dry_run_from_a_clone_lists_every_action_and_does_none() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (prefix, data, cache, units) = (
        tmp.path().join("prefix"),
        tmp.path().join("data"),
        tmp.path().join("cache"),
        tmp.path().join("units"),
    );
    let cli = tmp.path().join("home/.bhatti/config.yaml");
    let (plan, notes) = ok(&install_sh(&[
        "--dry-run",
        "--prefix",
        s(&prefix),
        "--data-dir",
        s(&data),
        "--cache-dir",
        s(&cache),
        "--unit-dir",
        s(&units),
        "--cli-config",
        s(&cli),
        "--operator",
        "ops",
        "--listen",
        "0.0.0.0:18080",
    ]));
    let r = root();
    let (r, p, d, c, u) = (s(&r), s(&prefix), s(&data), s(&cache), s(&units));
    let mut expected = vec![
        format!("+ {r}/scripts/setup.sh --packages"),
        "+ cargo build --release -p bhatti".to_owned(),
        format!("+ env BHATTI_CACHE_DIR={c} cargo xtask images --tier all"),
        format!("+ install -m 0755 {r}/target/release/bhatti {p}/bin/bhatti"),
        format!("+ install -d -m 0700 {d}"),
        format!("+ write {d}/config.yaml (mode 0600)"),
        format!("|   data_dir: \"{d}\""),
        "|   listen: \"0.0.0.0:18080\"".to_owned(),
        "|   on_shutdown: keep".to_owned(),
        format!("+ {p}/bin/bhatti user create --data-dir {d} --json --name ops"),
        format!("+ write {} (mode 0600, owner ", s(&cli)),
        "|   url: \"http://127.0.0.1:18080\"".to_owned(),
        "|   token: <the new key>".to_owned(),
        format!("+ write {u}/bhatti.service (mode 0644)"),
        format!("|   ExecStart={p}/bin/bhatti serve --data-dir {d}"),
        format!("|   Environment=BHATTI_CACHE_DIR={c}"),
    ];
    if systemd_runs() {
        expected.push("+ systemctl enable bhatti.service".to_owned());
        expected.push("+ systemctl restart bhatti.service".to_owned());
    } else {
        assert!(notes.contains("systemd is not running"), "{notes}");
        assert!(!plan.contains("\n+ systemctl"), "{plan}");
    }
    // In this order.
    let mut rest = plan.as_str();
    for line in &expected {
        let at = rest
            .find(line.as_str())
            .unwrap_or_else(|| panic!("plan lacks (in order) {line:?}:\n{plan}"));
        rest = &rest[at + line.len()..];
    }
    for p in [&prefix, &data, &cache, &units, &cli] {
        assert!(!p.exists(), "a dry run made {}", p.display());
    }
}

/// A release dir as docs/install.md describes it, of links to this build's
/// `bhatti`, the repo's setup.sh and unit, and the image cache's kernel and
/// busybox rootfs; `None` when the images are not built.
fn release_dir(dir: &Path) -> Option<PathBuf> {
    let images = Path::new("/var/cache/bhatti/images");
    let wanted = ["vmlinux", "busybox.ext4"];
    if !wanted.iter().all(|f| images.join(f).is_file()) {
        return None;
    }
    let rel = dir.join("release");
    std::fs::create_dir_all(rel.join("images")).expect("mkdir");
    let link = |from: &Path, to: &Path| std::os::unix::fs::symlink(from, to).expect("symlink");
    link(Path::new(env!("CARGO_BIN_EXE_bhatti")), &rel.join("bhatti"));
    link(&root().join("scripts/setup.sh"), &rel.join("setup.sh"));
    link(&root().join("scripts/install.sh"), &rel.join("install.sh"));
    link(
        &root().join("deploy/bhatti.service"),
        &rel.join("bhatti.service"),
    );
    for f in wanted {
        link(&images.join(f), &rel.join("images").join(f));
    }
    std::fs::write(rel.join("images/manifest.json"), "{\"release\":\"test\"}\n").expect("write");
    Some(rel)
}

#[test]
fn dry_run_from_a_release_found_next_to_the_script() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(rel) = release_dir(tmp.path()) else {
        eprintln!(
            "skipped: no vmlinux/busybox.ext4 in /var/cache/bhatti/images (scripts/setup.sh)"
        );
        return;
    };
    let (cache, data) = (tmp.path().join("cache"), tmp.path().join("data"));
    let out = Command::new(rel.join("install.sh"))
        .args(["--dry-run", "--no-systemd", "--operator", "ops"])
        .args(["--cache-dir", s(&cache), "--data-dir", s(&data)])
        .args(["--cli-config", s(&tmp.path().join("cli.yaml"))])
        .output()
        .expect("run install.sh");
    let (plan, notes) = ok(&out);
    let (r, c) = (s(&rel), s(&cache));
    assert!(
        notes.contains(&format!("installing from a release ({r})")),
        "{notes}"
    );
    for line in [
        format!("+ {r}/setup.sh --runtime-packages"),
        format!("+ cp --sparse=always {r}/images/vmlinux {c}/images/.vmlinux.new"),
        format!("+ mv -f {c}/images/.vmlinux.new {c}/images/vmlinux"),
        format!("+ install -m 0755 {r}/bhatti /usr/local/bin/bhatti"),
        "|   image: busybox".to_owned(),
    ] {
        assert!(plan.contains(&line), "plan lacks {line:?}:\n{plan}");
    }
    assert!(!plan.contains("cargo"), "a release builds nothing:\n{plan}");
    assert!(
        notes.contains("systemd unit: skipped (--no-systemd)"),
        "{notes}"
    );
    assert!(!cache.exists() && !data.exists());
}

/// Operator user names in `data`'s store.
fn user_names(bin: &Path, data: &Path) -> Vec<String> {
    let out = Command::new(bin)
        .args(["user", "list", "--json", "--data-dir", s(data)])
        .output()
        .expect("user list");
    assert!(out.status.success());
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    list.iter()
        .map(|u| u["name"].as_str().expect("name").to_owned())
        .collect()
}

/// The daemon config the script wrote: 0600, and the daemon takes it.
fn check_daemon_config(data: &Path) -> String {
    let path = data.join("config.yaml");
    assert_eq!(mode(&path), 0o600);
    let text = std::fs::read_to_string(&path).expect("daemon config");
    let cfg: bhatti_server::config::ServerConfig =
        serde_yaml_ng::from_str(&text).expect("the daemon parses its config");
    cfg.validate().expect("valid");
    assert_eq!(cfg.data_dir, data);
    assert_eq!(cfg.listen.to_string(), "0.0.0.0:18080");
    assert_eq!(cfg.image, "busybox", "the release has no minimal tier");
    assert_eq!(cfg.on_shutdown, bhatti_server::config::OnShutdown::Keep);
    text
}

/// The CLI config the script wrote: 0600 in a 0700 dir, the loopback URL
/// of a wildcard listen address, a key.
fn check_cli_config(cli: &Path) -> String {
    assert_eq!(mode(cli), 0o600);
    assert_eq!(mode(cli.parent().expect("dir")), 0o700);
    let text = std::fs::read_to_string(cli).expect("CLI config");
    let cfg: BTreeMap<String, String> = serde_yaml_ng::from_str(&text).expect("yaml");
    assert_eq!(cfg["url"], "http://127.0.0.1:18080");
    assert!(cfg["token"].starts_with("bht_"), "{text}");
    text
}

#[test]
fn install_from_a_release_into_temp_dirs_then_again_changes_nothing() {
    if !is_root() {
        eprintln!("skipped: install.sh runs only as root (without --dry-run)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(rel) = release_dir(tmp.path()) else {
        eprintln!(
            "skipped: no vmlinux/busybox.ext4 in /var/cache/bhatti/images (scripts/setup.sh)"
        );
        return;
    };
    let t = |name: &str| tmp.path().join(name);
    let (prefix, data, cache, units) = (t("prefix"), t("data"), t("cache"), t("units"));
    let cli = t("home/.bhatti/config.yaml");
    let mut args = vec!["--from", s(&rel), "--no-packages", "--operator", "ops"];
    args.extend(["--prefix", s(&prefix), "--data-dir", s(&data)]);
    args.extend(["--cache-dir", s(&cache), "--cli-config", s(&cli)]);
    args.extend(["--listen", "0.0.0.0:18080"]);
    // Never systemctl on a host that runs systemd: the unit would be real.
    if systemd_runs() {
        args.push("--no-systemd");
    } else {
        args.extend(["--unit-dir", s(&units)]);
    }
    ok(&install_sh(&args));

    let bin = prefix.join("bin/bhatti");
    let v = Command::new(&bin).arg("--version").output().expect("run");
    assert!(v.status.success() && String::from_utf8_lossy(&v.stdout).contains("bhatti"));
    for f in ["vmlinux", "busybox.ext4", "manifest.json"] {
        let a = std::fs::metadata(rel.join("images").join(f)).expect("release image");
        let b = std::fs::metadata(cache.join("images").join(f)).expect("installed image");
        assert_eq!(a.len(), b.len(), "{f}");
    }
    let daemon_cfg = check_daemon_config(&data);
    assert_eq!(user_names(&bin, &data), ["ops"]);
    let cli_cfg = check_cli_config(&cli);
    if !systemd_runs() {
        let unit = std::fs::read_to_string(units.join("bhatti.service")).expect("unit");
        let keys = unit_keys(&unit);
        assert_eq!(
            keys["Service"]["ExecStart"],
            [format!("{} serve --data-dir {}", s(&bin), s(&data))]
        );
        let env = &keys["Service"]["Environment"];
        assert!(env.contains(&format!("BHATTI_CACHE_DIR={}", s(&cache))));
        verify_unit(&units.join("bhatti.service"));
    }

    // Again: nothing is created twice or overwritten.
    let (_, notes) = ok(&install_sh(&args));
    for said in [
        "already installed (same manifest)",
        "config.yaml exists: kept",
        "'ops' exists: not created again",
    ] {
        assert!(notes.contains(said), "{notes}");
    }
    assert_eq!(user_names(&bin, &data), ["ops"]);
    assert_eq!(std::fs::read_to_string(&cli).expect("CLI"), cli_cfg);
    let again = std::fs::read_to_string(data.join("config.yaml")).expect("config");
    assert_eq!(again, daemon_cfg);
}

/// `[Section]` → key → every value of that key, in order.
fn unit_keys(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (k, v) = line.split_once('=').expect("key=value");
        out.entry(section.clone())
            .or_default()
            .entry(k.trim().to_owned())
            .or_default()
            .push(v.trim().to_owned());
    }
    out
}

/// `systemd-analyze verify`, when it is installed.
fn verify_unit(path: &Path) {
    let Ok(out) = Command::new("systemd-analyze")
        .arg("verify")
        .arg(path)
        .output()
    else {
        eprintln!("systemd-analyze verify skipped: systemd-analyze is not installed");
        return;
    };
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify {}:\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unit_restarts_on_failure_and_never_kills_the_vms() {
    let path = root().join("deploy/bhatti.service");
    let text = std::fs::read_to_string(&path).expect("deploy/bhatti.service");
    let keys = unit_keys(&text);
    let one = |sec: &str, key: &str| -> String {
        let v = &keys[sec][key];
        assert_eq!(v.len(), 1, "{sec}.{key}: {v:?}");
        v[0].clone()
    };
    let exec = one("Service", "ExecStart");
    assert!(exec.contains("bhatti serve"), "{exec}");
    assert!(exec.contains("--data-dir /var/lib/bhatti"), "{exec}");
    assert_eq!(one("Service", "KillMode"), "process");
    assert_eq!(one("Service", "Restart"), "on-failure");
    assert_eq!(one("Service", "OOMPolicy"), "continue");
    assert_eq!(one("Service", "TasksMax"), "infinity");
    let stop = one("Service", "TimeoutStopSec");
    let mins: u64 = stop
        .strip_suffix("min")
        .and_then(|m| m.parse().ok())
        .expect("Nmin");
    assert!(mins >= 5, "TimeoutStopSec={stop}: snapshots need time");
    assert!(
        one("Service", "LimitNOFILE")
            .parse::<u64>()
            .expect("number")
            >= 65536
    );
    assert!(one("Unit", "After").contains("network-online.target"));
    assert_eq!(one("Install", "WantedBy"), "multi-user.target");

    // Verify a copy whose ExecStart names a binary that exists.
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let copy = text
        .replace("/usr/local/bin/bhatti", env!("CARGO_BIN_EXE_bhatti"))
        .replace("/var/lib/bhatti", s(&data));
    let unit = tmp.path().join("bhatti.service");
    std::fs::write(&unit, copy).expect("write");
    verify_unit(&unit);
}

#[test]
fn scripts_are_shellcheck_clean() {
    let r = root();
    let mut files: Vec<PathBuf> = std::fs::read_dir(r.join("scripts"))
        .expect("scripts/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sh"))
        .collect();
    files.sort();
    files.push(r.join(".ci/run"));
    assert!(files.iter().any(|p| p.ends_with("install.sh")));
    let out = match Command::new("shellcheck").args(&files).output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: shellcheck not runnable ({e}); scripts/setup.sh installs it");
            return;
        }
    };
    assert!(
        out.status.success(),
        "shellcheck:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
