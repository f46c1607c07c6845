//! `unpack` across layers: whiteouts, opaque directories, directory
//! times, diff_ids, compressions, progress, the byte budget, and whose
//! fault an error is.

#[path = "unpack/support.rs"]
mod support;

use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};

use bhatti_oci::unpack::{Budget, apply_layer, unpack};
use bhatti_oci::{Event, Limits};
use support::{MTIME, Pack, Scratch, Tar, exists, names};

#[test]
fn whiteouts_remove_lower_files_and_directories() {
    let mut s = Scratch::new();
    let lower = Tar::new()
        .file("a/file", b"1")
        .file("a/other", b"2")
        .file("d/sub/x", b"3")
        .file("top", b"4")
        .finish();
    let upper = Tar::new()
        .whiteout("a", "file")
        .whiteout("", "d")
        .whiteout("", "top")
        .whiteout("", "never-existed")
        .file("new", b"written and whited out in the same layer")
        .whiteout("", "new")
        .finish();
    let layers = [s.layer(lower, Pack::Plain), s.layer(upper, Pack::Plain)];
    let stats = s.unpack(&layers).expect("unpack");
    assert_eq!(stats.whiteouts, 5);
    assert_eq!(names(&s.root), ["a", "new"]);
    assert_eq!(names(&s.path("a")), ["other"]);
}

#[test]
fn opaque_directories_hide_lower_content_but_keep_their_own_layer() {
    let mut s = Scratch::new();
    let lower = Tar::new()
        .file("o/old", b"lower")
        .file("o/sub/old2", b"lower")
        .file("p/old", b"lower")
        .file("keep/me", b"other dir")
        .finish();
    // The marker after the layer's own entries in `o`, before them in `p`.
    let upper = Tar::new()
        .dir("o", 0o755)
        .file("o/new", b"upper")
        .file("o/sub/new2", b"upper")
        .opaque("o")
        .opaque("p")
        .file("p/new", b"upper")
        .finish();
    let layers = [s.layer(lower, Pack::Gzip), s.layer(upper, Pack::Gzip)];
    s.unpack(&layers).expect("unpack");
    assert_eq!(names(&s.path("o")), ["new", "sub"]);
    assert_eq!(names(&s.path("o/sub")), ["new2"]);
    assert_eq!(names(&s.path("p")), ["new"]);
    assert_eq!(names(&s.path("keep")), ["me"]);
    assert!(!exists(&s.path("o/.wh..wh..opq")));
}

#[test]
fn compressions_by_media_type_and_by_magic() {
    for pack in [Pack::Plain, Pack::Gzip, Pack::Zstd, Pack::GzipAsTar] {
        let mut s = Scratch::new();
        let tar = Tar::new().file("f", &vec![7u8; 3 << 20]).finish();
        let l1 = s.layer(tar, pack);
        let size = l1.size;
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let progress: bhatti_oci::Progress = Arc::new(move |e| sink.lock().expect("lock").push(e));
        let stats = unpack(
            std::slice::from_ref(&l1),
            &s.root,
            Limits::default(),
            &progress,
        )
        .expect("unpack");
        assert_eq!(stats.bytes, 3 << 20, "{pack:?}");
        assert_eq!(std::fs::read(s.path("f")).expect("f").len(), 3 << 20);
        let events = events.lock().expect("lock");
        assert_eq!(events.first(), Some(&Event::Phase("unpacking".into())));
        let last = Event::Bytes {
            what: l1.digest.clone(),
            done: size,
            total: size,
        };
        assert_eq!(events.last(), Some(&last), "{pack:?}");
    }
}

#[test]
fn apply_layer_takes_a_plain_stream_and_a_shared_budget() {
    let s = Scratch::new();
    let one = Tar::new().file("a", &[1u8; 600]).finish();
    let two = Tar::new().file("b", &[2u8; 600]).finish();
    let mut budget = Budget::new(1000);
    let stats = apply_layer(&one[..], &s.root, &mut budget).expect("first");
    assert_eq!((stats.files, budget.used()), (1, 600));
    let err = apply_layer(&two[..], &s.root, &mut budget).expect_err("over budget");
    assert_eq!(err.class(), bhatti_oci::unpack::ErrorClass::TooLarge);
    assert!(!exists(&s.path("b")), "refused before it was written");
}

#[test]
fn diff_ids_are_checked_on_the_uncompressed_stream() {
    use bhatti_oci::unpack::{UnpackError, unpack_verified};
    use sha2::{Digest, Sha256};
    let diff_id = |tar: &[u8]| format!("sha256:{:x}", Sha256::digest(tar));
    let no = bhatti_oci::no_progress();
    let mut s = Scratch::new();
    let (one, two) = (
        Tar::new().file("a", b"1").finish(),
        Tar::new().file("b", b"2").finish(),
    );
    let ids = [diff_id(&one), diff_id(&two)];
    let layers = [s.layer(one, Pack::Gzip), s.layer(two, Pack::Zstd)];
    let stats = unpack_verified(&layers, &ids, &s.root, Limits::default(), &no).expect("match");
    assert_eq!(stats.files, 2);

    let swapped = [ids[1].clone(), ids[0].clone()];
    let err =
        unpack_verified(&layers, &swapped, &s.root, Limits::default(), &no).expect_err("mismatch");
    assert!(matches!(err, UnpackError::DiffId { .. }), "{err}");
    assert!(err.to_string().starts_with("layer 1 (sha256:"), "{err}");
    assert!(err.is_client_error());

    let err =
        unpack_verified(&layers, &ids[..1], &s.root, Limits::default(), &no).expect_err("count");
    assert!(
        matches!(
            err,
            UnpackError::DiffIdCount {
                layers: 2,
                diff_ids: 1
            }
        ),
        "{err}"
    );
}

#[test]
fn directories_changed_without_an_entry_keep_their_times() {
    let mut s = Scratch::new();
    let lower = Tar::new()
        .dir("./", 0o755)
        .dir("keep", 0o755)
        .file("keep/a", b"a")
        .dir("opq", 0o755)
        .file("opq/old", b"old")
        .finish();
    let upper = Tar::new()
        .file("keep/b", b"b")
        .whiteout("keep", "a")
        .opaque("opq")
        .file("top", b"at the root")
        .finish();
    let layers = [s.layer(lower, Pack::Plain), s.layer(upper, Pack::Plain)];
    s.unpack(&layers).expect("unpack");
    assert_eq!(names(&s.path("keep")), ["b"]);
    for dir in ["keep", "opq", ""] {
        let m = std::fs::symlink_metadata(s.path(dir)).expect("dir");
        assert_eq!(m.mtime(), MTIME as i64, "`{dir}`");
    }
}

#[test]
fn failures_on_our_side_are_internal() {
    use bhatti_oci::unpack::{ApplyError, ErrorClass, UnpackError};
    let s = Scratch::new();
    let layer = |path: std::path::PathBuf| bhatti_oci::Layer {
        path,
        digest: "sha256:00".into(),
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        size: 0,
    };
    // A blob that cannot be read (a directory: EISDIR) is not a corrupt image.
    let err = s
        .unpack(&[layer(s.sentinel.clone())])
        .expect_err("unreadable");
    assert!(
        matches!(
            &err,
            UnpackError::Layer {
                source: ApplyError::Read { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Internal);
    let err = s
        .unpack(&[layer(s.dir.path().join("gone"))])
        .expect_err("missing");
    assert!(matches!(err, UnpackError::Blob { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Internal);
}
