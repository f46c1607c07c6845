//! Random layers of files, directories, symlinks (to `..`, `/`, the host's
//! `/etc`, the sentinel directory's absolute path), hard links, FIFOs,
//! whiteouts and opaque markers, with names holding `..` and `.`: unpack
//! may refuse them, but never panics and never writes outside the root.

#[path = "unpack/support.rs"]
mod support;

use proptest::prelude::*;
use support::{Pack, Scratch, Tar, exists};
use tar::EntryType;

/// Stands for the sentinel directory's absolute path in a symlink target.
const SENTINEL: &str = "@sentinel";

#[derive(Debug, Clone)]
enum Op {
    File(String),
    Dir(String),
    Symlink(String, String),
    Hardlink(String, String),
    Fifo(String),
    Whiteout(String),
    Opaque(String),
}

/// A name that stays inside the root lexically (its `..` may still go
/// through symlinks).
fn name() -> impl Strategy<Value = String> {
    let comp = prop_oneof![
        8 => prop::sample::select(vec!["a", "b", "c", "etc"]),
        1 => prop::sample::select(vec!["..", "."]),
    ];
    prop::collection::vec(comp, 1..4)
        .prop_map(|c| c.join("/"))
        .prop_filter("stays in the root, names something", |n| {
            let mut depth = 0i32;
            for c in n.split('/') {
                match c {
                    "." => {}
                    ".." => depth -= 1,
                    _ => depth += 1,
                }
                if depth < 0 {
                    return false;
                }
            }
            depth > 0
        })
}

/// A name that climbs out or is absolute.
fn escape() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["../x", "a/../../x", "/x", "/etc/a"]).prop_map(String::from)
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        name(),
        prop::sample::select(vec![
            "/",
            "/etc",
            "../..",
            "/a/../..",
            SENTINEL,
            "../sentinel"
        ])
        .prop_map(String::from),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => name().prop_map(Op::File),
        2 => name().prop_map(Op::Dir),
        3 => (name(), target()).prop_map(|(n, t)| Op::Symlink(n, t)),
        1 => (name(), name()).prop_map(|(n, t)| Op::Hardlink(n, t)),
        1 => name().prop_map(Op::Fifo),
        1 => name().prop_map(Op::Whiteout),
        1 => name().prop_map(Op::Opaque),
        1 => escape().prop_map(Op::File),
    ]
}

fn layer(ops: &[Op], sentinel: &str) -> Vec<u8> {
    let mut tar = Tar::new();
    for op in ops {
        let h = |kind, mode| Tar::header_of(kind, mode);
        tar = match op {
            Op::File(n) => tar.raw(n.as_bytes(), h(EntryType::Regular, 0o644), b"data"),
            Op::Dir(n) => tar.raw(n.as_bytes(), h(EntryType::Directory, 0o755), b""),
            Op::Symlink(n, t) => {
                let t = t.replace(SENTINEL, sentinel);
                let mut hd = h(EntryType::Symlink, 0o777);
                hd.as_old_mut().linkname[..t.len()].copy_from_slice(t.as_bytes());
                tar.raw(n.as_bytes(), hd, b"")
            }
            Op::Hardlink(n, t) => tar.raw_hardlink(n.as_bytes(), t.as_bytes()),
            Op::Fifo(n) => tar.raw(n.as_bytes(), h(EntryType::Fifo, 0o600), b""),
            Op::Whiteout(n) => {
                let (dir, leaf) = n.rsplit_once('/').unwrap_or(("", n));
                let wh = format!("{dir}/.wh.{leaf}");
                tar.raw(
                    wh.trim_start_matches('/').as_bytes(),
                    h(EntryType::Regular, 0),
                    b"",
                )
            }
            Op::Opaque(n) => {
                let opq = format!("{n}/.wh..wh..opq");
                tar.raw(opq.as_bytes(), h(EntryType::Regular, 0), b"")
            }
        };
    }
    tar.finish()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn random_layers_never_write_outside_the_root(
        layers in prop::collection::vec(prop::collection::vec(op(), 1..10), 1..4)
    ) {
        let mut s = Scratch::new();
        let sentinel = s.sentinel.to_str().expect("utf-8").to_owned();
        let blobs: Vec<_> = layers
            .iter()
            .map(|ops| s.layer(layer(ops, &sentinel), Pack::Plain))
            .collect();
        // Refusing is fine (most errors are the image's); escaping is not.
        if let Err(e) = s.unpack(&blobs) {
            prop_assert!(e.is_client_error(), "{e}");
        }
        s.assert_nothing_outside();
        for host in ["/etc/a", "/etc/b", "/etc/c", "/a", "/b", "/c"] {
            prop_assert!(!exists(std::path::Path::new(host)), "{host} was made");
        }
    }
}
