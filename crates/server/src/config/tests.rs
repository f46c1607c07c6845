//! The daemon config: v1's `listen` forms, every v1 key accepted with the
//! warnings it earns, our typos still rejected, the file search and the
//! precedence between the v1 file and `<data_dir>/config.yaml`.

use std::path::{Path, PathBuf};

use super::*;

/// A v1 daemon config with every key v1 knew.
const V1_FULL: &str = "\
engine: firecracker
listen: :8080
api_url: https://api.example.com
auth_token: bht_v1token
data_dir: DATA
public_proxy_listen: :8443
domain:
  api_host: api.example.com
  proxy_zone: apps.example.com
  acme_email: ops@example.com
  tls_cert: /etc/ssl/wild.pem
  tls_key: /etc/ssl/wild.key
firecracker_bin: /usr/local/bin/firecracker
firecracker_kernel: /var/lib/bhatti/vmlinux
firecracker_rootfs: /var/lib/bhatti/rootfs.ext4
firecracker_jailer: /usr/local/bin/jailer
jail_uid: 10000
jail_gid: 10000
backup:
  s3_endpoint: https://s3.example.com
  s3_region: eu-central-003
  s3_bucket: backups
  s3_access_key: AK
  s3_secret_key: SK
  schedule:
    - volume: data
      cron: 0 3 * * *
      retention: 7
";

fn write(path: &Path, text: &str) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

fn explicit(path: &Path) -> Search {
    Search {
        explicit: Some(path.to_owned()),
        ..Search::default()
    }
}

#[test]
fn listen_takes_go_and_host_port_forms() {
    let ok = |s: &str| parse_listen(s).expect(s).to_string();
    assert_eq!(ok(":8080"), "0.0.0.0:8080");
    assert_eq!(ok("127.0.0.1:9"), "127.0.0.1:9");
    assert_eq!(ok("0.0.0.0:80"), "0.0.0.0:80");
    assert_eq!(ok("[::1]:8080"), "[::1]:8080");
    assert_eq!(ok("localhost:8080"), "127.0.0.1:8080");
    for bad in [":", ":http", "8080", "example.com:80", ":70000", ""] {
        let e = parse_listen(bad).expect_err(bad);
        assert!(e.contains(":PORT for all interfaces"), "{bad}: {e}");
    }
}

#[test]
fn every_v1_key_is_accepted_with_what_it_does_here() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let file = dir.path().join("etc/config.yaml");
    write(
        &file,
        &V1_FULL.replace("DATA", data.to_str().expect("utf-8")),
    );
    let got = ServerConfig::load_search(&explicit(&file)).expect("a v1 file loads");
    let c = &got.config;
    assert_eq!(c.listen.to_string(), "0.0.0.0:8080", "Go's :8080");
    assert_eq!(c.engine, EngineKind::Auto, "no Firecracker driver here");
    assert_eq!(c.data_dir, data, "the v1 file's data_dir");
    assert_eq!(c.public_domain.as_deref(), Some("apps.example.com"));
    assert_eq!(got.files, std::slice::from_ref(&file));
    let w = got.warnings.join("\n");
    assert!(
        got.warnings
            .iter()
            .all(|l| l.starts_with(&format!("{}: ", file.display()))),
        "each warning names its file: {w}"
    );
    assert!(
        w.contains("firecracker_bin: ignored — this build runs VMs under QEMU; see engine:"),
        "{w}"
    );
    for key in [
        "engine: firecracker:",
        "firecracker_kernel: ignored",
        "firecracker_rootfs: ignored",
        "firecracker_jailer: ignored",
        "jail_uid: ignored",
        "jail_gid: ignored",
        "public_proxy_listen: ignored",
        "backup: ignored",
        "domain.api_host: ignored",
        "domain.acme_email: ignored — this build serves plain HTTP",
        "domain.tls_cert: ignored",
        "domain.tls_key: ignored",
        "domain.proxy_zone: used as public_domain",
    ] {
        assert!(w.contains(key), "warning for {key}: {w}");
    }
    assert_eq!(got.warnings.len(), 14, "one per v1 key set: {w}");
    for quiet in ["api_url", "auth_token", "listen", "data_dir"] {
        assert!(
            !w.contains(&format!(": {quiet}: ")),
            "no warning for {quiet}: {w}"
        );
    }
}

#[test]
fn unset_v1_values_and_cli_keys_are_quiet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config.yaml");
    // What `bhatti setup` writes, and v1's empty defaults.
    write(
        &file,
        "url: http://127.0.0.1:8080\ntoken: bht_x\nengine: \"\"\nfirecracker_jailer: \"\"\n\
         jail_uid: 0\ndomain:\nbackup:\nlisten: 127.0.0.1:7000\n",
    );
    let got = ServerConfig::load_search(&explicit(&file)).expect("loads");
    assert!(got.warnings.is_empty(), "{:?}", got.warnings);
    assert_eq!(got.config.engine, EngineKind::Auto);
    assert_eq!(got.config.listen.port(), 7000);
    assert_eq!(got.config.data_dir, Path::new(DEFAULT_DATA_DIR));
}

#[test]
fn our_typos_and_bad_values_are_still_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config.yaml");
    let load = |text: &str| {
        write(&file, text);
        ServerConfig::load_search(&explicit(&file))
    };
    let err = load("listen: :8080\nfirecracker_bin: /x\nwarm_afer_secs: 3\n").expect_err("typo");
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("warm_afer_secs") && msg.contains("config.yaml"),
        "{msg}"
    );
    assert!(load("engine: vmware\n").is_err());
    assert!(load("listen: nowhere\n").is_err());
    let err = load("domain: apps.example.com\n").expect_err("domain must be a mapping");
    assert!(
        err.to_string().contains("domain: expected a mapping"),
        "{err}"
    );
    let err = load("- a\n- b\n").expect_err("not a mapping");
    assert!(err.to_string().contains("mapping"), "{err}");
    assert!(load("").is_ok(), "an empty file is all defaults");
}

#[test]
fn search_order_and_precedence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |s: &str| dir.path().join(s);
    let data = p("data");
    write(
        &ServerConfig::file_in(&data),
        "listen: 127.0.0.1:1111\ntick_secs: 7\n",
    );

    // No v1 file: the data dir's file alone.
    let only_own = Search {
        candidates: vec![p("missing.yaml")],
        data_dir: Some(data.clone()),
        ..Search::default()
    };
    let got = ServerConfig::load_search(&only_own).expect("own");
    assert_eq!((got.config.listen.port(), got.config.tick_secs), (1111, 7));
    assert_eq!(got.files, [ServerConfig::file_in(&data)]);

    // The first candidate that exists is v1's file; its keys win, the
    // data dir's file fills in the rest; the flag's data dir wins.
    write(
        &p("home/.bhatti/config.yaml"),
        "listen: :2222\nimage: busybox\n",
    );
    write(&p("cwd/config.yaml"), "listen: :3333\n");
    let search = Search {
        candidates: vec![
            p("cwd/none.yaml"),
            p("home/.bhatti/config.yaml"),
            p("cwd/config.yaml"),
        ],
        data_dir: Some(data.clone()),
        ..Search::default()
    };
    let got = ServerConfig::load_search(&search).expect("both");
    let c = &got.config;
    assert_eq!(c.listen.to_string(), "0.0.0.0:2222");
    assert_eq!((c.tick_secs, c.image.as_str()), (7, "busybox"));
    assert_eq!(c.data_dir, data);
    assert_eq!(got.files.len(), 2);

    // The v1 file's data_dir names the data dir when no flag does.
    write(
        &p("etc/config.yaml"),
        &format!("data_dir: {}\n", data.display()),
    );
    let got = ServerConfig::load_search(&explicit(&p("etc/config.yaml"))).expect("data_dir");
    assert_eq!(
        (got.config.data_dir.clone(), got.config.tick_secs),
        (data.clone(), 7)
    );

    // The data dir's own file as v1's file is read once.
    let own = ServerConfig::file_in(&data);
    let got = ServerConfig::load_search(&Search {
        explicit: Some(own.clone()),
        data_dir: Some(data.clone()),
        ..Search::default()
    })
    .expect("same file");
    assert_eq!(got.files, [own]);

    // A missing explicit file is a warning; the candidates come next.
    let got = ServerConfig::load_search(&Search {
        explicit: Some(p("nope.yaml")),
        candidates: vec![p("etc/config.yaml")],
        ..Search::default()
    })
    .expect("falls through");
    assert_eq!(got.files[0], p("etc/config.yaml"));
    assert!(
        got.warnings[0].contains("nope.yaml: no such file"),
        "{:?}",
        got.warnings
    );
}

#[test]
fn load_reads_only_the_data_dir_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = ServerConfig::load(dir.path()).expect("defaults");
    assert_eq!(cfg.data_dir, dir.path());
    write(
        &ServerConfig::file_in(dir.path()),
        "listen: :9999\nfirecracker_bin: /x\ndata_dir: /elsewhere\n",
    );
    let cfg = ServerConfig::load(dir.path()).expect("v1 keys in the data dir file");
    assert_eq!(cfg.listen.to_string(), "0.0.0.0:9999");
    assert_eq!(
        cfg.data_dir,
        PathBuf::from(dir.path()),
        "its own data_dir is ignored"
    );
}
