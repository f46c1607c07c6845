//! [`ImageRef`]: the image a sandbox's root disk starts from — a built-in
//! rootfs tier, or an image in the engine's image store by content id.
//!
//! Written as text everywhere (`sandbox.json`, `snapshot.json`, the API):
//! a tier's name (`busybox`, `minimal`, …) or `sha256:<64 hex>`. A tier
//! name is what every file written before the image store had, so old
//! files read back unchanged.

use std::fmt;
use std::str::FromStr;

use super::{ImageError, Tier};

/// The image a sandbox's root disk starts from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImageRef {
    /// A built-in rootfs tier from the image cache.
    Tier(Tier),
    /// An image in the engine's image store: `sha256:<64 lowercase hex>`.
    Stored(String),
}

impl ImageRef {
    /// An image-store id, checked: `sha256:` and 64 lowercase hex digits.
    pub fn stored(id: &str) -> Result<Self, ImageError> {
        let hex = id
            .strip_prefix("sha256:")
            .ok_or_else(|| ImageError::BadId(id.to_owned()))?;
        let ok = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(Self::Stored(id.to_owned()))
        } else {
            Err(ImageError::BadId(id.to_owned()))
        }
    }

    /// The tier, if this is one.
    pub fn tier(&self) -> Option<Tier> {
        match self {
            Self::Tier(t) => Some(*t),
            Self::Stored(_) => None,
        }
    }

    /// A short form for names of files and keys: the tier's name, or the
    /// first 16 hex digits of the id.
    pub fn short(&self) -> String {
        match self {
            Self::Tier(t) => t.name().to_owned(),
            Self::Stored(id) => id["sha256:".len()..][..16].to_owned(),
        }
    }
}

impl From<Tier> for ImageRef {
    fn from(t: Tier) -> Self {
        Self::Tier(t)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tier(t) => f.write_str(t.name()),
            Self::Stored(id) => f.write_str(id),
        }
    }
}

impl FromStr for ImageRef {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("sha256:") {
            Self::stored(s)
        } else {
            s.parse().map(Self::Tier)
        }
    }
}

impl serde::Serialize for ImageRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ImageRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
