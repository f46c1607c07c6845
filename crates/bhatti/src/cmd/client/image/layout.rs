//! `oci:DIR[:TAG]` made into an oci-archive stream for the upload:
//! `oci-layout` and `index.json` first, then the blobs that index reaches
//! (through nested indexes and manifests to configs and layers) in name
//! order, as a tar written on a blocking thread into a channel, which the
//! request body reads — nothing is held in memory beyond a chunk or two.
//! With a TAG the stream's `index.json` keeps only the manifest entry
//! whose `org.opencontainers.image.ref.name` annotation is TAG (the daemon
//! then imports that one), so the other images' blobs are not sent; no
//! entry of that name is an error before anything is sent. A blob the
//! layout lacks is left out (an index may name platforms never copied);
//! the daemon says so if it needs it. A read error while streaming ends the body with that error, so
//! the daemon never takes a truncated archive for a whole one.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::sync::mpsc;

use super::chan::{self, Chunk};

/// The annotation naming an entry of an OCI index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{0}: not an OCI image layout (it has no oci-layout and index.json)")]
    NotLayout(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}: index.json is not an OCI index (no manifests array)")]
    BadIndex(PathBuf),
    #[error("no image tagged {tag:?} in {dir}/index.json (its tags: {tags})")]
    NoTag {
        dir: PathBuf,
        tag: String,
        tags: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A layout ready to stream: its files and the `index.json` to send.
#[derive(Debug)]
pub struct Layout {
    dir: PathBuf,
    index: Vec<u8>,
    /// Paths relative to `dir`, `index.json` excluded.
    files: Vec<(PathBuf, u64)>,
}

impl Layout {
    /// Reads `dir`'s index (picking `tag`'s entry) and lists its files.
    pub fn open(dir: &Path, tag: Option<&str>) -> Result<Layout, LayoutError> {
        let index_path = dir.join("index.json");
        if !dir.join("oci-layout").is_file() || !index_path.is_file() {
            return Err(LayoutError::NotLayout(dir.to_owned()));
        }
        let raw = std::fs::read(&index_path).map_err(io_err(&index_path))?;
        let index = match tag {
            None => raw,
            Some(t) => select_tag(&raw, t).map_err(|e| match e {
                Select::BadIndex => LayoutError::BadIndex(dir.to_owned()),
                Select::NoTag(tags) => LayoutError::NoTag {
                    dir: dir.to_owned(),
                    tag: t.to_owned(),
                    tags,
                },
            })?,
        };
        let layout_file = dir.join("oci-layout");
        let meta = std::fs::metadata(&layout_file).map_err(io_err(&layout_file))?;
        // oci-layout first: a reader learns early what it reads.
        let mut files = vec![(PathBuf::from("oci-layout"), meta.len())];
        files.extend(reachable(dir, &index));
        Ok(Layout {
            dir: dir.to_owned(),
            index,
            files,
        })
    }

    /// The tar's length: a 512-byte header and the data padded to 512
    /// per file (a GNU long-name entry before names over 100 bytes), and
    /// the two zero blocks at the end.
    pub fn archive_len(&self) -> u64 {
        let pad = |n: u64| n.div_ceil(512) * 512;
        let entry = |name: &Path, len: u64| {
            let name_len = name.as_os_str().len() as u64;
            let long = if name_len > 100 {
                512 + pad(name_len + 1)
            } else {
                0
            };
            long + 512 + pad(len)
        };
        let index = entry(Path::new("index.json"), self.index.len() as u64);
        let files: u64 = self.files.iter().map(|(p, n)| entry(p, *n)).sum();
        index + files + 1024
    }

    /// Writes the archive to `out`.
    pub fn write_to(&self, out: impl Write) -> Result<(), LayoutError> {
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Deterministic);
        let io_dir = io_err(&self.dir);
        let mut files = self.files.iter();
        // oci-layout, then index.json, then the blobs.
        if let Some((p, _)) = self
            .files
            .first()
            .filter(|(p, _)| p == Path::new("oci-layout"))
        {
            files.next();
            append(&mut tar, &self.dir, p)?;
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(self.index.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, "index.json", self.index.as_slice())
            .map_err(io_dir)?;
        for (p, _) in files {
            append(&mut tar, &self.dir, p)?;
        }
        tar.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(io_err(&self.dir))
    }

    /// Streams the archive ([`chan::spawn`]).
    pub fn stream(self) -> mpsc::Receiver<Chunk> {
        chan::spawn(move |w| self.write_to(w).map_err(|e| e.to_string()))
    }
}

fn append<W: Write>(tar: &mut tar::Builder<W>, dir: &Path, rel: &Path) -> Result<(), LayoutError> {
    let path = dir.join(rel);
    tar.append_path_with_name(&path, rel).map_err(io_err(&path))
}

/// The largest index or manifest blob read to follow its descriptors.
const MAX_JSON_BLOB: u64 = 4 << 20;

/// The blob files (relative to `dir`, with sizes, in name order) that
/// `index` reaches and the layout has: its manifests, their nested
/// indexes and manifests, configs and layers. Only index and manifest
/// blobs are read, and only those up to [`MAX_JSON_BLOB`].
fn reachable(dir: &Path, index: &[u8]) -> Vec<(PathBuf, u64)> {
    let mut found = std::collections::BTreeMap::new();
    let mut todo: Vec<Value> = serde_json::from_slice::<Value>(index)
        .map(|v| children(&v))
        .unwrap_or_default();
    while let Some(desc) = todo.pop() {
        let Some(rel) = desc
            .get("digest")
            .and_then(Value::as_str)
            .and_then(blob_path)
        else {
            continue;
        };
        if found.contains_key(&rel) {
            continue;
        }
        let path = dir.join(&rel);
        let Some(meta) = std::fs::metadata(&path).ok().filter(|m| m.is_file()) else {
            continue;
        };
        found.insert(rel, meta.len());
        let media = desc.get("mediaType").and_then(Value::as_str).unwrap_or("");
        let listing = media.contains("manifest") || media.contains("index");
        if listing
            && meta.len() <= MAX_JSON_BLOB
            && let Ok(v) = std::fs::read(&path).and_then(|b| Ok(serde_json::from_slice(&b)?))
        {
            todo.extend(children(&v));
        }
    }
    found.into_iter().collect()
}

/// The descriptors an index or manifest names.
fn children(v: &Value) -> Vec<Value> {
    let list = |k: &str| {
        v.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut out = list("manifests");
    out.extend(list("layers"));
    out.extend(v.get("config").cloned());
    out
}

/// `blobs/ALG/HEX` for a digest, or `None` if it could name anything else.
fn blob_path(digest: &str) -> Option<PathBuf> {
    let (alg, hex) = digest.split_once(':')?;
    let alg_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c);
    let hex_ok = |c: char| c.is_ascii_alphanumeric() || "=_-".contains(c);
    let ok = !alg.is_empty()
        && !hex.is_empty()
        && alg.chars().all(alg_ok)
        && hex.chars().all(hex_ok)
        && !alg.starts_with('.');
    ok.then(|| Path::new("blobs").join(alg).join(hex))
}

/// Why [`select_tag`] found nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Select {
    BadIndex,
    /// The tags the index has, comma-separated (`none` when none).
    NoTag(String),
}

/// `index` (an OCI index's JSON) with only the manifest entry named `tag`
/// (its other fields kept).
pub fn select_tag(index: &[u8], tag: &str) -> Result<Vec<u8>, Select> {
    let mut v: Value = serde_json::from_slice(index).map_err(|_| Select::BadIndex)?;
    let manifests = v
        .get_mut("manifests")
        .and_then(Value::as_array_mut)
        .ok_or(Select::BadIndex)?;
    let name = |m: &Value| {
        m.get("annotations")
            .and_then(|a| a.get(REF_NAME))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let Some(pos) = manifests
        .iter()
        .position(|m| name(m).as_deref() == Some(tag))
    else {
        let tags: Vec<String> = manifests.iter().filter_map(name).collect();
        let tags = if tags.is_empty() {
            "none".to_owned()
        } else {
            tags.join(", ")
        };
        return Err(Select::NoTag(tags));
    };
    let keep = manifests.swap_remove(pos);
    *manifests = vec![keep];
    serde_json::to_vec(&v).map_err(|_| Select::BadIndex)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layout by hand: two tagged manifests (`b`'s names a config with
    /// a path over 100 bytes), and a blob neither reaches.
    fn layout() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path();
        std::fs::write(p.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("w");
        let entry = |tag: &str| {
            serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{}", tag.repeat(64)), "size": 2,
                "annotations": {REF_NAME: tag}})
        };
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [entry("a"), entry("b")]});
        std::fs::write(p.join("index.json"), index.to_string()).expect("w");
        for alg in ["sha256", "sha512"] {
            std::fs::create_dir_all(p.join("blobs").join(alg)).expect("mkdir");
        }
        let blobs = p.join("blobs/sha256");
        std::fs::write(blobs.join("a".repeat(64)), "{}").expect("w");
        let config = format!("sha512:{}", "c".repeat(128));
        let b = serde_json::json!({"config": {"digest": config, "mediaType": "x"},
            "layers": [{"digest": "sha256:../../oci-layout"}]});
        std::fs::write(blobs.join("b".repeat(64)), b.to_string()).expect("w");
        std::fs::write(
            p.join("blobs/sha512").join("c".repeat(128)),
            vec![7u8; 1000],
        )
        .expect("w");
        std::fs::write(blobs.join("d".repeat(64)), "stale").expect("w");
        d
    }

    /// The archive's (name, content) pairs in order.
    fn entries(tar_bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .expect("entries")
            .map(|e| {
                let mut e = e.expect("entry");
                let name = e.path().expect("path").display().to_string();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).expect("read");
                (name, data)
            })
            .collect()
    }

    #[test]
    fn tag_keeps_one_manifest_and_length_is_exact() {
        let d = layout();
        let l = Layout::open(d.path(), Some("b")).expect("open");
        let mut out = Vec::new();
        l.write_to(&mut out).expect("write");
        assert_eq!(out.len() as u64, l.archive_len());
        let got = entries(&out);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        let long = format!("blobs/sha512/{}", "c".repeat(128));
        let manifest = format!("blobs/sha256/{}", "b".repeat(64));
        // Not `a`'s manifest, not the stale blob, not the bad digest.
        assert_eq!(names, ["oci-layout", "index.json", &manifest, &long]);
        let index: Value = serde_json::from_slice(&got[1].1).expect("index");
        let m = index["manifests"].as_array().expect("manifests");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0]["annotations"][REF_NAME], "b");
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(got[3].1, vec![7u8; 1000]);
    }

    #[test]
    fn without_a_tag_the_index_is_sent_as_is() {
        let d = layout();
        let l = Layout::open(d.path(), None).expect("open");
        let mut out = Vec::new();
        l.write_to(&mut out).expect("write");
        assert_eq!(out.len() as u64, l.archive_len());
        let got = entries(&out);
        let original = std::fs::read(d.path().join("index.json")).expect("read");
        assert_eq!(got[1], ("index.json".to_owned(), original));
        assert_eq!(got.len(), 5, "both images' blobs, not the stale one");
    }

    #[test]
    fn errors_name_the_problem() {
        let d = layout();
        let e = Layout::open(d.path(), Some("zz")).expect_err("no such tag");
        assert!(
            e.to_string().contains("\"zz\"") && e.to_string().contains("a, b"),
            "{e}"
        );
        let e = Layout::open(&d.path().join("blobs"), None).expect_err("not a layout");
        assert!(matches!(e, LayoutError::NotLayout(_)), "{e}");
        assert_eq!(select_tag(b"{}", "a"), Err(Select::BadIndex));
        assert_eq!(
            select_tag(br#"{"manifests":[{}]}"#, "a"),
            Err(Select::NoTag("none".into()))
        );
    }

    #[tokio::test]
    async fn stream_carries_the_same_bytes() {
        let d = layout();
        let l = Layout::open(d.path(), Some("a")).expect("open");
        let mut want = Vec::new();
        l.write_to(&mut want).expect("write");
        let mut rx = l.stream();
        let mut got = Vec::new();
        while let Some(c) = rx.recv().await {
            got.extend(c.expect("chunk"));
        }
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn a_read_error_ends_the_stream_with_it() {
        let d = layout();
        let l = Layout::open(d.path(), None).expect("open");
        // The blob goes away after the listing: the stream must fail, not
        // end as if complete.
        std::fs::remove_file(d.path().join(format!("blobs/sha256/{}", "a".repeat(64))))
            .expect("rm");
        let mut rx = l.stream();
        let mut last = None;
        while let Some(c) = rx.recv().await {
            last = Some(c);
        }
        let err = last.expect("items").expect_err("an error last");
        assert!(err.to_string().contains("aaaa"), "{err}");
    }

    /// A layout umoci made (skipped without umoci): the tag picks its
    /// entry and every blob the index names is in the stream.
    #[test]
    fn umoci_layout() {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path().join("lay");
        let umoci = |args: &[&str]| {
            std::process::Command::new("umoci")
                .args(args)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        let lay = dir.to_str().expect("utf-8");
        if !umoci(&["init", "--layout", lay]) {
            eprintln!("skipped: umoci is not installed");
            return;
        }
        assert!(umoci(&["new", "--image", &format!("{lay}:v1")]));
        assert!(umoci(&["new", "--image", &format!("{lay}:v2")]));
        let l = Layout::open(&dir, Some("v2")).expect("open");
        let mut out = Vec::new();
        l.write_to(&mut out).expect("write");
        assert_eq!(out.len() as u64, l.archive_len());
        let got = entries(&out);
        let index: Value = serde_json::from_slice(&got[1].1).expect("index");
        let m = &index["manifests"][0];
        assert_eq!(m["annotations"][REF_NAME], "v2");
        let digest = m["digest"].as_str().expect("digest").replace(':', "/");
        assert!(got.iter().any(|(n, _)| *n == format!("blobs/{digest}")));
    }
}
