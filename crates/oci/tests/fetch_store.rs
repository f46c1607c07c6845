//! The blob directory shared between imports (reuse, a stale blob of the
//! wrong size, two fetches at once) and archives whose entry names try
//! to reach outside.

mod support;

use std::path::Path;

use bhatti_oci::fetch::{ErrorClass, FetchError, FetchOptions, fetch};
use bhatti_oci::{Event, Fetched, Limits, Progress, Source, no_progress};

const TOOLS: [&str; 3] = ["umoci", "skopeo", support::BUSYBOX];

async fn get(source: &str, blobs: &Path, progress: Progress) -> Result<Fetched, FetchError> {
    let source = Source::parse(source).expect("source parses");
    let opts = FetchOptions::default();
    fetch(&source, &opts, blobs, Limits::default(), progress).await
}

#[tokio::test]
async fn a_stale_blob_of_the_wrong_size_is_fetched_again() {
    if !support::tools(&TOOLS) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = support::build_image(tmp.path());
    let (_, manifest) = support::layout_manifest(&layout);
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .to_string();
    let blobs = tmp.path().join("blobs");
    let stale = blobs.join("sha256").join(&layer[7..]);
    std::fs::create_dir_all(stale.parent().expect("parent")).expect("mkdir");
    std::fs::write(&stale, b"half a layer").expect("write");
    let f = get(&format!("oci:{}", layout.display()), &blobs, no_progress())
        .await
        .expect("fetch");
    let bytes = std::fs::read(&f.layers[0].path).expect("layer");
    assert_eq!(format!("sha256:{}", support::sha256_hex(&bytes)), layer);
}

#[tokio::test]
async fn two_fetches_of_one_image_at_once() {
    if !support::tools(&TOOLS) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = support::build_image(tmp.path());
    let blobs = tmp.path().join("blobs");
    let src = format!("oci:{}", layout.display());
    let (a, b) = tokio::join!(
        get(&src, &blobs, no_progress()),
        get(&src, &blobs, no_progress())
    );
    assert_eq!(a.expect("first"), b.expect("second"));
    assert!(support::temp_files(&blobs).is_empty());
}

#[tokio::test]
async fn progress_has_phases_and_bytes() {
    if !support::tools(&TOOLS) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = support::build_image(tmp.path());
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&events);
    let progress: Progress = std::sync::Arc::new(move |e| sink.lock().expect("lock").push(e));
    let blobs = tmp.path().join("blobs");
    let f = get(&format!("oci:{}", layout.display()), &blobs, progress)
        .await
        .expect("fetch");
    let events = events.lock().expect("lock").clone();
    assert_eq!(events.first(), Some(&Event::Phase("resolving".into())));
    let fetching = events
        .iter()
        .position(|e| *e == Event::Phase("fetching".into()))
        .expect("a fetching phase");
    for l in &f.layers {
        let done = Event::Bytes {
            what: l.digest.clone(),
            done: l.size,
            total: l.size,
        };
        let at = events.iter().position(|e| *e == done);
        assert!(at.is_some_and(|i| i > fetching), "{done:?} in {events:?}");
    }
}

/// A tar entry with a name the `tar` crate's builder would refuse.
fn append_raw(
    b: &mut tar::Builder<std::fs::File>,
    name: &str,
    kind: tar::EntryType,
    data: &[u8],
    link: Option<&str>,
) {
    let mut h = tar::Header::new_old();
    let raw = h.as_old_mut();
    raw.name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(l) = link {
        raw.linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, data).expect("append");
}

#[tokio::test]
async fn archive_names_never_reach_outside() {
    let tmp = tempfile::tempdir().expect("tmp");
    let blobs = tmp.path().join("blobs");
    // index.json a symlink to a host file: the host file is not read.
    let tarball = tmp.path().join("evil.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tarball).expect("create"));
    append_raw(
        &mut b,
        "index.json",
        tar::EntryType::Symlink,
        b"",
        Some("/etc/hostname"),
    );
    append_raw(
        &mut b,
        "../index.json",
        tar::EntryType::Regular,
        b"{}",
        None,
    );
    b.finish().expect("finish");
    drop(b);
    let e = get(
        &format!("oci-archive:{}", tarball.display()),
        &blobs,
        no_progress(),
    )
    .await
    .expect_err("no index.json inside");
    assert_eq!(e.status_class(), ErrorClass::BadRequest, "{e}");
    assert!(e.to_string().contains("no index.json in it"), "{e}");

    // A docker save whose layer path climbs out: missing, not read.
    let tarball = tmp.path().join("evil-docker.tar");
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
    let manifest = br#"[{"Config":"config.json","Layers":["../../etc/passwd"]}]"#;
    support::write_tar(
        &tarball,
        &[("manifest.json", manifest), ("config.json", config)],
    );
    let e = get(
        &format!("docker-archive:{}", tarball.display()),
        &blobs,
        no_progress(),
    )
    .await
    .expect_err("a layer outside");
    assert!(e.to_string().contains("is missing"), "{e}");
    assert!(support::temp_files(&blobs).is_empty());
}
