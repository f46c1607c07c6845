//! `oci-archive:FILE:TAG` and `docker-archive:FILE:REF` (or `:@N`, the
//! N-th image, from 0): the archive is uploaded with its list of images
//! cut to the one named, as skopeo would pick it — the `index.json`
//! entry whose `org.opencontainers.image.ref.name` is TAG, or the
//! `manifest.json` entry whose `RepoTags` has REF (`busybox`,
//! `busybox:latest` and `docker.io/library/busybox:latest` are the
//! same). A first pass finds and cuts that member (seeking over the
//! rest); the upload then copies every entry through, the member
//! replaced, on a blocking thread ([`super::chan`]). Nothing named is an
//! error before anything is sent.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::sync::mpsc;

use super::chan::{self, Chunk};
use super::layout::{Select, select_tag};

/// The largest image list read (index.json / manifest.json).
const MAX_LIST: u64 = 16 << 20;

/// Which image of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// An OCI archive's entry named TAG.
    OciTag(String),
    /// A docker-archive's image with this tag.
    DockerRef(String),
    /// A docker-archive's N-th image.
    DockerIndex(usize),
}

impl Pick {
    /// The member that lists the images.
    fn member(&self) -> &'static str {
        match self {
            Pick::OciTag(_) => "index.json",
            Pick::DockerRef(_) | Pick::DockerIndex(_) => "manifest.json",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: no {member} in the archive (is it the right kind?)")]
    NoList { path: PathBuf, member: &'static str },
    #[error("{path}: {member} is not a list of images")]
    BadList { path: PathBuf, member: &'static str },
    #[error("{path}: no image {wanted} in it (it has: {have})")]
    NotFound {
        path: PathBuf,
        wanted: String,
        have: String,
    },
}

/// An archive ready to stream with its image list replaced.
#[derive(Debug)]
pub struct Rewrite {
    path: PathBuf,
    member: &'static str,
    list: Vec<u8>,
}

/// A member's name without a leading `./`.
fn norm(p: &Path) -> &Path {
    p.strip_prefix(".").unwrap_or(p)
}

impl Rewrite {
    /// Reads `path`'s image list and cuts it to `pick`.
    pub fn open(path: &Path, pick: &Pick) -> Result<Rewrite, RewriteError> {
        let io_err = |source| RewriteError::Io {
            path: path.to_owned(),
            source,
        };
        let member = pick.member();
        let mut archive = tar::Archive::new(File::open(path).map_err(io_err)?);
        let mut list = None;
        for e in archive.entries_with_seek().map_err(io_err)? {
            let e = e.map_err(io_err)?;
            if norm(&e.path().map_err(io_err)?) == Path::new(member) {
                let mut buf = Vec::new();
                e.take(MAX_LIST).read_to_end(&mut buf).map_err(io_err)?;
                list = Some(buf);
                break;
            }
        }
        let list = list.ok_or_else(|| RewriteError::NoList {
            path: path.to_owned(),
            member,
        })?;
        let bad = || RewriteError::BadList {
            path: path.to_owned(),
            member,
        };
        let not_found = |wanted: String, have: String| RewriteError::NotFound {
            path: path.to_owned(),
            wanted,
            have,
        };
        let list = match pick {
            Pick::OciTag(tag) => select_tag(&list, tag).map_err(|e| match e {
                Select::BadIndex => bad(),
                Select::NoTag(have) => not_found(format!("tagged {tag:?}"), have),
            })?,
            _ => select_docker(&list, pick).map_err(|e| match e {
                Select::BadIndex => bad(),
                Select::NoTag(have) => not_found(wanted(pick), have),
            })?,
        };
        Ok(Rewrite {
            path: path.to_owned(),
            member,
            list,
        })
    }

    /// Copies the archive to `out`, the image list replaced.
    pub fn write_to(&self, out: impl Write) -> Result<(), RewriteError> {
        let io_err = |source| RewriteError::Io {
            path: self.path.clone(),
            source,
        };
        let file = File::open(&self.path).map_err(io_err)?;
        let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 20, file));
        let mut tar = tar::Builder::new(out);
        for e in archive.entries().map_err(io_err)? {
            let mut e = e.map_err(io_err)?;
            let name = e.path().map_err(io_err)?.into_owned();
            let mut h = e.header().clone();
            let kind = h.entry_type();
            let res = if norm(&name) == Path::new(self.member) {
                h.set_size(self.list.len() as u64);
                tar.append_data(&mut h, &name, self.list.as_slice())
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = e.link_name().map_err(io_err)?.unwrap_or_default();
                tar.append_link(&mut h, &name, target)
            } else if kind.is_pax_global_extensions() {
                continue;
            } else {
                tar.append_data(&mut h, &name, &mut e)
            };
            res.map_err(io_err)?;
        }
        tar.into_inner().and_then(|mut w| w.flush()).map_err(io_err)
    }

    /// Streams the rewritten archive ([`chan::spawn`]).
    pub fn stream(self) -> mpsc::Receiver<Chunk> {
        chan::spawn(move |w| self.write_to(w).map_err(|e| e.to_string()))
    }
}

fn wanted(pick: &Pick) -> String {
    match pick {
        Pick::OciTag(t) | Pick::DockerRef(t) => format!("{t:?}"),
        Pick::DockerIndex(n) => format!("@{n}"),
    }
}

/// A Docker reference as `docker save` writes it in `RepoTags`:
/// `docker.io/` and `library/` dropped, `:latest` added when untagged.
fn short_ref(r: &str) -> String {
    let r = r.strip_prefix("docker.io/").unwrap_or(r);
    let r = r.strip_prefix("library/").unwrap_or(r);
    let last = r.rsplit('/').next().unwrap_or(r);
    if last.contains(':') || r.contains('@') {
        r.to_owned()
    } else {
        format!("{r}:latest")
    }
}

/// `manifest.json` (a docker-archive's image list) with only `pick`.
pub fn select_docker(list: &[u8], pick: &Pick) -> Result<Vec<u8>, Select> {
    let images: Vec<Value> = serde_json::from_slice(list).map_err(|_| Select::BadIndex)?;
    let tags = |i: &Value| -> Vec<String> {
        i.get("RepoTags")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(short_ref).collect())
            .unwrap_or_default()
    };
    let found = match pick {
        Pick::DockerIndex(n) => images.get(*n),
        Pick::DockerRef(r) => {
            let want = short_ref(r);
            images.iter().find(|i| tags(i).contains(&want))
        }
        Pick::OciTag(_) => None,
    };
    let Some(one) = found else {
        let have: Vec<String> = images.iter().flat_map(tags).collect();
        let have = match (have.is_empty(), images.len()) {
            (false, _) => have.join(", "),
            (true, n) => format!("{n} untagged images"),
        };
        return Err(Select::NoTag(have));
    };
    serde_json::to_vec(&[one]).map_err(|_| Select::BadIndex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::client::image::layout::REF_NAME;

    fn entry(tag: &str) -> Value {
        serde_json::json!({"digest": format!("sha256:{}", tag.repeat(64)),
            "annotations": {REF_NAME: tag}})
    }

    /// An oci-archive with a `./` directory, two tagged entries, a blob
    /// with a long name and a symbolic link.
    fn archive(dir: &Path) -> PathBuf {
        let path = dir.join("o.tar");
        let mut tar = tar::Builder::new(File::create(&path).expect("create"));
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            tar.append_data(&mut h, name, data).expect("append");
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [entry("a"), entry("b")]});
        add("./index.json", index.to_string().as_bytes());
        add(&format!("blobs/sha256/{}", "c".repeat(120)), &[9u8; 700]);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        tar.append_link(&mut h, "blobs/link", "sha256/x")
            .expect("link");
        tar.into_inner().expect("finish");
        path
    }

    fn entries(bytes: &[u8]) -> Vec<(String, Vec<u8>, Option<String>)> {
        let mut a = tar::Archive::new(bytes);
        a.entries()
            .expect("entries")
            .map(|e| {
                let mut e = e.expect("entry");
                let name = e.path().expect("path").display().to_string();
                let link = e
                    .link_name()
                    .expect("link")
                    .map(|l| l.display().to_string());
                let mut data = Vec::new();
                e.read_to_end(&mut data).expect("read");
                (name, data, link)
            })
            .collect()
    }

    #[test]
    fn an_oci_archive_keeps_the_tagged_entry_and_everything_else() {
        let d = tempfile::tempdir().expect("tempdir");
        let path = archive(d.path());
        let r = Rewrite::open(&path, &Pick::OciTag("b".into())).expect("open");
        let mut out = Vec::new();
        r.write_to(&mut out).expect("write");
        let got = entries(&out);
        let want = entries(&std::fs::read(&path).expect("read"));
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!((&g.0, &g.2), (&w.0, &w.2));
            if norm(Path::new(&g.0)) != Path::new("index.json") {
                assert_eq!(g.1, w.1, "{}", g.0);
            }
        }
        let index: Value = serde_json::from_slice(&got[1].1).expect("index");
        assert_eq!(index["manifests"].as_array().map(Vec::len), Some(1));
        assert_eq!(index["manifests"][0]["annotations"][REF_NAME], "b");

        let e = Rewrite::open(&path, &Pick::OciTag("zz".into())).expect_err("no zz");
        assert!(e.to_string().contains("a, b"), "{e}");
        let e = Rewrite::open(&path, &Pick::DockerIndex(0)).expect_err("no manifest.json");
        assert!(matches!(e, RewriteError::NoList { .. }), "{e}");
    }

    #[test]
    fn docker_images_by_reference_or_index() {
        let list = serde_json::json!([
            {"Config": "1.json", "RepoTags": ["test/bare:1"]},
            {"Config": "2.json", "RepoTags": ["busybox:latest", "docker.io/library/busybox:1"]},
            {"Config": "3.json", "RepoTags": null}
        ])
        .to_string();
        let pick = |p: Pick| -> Result<String, Select> {
            let v: Value =
                serde_json::from_slice(&select_docker(list.as_bytes(), &p)?).expect("json");
            assert_eq!(v.as_array().map(Vec::len), Some(1));
            Ok(v[0]["Config"].as_str().unwrap_or_default().to_owned())
        };
        assert_eq!(
            pick(Pick::DockerRef("test/bare:1".into())),
            Ok("1.json".into())
        );
        assert_eq!(pick(Pick::DockerRef("busybox".into())), Ok("2.json".into()));
        assert_eq!(
            pick(Pick::DockerRef("docker.io/library/busybox:latest".into())),
            Ok("2.json".into())
        );
        assert_eq!(
            pick(Pick::DockerRef("busybox:1".into())),
            Ok("2.json".into())
        );
        assert_eq!(pick(Pick::DockerIndex(2)), Ok("3.json".into()));
        assert_eq!(
            pick(Pick::DockerRef("nope".into())),
            Err(Select::NoTag(
                "test/bare:1, busybox:latest, busybox:1".into()
            ))
        );
        assert!(matches!(pick(Pick::DockerIndex(3)), Err(Select::NoTag(_))));
        assert_eq!(
            select_docker(b"{}", &Pick::DockerIndex(0)),
            Err(Select::BadIndex)
        );
    }
}
