//! Tar sources: `oci-archive:` (an OCI layout in a tar), `docker-archive:`
//! (`docker save`) and `rootfs:` (one plain layer).
//!
//! An archive is read twice at most: a first pass notes every entry by its
//! normalised name (no `..`, no leading `/`; links remembered as aliases)
//! and keeps small ones (manifests, configs) in memory; a second pass
//! streams the layers asked for into the blob store, verified. Nothing is
//! written by a path the archive chose.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::FetchError;
use super::blobs::{self, Verifier};
use super::layout::{self, Ctx, Layout};
use super::manifest::{self, Descriptor, MAX_JSON_BYTES};
use crate::{Event, Fetched, Layer};

/// Most bytes of small entries kept in memory from the first pass.
const MAX_KEPT_BYTES: u64 = 64 << 20;

/// What the first pass learnt of a tar file.
pub(crate) struct TarLayout {
    path: PathBuf,
    /// Regular files: normalised name → size.
    files: HashMap<String, u64>,
    /// Links: normalised name → normalised target.
    links: HashMap<String, String>,
    /// Small files' contents.
    kept: HashMap<String, Vec<u8>>,
}

/// `a/./b/` → `a/b`; `None` for `..`, which no name we look up has.
fn normalise(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => return None,
        }
    }
    Some(parts.join("/"))
}

impl TarLayout {
    /// Reads the archive's table (first pass).
    pub(crate) fn open(path: &Path) -> Result<Self, FetchError> {
        let file = File::open(path).map_err(|e| FetchError::open(path, e))?;
        let mut me = Self {
            path: path.to_path_buf(),
            files: HashMap::new(),
            links: HashMap::new(),
            kept: HashMap::new(),
        };
        let mut kept_bytes = 0;
        let mut archive = tar::Archive::new(file);
        for entry in archive.entries_with_seek().map_err(|e| me.bad(e))? {
            let mut entry = entry.map_err(|e| me.bad(e))?;
            let Some(name) = entry.path().ok().and_then(|p| normalise(&p)) else {
                continue;
            };
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                let target = entry.link_name().ok().flatten().and_then(|t| {
                    let t = if kind.is_symlink() {
                        Path::new(&name).parent().unwrap_or(Path::new("")).join(t)
                    } else {
                        t.to_path_buf()
                    };
                    normalise(&t)
                });
                if let Some(t) = target {
                    me.links.insert(name, t);
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let size = entry.size();
            if size <= MAX_JSON_BYTES && kept_bytes + size <= MAX_KEPT_BYTES {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).map_err(|e| me.bad(e))?;
                kept_bytes += size;
                me.kept.insert(name.clone(), bytes);
            }
            me.files.insert(name, size);
        }
        Ok(me)
    }

    fn bad(&self, e: impl std::fmt::Display) -> FetchError {
        FetchError::invalid(format_args!("archive {}", self.path.display()), e)
    }

    /// The regular file a name stands for, through links.
    fn resolve(&self, name: &str) -> Option<String> {
        let mut name = name.to_string();
        for _ in 0..16 {
            if self.files.contains_key(&name) {
                return Some(name);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    /// A small file's contents (kept from the first pass, or read again).
    fn small(&self, name: &str) -> Result<Cow<'_, [u8]>, FetchError> {
        let missing = || self.bad(format_args!("no {name} in it"));
        let real = self.resolve(name).ok_or_else(missing)?;
        if let Some(bytes) = self.kept.get(&real) {
            return Ok(Cow::Borrowed(bytes.as_slice()));
        }
        if self.files.get(&real).is_some_and(|s| *s > MAX_JSON_BYTES) {
            return Err(self.bad(format_args!("{name} is larger than {MAX_JSON_BYTES} bytes")));
        }
        let file = File::open(&self.path).map_err(|e| FetchError::open(&self.path, e))?;
        let mut archive = tar::Archive::new(file);
        for entry in archive.entries_with_seek().map_err(|e| self.bad(e))? {
            let mut entry = entry.map_err(|e| self.bad(e))?;
            if entry.path().ok().and_then(|p| normalise(&p)).as_ref() == Some(&real) {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).map_err(|e| self.bad(e))?;
                return Ok(Cow::Owned(bytes));
            }
        }
        Err(missing())
    }

    /// Copies the named entries into the store (one pass for those not
    /// kept in memory).
    fn copy_named(
        &self,
        wanted: Vec<(String, Verifier)>,
        ctx: &Ctx<'_>,
    ) -> Result<Vec<(PathBuf, u64)>, FetchError> {
        let mut done: Vec<Option<(PathBuf, u64)>> = vec![None; wanted.len()];
        let mut pending: HashMap<String, Vec<(usize, Verifier)>> = HashMap::new();
        for (i, (name, v)) in wanted.into_iter().enumerate() {
            let missing = || self.bad(format_args!("{} ({name}) is missing", v.digest));
            let real = self.resolve(&name).ok_or_else(missing)?;
            if let Some(p) = ctx.store.existing(&v.digest, v.declared) {
                *done.get_mut(i).ok_or_else(|| self.bad("index"))? =
                    Some((p, v.declared.unwrap_or_default()));
            } else if let Some(bytes) = self.kept.get(&real) {
                let stored = ctx.store.copy_from(bytes.as_slice(), v, ctx.progress)?;
                *done.get_mut(i).ok_or_else(|| self.bad("index"))? = Some(stored);
            } else {
                pending.entry(real).or_default().push((i, v));
            }
        }
        if !pending.is_empty() {
            self.stream_pending(pending, &mut done, ctx)?;
        }
        done.into_iter()
            .map(|d| d.ok_or_else(|| self.bad("an entry vanished between two reads")))
            .collect()
    }

    fn stream_pending(
        &self,
        mut pending: HashMap<String, Vec<(usize, Verifier)>>,
        done: &mut [Option<(PathBuf, u64)>],
        ctx: &Ctx<'_>,
    ) -> Result<(), FetchError> {
        let file = File::open(&self.path).map_err(|e| FetchError::open(&self.path, e))?;
        let mut archive = tar::Archive::new(file);
        for entry in archive.entries_with_seek().map_err(|e| self.bad(e))? {
            let entry = entry.map_err(|e| self.bad(e))?;
            let Some(name) = entry.path().ok().and_then(|p| normalise(&p)) else {
                continue;
            };
            let Some(mut list) = pending.remove(&name) else {
                continue;
            };
            let (i, v) = list.remove(0);
            let stored = ctx.store.copy_from(entry, v, ctx.progress)?;
            // The same blob asked for twice: it is in the store now.
            for (j, _) in list {
                if let Some(slot) = done.get_mut(j) {
                    *slot = Some(stored.clone());
                }
            }
            if let Some(slot) = done.get_mut(i) {
                *slot = Some(stored);
            }
            if pending.is_empty() {
                break;
            }
        }
        Ok(())
    }
}

impl Layout for TarLayout {
    fn name(&self) -> String {
        format!("OCI archive {}", self.path.display())
    }

    fn index_json(&mut self) -> Result<Vec<u8>, FetchError> {
        self.small("index.json").map(Cow::into_owned)
    }

    fn copy_blobs(
        &mut self,
        wanted: Vec<Verifier>,
        ctx: &Ctx<'_>,
    ) -> Result<Vec<(PathBuf, u64)>, FetchError> {
        let named = wanted
            .into_iter()
            .map(|v| {
                Ok((
                    format!("blobs/sha256/{}", blobs::check_digest(&v.digest)?),
                    v,
                ))
            })
            .collect::<Result<Vec<_>, FetchError>>()?;
        self.copy_named(named, ctx)
    }
}

/// One image of a `docker save` archive's `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// `blobs/sha256/<hex>` or `<hex>.json` / `<hex>.tar`: the digest the
/// name claims.
fn digest_in_name(name: &str) -> Option<String> {
    let file = name.strip_prefix("blobs/sha256/").or_else(|| {
        let (stem, ext) = name.rsplit_once('.')?;
        (matches!(ext, "json" | "tar") && !stem.contains('/')).then_some(stem)
    })?;
    let digest = format!("sha256:{file}");
    blobs::check_digest(&digest).ok()?;
    Some(digest)
}

/// Fetches a `docker save` archive.
pub(crate) fn fetch_docker(
    path: &Path,
    reference: Option<&str>,
    ctx: &Ctx<'_>,
) -> Result<Fetched, FetchError> {
    let tar = TarLayout::open(path)?;
    let entries: Vec<DockerEntry> = serde_json::from_slice(&tar.small("manifest.json")?)
        .map_err(|e| tar.bad(format_args!("manifest.json: {e}")))?;
    let entry = pick_docker(&entries, reference, path)?;
    let config_bytes = tar.small(&entry.config)?.into_owned();
    let id = blobs::sha256_of(&config_bytes);
    if let Some(claimed) = digest_in_name(&entry.config).filter(|d| *d != id) {
        return Err(FetchError::Corrupt {
            what: "config",
            digest: claimed,
            actual: id,
            remote: false,
        });
    }
    let image = layout::parse_config(&config_bytes, ctx.platform)?;
    let v = Verifier::new("config", &id, None, MAX_JSON_BYTES, false)?;
    ctx.store
        .copy_from(config_bytes.as_slice(), v, ctx.progress)?;
    let mut wanted = Vec::new();
    let mut descs = Vec::new();
    for (i, name) in entry.layers.iter().enumerate() {
        let digest = digest_in_name(name)
            .filter(|_| name.starts_with("blobs/"))
            .or_else(|| image.diff_ids.get(i).cloned())
            .ok_or_else(|| tar.bad(format_args!("layer {name} has no digest (no diff_id)")))?;
        let size = tar.resolve(name).and_then(|n| tar.files.get(&n).copied());
        let v = Verifier::new("layer", &digest, size, ctx.limits.max_layer_bytes, false)?;
        descs.push(Descriptor {
            media_type: String::new(),
            digest,
            size: size.unwrap_or_default(),
            platform: None,
            annotations: None,
        });
        wanted.push((name.clone(), v));
    }
    (ctx.progress)(Event::Phase("fetching".into()));
    let stored = tar.copy_named(wanted, ctx)?;
    for (d, (p, _)) in descs.iter_mut().zip(&stored) {
        d.media_type = sniff_file(p)?.to_string();
    }
    Ok(layout::fetched(id, None, image, &descs, stored))
}

fn pick_docker<'a>(
    entries: &'a [DockerEntry],
    reference: Option<&str>,
    path: &Path,
) -> Result<&'a DockerEntry, FetchError> {
    let tags = |e: &DockerEntry| e.repo_tags.clone().unwrap_or_default();
    let Some(want) = reference else {
        return match entries {
            [one] => Ok(one),
            [] => Err(FetchError::NotFound(format!(
                "{} holds no image",
                path.display()
            ))),
            _ => Err(FetchError::invalid(
                format_args!("docker archive {}", path.display()),
                format_args!(
                    "it holds {} images; name one with :REPO:TAG (tags: {})",
                    entries.len(),
                    entries.iter().flat_map(tags).collect::<Vec<_>>().join(", ")
                ),
            )),
        };
    };
    let norm = |s: &str| {
        super::super::source::ImageRef::parse(s)
            .map(|r| r.to_string())
            .ok()
    };
    entries
        .iter()
        .find(|e| {
            tags(e)
                .iter()
                .any(|t| t == want || (norm(t).is_some() && norm(t) == norm(want)))
        })
        .ok_or_else(|| FetchError::NotFound(format!("{} has no image {want:?}", path.display())))
}

/// A stored layer's media type, by its first bytes.
fn sniff_file(path: &Path) -> Result<&'static str, FetchError> {
    let mut head = [0u8; 4];
    let mut f = File::open(path).map_err(|e| FetchError::open(path, e))?;
    let n = f.read(&mut head).map_err(|e| FetchError::open(path, e))?;
    Ok(manifest::sniff_layer_type(
        head.get(..n).unwrap_or_default(),
    ))
}

/// Fetches a plain rootfs tarball as one layer.
pub(crate) fn fetch_rootfs(path: &Path, ctx: &Ctx<'_>) -> Result<Fetched, FetchError> {
    let open = || File::open(path).map_err(|e| FetchError::open(path, e));
    let size = open()?
        .metadata()
        .map_err(|e| FetchError::open(path, e))?
        .len();
    let limit = ctx.limits.max_layer_bytes;
    let mut file = open()?;
    let mut head = [0u8; 512];
    let n = file
        .read(&mut head)
        .map_err(|e| FetchError::open(path, e))?;
    let head = head.get(..n).unwrap_or_default();
    let media_type = manifest::sniff_layer_type(head);
    if media_type == manifest::media_types::OCI_LAYER && head.get(257..262) != Some(b"ustar") {
        return Err(FetchError::invalid(
            format_args!("rootfs {}", path.display()),
            "not a tar file (nor gzip or zstd)",
        ));
    }
    if size > limit {
        let digest = "(not hashed)".to_string();
        return Err(FetchError::TooLarge {
            what: "rootfs tarball",
            digest,
            size,
            limit,
        });
    }
    let id = blobs::sha256_reader(open()?).map_err(|e| FetchError::open(path, e))?;
    (ctx.progress)(Event::Phase("fetching".into()));
    let v = Verifier::new("rootfs tarball", &id, Some(size), limit, false)?;
    let (stored, size) = ctx.store.copy_from(open()?, v, ctx.progress)?;
    Ok(Fetched {
        id: id.clone(),
        manifest_digest: None,
        defaults: crate::ImageDefaults::default(),
        diff_ids: None,
        layers: vec![Layer {
            path: stored,
            digest: id,
            media_type: media_type.into(),
            size,
        }],
    })
}
