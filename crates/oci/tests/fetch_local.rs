//! Fetching from local sources: `oci:` layouts, `oci-archive:`,
//! `docker-archive:` and `rootfs:`, built with umoci and skopeo from
//! busybox; corrupt, truncated, oversized and foreign-platform images.

mod support;

use std::path::Path;

use bhatti_oci::fetch::{ErrorClass, FetchError, FetchOptions, Platform, fetch};
use bhatti_oci::{Fetched, Limits, Source, no_progress};
use support::{ENV, USER, WORKDIR};

const TOOLS: [&str; 3] = ["umoci", "skopeo", support::BUSYBOX];

async fn get(source: &str, blobs: &Path) -> Result<Fetched, FetchError> {
    get_with(source, blobs, Limits::default(), &FetchOptions::default()).await
}

async fn get_with(
    source: &str,
    blobs: &Path,
    limits: Limits,
    opts: &FetchOptions,
) -> Result<Fetched, FetchError> {
    let source = Source::parse(source).expect("source parses");
    fetch(&source, opts, blobs, limits, no_progress()).await
}

/// Checks a fetched busybox test image: defaults, two layers on disk
/// with the sizes and digests they claim.
fn check_image(f: &Fetched) {
    let d = &f.defaults;
    assert_eq!(d.env.last(), Some(&(ENV.0.to_string(), ENV.1.to_string())));
    assert_eq!(d.working_dir.as_deref(), Some(WORKDIR));
    assert_eq!(d.user.as_deref(), Some(USER));
    assert_eq!(d.entrypoint, ["/bin/busybox"]);
    assert_eq!(d.cmd, ["sh", "-c", "echo hi"]);
    assert_eq!(f.layers.len(), 2, "{:?}", f.layers);
    for l in &f.layers {
        let bytes = std::fs::read(&l.path).expect("layer on disk");
        assert_eq!(bytes.len() as u64, l.size);
        let sum = sha256_hex(&bytes);
        assert_eq!(format!("sha256:{sum}"), l.digest);
        assert!(l.path.ends_with(&sum), "{}", l.path.display());
        assert!(l.media_type.contains("tar"), "{}", l.media_type);
    }
    assert!(f.id.starts_with("sha256:"), "{}", f.id);
}

use support::sha256_hex;

#[tokio::test]
async fn oci_layout_with_and_without_tag() {
    if !support::tools(&TOOLS) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = support::build_image(tmp.path());
    let blobs = tmp.path().join("blobs");
    let tagged = get(&format!("oci:{}:test", layout.display()), &blobs)
        .await
        .expect("fetch");
    check_image(&tagged);
    let (manifest_digest, manifest) = support::layout_manifest(&layout);
    assert_eq!(
        tagged.manifest_digest.as_deref(),
        Some(manifest_digest.as_str())
    );
    assert_eq!(
        manifest["config"]["digest"].as_str(),
        Some(tagged.id.as_str())
    );
    // The only image: no tag needed; same content, same id, blobs reused.
    let before = std::fs::metadata(&tagged.layers[0].path)
        .expect("meta")
        .modified()
        .ok();
    let untagged = get(&format!("oci:{}", layout.display()), &blobs)
        .await
        .expect("fetch");
    assert_eq!(untagged, tagged);
    let after = std::fs::metadata(&untagged.layers[0].path)
        .expect("meta")
        .modified()
        .ok();
    assert_eq!(
        before, after,
        "an existing blob is reused, not written again"
    );
    let e = get(&format!("oci:{}:nope", layout.display()), &blobs)
        .await
        .expect_err("no tag");
    assert_eq!(e.status_class(), ErrorClass::NotFound, "{e}");
    assert!(
        e.to_string().contains("\"nope\"") && e.to_string().contains("test"),
        "{e}"
    );
}

#[tokio::test]
async fn oci_archive_and_docker_archive() {
    if !support::tools(&TOOLS) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = support::build_image(tmp.path());
    let from = format!("oci:{}:test", layout.display());
    let oci_tar = tmp.path().join("image.oci.tar");
    let docker_tar = tmp.path().join("image.docker.tar");
    support::skopeo_copy(&from, &format!("oci-archive:{}", oci_tar.display()), None);
    support::skopeo_copy(
        &from,
        &format!("docker-archive:{}:test/busybox:1", docker_tar.display()),
        None,
    );
    let blobs = tmp.path().join("blobs");
    let from_oci = get(&format!("oci-archive:{}", oci_tar.display()), &blobs)
        .await
        .expect("oci");
    check_image(&from_oci);
    let tagged_tar = tmp.path().join("tagged.oci.tar");
    support::skopeo_copy(
        &from,
        &format!("oci-archive:{}:v1", tagged_tar.display()),
        None,
    );
    let tagged = format!("oci-archive:{}:v1", tagged_tar.display());
    assert_eq!(get(&tagged, &blobs).await.expect("by tag"), from_oci);
    let from_docker = get(&format!("docker-archive:{}", docker_tar.display()), &blobs)
        .await
        .expect("docker");
    check_image(&from_docker);
    assert_eq!(from_docker.manifest_digest, None);
    // The same image by its tag in the archive.
    let named = format!("docker-archive:{}:test/busybox:1", docker_tar.display());
    assert_eq!(get(&named, &blobs).await.expect("by tag"), from_docker);
    let other = format!("docker-archive:{}:other:2", docker_tar.display());
    let e = get(&other, &blobs).await.expect_err("no such tag");
    assert_eq!(e.status_class(), ErrorClass::NotFound, "{e}");
    let missing = format!("oci-archive:{}", tmp.path().join("nope.tar").display());
    let e = get(&missing, &blobs).await.expect_err("no file");
    assert_eq!(e.status_class(), ErrorClass::NotFound, "{e}");
    assert!(support::temp_files(&blobs).is_empty());
}

#[tokio::test]
async fn rootfs_tarball_is_one_layer() {
    let tmp = tempfile::tempdir().expect("tmp");
    let tarball = tmp.path().join("rootfs.tar");
    support::write_tar(
        &tarball,
        &[("etc/hostname", b"box\n"), ("bin/hi", b"#!/bin/sh\n")],
    );
    let blobs = tmp.path().join("blobs");
    let f = get(&format!("rootfs:{}", tarball.display()), &blobs)
        .await
        .expect("rootfs");
    let bytes = std::fs::read(&tarball).expect("read");
    assert_eq!(f.id, format!("sha256:{}", sha256_hex(&bytes)));
    assert_eq!(f.manifest_digest, None);
    assert_eq!(f.defaults, bhatti_oci::ImageDefaults::default());
    assert_eq!(f.layers.len(), 1);
    assert_eq!(f.layers[0].digest, f.id);
    assert_eq!(
        f.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar"
    );
    assert_eq!(std::fs::read(&f.layers[0].path).expect("stored"), bytes);
    // Not a tar: a clear error.
    let junk = tmp.path().join("junk.tar");
    std::fs::write(&junk, vec![b'x'; 2048]).expect("write");
    let e = get(&format!("rootfs:{}", junk.display()), &blobs)
        .await
        .expect_err("junk");
    assert_eq!(e.status_class(), ErrorClass::BadRequest, "{e}");
    assert!(e.to_string().contains("not a tar"), "{e}");
    // Over the layer limit.
    let limits = Limits {
        max_layer_bytes: 1000,
        ..Limits::default()
    };
    let opts = FetchOptions::default();
    let src = format!("rootfs:{}", tarball.display());
    let e = get_with(&src, &blobs, limits, &opts)
        .await
        .expect_err("too big");
    assert_eq!(e.status_class(), ErrorClass::TooLarge, "{e}");
}

/// Points the layout's only `index.json` entry at a copy of the image
/// whose config says linux/s390x, the entry's platform saying so too.
fn make_s390x(layout: &Path) {
    let (digest, size) = support::manifest_for_arch(layout, "s390x");
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).expect("index")).expect("json");
    let entry = &mut index["manifests"][0];
    entry["digest"] = digest.into();
    entry["size"] = size.into();
    entry["platform"] = serde_json::json!({"os": "linux", "architecture": "s390x"});
    std::fs::write(index_path, serde_json::to_vec(&index).expect("json")).expect("write");
}

#[tokio::test]
async fn another_architecture_is_a_clear_error() {
    if !support::tools(&TOOLS) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = support::build_image(tmp.path());
    make_s390x(&layout);
    let blobs = tmp.path().join("blobs");
    let amd64 = FetchOptions {
        platform: Platform::linux("amd64"),
        ..FetchOptions::default()
    };
    let src = format!("oci:{}", layout.display());
    let e = get_with(&src, &blobs, Limits::default(), &amd64)
        .await
        .expect_err("s390x only");
    assert_eq!(e.status_class(), ErrorClass::BadRequest, "{e}");
    assert_eq!(
        e.to_string(),
        "no linux/amd64 image in the index (found linux/s390x)"
    );
    // By tag the entry is taken, and the config's platform still refuses.
    let tagged = format!("{src}:test");
    let e = get_with(&tagged, &blobs, Limits::default(), &amd64)
        .await
        .expect_err("config");
    assert_eq!(
        e.to_string(),
        "the image is for linux/s390x, not linux/amd64"
    );
    // Asked for s390x, it comes.
    let s390x = FetchOptions {
        platform: Platform::linux("s390x"),
        ..FetchOptions::default()
    };
    let f = get_with(&src, &blobs, Limits::default(), &s390x)
        .await
        .expect("s390x");
    assert_eq!(f.layers.len(), 2);
}

#[tokio::test]
async fn corrupt_truncated_and_oversized_layers() {
    if !support::tools(&TOOLS) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = support::build_image(tmp.path());
    let (_, manifest) = support::layout_manifest(&layout);
    let layer = |i: usize| {
        manifest["layers"][i]["digest"]
            .as_str()
            .expect("layer")
            .to_string()
    };
    let (big, small) = (layer(0), layer(1));
    let blobs = tmp.path().join("blobs");
    let src = format!("oci:{}:test", layout.display());

    let limits = Limits {
        max_layer_bytes: 64 << 10,
        ..Limits::default()
    };
    let e = get_with(&src, &blobs, limits, &FetchOptions::default())
        .await
        .expect_err("limit");
    assert_eq!(e.status_class(), ErrorClass::TooLarge, "{e}");
    assert!(
        e.to_string().contains(&big) && e.to_string().contains("over the limit"),
        "{e}"
    );

    support::flip_byte(&support::layout_blob(&layout, &big));
    let e = get(&src, &blobs).await.expect_err("corrupt");
    assert!(
        matches!(e, FetchError::Corrupt { remote: false, .. }),
        "{e}"
    );
    assert!(
        e.to_string().starts_with(&format!(
            "layer {big} is corrupt: expected digest {big}, got sha256:"
        )),
        "{e}"
    );
    assert_eq!(e.status_class(), ErrorClass::BadRequest);

    support::truncate_half(&support::layout_blob(&layout, &small));
    support::flip_byte(&support::layout_blob(&layout, &big)); // mended
    let e = get(&src, &blobs).await.expect_err("truncated");
    assert!(matches!(e, FetchError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
    assert!(
        support::temp_files(&blobs).is_empty(),
        "{:?}",
        support::temp_files(&blobs)
    );
    // Neither bad blob was kept.
    assert!(!blobs.join("sha256").join(&small[7..]).exists());
}

#[tokio::test]
async fn an_index_is_followed_to_the_platform() {
    if !support::tools(&TOOLS) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = support::build_image(tmp.path());
    support::make_index(&layout, &["arm64", "amd64", "s390x"]);
    let blobs = tmp.path().join("blobs");
    let src = format!("oci:{}:test", layout.display());
    let mut ids = Vec::new();
    for arch in ["amd64", "s390x"] {
        let opts = FetchOptions {
            platform: Platform::linux(arch),
            ..FetchOptions::default()
        };
        let f = get_with(&src, &blobs, Limits::default(), &opts)
            .await
            .expect(arch);
        check_image(&f);
        ids.push(f.id);
    }
    assert_ne!(ids[0], ids[1], "each platform has its own config");
    let riscv = FetchOptions {
        platform: Platform::linux("riscv64"),
        ..FetchOptions::default()
    };
    let e = get_with(&src, &blobs, Limits::default(), &riscv)
        .await
        .expect_err("none");
    assert_eq!(
        e.to_string(),
        "no linux/riscv64 image in the index (found linux/arm64, linux/amd64, linux/s390x)"
    );
}

/// Sets the media type of the layout manifest's `i`th layer (a new
/// manifest, the index entry pointing at it).
fn set_layer_type(layout: &Path, i: usize, media_type: &str) {
    let (_, mut manifest) = support::layout_manifest(layout);
    manifest["layers"][i]["mediaType"] = media_type.into();
    let bytes = serde_json::to_vec(&manifest).expect("json");
    let digest = support::write_blob(layout, &bytes);
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).expect("index")).expect("json");
    index["manifests"][0]["digest"] = digest.into();
    index["manifests"][0]["size"] = bytes.len().into();
    std::fs::write(index_path, serde_json::to_vec(&index).expect("json")).expect("write");
}

#[tokio::test]
async fn foreign_layers_and_zstd() {
    if !support::tools(&TOOLS) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = support::build_image(tmp.path());
    let zstd = tmp.path().join("zstd");
    support::run(std::process::Command::new("skopeo").args([
        "--insecure-policy",
        "copy",
        "--quiet",
        "--dest-compress-format=zstd",
        &format!("oci:{}:test", layout.display()),
        &format!("oci:{}:test", zstd.display()),
    ]));
    let blobs = tmp.path().join("blobs");
    let f = get(&format!("oci:{}:test", zstd.display()), &blobs)
        .await
        .expect("zstd");
    check_image(&f);
    assert!(
        f.layers.iter().all(|l| l.media_type.ends_with("+zstd")),
        "{:?}",
        f.layers
    );
    let foreign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    set_layer_type(&layout, 0, foreign);
    let e = get(&format!("oci:{}", layout.display()), &blobs)
        .await
        .expect_err("foreign");
    assert_eq!(e.status_class(), ErrorClass::BadRequest, "{e}");
    assert!(e.to_string().contains("foreign/non-distributable"), "{e}");
}

/// A `docker save` of Docker 25+: an OCI layout plus `manifest.json`
/// whose paths are `blobs/sha256/…`.
#[tokio::test]
async fn docker_archive_in_oci_layout_style() {
    if !support::tools(&TOOLS) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = support::build_image(tmp.path());
    let (_, manifest) = support::layout_manifest(&layout);
    let path =
        |d: &serde_json::Value| format!("blobs/sha256/{}", &d.as_str().expect("digest")[7..]);
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| path(&l["digest"]))
        .collect();
    let docker_manifest = serde_json::json!([{
        "Config": path(&manifest["config"]["digest"]),
        "RepoTags": ["test/busybox:1"],
        "Layers": layers,
    }]);
    std::fs::write(layout.join("manifest.json"), docker_manifest.to_string()).expect("write");
    let tarball = tmp.path().join("save.tar");
    support::run(
        std::process::Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&tarball)
            .arg("."),
    );
    let blobs = tmp.path().join("blobs");
    let f = get(&format!("docker-archive:{}", tarball.display()), &blobs)
        .await
        .expect("save");
    check_image(&f);
    assert_eq!(f.id, manifest["config"]["digest"].as_str().expect("config"));
}
