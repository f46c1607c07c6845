//! Fetching an image's manifest, config and layer blobs, each verified.
//!
//! [`fetch`] gets what a [`Source`] names into a blob directory, content
//! addressed (`BLOBS/sha256/<hex>`). A blob is written to a temporary name
//! beside its final one (`.tmp-…`), its sha256 and size checked while it
//! streams, then renamed; a failed fetch leaves no temporary file behind.
//! A blob already present is reused once its size matches, so imports
//! share blobs.
//!
//! - Registries (`docker://`) go through `oci-client`: anonymous, basic or
//!   bearer-token auth, HTTPS (or plain HTTP with
//!   [`FetchOptions::insecure`]). An image index or Docker manifest list
//!   is followed to the manifest of [`FetchOptions::platform`].
//! - OCI layouts (`oci:`) are read in place; `oci-archive:` and
//!   `docker-archive:` are tar files read with the `tar` crate, where only
//!   the entries the image needs are copied out (into the blob directory,
//!   verified), by their normalised names, never by paths the archive
//!   chose.
//! - `rootfs:` is one layer, its id the tarball's sha256.
//!
//! Manifests may be OCI or Docker v2 schema 2; layers gzip, zstd or plain
//! tar. Foreign (non-distributable) layers, a manifest for another
//! platform, a digest that does not match, a blob shorter than its
//! descriptor and a layer over [`Limits::max_layer_bytes`] are each a
//! [`FetchError`] that says so; [`FetchError::status_class`] sorts them for HTTP.
//!
//! # Threads, locks, I/O
//! A registry fetch runs on the caller's tokio runtime: network I/O is
//! async, blob chunks are written with plain file writes as they arrive,
//! and each blob's fsync and rename run in place (`block_in_place` on a
//! multi-threaded runtime), so dropping the fetch future leaves no
//! temporary file. Local
//! sources (`oci:`, archives, `rootfs:`) run wholly on the blocking pool.
//! No lock is held: concurrent fetches into one blob directory write
//! distinct temporary names (process id and a counter) and the rename
//! into place is atomic, so the last writer of a blob wins with the same
//! bytes. A registry's layers are fetched three at a time; a failed one
//! ends the fetch (the others' temporary files removed as they drop).

mod archive;
mod blobs;
mod layout;
mod manifest;
mod registry;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::{Fetched, Limits, Progress, Source};

pub use manifest::media_types;

/// How to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// Registry credentials (none: anonymous).
    pub auth: Option<Auth>,
    /// Talk plain HTTP to the registry (a local registry without TLS).
    pub insecure: bool,
    /// Which image of an index to take.
    pub platform: Platform,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            auth: None,
            insecure: false,
            platform: Platform::host(),
        }
    }
}

/// Registry credentials.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// HTTP basic auth (also sent to a token service that asks for it).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// A bearer token, sent as is.
    Bearer(String),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Basic { username, .. } => write!(f, "Basic({username}, <password>)"),
            Auth::Bearer(_) => f.write_str("Bearer(<token>)"),
        }
    }
}

/// An OS and CPU architecture, in OCI's names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, `riscv64`, …
    pub architecture: String,
    /// `v8`, `v7`, … (none: any variant matches).
    pub variant: Option<String>,
}

impl Platform {
    /// Linux on this machine's architecture.
    #[must_use]
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "loongarch64" => "loong64",
            other => other,
        };
        Self::linux(arch)
    }

    /// Linux on `architecture`.
    #[must_use]
    pub fn linux(architecture: &str) -> Self {
        Self {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// Whether an image for `os`/`arch`/`variant` runs here.
    #[must_use]
    pub fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.architecture == arch
            && (self.variant.is_none() || self.variant.as_deref() == variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        self.variant.as_ref().map_or(Ok(()), |v| write!(f, "/{v}"))
    }
}

/// How the daemon should answer a [`FetchError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request or the image is wrong (400).
    BadRequest,
    /// No such image, tag or file (404).
    NotFound,
    /// The registry refused the credentials (401).
    Unauthorized,
    /// Over a limit (413).
    TooLarge,
    /// The registry failed or served bad content (502).
    Upstream,
    /// Our side failed (500).
    Internal,
}

impl ErrorClass {
    /// The HTTP status for this class.
    #[must_use]
    pub fn http_status(self) -> u16 {
        match self {
            ErrorClass::BadRequest => 400,
            ErrorClass::NotFound => 404,
            ErrorClass::Unauthorized => 401,
            ErrorClass::TooLarge => 413,
            ErrorClass::Upstream => 502,
            ErrorClass::Internal => 500,
        }
    }
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The image, tag or file is not there.
    #[error("{0}")]
    NotFound(String),
    /// The registry refused us.
    #[error(
        "registry {registry} answered 401 for {repository}: the credentials are wrong, missing, or do not grant pull on it (check --username/--password)"
    )]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
    },
    /// The registry could not be reached or talked to.
    #[error("cannot reach registry {registry}: {detail}")]
    Connect {
        /// The registry host.
        registry: String,
        /// What failed (with a hint about `--insecure` when it may help).
        detail: String,
    },
    /// The registry answered with an error.
    #[error("registry {registry}: {detail}")]
    Registry {
        /// The registry host.
        registry: String,
        /// Its answer.
        detail: String,
    },
    /// No image for the wanted platform.
    #[error("no {wanted} image in the index (found {})", found.join(", "))]
    NoPlatform {
        /// The platform asked for.
        wanted: String,
        /// The platforms the index has.
        found: Vec<String>,
    },
    /// The image's config says another platform.
    #[error("the image is for {found}, not {wanted}")]
    WrongPlatform {
        /// The platform asked for.
        wanted: String,
        /// The config's platform.
        found: String,
    },
    /// A blob's content does not match its digest.
    #[error("{what} {digest} is corrupt: expected digest {digest}, got {actual}")]
    Corrupt {
        /// `layer`, `config`, `manifest`.
        what: &'static str,
        /// The digest it should have.
        digest: String,
        /// The digest it has.
        actual: String,
        /// Whether a registry served it (else a local file is bad).
        remote: bool,
    },
    /// A blob ended before its size.
    #[error("{what} {digest} is truncated: {got} of {expected} bytes")]
    Truncated {
        /// `layer`, `config`, `manifest`.
        what: &'static str,
        /// Its digest.
        digest: String,
        /// Its declared size.
        expected: u64,
        /// What arrived.
        got: u64,
        /// Whether a registry served it.
        remote: bool,
    },
    /// A blob is longer than its descriptor says.
    #[error("{what} {digest} is longer than its declared {expected} bytes")]
    Oversized {
        /// `layer`, `config`, `manifest`.
        what: &'static str,
        /// Its digest.
        digest: String,
        /// Its declared size.
        expected: u64,
        /// Whether a registry served it.
        remote: bool,
    },
    /// A blob over a limit.
    #[error("{what} {digest} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// `layer`, `manifest`, `config`.
        what: &'static str,
        /// Its digest.
        digest: String,
        /// Its size (declared, or read so far).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Something the importer does not handle.
    #[error("unsupported image: {0}")]
    Unsupported(String),
    /// A manifest, index, config or archive that is not valid.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// What was being read.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// The image config is not valid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A local file or directory failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

impl FetchError {
    /// How the daemon should answer this error.
    #[must_use]
    pub fn status_class(&self) -> ErrorClass {
        match self {
            FetchError::NotFound(_) => ErrorClass::NotFound,
            FetchError::Unauthorized { .. } => ErrorClass::Unauthorized,
            FetchError::Connect { .. } | FetchError::Registry { .. } => ErrorClass::Upstream,
            FetchError::Corrupt { remote, .. }
            | FetchError::Truncated { remote, .. }
            | FetchError::Oversized { remote, .. } => {
                if *remote {
                    ErrorClass::Upstream
                } else {
                    ErrorClass::BadRequest
                }
            }
            FetchError::TooLarge { .. } => ErrorClass::TooLarge,
            FetchError::NoPlatform { .. }
            | FetchError::WrongPlatform { .. }
            | FetchError::Unsupported(_)
            | FetchError::Invalid { .. }
            | FetchError::Config(_) => ErrorClass::BadRequest,
            FetchError::Io { .. } => ErrorClass::Internal,
        }
    }

    pub(crate) fn io(context: impl fmt::Display, source: std::io::Error) -> Self {
        FetchError::Io {
            context: context.to_string(),
            source,
        }
    }

    pub(crate) fn invalid(what: impl fmt::Display, detail: impl fmt::Display) -> Self {
        FetchError::Invalid {
            what: what.to_string(),
            detail: detail.to_string(),
        }
    }

    /// An error opening a local source: not found is [`FetchError::NotFound`].
    pub(crate) fn open(path: &Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            FetchError::NotFound(format!("{} does not exist", path.display()))
        } else {
            FetchError::io(format_args!("cannot read {}", path.display()), source)
        }
    }
}

/// Fetches `source` into `blobs` (see the module docs).
///
/// # Errors
/// [`FetchError`]: its [`status_class`](FetchError::status_class) tells how to answer.
pub async fn fetch(
    source: &Source,
    opts: &FetchOptions,
    blobs: &Path,
    limits: Limits,
    progress: Progress,
) -> Result<Fetched, FetchError> {
    let store = blobs::BlobStore::open(blobs)?;
    progress(crate::Event::Phase("resolving".into()));
    match source {
        Source::Registry(r) => registry::fetch(r, opts, &store, limits, &progress).await,
        local => {
            let local = local.clone();
            let platform = opts.platform.clone();
            tokio::task::spawn_blocking(move || {
                fetch_local(&local, &platform, &store, limits, &progress)
            })
            .await
            .map_err(|e| FetchError::io("local fetch task", std::io::Error::other(e)))?
        }
    }
}

fn fetch_local(
    source: &Source,
    platform: &Platform,
    store: &blobs::BlobStore,
    limits: Limits,
    progress: &Progress,
) -> Result<Fetched, FetchError> {
    let ctx = layout::Ctx {
        platform,
        store,
        limits,
        progress,
    };
    match source {
        Source::OciDir { path, tag } => {
            layout::fetch(&mut layout::DirLayout::new(path), tag.as_deref(), &ctx)
        }
        Source::OciArchive { path, tag } => {
            let mut archive = archive::TarLayout::open(path)?;
            layout::fetch(&mut archive, tag.as_deref(), &ctx)
        }
        Source::DockerArchive { path, reference } => {
            archive::fetch_docker(path, reference.as_deref(), &ctx)
        }
        Source::Rootfs(path) => archive::fetch_rootfs(path, &ctx),
        Source::Registry(_) => unreachable!("registries are fetched async"),
    }
}

/// The blob file for `digest` under a blob directory.
#[must_use]
pub fn blob_path(blobs: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    blobs.join("sha256").join(hex)
}
