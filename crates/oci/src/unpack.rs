//! Layers applied, bottom first, into an empty root directory: the tree
//! the image describes, and nothing written anywhere else.
//!
//! [`unpack`] opens each [`Layer`] blob, undoes its compression and hands
//! the tar stream to [`apply_layer`]. It is blocking: the daemon runs it
//! with `spawn_blocking`.
//!
//! # Compression
//! By media type: `…+gzip`/`….tar.gzip` is gzip (several members are
//! read, as Go's reader does), `…+zstd` is zstd, any other `+suffix`
//! (`+bzip2`, `+encrypted`, …) is refused. A plain or unknown tar type
//! (`application/vnd.oci.image.layer.v1.tar`, `application/x-tar`, a
//! `rootfs:` tarball, …) is sniffed by its magic bytes, so a `.tar.gz` or
//! `.tar.zst` works whatever it is called. The compressed stream is read to
//! its end, so a cut or corrupt trailer is an error even when the tar in
//! it was complete.
//!
//! # Confinement
//! Every name is made relative to the root: a leading `./` is dropped; an
//! absolute name or a `..` that climbs above the root is refused (a
//! [`ErrorClass::BadImage`] error) rather than rewritten. Directories are
//! then resolved with `openat2(RESOLVE_IN_ROOT)`, which reads symlinks as
//! if the root were `/`: an earlier `var/run -> /run` keeps working
//! (`var/run/x` lands in the root's `run/`), and `evil -> /etc` or
//! `evil -> ../../..` followed by `evil/passwd` lands in the root's
//! `etc/passwd`, never the host's. This is what containerd does. The last
//! component is created and changed with `*at()` calls that never follow
//! it. A missing parent is created (0755), where a dangling symlink
//! points if it goes through one. `tar::Entry::unpack_in` is not used (it
//! resolves through host symlinks).
//!
//! # Entries
//! - A regular file replaces whatever is there (a directory included).
//! - A directory keeps an existing directory (its metadata updated) and
//!   replaces anything else. Directory times are set when the layer is
//!   done (writing into a directory changes them): the entry's, or for a
//!   directory the layer changed without an entry for it, the times it had
//!   before the layer (as umoci does), so the tree does not depend on when
//!   it was unpacked. Only a directory made for a missing parent gets the
//!   time of the unpack.
//! - A symlink keeps its target verbatim (it is never resolved here).
//! - A hard link's target is a name of the root, checked like an entry
//!   name; it must exist and not be a directory; a final symlink is linked,
//!   not followed. A hard link's own header metadata is not applied (it is
//!   the target's inode).
//! - Character and block devices and FIFOs are made with `mknod`; without
//!   the privilege (not root, no `CAP_MKNOD`) a device is skipped with a
//!   warning and counted in [`UnpackStats::skipped`].
//! - A pre-POSIX regular file entry whose name ends in `/` is a directory.
//! - Owner (uid/gid from the header or PAX, set only when we are root),
//!   then mode with setuid/setgid/sticky (after the owner: `chown` clears
//!   them), then xattrs (PAX `SCHILY.xattr.*`, `security.capability`
//!   included; `trusted.overlay.*` and `security.selinux` left out), then
//!   times (PAX times with their fraction).
//! - Whiteouts: `DIR/.wh.NAME` removes `NAME` from lower layers;
//!   `DIR/.wh..wh..opq` empties `DIR` of lower layers' content, wherever it
//!   comes in its layer: what the same layer writes is kept. Other
//!   `.wh..wh.*` names (aufs bookkeeping) are ignored. No whiteout file
//!   appears in the result.
//! - Old GNU sparse files are written out whole (their size counts in
//!   full); GNU tar's PAX sparse files (`GNU.sparse.*`) are refused.
//! - The PAX global header is ignored; any other entry type is an error.
//!
//! # The root
//! [`unpack`] first makes the root directory `0755`, owned by root (when
//! we are root), as an image's `/` is unless a layer has a `./` entry
//! saying otherwise: the caller's fresh directory may have been made
//! `0700`, and `mkfs.ext4 -d` copies the root's metadata.
//!
//! # Trust
//! A [`Layer`]'s blob is taken to match its digest: fetching verified it
//! (the digest only names the layer in errors and progress here). Whether
//! the blob is a valid archive, and what its names say, is not trusted.
//!
//! # Limits and errors
//! The regular files' sizes add up against `max_unpacked_bytes` (checked
//! before a file is written and while it is); a blob over `max_layer_bytes`
//! is refused before it is read. Memory is bounded too, whatever the
//! archive says: an image has at most [`MAX_ENTRIES`] entries, one entry's
//! headers (GNU long names, PAX records, which the tar crate reads whole)
//! at most 16 MiB, and a layer's bookkeeping of names at most 256 MiB.
//!
//! A truncated or corrupt stream, a hostile name and a malformed entry (a
//! file where a directory is needed, a symlink loop, a bad xattr) are the
//! image's fault, disk and I/O failures ours: [`UnpackError::class`] tells
//! which. Errors name the layer (`layer 2 (sha256:ab12…)`, counted from 1,
//! bottom first) and the entry. On an error the root is left as it is,
//! half-applied: the caller removes its staging directory.
//!
//! # Diff IDs
//! [`unpack_verified`] also hashes each layer's uncompressed stream and
//! checks it against the image config's `rootfs.diff_ids` (containerd's
//! check); [`unpack`] does not (a `rootfs:` tarball has no config).
//!
//! # Progress
//! `Phase("unpacking")`, then per layer `Bytes { what: digest, done,
//! total: size }` counted on the blob as stored, about every MiB.
//!
//! # Threads, locks, I/O
//! All on the calling thread, no locks; blocking reads of the blob and
//! syscalls on the root. The caller must be the only writer in the root
//! while it runs (a fresh directory in a 0700 staging directory): the
//! confinement does not depend on it (no call follows a final symlink),
//! but that each node gets exactly its entry's metadata does. `/proc/self/fd` is used for
//! xattrs on symlinks and device nodes and to follow a dangling relative
//! symlink when making a missing parent.

mod apply;
mod error;
mod fs;
mod links;
mod meta;
mod path;
mod stream;
mod whiteout;

use std::cell::{Cell, RefCell};
use std::io::{BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use sha2::{Digest, Sha256};

pub use error::{ApplyError, ErrorClass, UnpackError};

use crate::{Event, Layer, Limits, Progress};

/// What unpacking made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Regular files written.
    pub files: u64,
    /// Directory entries applied.
    pub dirs: u64,
    /// Symlinks made.
    pub symlinks: u64,
    /// Hard links made.
    pub hardlinks: u64,
    /// Device nodes and FIFOs made.
    pub devices: u64,
    /// Whiteouts and opaque markers met.
    pub whiteouts: u64,
    /// Bytes of regular file data written.
    pub bytes: u64,
    /// Things let go with a warning: device nodes when not root, xattrs
    /// the filesystem does not take.
    pub skipped: u64,
}

impl UnpackStats {
    fn add(&mut self, o: &Self) {
        self.files += o.files;
        self.dirs += o.dirs;
        self.symlinks += o.symlinks;
        self.hardlinks += o.hardlinks;
        self.devices += o.devices;
        self.whiteouts += o.whiteouts;
        self.bytes += o.bytes;
        self.skipped += o.skipped;
    }
}

/// Entries an image may have, across its layers (whiteouts included). A
/// big distribution image has a few hundred thousand.
pub const MAX_ENTRIES: u64 = 1 << 22;

/// How many bytes of regular files, and how many entries, may still be
/// written, across layers.
#[derive(Debug, Clone)]
pub struct Budget {
    limit: u64,
    used: u64,
    entries: u64,
}

impl Budget {
    /// A budget of `limit` bytes (and [`MAX_ENTRIES`] entries).
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            used: 0,
            entries: 0,
        }
    }

    fn count_entry(&mut self, entry: &str) -> Result<(), ApplyError> {
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(ApplyError::Bounds {
                entry: entry.to_owned(),
                what: format!("the image has more than {MAX_ENTRIES} entries"),
            });
        }
        Ok(())
    }

    /// Bytes charged so far.
    pub fn used(&self) -> u64 {
        self.used
    }

    fn check(&self, more: u64, entry: &str) -> Result<(), ApplyError> {
        match self.used.checked_add(more) {
            Some(total) if total <= self.limit => Ok(()),
            _ => Err(ApplyError::TooLarge {
                entry: entry.to_owned(),
                limit: self.limit,
            }),
        }
    }

    fn take(&mut self, more: u64, entry: &str) -> Result<(), ApplyError> {
        self.check(more, entry)?;
        self.used += more;
        Ok(())
    }
}

/// Apply `layers`, bottom first, to the directory `root` (which should be
/// empty, in a directory only we can write to).
pub fn unpack(
    layers: &[Layer],
    root: &Path,
    limits: Limits,
    progress: &Progress,
) -> Result<UnpackStats, UnpackError> {
    unpack_inner(layers, None, root, limits, progress)
}

/// [`unpack`], and each layer's uncompressed stream must hash to the
/// config's `rootfs.diff_ids` entry of the same index (as containerd
/// checks): the config, whose digest is the image's id, then pins the
/// content. A mismatch is found at the end of its layer, after it was
/// applied; the caller discards the root on any error.
pub fn unpack_verified(
    layers: &[Layer],
    diff_ids: &[String],
    root: &Path,
    limits: Limits,
    progress: &Progress,
) -> Result<UnpackStats, UnpackError> {
    if diff_ids.len() != layers.len() {
        return Err(UnpackError::DiffIdCount {
            layers: layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    unpack_inner(layers, Some(diff_ids), root, limits, progress)
}

fn unpack_inner(
    layers: &[Layer],
    diff_ids: Option<&[String]>,
    root: &Path,
    limits: Limits,
    progress: &Progress,
) -> Result<UnpackStats, UnpackError> {
    let root_err = |source| UnpackError::Root {
        path: root.to_owned(),
        source,
    };
    let root_dir = fs::Root::open(root).map_err(root_err)?;
    root_dir.reset_metadata().map_err(root_err)?;
    progress(Event::Phase("unpacking".into()));
    let mut budget = Budget::new(limits.max_unpacked_bytes);
    let mut stats = UnpackStats::default();
    for (i, layer) in layers.iter().enumerate() {
        let one = One {
            layer,
            label: format!("layer {} ({})", i + 1, stream::short_digest(&layer.digest)),
            diff_id: diff_ids.map(|d| d[i].as_str()),
            limits,
        };
        stats.add(&one.unpack(&root_dir, &mut budget, progress)?);
    }
    Ok(stats)
}

/// One layer being unpacked.
struct One<'a> {
    layer: &'a Layer,
    label: String,
    diff_id: Option<&'a str>,
    limits: Limits,
}

impl One<'_> {
    fn unpack(
        &self,
        root: &fs::Root,
        budget: &mut Budget,
        progress: &Progress,
    ) -> Result<UnpackStats, UnpackError> {
        let (layer, label) = (self.layer, &self.label);
        let compression =
            stream::compression(&layer.media_type).ok_or_else(|| UnpackError::MediaType {
                layer: label.clone(),
                media_type: layer.media_type.clone(),
            })?;
        let expected = match self.diff_id {
            Some(d) => Some(
                d.strip_prefix("sha256:")
                    .ok_or_else(|| UnpackError::DiffId {
                        layer: label.clone(),
                        expected: d.to_owned(),
                        actual: "a sha256 digest".into(),
                    })?,
            ),
            None => None,
        };
        let file = self.open()?;
        let failed = Rc::new(Cell::new(false));
        let blob = stream::Blob {
            total: file.metadata().map(|m| m.len()).unwrap_or(layer.size),
            file,
            done: 0,
            reported: 0,
            what: &layer.digest,
            progress,
            failed: failed.clone(),
        };
        let hasher = Rc::new(RefCell::new(Sha256::new()));
        let res = stream::decompressed(BufReader::with_capacity(256 << 10, blob), compression)
            .and_then(|inner| {
                let tar = stream::Hashing {
                    inner,
                    hasher: hasher.clone(),
                };
                apply::apply(tar, root, budget)
            });
        let stats = res.map_err(|e| {
            // A read error of the blob file surfaces as a corrupt stream
            // through the decoders; it is ours.
            let source = match e {
                ApplyError::Corrupt { source } if failed.get() => ApplyError::Read { source },
                other => other,
            };
            UnpackError::Layer {
                layer: label.clone(),
                source,
            }
        })?;
        if let Some(expected) = expected {
            let actual = format!("{:x}", hasher.borrow_mut().finalize_reset());
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(UnpackError::DiffId {
                    layer: label.clone(),
                    expected: format!("sha256:{expected}"),
                    actual: format!("sha256:{actual}"),
                });
            }
        }
        Ok(stats)
    }

    /// The blob, its size checked against `max_layer_bytes`.
    fn open(&self) -> Result<std::fs::File, UnpackError> {
        let blob_err = |source| UnpackError::Blob {
            layer: self.label.clone(),
            path: self.layer.path.clone(),
            source,
        };
        let file = std::fs::File::open(&self.layer.path).map_err(blob_err)?;
        let size = file.metadata().map_err(blob_err)?.len();
        if size > self.limits.max_layer_bytes {
            return Err(UnpackError::LayerTooLarge {
                layer: self.label.clone(),
                size,
                limit: self.limits.max_layer_bytes,
            });
        }
        Ok(file)
    }
}

/// Apply one uncompressed tar stream to `root`, charging regular files to
/// `budget` (see the module docs for the semantics). Read errors of
/// `reader` count as a corrupt archive.
pub fn apply_layer(
    reader: impl Read,
    root: &Path,
    budget: &mut Budget,
) -> Result<UnpackStats, ApplyError> {
    let root_dir = fs::Root::open(root).map_err(|source| ApplyError::Root {
        path: root.to_owned(),
        source,
    })?;
    apply::apply(reader, &root_dir, budget)
}
