//! Fetching from a real registry (Debian's docker-registry on 127.0.0.1):
//! anonymous and basic auth, plain HTTP with and without `insecure`,
//! blob reuse, corrupt and truncated blobs served by the registry.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};

use bhatti_oci::fetch::{Auth, ErrorClass, FetchError, FetchOptions, fetch};
use bhatti_oci::{Event, Fetched, Limits, Progress, Source, no_progress};
use support::{ENV, Registry, USER, WORKDIR};

const TOOLS: [&str; 4] = [
    "umoci",
    "skopeo",
    "/usr/bin/docker-registry",
    support::BUSYBOX,
];

fn insecure() -> FetchOptions {
    FetchOptions {
        insecure: true,
        ..FetchOptions::default()
    }
}

async fn get(
    reg: &Registry,
    repo: &str,
    opts: &FetchOptions,
    blobs: &Path,
) -> Result<Fetched, FetchError> {
    get_with(reg, repo, opts, blobs, Limits::default(), no_progress()).await
}

async fn get_with(
    reg: &Registry,
    repo: &str,
    opts: &FetchOptions,
    blobs: &Path,
    limits: Limits,
    progress: Progress,
) -> Result<Fetched, FetchError> {
    let source = Source::parse(&format!("{}/{repo}", reg.addr)).expect("source");
    fetch(&source, opts, blobs, limits, progress).await
}

/// A registry holding the test image as `test/busybox:1`, and the layout
/// it came from.
fn registry_with_image(tmp: &Path, creds: Option<(&str, &str)>) -> (Registry, std::path::PathBuf) {
    let reg = Registry::start(creds);
    let layout = support::build_image(tmp);
    reg.push(&layout, "test/busybox:1", creds);
    (reg, layout)
}

// The daemon's kind of runtime (blobs are kept with block_in_place).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_fetch_verifies_and_reuses_blobs() {
    if !support::tools(&TOOLS) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let (reg, _layout) = registry_with_image(tmp.path(), None);
    let blobs = tmp.path().join("blobs");
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let progress: Progress = Arc::new(move |e| sink.lock().expect("lock").push(e));
    let f = get_with(
        &reg,
        "test/busybox:1",
        &insecure(),
        &blobs,
        Limits::default(),
        progress,
    )
    .await
    .expect("fetch");
    let d = &f.defaults;
    assert_eq!(d.env.last(), Some(&(ENV.0.to_string(), ENV.1.to_string())));
    assert_eq!(
        (d.working_dir.as_deref(), d.user.as_deref()),
        (Some(WORKDIR), Some(USER))
    );
    assert_eq!((d.entrypoint.len(), d.cmd.len()), (1, 3));
    assert_eq!(f.layers.len(), 2);
    for l in &f.layers {
        let bytes = std::fs::read(&l.path).expect("layer");
        assert_eq!(bytes.len() as u64, l.size);
        assert!(l.path.ends_with(&l.digest[7..]));
    }
    assert!(f.manifest_digest.is_some());
    let events = events.lock().expect("lock").clone();
    assert!(
        events.contains(&Event::Phase("fetching".into())),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(e, Event::Bytes { .. })),
        "{events:?}"
    );
    // Again: the same image, its layers not written again.
    let inode =
        |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).expect("meta"));
    let before: Vec<u64> = f.layers.iter().map(|l| inode(&l.path)).collect();
    let again = get(&reg, "test/busybox:1", &insecure(), &blobs)
        .await
        .expect("again");
    assert_eq!(again, f);
    let after: Vec<u64> = again.layers.iter().map(|l| inode(&l.path)).collect();
    assert_eq!(before, after);
    // By digest, the same content.
    let pinned = format!(
        "test/busybox@{}",
        f.manifest_digest.as_deref().expect("digest")
    );
    assert_eq!(
        get(&reg, &pinned, &insecure(), &blobs)
            .await
            .expect("pinned")
            .id,
        f.id
    );
    let e = get(&reg, "test/busybox:nope", &insecure(), &blobs)
        .await
        .expect_err("no tag");
    assert_eq!(e.status_class(), ErrorClass::NotFound, "{e}");
}

#[tokio::test]
async fn plain_http_registry_needs_insecure() {
    if !support::tools(&TOOLS) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::start(None);
    let blobs = tmp.path().join("blobs");
    let e = get(&reg, "test/busybox:1", &FetchOptions::default(), &blobs)
        .await
        .expect_err("https to a plain-HTTP registry");
    assert_eq!(e.status_class(), ErrorClass::Upstream, "{e}");
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(
        msg.contains(&reg.addr) && msg.contains("--insecure"),
        "{msg}"
    );
    // Nothing listening: no hint that --insecure would help.
    let addr = reg.addr.clone();
    drop(reg);
    let source = Source::parse(&format!("{addr}/test/busybox:1")).expect("source");
    let e = fetch(
        &source,
        &insecure(),
        &blobs,
        Limits::default(),
        no_progress(),
    )
    .await
    .expect_err("nothing listening");
    eprintln!("{e}");
    assert_eq!(e.status_class(), ErrorClass::Upstream, "{e}");
    assert!(
        e.to_string().contains(&addr) && !e.to_string().contains("--insecure"),
        "{e}"
    );
}

#[tokio::test]
async fn basic_auth() {
    if !support::tools(&TOOLS) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let (reg, _) = registry_with_image(tmp.path(), Some(("alice", "s3cret")));
    let blobs = tmp.path().join("blobs");
    let with = |password: &str| FetchOptions {
        auth: Some(Auth::Basic {
            username: "alice".into(),
            password: password.into(),
        }),
        ..insecure()
    };
    let f = get(&reg, "test/busybox:1", &with("s3cret"), &blobs)
        .await
        .expect("right password");
    assert_eq!(f.layers.len(), 2);
    let bearer = FetchOptions {
        auth: Some(Auth::Bearer("not-a-token".into())),
        ..insecure()
    };
    for opts in [with("wrong"), insecure(), bearer] {
        let e = get(&reg, "test/busybox:1", &opts, &blobs)
            .await
            .expect_err("refused");
        assert_eq!(e.status_class(), ErrorClass::Unauthorized, "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "registry {} answered 401 for test/busybox: the credentials are wrong, missing, or do not grant pull on it (check --username/--password)",
                reg.addr
            )
        );
    }
}

#[tokio::test]
async fn corrupt_and_truncated_blobs_from_the_registry() {
    if !support::tools(&TOOLS) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let (reg, layout) = registry_with_image(tmp.path(), None);
    let (_, manifest) = support::layout_manifest(&layout);
    let big = manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .to_string();
    let small = manifest["layers"][1]["digest"]
        .as_str()
        .expect("layer")
        .to_string();
    let blobs = tmp.path().join("blobs");

    let limits = Limits {
        max_layer_bytes: 64 << 10,
        ..Limits::default()
    };
    let e = get_with(
        &reg,
        "test/busybox:1",
        &insecure(),
        &blobs,
        limits,
        no_progress(),
    )
    .await
    .expect_err("over the limit");
    eprintln!("{e}");
    assert_eq!(e.status_class(), ErrorClass::TooLarge, "{e}");

    support::flip_byte(&reg.blob_file(&big));
    let e = get(&reg, "test/busybox:1", &insecure(), &blobs)
        .await
        .expect_err("corrupt");
    eprintln!("{e}");
    assert!(matches!(e, FetchError::Corrupt { remote: true, .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("layer {big} is corrupt: expected digest {big}")),
        "{e}"
    );
    assert_eq!(e.status_class(), ErrorClass::Upstream);
    support::flip_byte(&reg.blob_file(&big)); // mended

    assert!(support::temp_files(&blobs).is_empty());
    // A fresh blob dir: the good small layer of the try before is kept.
    let blobs = tmp.path().join("blobs2");
    support::truncate_half(&reg.blob_file(&small));
    let e = get(&reg, "test/busybox:1", &insecure(), &blobs)
        .await
        .expect_err("truncated");
    eprintln!("{e}");
    assert!(
        matches!(e, FetchError::Truncated { remote: true, .. }),
        "{e}"
    );
    assert!(e.to_string().contains(&small), "{e}");
    assert!(
        support::temp_files(&blobs).is_empty(),
        "{:?}",
        support::temp_files(&blobs)
    );
    assert!(!blobs.join("sha256").join(&small[7..]).exists());
}

#[tokio::test]
async fn docker_v2s2_and_a_manifest_list() {
    if !support::tools(&TOOLS) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::start(None);
    let layout = support::build_image(tmp.path());
    let from = format!("oci:{}:test", layout.display());
    support::run(std::process::Command::new("skopeo").args([
        "--insecure-policy",
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--format=v2s2",
        &from,
        &format!("docker://{}/test/v2s2:1", reg.addr),
    ]));
    let blobs = tmp.path().join("blobs");
    let f = get(&reg, "test/v2s2:1", &insecure(), &blobs)
        .await
        .expect("v2s2");
    assert_eq!(f.defaults.user.as_deref(), Some(USER));
    let docker_gzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    assert!(
        f.layers.iter().all(|l| l.media_type == docker_gzip),
        "{:?}",
        f.layers
    );

    support::make_index(&layout, &["arm64", "amd64", "s390x"]);
    support::run(std::process::Command::new("skopeo").args([
        "--insecure-policy",
        "copy",
        "--quiet",
        "--all",
        "--dest-tls-verify=false",
        &from,
        &format!("docker://{}/test/multi:1", reg.addr),
    ]));
    let on = |arch: &str| FetchOptions {
        platform: bhatti_oci::fetch::Platform::linux(arch),
        ..insecure()
    };
    let amd64 = get(&reg, "test/multi:1", &on("amd64"), &blobs)
        .await
        .expect("amd64");
    let s390x = get(&reg, "test/multi:1", &on("s390x"), &blobs)
        .await
        .expect("s390x");
    assert_ne!(amd64.id, s390x.id);
    assert_eq!(amd64.layers, s390x.layers, "the copies share their layers");
    let e = get(&reg, "test/multi:1", &on("riscv64"), &blobs)
        .await
        .expect_err("riscv64");
    assert_eq!(
        e.to_string(),
        "no linux/riscv64 image in the index (found linux/arm64, linux/amd64, linux/s390x)"
    );
    assert_eq!(e.status_class(), ErrorClass::BadRequest);
}

#[tokio::test]
async fn self_signed_https_needs_insecure() {
    if !support::tools(&TOOLS) || !support::tools(&["openssl"]) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::start_with(None, true);
    reg.push(&support::build_image(tmp.path()), "test/busybox:1", None);
    let blobs = tmp.path().join("blobs");
    let e = get(&reg, "test/busybox:1", &FetchOptions::default(), &blobs)
        .await
        .expect_err("an unknown certificate");
    eprintln!("{e}");
    assert_eq!(e.status_class(), ErrorClass::Upstream, "{e}");
    assert!(e.to_string().contains("--insecure"), "{e}");
    // insecure: HTTPS without verification (no fallback to plain HTTP
    // needed).
    let f = get(&reg, "test/busybox:1", &insecure(), &blobs)
        .await
        .expect("insecure");
    assert_eq!(f.layers.len(), 2);
}
