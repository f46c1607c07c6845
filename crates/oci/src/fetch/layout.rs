//! OCI image layouts (`oci:DIR`, and the tar of one for `oci-archive:`):
//! `index.json` → (tag) → manifest or index → platform → config, layers.

use std::path::{Path, PathBuf};

use super::blobs::{self, BlobStore, Verifier};
use super::manifest::{self, Descriptor, MAX_JSON_BYTES, Parsed};
use super::{FetchError, Platform};
use crate::config::ImageConfig;
use crate::{Event, Fetched, Layer, Limits, Progress};

/// The annotation that names a tag in `index.json`.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What a local fetch works with.
pub(crate) struct Ctx<'a> {
    pub(crate) platform: &'a Platform,
    pub(crate) store: &'a BlobStore,
    pub(crate) limits: Limits,
    pub(crate) progress: &'a Progress,
}

/// An OCI layout to read blobs from.
pub(crate) trait Layout {
    /// Names the layout in errors.
    fn name(&self) -> String;
    /// `index.json`.
    fn index_json(&mut self) -> Result<Vec<u8>, FetchError>;
    /// Copies blobs into the store, each verified; paths and sizes in the
    /// order asked.
    fn copy_blobs(
        &mut self,
        wanted: Vec<Verifier>,
        ctx: &Ctx<'_>,
    ) -> Result<Vec<(PathBuf, u64)>, FetchError>;
}

/// An OCI layout directory.
pub(crate) struct DirLayout {
    root: PathBuf,
}

impl DirLayout {
    pub(crate) fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }
}

impl Layout for DirLayout {
    fn name(&self) -> String {
        format!("OCI layout {}", self.root.display())
    }

    fn index_json(&mut self) -> Result<Vec<u8>, FetchError> {
        if !self.root.is_dir() {
            return Err(FetchError::NotFound(format!(
                "{} is not a directory (an OCI layout)",
                self.root.display()
            )));
        }
        let path = self.root.join("index.json");
        let bytes = blobs::read_small(&path, MAX_JSON_BYTES)?;
        Ok(bytes)
    }

    fn copy_blobs(
        &mut self,
        wanted: Vec<Verifier>,
        ctx: &Ctx<'_>,
    ) -> Result<Vec<(PathBuf, u64)>, FetchError> {
        wanted
            .into_iter()
            .map(|v| {
                let hex = blobs::check_digest(&v.digest)?;
                let path = self.root.join("blobs/sha256").join(hex);
                if let Some(p) = ctx.store.existing(&v.digest, v.declared) {
                    let size = v.declared.unwrap_or_default();
                    return Ok((p, size));
                }
                let file = std::fs::File::open(&path).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        FetchError::invalid(
                            self.name(),
                            format_args!("blob {} is missing", v.digest),
                        )
                    } else {
                        FetchError::open(&path, e)
                    }
                })?;
                ctx.store.copy_from(file, v, ctx.progress)
            })
            .collect()
    }
}

/// Fetches the image `tag` names (or the only one) from a layout.
pub(crate) fn fetch(
    layout: &mut dyn Layout,
    tag: Option<&str>,
    ctx: &Ctx<'_>,
) -> Result<Fetched, FetchError> {
    let index = layout.index_json()?;
    let Parsed::Index(entries) = manifest::parse(&index, "index.json")? else {
        return Err(FetchError::invalid(
            layout.name(),
            "index.json is not an image index",
        ));
    };
    let mut desc = pick_tag(&entries, tag, ctx.platform, &layout.name())?.clone();
    for _ in 0..4 {
        let bytes = read_json(layout, "manifest", &desc, ctx)?;
        match manifest::parse(&bytes, "manifest")? {
            Parsed::Index(entries) => desc = manifest::choose(&entries, ctx.platform)?.clone(),
            Parsed::Image { config, layers } => {
                return fetch_image(layout, &desc.digest, &config, &layers, ctx);
            }
        }
    }
    Err(FetchError::invalid(
        layout.name(),
        "indexes nested too deep",
    ))
}

fn pick_tag<'a>(
    entries: &'a [Descriptor],
    tag: Option<&str>,
    platform: &Platform,
    name: &str,
) -> Result<&'a Descriptor, FetchError> {
    let ref_name = |d: &Descriptor| {
        d.annotations
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .cloned()
    };
    let tags = || {
        entries
            .iter()
            .filter_map(ref_name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match tag {
        Some(t) => entries
            .iter()
            .find(|d| ref_name(d).as_deref() == Some(t))
            .ok_or_else(|| {
                FetchError::NotFound(format!(
                    "{name} has no image tagged {t:?} (tags: {})",
                    tags()
                ))
            }),
        None if entries.is_empty() => Err(unreachable_empty(name)),
        None if entries.iter().all(|d| d.platform.is_some()) => manifest::choose(entries, platform),
        None if entries.len() == 1 => entries.first().ok_or_else(|| unreachable_empty(name)),
        None => Err(FetchError::invalid(
            name,
            format_args!(
                "it holds several images; name one with :TAG (tags: {})",
                tags()
            ),
        )),
    }
}

fn unreachable_empty(name: &str) -> FetchError {
    FetchError::NotFound(format!("{name} holds no image"))
}

/// Copies a small JSON blob into the store and reads it back.
fn read_json(
    layout: &mut dyn Layout,
    what: &'static str,
    desc: &Descriptor,
    ctx: &Ctx<'_>,
) -> Result<Vec<u8>, FetchError> {
    let v = Verifier::new(what, &desc.digest, Some(desc.size), MAX_JSON_BYTES, false)?;
    let (path, _) = one(layout.copy_blobs(vec![v], ctx)?)?;
    blobs::read_small(&path, MAX_JSON_BYTES)
}

fn one(mut v: Vec<(PathBuf, u64)>) -> Result<(PathBuf, u64), FetchError> {
    v.pop()
        .ok_or_else(|| FetchError::io("copying a blob", std::io::Error::other("nothing copied")))
}

fn fetch_image(
    layout: &mut dyn Layout,
    manifest_digest: &str,
    config: &Descriptor,
    layers: &[Descriptor],
    ctx: &Ctx<'_>,
) -> Result<Fetched, FetchError> {
    manifest::check_config(config)?;
    let config_bytes = read_json(layout, "config", config, ctx)?;
    let image = parse_config(&config_bytes, ctx.platform)?;
    let wanted = layer_verifiers(layers, ctx.limits, false)?;
    (ctx.progress)(Event::Phase("fetching".into()));
    let stored = layout.copy_blobs(wanted, ctx)?;
    Ok(fetched(
        config.digest.clone(),
        Some(manifest_digest.to_string()),
        image,
        layers,
        stored,
    ))
}

/// Parses a config and checks its platform.
pub(crate) fn parse_config(bytes: &[u8], platform: &Platform) -> Result<ImageConfig, FetchError> {
    let image = ImageConfig::from_json(bytes)?;
    manifest::check_platform(&image, platform)?;
    Ok(image)
}

/// Checks every layer's type and declared size before any is fetched.
pub(crate) fn layer_verifiers(
    layers: &[Descriptor],
    limits: Limits,
    remote: bool,
) -> Result<Vec<Verifier>, FetchError> {
    layers
        .iter()
        .map(|d| {
            manifest::check_layer(d)?;
            Verifier::new(
                "layer",
                &d.digest,
                Some(d.size),
                limits.max_layer_bytes,
                remote,
            )
        })
        .collect()
}

/// The [`Fetched`] of stored layers.
pub(crate) fn fetched(
    id: String,
    manifest_digest: Option<String>,
    image: ImageConfig,
    layers: &[Descriptor],
    stored: Vec<(PathBuf, u64)>,
) -> Fetched {
    Fetched {
        id,
        manifest_digest,
        defaults: image.defaults,
        diff_ids: Some(image.diff_ids),
        layers: layers
            .iter()
            .zip(stored)
            .map(|(d, (path, size))| Layer {
                path,
                digest: d.digest.clone(),
                media_type: d.media_type.clone(),
                size,
            })
            .collect(),
    }
}
