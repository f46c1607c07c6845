//! Test harness for OCI import: a local registry (Debian's
//! `docker-registry`, on 127.0.0.1 and a free port, optional htpasswd
//! auth, killed on drop) and small test images built from busybox with
//! `umoci`, copied around with `skopeo` (to the registry, `oci-archive:`,
//! `docker-archive:`).
//!
//! Tests call [`tools`] first and return early, printing why, when a tool
//! is missing (`scripts/setup.sh` installs them all).

#![allow(dead_code)] // each test binary uses a part

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The busybox the test images carry.
pub const BUSYBOX: &str = "/bin/busybox";

/// Whether every tool is here; prints which is missing if not.
#[must_use]
pub fn tools(names: &[&str]) -> bool {
    for n in names {
        let found = if n.starts_with('/') {
            Path::new(n).exists()
        } else {
            std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(n).is_file()))
        };
        if !found {
            eprintln!("SKIP: {n} is not installed (scripts/setup.sh installs it)");
            return false;
        }
    }
    true
}

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `skopeo copy` (no signature policy; plain HTTP registries).
pub fn skopeo_copy(from: &str, to: &str, creds: Option<(&str, &str)>) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "copy", "--quiet"]);
    cmd.args(["--src-tls-verify=false", "--dest-tls-verify=false"]);
    if let Some((u, p)) = creds {
        cmd.arg(format!("--dest-creds={u}:{p}"));
    }
    run(cmd.args([from, to]));
}

/// A local registry, stopped on drop.
#[derive(Debug)]
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Holds the config, storage and log.
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Registry {
    /// Starts a plain-HTTP registry; with `auth`, only that user and
    /// password get in.
    pub fn start(auth: Option<(&str, &str)>) -> Self {
        Self::start_with(auth, false)
    }

    /// Starts a registry; with `tls`, HTTPS with a self-signed certificate
    /// for 127.0.0.1 (made with the `openssl` command).
    pub fn start_with(auth: Option<(&str, &str)>, tls: bool) -> Self {
        Self::start_config(tls, |dir| {
            auth.map_or_else(String::new, |(user, pass)| {
                let hash = bcrypt::hash(pass, 4).expect("bcrypt");
                let htpasswd = dir.join("htpasswd");
                std::fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                    htpasswd.display()
                )
            })
        })
    }

    /// Starts a plain-HTTP registry whose config has `auth` as its `auth:`
    /// section (e.g. `support/token.rs`'s `TokenServer::registry_auth`).
    pub fn start_with_auth(auth: &str) -> Self {
        Self::start_config(false, |_| auth.to_string())
    }

    /// Starts a registry; `auth` gives its config's `auth:` section (it
    /// may write files in the registry's directory).
    fn start_config(tls: bool, auth: impl FnOnce(&Path) -> String) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\n",
            dir.path().join("storage").display()
        );
        if tls {
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            run(Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args([
                    "-subj",
                    "/CN=127.0.0.1",
                    "-addext",
                    "subjectAltName=IP:127.0.0.1",
                ])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert));
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        config.push_str(&auth(dir.path()));
        let conf = dir.path().join("config.yml");
        std::fs::write(&conf, config).expect("config");
        let log = std::fs::File::create(dir.path().join("log")).expect("log");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("docker-registry starts");
        let me = Self { addr, dir, child };
        me.wait_ready();
        me
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(&self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not listen on {}: {}",
                self.addr,
                std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A blob's data file in the registry's storage.
    #[must_use]
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Pushes the `test` image of an OCI layout as `repo:tag`.
    pub fn push(&self, layout: &Path, repo_tag: &str, creds: Option<(&str, &str)>) {
        skopeo_copy(
            &format!("oci:{}:test", layout.display()),
            &format!("docker://{}/{repo_tag}", self.addr),
            creds,
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What [`build_image`] puts in the image config.
pub const ENV: (&str, &str) = ("GREETING", "hello=world");
/// The image's working directory.
pub const WORKDIR: &str = "/work";
/// The image's user.
pub const USER: &str = "1000:1000";

/// Builds an OCI layout at `dir` with one image tagged `test`: busybox
/// and a small second layer, Env, WorkingDir, User, Entrypoint and Cmd
/// set. Returns the layout directory.
pub fn build_image(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    let image = format!("{}:test", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci").args(["insert", "--image", &image, BUSYBOX, "/bin/busybox"]));
    let hello = dir.join("hello.txt");
    std::fs::write(&hello, "hello from the second layer\n").expect("write");
    run(Command::new("umoci")
        .args(["insert", "--image", &image])
        .arg(&hello)
        .arg("/etc/hello.txt"));
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        &format!("--config.env={}={}", ENV.0, ENV.1),
        &format!("--config.workingdir={WORKDIR}"),
        &format!("--config.user={USER}"),
        "--config.entrypoint=/bin/busybox",
        "--config.cmd=sh",
        "--config.cmd=-c",
        "--config.cmd=echo hi",
    ]));
    layout
}

/// The JSON of a blob in an OCI layout.
#[must_use]
pub fn layout_json(layout: &Path, digest: &str) -> serde_json::Value {
    let bytes = std::fs::read(layout_blob(layout, digest)).expect("blob");
    serde_json::from_slice(&bytes).expect("json blob")
}

/// A blob's file in an OCI layout.
#[must_use]
pub fn layout_blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").expect("sha256 digest"))
}

/// The manifest of the layout's (single-image) `index.json` entry.
#[must_use]
pub fn layout_manifest(layout: &Path) -> (String, serde_json::Value) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
            .expect("index json");
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("a manifest")
        .to_string();
    let m = layout_json(layout, &digest);
    (digest, m)
}

/// Flips one byte in the middle of a file.
pub fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(path, bytes).expect("write");
}

/// Cuts a file to half its length.
pub fn truncate_half(path: &Path) {
    let len = std::fs::metadata(path).expect("meta").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    f.set_len(len / 2).expect("truncate");
}

/// Files under a blob dir whose name starts with `.tmp-` (what a failed
/// fetch must not leave).
#[must_use]
pub fn temp_files(blobs: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(blobs.join("sha256"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(".tmp-"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A tar file at `path` holding `files` (name, contents).
pub fn write_tar(path: &Path, files: &[(&str, &[u8])]) {
    let f = std::fs::File::create(path).expect("create tar");
    let mut b = tar::Builder::new(f);
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).expect("append");
    }
    b.finish().expect("finish tar");
}

/// Lower-case hex sha256 of `bytes`.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes a blob into an OCI layout; returns its digest.
pub fn write_blob(layout: &Path, bytes: &[u8]) -> String {
    let digest = format!("sha256:{}", sha256_hex(bytes));
    std::fs::write(layout_blob(layout, &digest), bytes).expect("write blob");
    digest
}

/// Writes the layout's manifest again with its config's `architecture`
/// set to `arch` (new config and manifest blobs, as a real image for that
/// architecture would have); returns the new manifest's digest and size.
pub fn manifest_for_arch(layout: &Path, arch: &str) -> (String, usize) {
    let (_, mut manifest) = layout_manifest(layout);
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .expect("config")
        .to_string();
    let mut config = layout_json(layout, &config_digest);
    config["architecture"] = arch.into();
    let config_bytes = serde_json::to_vec(&config).expect("json");
    manifest["config"]["digest"] = write_blob(layout, &config_bytes).into();
    manifest["config"]["size"] = config_bytes.len().into();
    let manifest_bytes = serde_json::to_vec(&manifest).expect("json");
    (write_blob(layout, &manifest_bytes), manifest_bytes.len())
}

/// Points the layout's `test` tag at an image index of the given
/// architectures (`"amd64"` etc.; each a copy of the image whose config
/// says that architecture). Returns the index digest.
pub fn make_index(layout: &Path, archs: &[&str]) -> String {
    let manifests: Vec<serde_json::Value> = archs
        .iter()
        .map(|arch| {
            let (digest, size) = manifest_for_arch(layout, arch);
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest, "size": size,
                "platform": {"os": "linux", "architecture": arch},
            })
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let bytes = serde_json::to_vec(&index).expect("json");
    let digest = write_blob(layout, &bytes);
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest, "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "test"},
        }],
    });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&top).expect("json"),
    )
    .expect("write index.json");
    digest
}
