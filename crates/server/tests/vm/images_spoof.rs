//! An image is stored, and shared between users, under its config's
//! digest, so the config must pin the layers (`rootfs.diff_ids`):
//! - an archive that carries a real image's config over another layer
//!   (what anyone can make of a public image) fails its import
//!   (`bad_image`) and stores nothing under the real image's id;
//! - the real image then imports; the spoof imported after it fails all
//!   the same (the content is checked even when the engine has the id:
//!   a config alone gets no one an image), and the real image keeps its
//!   content.

use std::path::Path;

use reqwest::Method;
use serde_json::json;

use crate::images::{TOOLS, bsh, build, upload};
use crate::oci_support as oci;
use crate::support::{TestDaemon, TestResult, Timers, ensure, run};

/// A copy of `layout` at `to` whose manifest's last layer is replaced by
/// a plain tar holding `/data/keep.txt` = `evil`, its config unchanged.
fn spoof(layout: &Path, to: &Path) -> TestResult {
    oci::run(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(layout)
            .arg(to),
    );
    let evil = to.join("evil.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&evil)?);
    let mut h = tar::Header::new_ustar();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(&mut h, "data/keep.txt", &b"evil\n"[..])?;
    b.finish()?;
    drop(b);
    let digest = oci::write_blob(to, &std::fs::read(&evil)?);
    std::fs::remove_file(&evil)?;
    let (_, mut manifest) = oci::layout_manifest(to);
    let layers = manifest["layers"].as_array_mut().ok_or("layers")?;
    let last = layers.last_mut().ok_or("a layer")?;
    last["digest"] = digest.clone().into();
    last["size"] = std::fs::metadata(oci::layout_blob(to, &digest))?
        .len()
        .into();
    last["mediaType"] = "application/vnd.oci.image.layer.v1.tar".into();
    let bytes = serde_json::to_vec(&manifest)?;
    let m = oci::write_blob(to, &bytes);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": m, "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "test"},
        }],
    });
    std::fs::write(to.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(())
}

/// An oci-archive (a tar of the layout) of `layout`, as bytes.
fn archive(layout: &Path) -> Result<Vec<u8>, libtest_mimic::Failed> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", layout)?;
    Ok(b.into_inner()?)
}

pub fn a_copied_config_does_not_take_the_image_id() -> TestResult {
    if !oci::tools(&TOOLS) {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let real = build(tmp.path())?;
    let fake = tmp.path().join("fake");
    spoof(&real, &fake)?;
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let v = upload(&d, "oci-archive", "fake", archive(&fake)?).await?;
        ensure(
            v["state"] == "failed" && v["error"]["code"] == "bad_image",
            || format!("spoof first: {v}"),
        )?;
        let r = upload(&d, "oci-archive", "real", archive(&real)?).await?;
        ensure(r["state"] == "done", || format!("real: {r}"))?;
        // The engine has the id now: the spoof still fails (the content
        // is checked whatever the engine has), the real image stays.
        let v = upload(&d, "oci-archive", "fake", archive(&fake)?).await?;
        ensure(
            v["state"] == "failed" && v["error"]["code"] == "bad_image",
            || format!("spoof after: {v}"),
        )?;
        let body = json!({"name": "f1", "image": "real", "memory_mb": 256});
        d.expect(d.req(Method::POST, "/sandboxes").json(&body), 201)
            .await?;
        let got = bsh(&d, &d.key, "f1", "busybox cat /data/keep.txt").await?;
        ensure(got == "keep", || format!("content: {got:?}"))?;
        d.finish().await
    })
}
