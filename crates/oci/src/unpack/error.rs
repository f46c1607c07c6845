//! The errors of unpacking, and whose fault each one is.

use std::io;
use std::path::PathBuf;

/// Whose fault an error is, for the daemon's status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The image is hostile, corrupt or malformed (a 4xx: 422).
    BadImage,
    /// The image is larger than [`Limits`](crate::Limits) allow (a 4xx: 413).
    TooLarge,
    /// Something failed on our side: disk full, I/O error (a 5xx).
    Internal,
}

/// Why one layer (one tar stream) could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The root directory cannot be opened.
    #[error("cannot open the image root {}: {source}", path.display())]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The stream is not a valid (compressed) tar archive or ends early.
    #[error("the archive is truncated or corrupt: {source}")]
    Corrupt {
        #[source]
        source: io::Error,
    },
    /// Reading the blob failed on our side.
    #[error("cannot read the layer: {source}")]
    Read {
        #[source]
        source: io::Error,
    },
    /// An entry's name is absolute.
    #[error("entry `{entry}` is an absolute path")]
    Absolute { entry: String },
    /// An entry's name climbs above the root with `..`.
    #[error("entry `{entry}` leaves the image root")]
    LeavesRoot { entry: String },
    /// A hard link's target is outside the root, missing or a directory.
    #[error("entry `{entry}`: hard link target `{target}` {problem}")]
    LinkTarget {
        entry: String,
        target: String,
        problem: &'static str,
    },
    /// The regular files add up to more than the limit.
    #[error("entry `{entry}`: the unpacked image is larger than the limit of {limit} bytes")]
    TooLarge { entry: String, limit: u64 },
    /// The archive is too big in another way: too many entries, names
    /// taking too much memory.
    #[error("entry `{entry}`: {what}")]
    Bounds { entry: String, what: String },
    /// An entry is malformed or cannot exist in a tree (a file where a
    /// directory is needed, a symlink loop, an unknown type, a bad xattr).
    #[error("entry `{entry}`: {problem}")]
    Invalid { entry: String, problem: String },
    /// A filesystem operation failed on our side.
    #[error("entry `{entry}`: cannot {op}: {source}")]
    Io {
        entry: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

impl ApplyError {
    /// Whose fault this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Corrupt { .. }
            | Self::Absolute { .. }
            | Self::LeavesRoot { .. }
            | Self::LinkTarget { .. }
            | Self::Invalid { .. } => ErrorClass::BadImage,
            Self::TooLarge { .. } | Self::Bounds { .. } => ErrorClass::TooLarge,
            Self::Root { .. } | Self::Read { .. } | Self::Io { .. } => ErrorClass::Internal,
        }
    }
}

/// Why an image could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The root directory cannot be opened.
    #[error("cannot open the image root {}: {source}", path.display())]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A layer's media type names a compression or format we do not read.
    #[error("{layer}: unsupported media type `{media_type}`")]
    MediaType { layer: String, media_type: String },
    /// A layer blob is larger than `max_layer_bytes`.
    #[error("{layer}: the blob is {size} bytes, over the limit of {limit}")]
    LayerTooLarge {
        layer: String,
        size: u64,
        limit: u64,
    },
    /// A layer blob cannot be opened.
    #[error("{layer}: cannot open the blob {}: {source}", path.display())]
    Blob {
        layer: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `unpack_verified` got a different number of diff_ids than layers.
    #[error("the image config lists {diff_ids} diff_ids for {layers} layers")]
    DiffIdCount { layers: usize, diff_ids: usize },
    /// A layer's uncompressed stream does not hash to its diff_id.
    #[error("{layer}: uncompressed, it is {actual}, not the config's diff_id {expected}")]
    DiffId {
        layer: String,
        expected: String,
        actual: String,
    },
    /// A layer failed to apply.
    #[error("{layer}: {source}")]
    Layer {
        /// `layer N (sha256:0123456789ab…)`, N counted from 1, bottom first.
        layer: String,
        #[source]
        source: ApplyError,
    },
}

impl UnpackError {
    /// Whose fault this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Root { .. } | Self::Blob { .. } => ErrorClass::Internal,
            Self::MediaType { .. } | Self::DiffIdCount { .. } | Self::DiffId { .. } => {
                ErrorClass::BadImage
            }
            Self::LayerTooLarge { .. } => ErrorClass::TooLarge,
            Self::Layer { source, .. } => source.class(),
        }
    }

    /// The image's fault (a 4xx), not ours.
    pub fn is_client_error(&self) -> bool {
        self.class() != ErrorClass::Internal
    }
}
