//! Images (issue 12) through the API, against real VMs and a real
//! registry (Debian's `docker-registry` on 127.0.0.1, images built with
//! `umoci` and pushed with `skopeo`: [`crate::oci_support`]):
//! - an import from the registry (plain HTTP) runs as a job to `done`; a
//!   sandbox made from the image shows the layers applied (a whiteout
//!   removed a lower file, an opaque directory holds only the upper
//!   layer's files, a hard link shares its inode, a symlink resolves, a
//!   setuid file keeps its mode) and the config's defaults (exec as the
//!   image's non-root `User`, in its `WorkingDir`, with its `Env`; its
//!   `Entrypoint` and `Cmd` ran at boot, in the `WorkingDir`);
//! - a file source in JSON is refused (400): files are uploaded;
//! - deleting an image a sandbox uses is refused (409, naming it);
//! - another user neither sees nor uses it (404, 400), nor its job
//!   (404), and gets their own name for the same content;
//! - hostile uploads, save-as-image and quotas: [`crate::images_more`];
//!   a copied config over other layers: [`crate::images_spoof`].

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bhatti_store::users::Limits;
use libtest_mimic::{Failed, Trial};
use reqwest::Method;
use serde_json::{Value, json};

use crate::oci_support as oci;
use crate::support::{TestDaemon, TestResult, Timers, ensure, eventually, run, trial};

/// Tools the registry trials need.
pub const TOOLS: [&str; 4] = ["umoci", "skopeo", "/usr/bin/docker-registry", oci::BUSYBOX];

pub fn trials() -> Vec<Trial> {
    vec![
        trial(
            "images::import_from_a_registry_and_boot_it",
            import_from_a_registry_and_boot_it,
        ),
        trial(
            "images::hostile_upload_fails_and_writes_nothing",
            crate::images_more::hostile_upload_fails_and_writes_nothing,
        ),
        trial(
            "images::save_a_sandbox_as_an_image_and_quota",
            crate::images_more::save_a_sandbox_as_an_image_and_quota,
        ),
        trial(
            "images::archives_upload_to_one_image",
            crate::images_more::archives_upload_to_one_image,
        ),
        trial(
            "images::registry_credentials_and_errors",
            crate::images_more::registry_credentials_and_errors,
        ),
        trial(
            "images::a_copied_config_does_not_take_the_image_id",
            crate::images_spoof::a_copied_config_does_not_take_the_image_id,
        ),
    ]
}

/// How long an import may take on a loaded host.
pub const IMPORT_WAIT: Duration = Duration::from_secs(600);

/// A tar entry: name, contents (None: a directory), mode, link target
/// (hard link when `hard`).
struct Entry<'a> {
    name: &'a str,
    data: Option<&'a [u8]>,
    mode: u32,
    link: Option<(&'a str, bool)>,
}

fn file<'a>(name: &'a str, data: &'a [u8], mode: u32) -> Entry<'a> {
    Entry {
        name,
        data: Some(data),
        mode,
        link: None,
    }
}

fn dir(name: &str) -> Entry<'_> {
    Entry {
        name,
        data: None,
        mode: 0o755,
        link: None,
    }
}

fn link<'a>(name: &'a str, target: &'a str, hard: bool) -> Entry<'a> {
    Entry {
        name,
        data: Some(b""),
        mode: 0o777,
        link: Some((target, hard)),
    }
}

/// Writes a plain tar of `entries` to `path`.
fn layer(path: &Path, entries: &[Entry<'_>]) -> TestResult {
    let mut b = tar::Builder::new(std::fs::File::create(path)?);
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mode(e.mode);
        h.set_mtime(1_700_000_000);
        let data = e.data.unwrap_or_default();
        match (e.data, e.link) {
            (None, _) => h.set_entry_type(tar::EntryType::Directory),
            (_, Some((target, hard))) => {
                h.set_entry_type(if hard {
                    tar::EntryType::Link
                } else {
                    tar::EntryType::Symlink
                });
                h.set_link_name(target)?;
            }
            _ => h.set_entry_type(tar::EntryType::Regular),
        }
        h.set_size(if e.link.is_some() {
            0
        } else {
            data.len() as u64
        });
        let owner = if e.name == "work" { 1000 } else { 0 };
        h.set_uid(owner);
        h.set_gid(owner);
        b.append_data(
            &mut h,
            e.name,
            if e.link.is_some() { &[][..] } else { data },
        )?;
    }
    b.finish()?;
    Ok(())
}

/// Builds the test image, every layer a tar written here (umoci 0.4.7's
/// `insert` writes a layer without the tar's padding and end blocks,
/// which unpacking rightly refuses as truncated): busybox and
/// `/etc/hello.txt`, a layer of files, one of whiteouts over it, and the
/// config of the OCI crate's test image (Env, WorkingDir, User,
/// Entrypoint), its Cmd writing the directory it ran in to
/// `/tmp/init-ran`. Returns the layout (tag `test`).
pub fn build(dir_: &Path) -> Result<std::path::PathBuf, Failed> {
    let layout = dir_.join("layout");
    let image = format!("{}:test", layout.display());
    oci::run(
        Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout),
    );
    oci::run(Command::new("umoci").args(["new", "--image", &image]));
    let busybox = std::fs::read(oci::BUSYBOX)?;
    let base = dir_.join("base.tar");
    layer(
        &base,
        &[
            dir("bin"),
            file("bin/busybox", &busybox, 0o755),
            link("bin/sh", "busybox", false),
            dir("etc"),
            file("etc/hello.txt", b"hello from the second layer\n", 0o644),
        ],
    )?;
    let lower = dir_.join("lower.tar");
    layer(
        &lower,
        &[
            dir("data"),
            file("data/gone.txt", b"lower\n", 0o644),
            file("data/keep.txt", b"keep\n", 0o644),
            dir("opq"),
            file("opq/lower.txt", b"lower\n", 0o644),
            file("orig.txt", b"linked\n", 0o644),
            link("hard.txt", "orig.txt", true),
            link("sym", "orig.txt", false),
            file("suid", b"#!/bin/sh\n", 0o4755),
            dir("work"),
        ],
    )?;
    let upper = dir_.join("upper.tar");
    layer(
        &upper,
        &[
            file("data/.wh.gone.txt", b"", 0o644),
            file("opq/.wh..wh..opq", b"", 0o644),
            file("opq/upper.txt", b"upper\n", 0o644),
        ],
    )?;
    for l in [&base, &lower, &upper] {
        oci::run(
            Command::new("umoci")
                .args(["raw", "add-layer", "--image", &image])
                .arg(l),
        );
    }
    oci::run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        &format!("--config.env={}={}", oci::ENV.0, oci::ENV.1),
        &format!("--config.workingdir={}", oci::WORKDIR),
        &format!("--config.user={}", oci::USER),
        "--config.entrypoint=/bin/busybox",
        "--config.cmd=sh",
        "--config.cmd=-c",
        "--config.cmd=pwd > /tmp/init-ran",
    ]));
    Ok(layout)
}

/// Polls job `location` (as `key`) until it is no longer running.
pub async fn wait_job(d: &TestDaemon, key: &str, location: &str) -> Result<Value, Failed> {
    eventually(IMPORT_WAIT, || async {
        let v = d.expect(d.req_as(key, Method::GET, location), 200).await?;
        Ok((v["state"] != "running").then_some(v))
    })
    .await
}

/// The job of a 202 answer to an import, and its location (which must
/// name that job).
async fn accepted(resp: reqwest::Response) -> Result<(String, Value), Failed> {
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let v: Value = resp.json().await?;
    ensure(status == 202, || format!("import: {status}: {v}"))?;
    let location = location.ok_or("no Location header")?;
    ensure(
        location == format!("/images/jobs/{}", v["id"].as_str().unwrap_or("")),
        || format!("Location {location} for job {v}"),
    )?;
    Ok((location, v))
}

/// Starts an import as `key`; returns the job's location.
pub async fn start_import(d: &TestDaemon, key: &str, body: &Value) -> Result<String, Failed> {
    let resp = d
        .req_as(key, Method::POST, "/images")
        .json(body)
        .send()
        .await?;
    let (location, v) = accepted(resp).await?;
    ensure(v["state"] == "running", || format!("new job: {v}"))?;
    Ok(location)
}

/// Uploads `body` as a `format` archive named `name`; the finished job.
pub async fn upload(
    d: &TestDaemon,
    format: &str,
    name: &str,
    body: Vec<u8>,
) -> Result<Value, Failed> {
    let resp = d
        .req(
            Method::POST,
            &format!("/images?format={format}&name={name}"),
        )
        .header("content-type", "application/x-tar")
        .body(body)
        .send()
        .await?;
    let (location, _) = accepted(resp).await?;
    wait_job(d, &d.key, &location).await
}

/// `busybox sh -c script` in `sb` as `key`: (exit code, stdout).
pub async fn bsh(d: &TestDaemon, key: &str, sb: &str, script: &str) -> Result<String, Failed> {
    let body = json!({"cmd": ["/bin/busybox", "sh", "-c", script], "timeout_sec": 60});
    let v = d
        .expect(
            d.req_as(key, Method::POST, &format!("/sandboxes/{sb}/exec"))
                .json(&body),
            200,
        )
        .await?;
    ensure(v["exit_code"] == 0, || format!("`{script}`: {v}"))?;
    Ok(v["stdout"].as_str().unwrap_or_default().trim().to_owned())
}

fn import_from_a_registry_and_boot_it() -> TestResult {
    if !oci::tools(&TOOLS) {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let layout = build(tmp.path())?;
    let registry = oci::Registry::start(None);
    registry.push(&layout, "img/app:1", None);
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let source = format!("docker://{}/img/app:1", registry.addr);
        let body = json!({"source": source, "name": "app", "insecure": true});
        let job = wait_job(&d, &d.key, &start_import(&d, &d.key, &body).await?).await?;
        ensure(job["state"] == "done", || format!("job: {job}"))?;
        // The blob cache went with the user's last running import.
        let blobs = d.state.settings.data_dir.join("oci-blobs");
        let cached: Vec<_> = std::fs::read_dir(&blobs)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        ensure(cached.is_empty(), || {
            format!("blob caches left: {cached:?}")
        })?;
        let image = &job["image"];
        ensure(
            image["id"]
                .as_str()
                .is_some_and(|i| i.starts_with("sha256:"))
                && image["name"] == "app"
                && image["config"]["working_dir"] == oci::WORKDIR
                && image["config"]["env"][oci::ENV.0] == oci::ENV.1
                && image["builtin"] == false,
            || format!("image: {image}"),
        )?;
        let list = d.expect(d.req(Method::GET, "/images"), 200).await?;
        let names: Vec<(&str, bool)> = list
            .as_array()
            .ok_or("list")?
            .iter()
            .map(|i| (i["name"].as_str().unwrap_or(""), i["builtin"] == true))
            .collect();
        ensure(
            names.contains(&("app", false)) && names.contains(&("busybox", true)),
            || format!("list: {list}"),
        )?;
        // Files are uploaded, never read from the daemon's host.
        for src in ["oci:/etc", "oci-archive:/etc/passwd", "rootfs:/etc/shadow"] {
            let (s, v) = d
                .call(d.req(Method::POST, "/images").json(&json!({"source": src})))
                .await?;
            ensure(s == 400, || format!("{src}: {s} {v}"))?;
        }
        boot_and_check(&d).await?;
        other_user(&d, &source, &job).await?;
        let (s, v) = d.call(d.req(Method::DELETE, "/sandboxes/s1")).await?;
        ensure(s.is_success(), || format!("destroy s1: {s} {v}"))?;
        eventually(Duration::from_secs(120), || async {
            let (s, _) = d.call(d.req(Method::DELETE, "/images/app")).await?;
            Ok((s == 204).then_some(()))
        })
        .await?;
        d.expect(d.req(Method::GET, "/images/app"), 404).await?;
        d.finish().await
    })
}

/// A sandbox from `app`: the layers and the config's defaults.
async fn boot_and_check(d: &TestDaemon) -> TestResult {
    let body = json!({"name": "s1", "image": "app", "memory_mb": 256});
    let sb = d
        .expect(d.req(Method::POST, "/sandboxes").json(&body), 201)
        .await?;
    ensure(sb["image"] == "app", || format!("sandbox: {sb}"))?;
    let k = &d.key;
    let checks = [
        (
            "test ! -e /data/gone.txt && busybox cat /data/keep.txt",
            "keep",
        ),
        ("busybox ls /opq", "upper.txt"),
        (
            "[ $(busybox stat -c %i /orig.txt) = $(busybox stat -c %i /hard.txt) ] && echo same",
            "same",
        ),
        ("busybox cat /sym", "linked"),
        ("busybox stat -c %a /suid", "4755"),
        ("busybox id -u", "1000"),
        ("pwd", oci::WORKDIR),
        ("echo \"$GREETING\"", oci::ENV.1),
        ("busybox cat /etc/hello.txt", "hello from the second layer"),
    ];
    for (script, want) in checks {
        let got = bsh(d, k, "s1", script).await?;
        ensure(got == want, || {
            format!("`{script}`: {got:?}, want {want:?}")
        })?;
    }
    // The entrypoint and cmd ran at boot, in the working dir.
    eventually(Duration::from_secs(120), || async {
        let out = bsh(d, k, "s1", "busybox cat /tmp/init-ran 2>/dev/null; true").await?;
        Ok((out == oci::WORKDIR).then_some(()))
    })
    .await?;
    // A template names the image too; the image's users are named.
    let t = json!({"name": "t2", "image": "app", "memory_mb": 256});
    d.expect(d.req(Method::POST, "/templates").json(&t), 201)
        .await?;
    let bad = json!({"name": "t3", "image": "nope"});
    d.expect(d.req(Method::POST, "/templates").json(&bad), 400)
        .await?;
    let (s, v) = d.call(d.req(Method::DELETE, "/images/app")).await?;
    ensure(
        s == 409
            && v["error"]
                .as_str()
                .is_some_and(|e| e.contains("sandbox s1") && e.contains("template t2")),
        || format!("delete in use: {s} {v}"),
    )?;
    d.expect(d.req(Method::DELETE, "/templates/t2"), 200)
        .await?;
    Ok(())
}

/// Bob cannot see or use alice's image or job; his own import of the
/// same content is his name for the same image.
async fn other_user(d: &TestDaemon, source: &str, job: &Value) -> TestResult {
    let bob = d.user("bob", Limits::default())?;
    d.expect(d.req_as(&bob, Method::GET, "/images/app"), 404)
        .await?;
    let job_path = format!("/images/jobs/{}", job["id"].as_str().unwrap_or(""));
    d.expect(d.req_as(&bob, Method::GET, &job_path), 404)
        .await?;
    let list = d
        .expect(d.req_as(&bob, Method::GET, "/images"), 200)
        .await?;
    ensure(!list.to_string().contains("\"app\""), || {
        format!("bob's list: {list}")
    })?;
    let body = json!({"name": "b1", "image": "app", "memory_mb": 256});
    d.expect(d.req_as(&bob, Method::POST, "/sandboxes").json(&body), 400)
        .await?;
    let body = json!({"source": source, "name": "mine", "insecure": true});
    let mine = wait_job(d, &bob, &start_import(d, &bob, &body).await?).await?;
    ensure(
        mine["state"] == "done" && mine["image"]["id"] == job["image"]["id"],
        || format!("bob's job: {mine}"),
    )?;
    d.expect(d.req_as(&bob, Method::DELETE, "/images/mine"), 204)
        .await?;
    // Alice's name still has the image.
    d.expect(d.req(Method::GET, "/images/app"), 200).await?;
    Ok(())
}
