//! Manifests, indexes and descriptors (OCI and Docker v2 schema 2).

use std::collections::HashMap;

use serde::Deserialize;

use super::{FetchError, Platform};

/// The media types fetching knows.
pub mod media_types {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// Docker v2 schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// OCI layer, plain tar.
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    /// OCI layer, gzip.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// OCI layer, zstd.
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    /// Docker layer, gzip.
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// Docker layer, plain tar.
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
    /// Every manifest or index type, for a registry's `Accept`.
    pub const MANIFESTS: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];
}

use media_types as mt;

/// Largest manifest, index or config read into memory.
pub(crate) const MAX_JSON_BYTES: u64 = 8 << 20;

/// A content descriptor.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub(crate) media_type: String,
    pub(crate) digest: String,
    pub(crate) size: u64,
    #[serde(default)]
    pub(crate) platform: Option<PlatformJson>,
    #[serde(default)]
    pub(crate) annotations: Option<HashMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PlatformJson {
    #[serde(default)]
    pub(crate) os: String,
    #[serde(default)]
    pub(crate) architecture: String,
    #[serde(default)]
    pub(crate) variant: Option<String>,
}

impl PlatformJson {
    fn name(&self) -> String {
        let mut s = format!("{}/{}", self.os, self.architecture);
        if let Some(v) = &self.variant {
            s.push('/');
            s.push_str(v);
        }
        s
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// A parsed manifest or index.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// An image manifest: its config and layers.
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    /// An index or manifest list.
    Index(Vec<Descriptor>),
}

/// Parses a manifest or index; `what` names it in errors.
pub(crate) fn parse(bytes: &[u8], what: &str) -> Result<Parsed, FetchError> {
    let raw: Raw = serde_json::from_slice(bytes).map_err(|e| FetchError::invalid(what, e))?;
    match raw.schema_version {
        Some(2) => {}
        Some(1) => {
            return Err(FetchError::Unsupported(format!(
                "{what} is a Docker schema 1 manifest (deprecated); push the image again with a current client"
            )));
        }
        other => {
            return Err(FetchError::invalid(
                what,
                format_args!("schemaVersion {other:?}"),
            ));
        }
    }
    let mtype = raw.media_type.unwrap_or_default();
    let is_index = mtype == mt::OCI_INDEX || mtype == mt::DOCKER_LIST;
    match (raw.manifests, raw.config, raw.layers) {
        (Some(m), _, _) if is_index || mtype.is_empty() => Ok(Parsed::Index(m)),
        (_, Some(config), Some(layers))
            if mtype.is_empty() || mtype == mt::OCI_MANIFEST || mtype == mt::DOCKER_MANIFEST =>
        {
            Ok(Parsed::Image { config, layers })
        }
        _ if !mtype.is_empty() && !is_index => Err(FetchError::Unsupported(format!(
            "{what} has media type {mtype}, not an image manifest"
        ))),
        _ => Err(FetchError::invalid(
            what,
            "neither an image manifest nor an index",
        )),
    }
}

/// The entry of `platform` in an index (the first that matches).
pub(crate) fn choose<'a>(
    entries: &'a [Descriptor],
    platform: &Platform,
) -> Result<&'a Descriptor, FetchError> {
    let images = entries
        .iter()
        .filter(|d| d.media_type.is_empty() || mt::MANIFESTS.contains(&d.media_type.as_str()));
    let found = images.clone().find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| platform.matches(&p.os, &p.architecture, p.variant.as_deref()))
    });
    if let Some(d) = found {
        return Ok(d);
    }
    let names: Vec<String> = images
        .map(|d| {
            d.platform
                .as_ref()
                .map_or_else(|| "unknown".into(), PlatformJson::name)
        })
        .filter(|n| n != "unknown/unknown") // attestation manifests
        .collect();
    Err(FetchError::NoPlatform {
        wanted: platform.to_string(),
        found: if names.is_empty() {
            vec!["no platforms".into()]
        } else {
            names
        },
    })
}

/// Checks a config descriptor's media type.
pub(crate) fn check_config(d: &Descriptor) -> Result<(), FetchError> {
    match d.media_type.as_str() {
        mt::OCI_CONFIG | mt::DOCKER_CONFIG | "" => Ok(()),
        other => Err(FetchError::Unsupported(format!(
            "config media type {other}: this is not a container image (an artifact?)"
        ))),
    }
}

/// Checks a layer descriptor's media type: foreign and non-distributable
/// layers are refused.
pub(crate) fn check_layer(d: &Descriptor) -> Result<(), FetchError> {
    let m = d.media_type.as_str();
    match m {
        mt::OCI_LAYER
        | mt::OCI_LAYER_GZIP
        | mt::OCI_LAYER_ZSTD
        | mt::DOCKER_LAYER
        | mt::DOCKER_LAYER_GZIP => Ok(()),
        _ if m.contains("foreign") || m.contains("nondistributable") => {
            Err(FetchError::Unsupported(format!(
                "layer {} is foreign/non-distributable ({m}); such layers (Windows base layers) cannot be imported",
                d.digest
            )))
        }
        _ => Err(FetchError::Unsupported(format!(
            "layer {} has media type {m:?}; supported are OCI and Docker tar, tar+gzip and tar+zstd layers",
            d.digest
        ))),
    }
}

/// The media type for a layer by its first bytes (gzip, zstd, else tar).
pub(crate) fn sniff_layer_type(head: &[u8]) -> &'static str {
    if head.starts_with(&[0x1f, 0x8b]) {
        mt::OCI_LAYER_GZIP
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        mt::OCI_LAYER_ZSTD
    } else {
        mt::OCI_LAYER
    }
}

/// Checks a config's platform against the wanted one (a config without
/// `os`/`architecture` passes).
pub(crate) fn check_platform(
    config: &crate::config::ImageConfig,
    platform: &Platform,
) -> Result<(), FetchError> {
    if config.os.is_empty() || config.architecture.is_empty() {
        return Ok(());
    }
    if platform.matches(&config.os, &config.architecture, config.variant.as_deref()) {
        return Ok(());
    }
    let mut found = format!("{}/{}", config.os, config.architecture);
    if let Some(v) = &config.variant {
        found = format!("{found}/{v}");
    }
    Err(FetchError::WrongPlatform {
        wanted: platform.to_string(),
        found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(os: &str, arch: &str) -> Descriptor {
        Descriptor {
            media_type: mt::OCI_MANIFEST.into(),
            digest: format!("sha256:{}", "0".repeat(64)),
            size: 1,
            platform: Some(PlatformJson {
                os: os.into(),
                architecture: arch.into(),
                variant: None,
            }),
            annotations: None,
        }
    }

    #[test]
    fn choose_names_what_the_index_has() {
        let entries = [entry("linux", "arm64"), entry("linux", "s390x")];
        let e = choose(&entries, &Platform::linux("amd64")).expect_err("no amd64");
        assert_eq!(
            e.to_string(),
            "no linux/amd64 image in the index (found linux/arm64, linux/s390x)"
        );
        let d = choose(&entries, &Platform::linux("s390x")).expect("s390x");
        assert_eq!(
            d.platform.as_ref().map(|p| p.architecture.as_str()),
            Some("s390x")
        );
    }

    #[test]
    fn docker_list_and_v2s2_manifest_parse() {
        let d = format!("sha256:{}", "1".repeat(64));
        let list = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[
            {{"mediaType":"{}","digest":"{d}","size":9,
              "platform":{{"architecture":"arm","os":"linux","variant":"v7"}}}}]}}"#,
            mt::DOCKER_LIST,
            mt::DOCKER_MANIFEST
        );
        let Ok(Parsed::Index(entries)) = parse(list.as_bytes(), "list") else {
            panic!("a list");
        };
        let mut arm = Platform::linux("arm");
        assert!(choose(&entries, &arm).is_ok(), "any variant matches");
        arm.variant = Some("v6".into());
        let e = choose(&entries, &arm).expect_err("v6");
        assert_eq!(
            e.to_string(),
            "no linux/arm/v6 image in the index (found linux/arm/v7)"
        );
        let v2s2 = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}",
            "config":{{"mediaType":"{}","digest":"{d}","size":9}},
            "layers":[{{"mediaType":"{}","digest":"{d}","size":9}}]}}"#,
            mt::DOCKER_MANIFEST,
            mt::DOCKER_CONFIG,
            mt::DOCKER_LAYER_GZIP
        );
        let Ok(Parsed::Image { config, layers }) = parse(v2s2.as_bytes(), "manifest") else {
            panic!("a manifest");
        };
        assert!(check_config(&config).is_ok());
        assert!(layers.iter().all(|l| check_layer(l).is_ok()));
    }

    #[test]
    fn foreign_layers_are_refused() {
        let mut d = entry("linux", "amd64");
        d.media_type = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip".into();
        assert!(
            check_layer(&d)
                .expect_err("foreign")
                .to_string()
                .contains("foreign")
        );
        d.media_type = mt::DOCKER_LAYER_GZIP.into();
        assert!(check_layer(&d).is_ok());
    }

    #[test]
    fn schema1_and_artifacts_are_unsupported() {
        let e = parse(br#"{"schemaVersion":1}"#, "manifest").expect_err("v1");
        assert!(matches!(e, FetchError::Unsupported(_)), "{e}");
        let e = parse(
            br#"{"schemaVersion":2,"mediaType":"application/vnd.cncf.helm.chart"}"#,
            "manifest",
        )
        .expect_err("helm");
        assert!(matches!(e, FetchError::Unsupported(_)), "{e}");
    }
}
