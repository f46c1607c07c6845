//! Images (issue 12), the rest ([`crate::images`] has the registry):
//! - an uploaded `rootfs` tarball whose names climb out of the root
//!   (`../escape`, …) fails its job with a 4xx-class code (`bad_image`),
//!   and no file of that name appears anywhere under the data dir, nor
//!   is the upload left behind;
//! - a sandbox's disk saved as an image (`POST /sandboxes/{id}/image`)
//!   makes sandboxes with the file written before the save; a snapshot
//!   of one restores naming the image, and the delete names them all;
//! - a user whose storage quota is used up gets 429 for an import and a
//!   save;
//! - `oci-archive` and `docker-archive` uploads (made by `skopeo` from
//!   the registry test's image) import to one content id, stored once and
//!   counted once, and boot;
//! - registry credentials: the right ones import, wrong ones fail the job
//!   with `unauthorized`, a missing tag with `not_found`, a user name
//!   without a password is a 400.

use std::path::Path;

use bhatti_store::users::Limits;
use reqwest::Method;
use serde_json::json;

use crate::images::{TOOLS, bsh, build, start_import, upload, wait_job};
use crate::oci_support as oci;
use crate::support::{TestDaemon, TestResult, Timers, ensure, run};

/// Every file under `dir` called `name`.
fn find_named(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == name) {
            out.push(p.clone());
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(find_named(&p, name));
        }
    }
    out
}

/// A tar whose entries are named `names` verbatim (the tar crate's
/// builder refuses `..`, so the names are written into the header).
fn hostile_tar(names: &[&str]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for name in names {
        let mut h = tar::Header::new_old();
        let data = b"escaped\n";
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, &data[..]).expect("append");
    }
    b.into_inner().expect("tar")
}

pub fn hostile_upload_fails_and_writes_nothing() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let data_dir = d.state.settings.data_dir.clone();
        let body = hostile_tar(&[
            "../escape",
            "../../escape",
            "../../../escape",
            "../../../../escape",
            "../../../../../../../../tmp/escape",
        ]);
        let job = upload(&d, "rootfs", "evil", body).await?;
        ensure(
            job["state"] == "failed" && job["error"]["code"] == "bad_image",
            || format!("hostile job: {job}"),
        )?;
        let escaped = find_named(&data_dir, "escape");
        ensure(escaped.is_empty(), || format!("written: {escaped:?}"))?;
        ensure(!Path::new("/tmp/escape").exists(), || "/tmp/escape".into())?;
        let uploads = find_named(&data_dir, "image-uploads");
        let left: Vec<_> = uploads
            .iter()
            .flat_map(|u| std::fs::read_dir(u).into_iter().flatten().flatten())
            .collect();
        ensure(left.is_empty(), || format!("uploads left: {left:?}"))?;
        d.expect(d.req(Method::GET, "/images/evil"), 404).await?;
        // An unknown format is refused before anything is read.
        let (s, v) = d
            .call(
                d.req(Method::POST, "/images?format=zip&name=z")
                    .body(b"x".to_vec()),
            )
            .await?;
        ensure(s == 400, || format!("format zip: {s} {v}"))?;
        d.finish().await
    })
}

pub fn save_a_sandbox_as_an_image_and_quota() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        d.create("src").await?;
        d.sh("src", "echo saved > /marker && sync").await?;
        let img = d
            .expect(
                d.req(Method::POST, "/sandboxes/src/image")
                    .json(&json!({"name": "saved"})),
                201,
            )
            .await?;
        ensure(
            img["name"] == "saved"
                && img["id"].as_str().is_some_and(|i| i.starts_with("sha256:"))
                && img["source"] == "sandbox:src",
            || format!("saved: {img}"),
        )?;
        // The name is taken now.
        d.expect(
            d.req(Method::POST, "/sandboxes/src/image")
                .json(&json!({"name": "saved"})),
            409,
        )
        .await?;
        let body = json!({"name": "copy", "image": "saved", "memory_mb": 256});
        let sb = d
            .expect(d.req(Method::POST, "/sandboxes").json(&body), 201)
            .await?;
        ensure(sb["image"] == "saved", || format!("copy: {sb}"))?;
        let got = d.sh("copy", "cat /marker").await?;
        ensure(got.trim() == "saved", || format!("marker: {got:?}"))?;
        // A snapshot of it shows the image's name and restores by it too.
        let snap = d
            .expect(
                d.req(Method::POST, "/sandboxes/copy/snapshots")
                    .json(&json!({"name": "snap1"})),
                201,
            )
            .await?;
        ensure(snap["image"] == "saved", || format!("snapshot: {snap}"))?;
        let listed = d.expect(d.req(Method::GET, "/snapshots"), 200).await?;
        ensure(listed[0]["image"] == "saved", || {
            format!("listed: {listed}")
        })?;
        let body = json!({"name": "again", "snapshot": "snap1", "image": "saved"});
        let sb = d
            .expect(d.req(Method::POST, "/sandboxes").json(&body), 201)
            .await?;
        ensure(sb["image"] == "saved", || format!("restored: {sb}"))?;
        let (s, v) = d.call(d.req(Method::DELETE, "/images/saved")).await?;
        ensure(
            s == 409
                && v["error"].as_str().is_some_and(|e| {
                    e.contains("sandbox copy")
                        && e.contains("sandbox again")
                        && e.contains("snapshot snap1")
                }),
            || format!("delete in use: {s} {v}"),
        )?;
        // Built-in tiers cannot be deleted.
        let (s, _) = d.call(d.req(Method::DELETE, "/images/busybox")).await?;
        ensure(s == 400, || format!("delete busybox: {s}"))?;
        quota(&d).await?;
        d.finish().await
    })
}

/// A user with no storage left gets 429 for imports and saves.
async fn quota(d: &TestDaemon) -> TestResult {
    let carol = d.user(
        "carol",
        Limits {
            max_storage_mb: 0,
            ..Limits::default()
        },
    )?;
    let body = json!({"source": "docker://127.0.0.1:1/x/y:1", "insecure": true});
    let (s, v) = d
        .call(d.req_as(&carol, Method::POST, "/images").json(&body))
        .await?;
    ensure(
        s == 429
            && v["error"]
                .as_str()
                .is_some_and(|e| e.contains("storage quota")),
        || format!("import over quota: {s} {v}"),
    )?;
    let (s, v) = d
        .call(
            d.req_as(&carol, Method::POST, "/sandboxes/any/image")
                .json(&json!({"name": "x"})),
        )
        .await?;
    ensure(s == 429, || format!("save over quota: {s} {v}"))?;
    Ok(())
}

pub fn archives_upload_to_one_image() -> TestResult {
    if !oci::tools(&TOOLS) {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let layout = build(tmp.path())?;
    let (oa, da) = (tmp.path().join("oci.tar"), tmp.path().join("docker.tar"));
    let from = format!("oci:{}:test", layout.display());
    oci::skopeo_copy(&from, &format!("oci-archive:{}", oa.display()), None);
    oci::skopeo_copy(
        &from,
        &format!("docker-archive:{}:app:1", da.display()),
        None,
    );
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let a = upload(&d, "oci-archive", "a", tokio::fs::read(&oa).await?).await?;
        let b = upload(&d, "docker-archive", "b", tokio::fs::read(&da).await?).await?;
        ensure(a["state"] == "done" && b["state"] == "done", || {
            format!("jobs: {a} {b}")
        })?;
        ensure(a["image"]["id"] == b["image"]["id"], || {
            format!("ids differ: {a} {b}")
        })?;
        ensure(a["image"]["source"] == "upload:oci-archive", || {
            format!("{a}")
        })?;
        let body = json!({"name": "u1", "image": "b", "memory_mb": 256});
        d.expect(d.req(Method::POST, "/sandboxes").json(&body), 201)
            .await?;
        let got = bsh(
            &d,
            &d.key,
            "u1",
            "busybox cat /data/keep.txt; busybox id -u",
        )
        .await?;
        ensure(got == "keep\n1000", || format!("u1: {got:?}"))?;
        // Deleting one name keeps the image for the other.
        d.expect(d.req(Method::DELETE, "/images/a"), 204).await?;
        d.expect(d.req(Method::GET, "/images/b"), 200).await?;
        d.finish().await
    })
}

pub fn registry_credentials_and_errors() -> TestResult {
    if !oci::tools(&TOOLS) {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let layout = build(tmp.path())?;
    let creds = ("puller", "s3cret");
    let registry = oci::Registry::start(Some(creds));
    registry.push(&layout, "priv/app:1", Some(creds));
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let source = format!("docker://{}/priv/app:1", registry.addr);
        let job = |name: &str, user: &str, pass: &str, source: &str| {
            json!({"source": source, "name": name, "insecure": true,
                   "username": user, "password": pass})
        };
        let k = d.key.clone();
        let bad = job("bad", creds.0, "wrong", &source);
        let v = wait_job(&d, &k, &start_import(&d, &k, &bad).await?).await?;
        ensure(
            v["state"] == "failed" && v["error"]["code"] == "unauthorized",
            || format!("wrong password: {v}"),
        )?;
        let missing = job("missing", creds.0, creds.1, &format!("{source}-nope"));
        let v = wait_job(&d, &k, &start_import(&d, &k, &missing).await?).await?;
        ensure(
            v["state"] == "failed" && v["error"]["code"] == "not_found",
            || format!("missing tag: {v}"),
        )?;
        let good = job("good", creds.0, creds.1, &source);
        let v = wait_job(&d, &k, &start_import(&d, &k, &good).await?).await?;
        ensure(v["state"] == "done", || format!("right password: {v}"))?;
        let half = json!({"source": source, "username": "x"});
        d.expect(d.req(Method::POST, "/images").json(&half), 400)
            .await?;
        d.finish().await
    })
}
