//! Layers built with the `tar` crate, written as blob files, and a scratch
//! directory holding the root and a sentinel directory beside it.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use bhatti_oci::unpack::{UnpackError, UnpackStats, unpack};
use bhatti_oci::{Layer, Limits, no_progress};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

pub const MTIME: u64 = 1_600_000_000;

/// How a blob is compressed (and which media type says so).
#[derive(Debug, Clone, Copy)]
pub enum Pack {
    Plain,
    Gzip,
    Zstd,
    /// gzip, under the plain tar media type (sniffed).
    GzipAsTar,
}

/// A tar layer being built.
pub struct Tar(tar::Builder<Vec<u8>>);

impl Default for Tar {
    fn default() -> Self {
        Self::new()
    }
}

impl Tar {
    pub fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }

    fn header(kind: EntryType, mode: u32) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h.set_size(0);
        h
    }

    /// An entry with any name at all (`..`, absolute): the builder's own
    /// path setters refuse those, so the name goes into the header bytes.
    pub fn raw(mut self, name: &[u8], mut h: Header, data: &[u8]) -> Self {
        assert!(name.len() < 100, "raw names are short");
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.0.append(&h, data).expect("append");
        self
    }

    pub fn entry(mut self, path: &str, mut h: Header, data: &[u8]) -> Self {
        h.set_size(data.len() as u64);
        self.0.append_data(&mut h, path, data).expect("append");
        self
    }

    pub fn dir(self, path: &str, mode: u32) -> Self {
        self.entry(path, Self::header(EntryType::Directory, mode), b"")
    }

    pub fn file(self, path: &str, data: &[u8]) -> Self {
        self.file_mode(path, data, 0o644)
    }

    pub fn file_mode(self, path: &str, data: &[u8], mode: u32) -> Self {
        self.entry(path, Self::header(EntryType::Regular, mode), data)
    }

    pub fn file_owned(self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> Self {
        let mut h = Self::header(EntryType::Regular, mode);
        h.set_uid(uid);
        h.set_gid(gid);
        self.entry(path, h, data)
    }

    /// A file with PAX `SCHILY.xattr.*` records.
    pub fn file_xattrs(mut self, path: &str, data: &[u8], xattrs: &[(&str, &[u8])]) -> Self {
        let keys: Vec<String> = xattrs
            .iter()
            .map(|(k, _)| format!("SCHILY.xattr.{k}"))
            .collect();
        let pax = keys
            .iter()
            .map(String::as_str)
            .zip(xattrs.iter().map(|(_, v)| *v));
        self.0.append_pax_extensions(pax).expect("pax");
        let mut h = Self::header(EntryType::Regular, 0o755);
        h.set_size(data.len() as u64);
        self.0.append_data(&mut h, path, data).expect("append");
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(EntryType::Symlink, 0o777);
        self.0.append_link(&mut h, path, target).expect("symlink");
        self
    }

    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(EntryType::Link, 0o644);
        self.0.append_link(&mut h, path, target).expect("hardlink");
        self
    }

    /// A hard link with any target bytes (`..`, absolute).
    pub fn raw_hardlink(self, path: &[u8], target: &[u8]) -> Self {
        let mut h = Self::header(EntryType::Link, 0o644);
        let old = h.as_old_mut();
        old.linkname = [0; 100];
        old.linkname[..target.len()].copy_from_slice(target);
        self.raw(path, h, b"")
    }

    pub fn node(self, path: &str, kind: EntryType, mode: u32, major: u32, minor: u32) -> Self {
        let mut h = Self::header(kind, mode);
        h.set_device_major(major).expect("major");
        h.set_device_minor(minor).expect("minor");
        self.entry(path, h, b"")
    }

    pub fn whiteout(self, dir: &str, name: &str) -> Self {
        let path = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&path, b"")
    }

    pub fn opaque(self, dir: &str) -> Self {
        self.file(&format!("{dir}/.wh..wh..opq"), b"")
    }

    pub fn header_of(kind: EntryType, mode: u32) -> Header {
        Self::header(kind, mode)
    }

    pub fn finish(self) -> Vec<u8> {
        self.0.into_inner().expect("finish")
    }
}

/// A scratch directory: `root/` (the image root), `sentinel/` beside it
/// (holding `keep`), and `blobs/`.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub sentinel: PathBuf,
    blobs: PathBuf,
    count: usize,
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
        let root = dir.path().join("root");
        let sentinel = dir.path().join("sentinel");
        let blobs = dir.path().join("blobs");
        for d in [&root, &sentinel, &blobs] {
            std::fs::create_dir(d).expect("mkdir");
        }
        std::fs::write(sentinel.join("keep"), b"keep").expect("sentinel");
        Self {
            dir,
            root,
            sentinel,
            blobs,
            count: 0,
        }
    }

    /// Write `tar` as a blob file, compressed as `pack` says.
    pub fn layer(&mut self, tar: Vec<u8>, pack: Pack) -> Layer {
        let (bytes, media_type) = match pack {
            Pack::Plain => (tar, "application/vnd.oci.image.layer.v1.tar"),
            Pack::Gzip => (gzip(&tar), "application/vnd.oci.image.layer.v1.tar+gzip"),
            Pack::Zstd => (
                zstd::encode_all(&tar[..], 3).expect("zstd"),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
            Pack::GzipAsTar => (gzip(&tar), "application/vnd.oci.image.layer.v1.tar"),
        };
        self.blob(&bytes, media_type)
    }

    /// Any bytes as a blob.
    pub fn blob(&mut self, bytes: &[u8], media_type: &str) -> Layer {
        self.count += 1;
        let path = self.blobs.join(format!("blob{}", self.count));
        std::fs::write(&path, bytes).expect("write blob");
        Layer {
            path,
            digest: format!("sha256:{:x}", Sha256::digest(bytes)),
            media_type: media_type.into(),
            size: bytes.len() as u64,
        }
    }

    pub fn unpack(&self, layers: &[Layer]) -> Result<UnpackStats, UnpackError> {
        unpack(layers, &self.root, Limits::default(), &no_progress())
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Every path in the scratch directory outside the root and the blobs.
    pub fn outside(&self) -> BTreeSet<PathBuf> {
        let mut out = BTreeSet::new();
        walk(self.dir.path(), &mut out, &[&self.root, &self.blobs]);
        out
    }

    /// Nothing but `sentinel/keep` (and the root and blobs) outside the root.
    pub fn assert_nothing_outside(&self) {
        let expected: BTreeSet<PathBuf> = [self.sentinel.clone(), self.sentinel.join("keep")]
            .into_iter()
            .collect();
        assert_eq!(
            self.outside(),
            expected,
            "something was written outside the root"
        );
        let keep = std::fs::read(self.sentinel.join("keep")).expect("sentinel file");
        assert_eq!(keep, b"keep");
    }
}

fn walk(dir: &Path, out: &mut BTreeSet<PathBuf>, skip: &[&PathBuf]) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if skip.contains(&&path) {
            continue;
        }
        let is_dir = std::fs::symlink_metadata(&path).expect("lstat").is_dir();
        out.insert(path.clone());
        if is_dir {
            walk(&path, out, skip);
        }
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

/// The xattr `name` of `path` (not following it), if any.
pub fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::lgetxattr(path, name, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// lstat.
pub fn lstat(path: &Path) -> rustix::fs::Stat {
    rustix::fs::lstat(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()))
}

pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// The names in a directory, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| String::from_utf8_lossy(e.expect("entry").file_name().as_bytes()).into_owned())
        .collect();
    v.sort();
    v
}
