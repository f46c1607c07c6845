//! OCI image import for bhatti: any Linux OCI image becomes a directory
//! tree the engine packs into a sandbox image.
//!
//! The pipeline, one module per step:
//! 1. [`source`]: parse what the user typed, with skopeo's transport names
//!    (`docker://host/repo:tag` or a bare `repo:tag`, `oci:DIR[:tag]`,
//!    `oci-archive:FILE`, `docker-archive:FILE`, `rootfs:FILE.tar`).
//! 2. [`fetch`]: get the manifest, the config and every layer blob into a
//!    blob directory, each digest verified, the host's platform chosen
//!    from an index, sizes bounded by [`Limits`].
//! 3. [`unpack`]: apply the layers in order into an empty root directory
//!    (whiteouts, opaque directories, hard links, symlinks, xattrs, device
//!    nodes, ownership, setuid), never writing outside it.
//! 4. [`config`]: the image config's `Env`, `WorkingDir`, `User`,
//!    `Entrypoint` and `Cmd` as the sandbox's defaults.
//!
//! Progress is reported through [`Progress`], so the daemon can stream it.

pub mod config;
pub mod fetch;
pub mod source;
pub mod unpack;

use std::path::PathBuf;
use std::sync::Arc;

pub use config::ImageDefaults;
pub use source::Source;

/// One layer blob on disk, its digest already verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The blob file (compressed as `media_type` says).
    pub path: PathBuf,
    /// `sha256:<hex>` of the blob as stored.
    pub digest: String,
    /// The OCI or Docker media type (tells gzip, zstd or plain tar).
    pub media_type: String,
    /// The blob's size in bytes.
    pub size: u64,
}

/// A fetched image: everything [`unpack`] and the engine need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The image's content id: `sha256:<hex>` of its config blob (the
    /// "image ID"), or of the tarball for `rootfs:`. Two imports of the
    /// same content have the same id, whatever they were called.
    pub id: String,
    /// The manifest's digest, when there is a manifest.
    pub manifest_digest: Option<String>,
    /// The config's defaults (empty for `rootfs:`).
    pub defaults: ImageDefaults,
    /// Layers, bottom first.
    pub layers: Vec<Layer>,
    /// The config's `rootfs.diff_ids` (each layer's uncompressed sha256),
    /// which [`unpack::unpack_verified`] holds the layers to; `None` for a
    /// `rootfs:` tarball, whose id is its own digest.
    pub diff_ids: Option<Vec<String>>,
}

/// Bounds on what an import may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest layer blob, in bytes, as stored (compressed).
    pub max_layer_bytes: u64,
    /// Largest unpacked image: the sum of every regular file's size.
    pub max_unpacked_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_layer_bytes: 8 << 30,
            max_unpacked_bytes: 32 << 30,
        }
    }
}

/// A progress event of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A step starts (`"resolving"`, `"fetching"`, `"unpacking"`, …).
    Phase(String),
    /// Bytes done of a known total (a blob being fetched, layers being
    /// applied).
    Bytes {
        /// What is being counted (a digest or a layer index).
        what: String,
        /// Bytes done.
        done: u64,
        /// Bytes in all (0 when unknown).
        total: u64,
    },
}

/// Where progress goes: called from any thread, must not block.
pub type Progress = Arc<dyn Fn(Event) + Send + Sync>;

/// A [`Progress`] that drops every event.
pub fn no_progress() -> Progress {
    Arc::new(|_| {})
}
