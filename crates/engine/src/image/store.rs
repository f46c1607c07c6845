//! The engine's image store, `<data_dir>/images/`: the immutable raw ext4
//! images that sandboxes' root disks are copy-on-write overlays over
//! ([`super::overlay`]).
//!
//! - `<hex>/rootfs.ext4` (0444) and `<hex>/image.json`: a stored image by
//!   content id `sha256:<hex>` — imported from OCI (the id of its config
//!   blob: two imports of one image are one image) or saved from a
//!   sandbox. Written under `tmp/` and renamed into place when complete.
//! - `tiers/<tier>-<fingerprint>.ext4`: the version of a built-in tier
//!   that sandboxes were made from. `cargo xtask images` replaces a tier's
//!   file when lohar changes; the overlays made before must keep reading
//!   the version they started from, so each version is pinned here by a
//!   hard link (a copy when the image cache is on another file system),
//!   named by the cache file's inode, size and modification time.
//! - `tmp/`: staging directories (0700: an unpacked image holds setuid
//!   files and device nodes that no host user may reach).
//!
//! What uses an image (sandboxes, snapshots) is known to the engine and
//! the server; [`ImageStore::remove`] only deletes.
//!
//! # Threads, locks, I/O
//! Blocking filesystem I/O. No shared state: concurrent pins of one tier
//! version race to one rename, and the loser's link is dropped.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ImageError, ImagePaths, ImageRef, copy_rootfs};

/// File name of a stored image's disk.
pub const IMAGE_DISK: &str = "rootfs.ext4";
/// File name of a stored image's description.
pub const IMAGE_META: &str = "image.json";

/// A stored image, as `image.json` keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredImage {
    /// `sha256:<hex>`.
    pub id: String,
    /// Where it came from (an import source, or `sandbox:<id>`).
    pub source: String,
    /// The disk's size in bytes (what the guest sees).
    pub size: u64,
    /// Bytes of host disk the image takes (it is sparse).
    #[serde(default)]
    pub used: u64,
    /// When it was stored (Unix seconds).
    pub created_unix: u64,
}

/// The image store under a directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

/// A private directory an image is built in, removed when dropped unless
/// stored.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
}

impl Staging {
    /// The directory (0700) the image's files go in: `root()` and scratch.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The image's root directory (created, empty).
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A random hex string (an agent token's 256 bits).
fn random_hex() -> Result<String, ImageError> {
    bhatti_proto::token::agent_token().map_err(|e| ImageError::Io {
        path: PathBuf::from("getrandom"),
        source: std::io::Error::other(e),
    })
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ImageStore {
    /// The store in `dir` (`<data_dir>/images`); created on first use.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn hex(id: &str) -> Result<&str, ImageError> {
        ImageRef::stored(id)?;
        Ok(&id["sha256:".len()..])
    }

    /// The directory of stored image `id`.
    fn image_dir(&self, id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.dir.join(Self::hex(id)?))
    }

    /// The raw image a root disk of `image` is an overlay over: a stored
    /// image's disk, or the pinned current version of a tier.
    pub fn base(&self, image: &ImageRef, cache: &ImagePaths) -> Result<PathBuf, ImageError> {
        match image {
            ImageRef::Tier(t) => self.pin(&cache.rootfs(*t)?, t.name()),
            ImageRef::Stored(id) => {
                let p = self.image_dir(id)?.join(IMAGE_DISK);
                if p.is_file() {
                    Ok(p)
                } else {
                    Err(ImageError::NotStored(id.clone()))
                }
            }
        }
    }

    /// Pins the current version of `file` (a tier's image in the cache).
    fn pin(&self, file: &Path, name: &str) -> Result<PathBuf, ImageError> {
        let m = fs::metadata(file).map_err(io(file))?;
        let tiers = self.dir.join("tiers");
        let pinned = tiers.join(format!(
            "{name}-{:x}-{:x}-{}.{:09}.ext4",
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec()
        ));
        if pinned.is_file() {
            return Ok(pinned);
        }
        fs::create_dir_all(&tiers).map_err(io(&tiers))?;
        let tmp = tiers.join(format!(".{}.tmp", random_hex()?));
        if fs::hard_link(file, &tmp).is_err() {
            copy_rootfs(file, &tmp)?;
        }
        fs::rename(&tmp, &pinned).map_err(io(&pinned))?;
        Ok(pinned)
    }

    /// A new private staging directory with an empty `root/`.
    pub fn staging(&self) -> Result<Staging, ImageError> {
        let tmp = self.dir.join("tmp");
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o700)).map_err(io(&tmp))?;
        let dir = tmp.join(random_hex()?);
        fs::create_dir(&dir).map_err(io(&dir))?;
        let staging = Staging { dir };
        let root = staging.root();
        fs::create_dir(&root).map_err(io(&root))?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).map_err(io(&root))?;
        Ok(staging)
    }

    /// Stored image `id`, if it is here.
    pub fn get(&self, id: &str) -> Result<StoredImage, ImageError> {
        let dir = self.image_dir(id)?;
        let meta = dir.join(IMAGE_META);
        let text = fs::read(&meta).map_err(|_| ImageError::NotStored(id.to_owned()))?;
        if !dir.join(IMAGE_DISK).is_file() {
            return Err(ImageError::NotStored(id.to_owned()));
        }
        serde_json::from_slice(&text).map_err(|e| ImageError::Corrupt {
            path: meta,
            detail: e.to_string(),
        })
    }

    /// Every stored image (unreadable ones are skipped).
    pub fn list(&self) -> Vec<StoredImage> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<StoredImage> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                self.get(&format!("sha256:{name}")).ok()
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Stores the raw ext4 file `disk` (in this store's `tmp/`) as image
    /// `id`; an image already stored under `id` is kept and `disk` dropped.
    pub fn store(&self, disk: &Path, id: &str, source: &str) -> Result<StoredImage, ImageError> {
        if let Ok(have) = self.get(id) {
            let _ = fs::remove_file(disk);
            return Ok(have);
        }
        let m = fs::metadata(disk).map_err(io(disk))?;
        let image = StoredImage {
            id: id.to_owned(),
            source: source.to_owned(),
            size: m.len(),
            used: m.blocks() * 512,
            created_unix: now_unix(),
        };
        let dir = self.image_dir(id)?;
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{}.image", random_hex()?));
        fs::create_dir(&tmp).map_err(io(&tmp))?;
        let res = (|| {
            fs::set_permissions(disk, fs::Permissions::from_mode(0o444)).map_err(io(disk))?;
            fs::rename(disk, tmp.join(IMAGE_DISK)).map_err(io(disk))?;
            let text = serde_json::to_vec_pretty(&image).unwrap_or_default();
            fs::write(tmp.join(IMAGE_META), text).map_err(io(&tmp))?;
            fs::rename(&tmp, &dir).map_err(io(&dir))
        })();
        if res.is_err() {
            let _ = fs::remove_dir_all(&tmp);
            // Stored meanwhile by a concurrent import of the same image.
            if let Ok(have) = self.get(id) {
                return Ok(have);
            }
        }
        res.map(|()| image)
    }

    /// Deletes stored image `id` (what still uses it is the caller's
    /// check).
    pub fn remove(&self, id: &str) -> Result<(), ImageError> {
        let dir = self.image_dir(id)?;
        if !dir.is_dir() {
            return Err(ImageError::NotStored(id.to_owned()));
        }
        // Renamed away first, so a half-deleted image is never listed.
        // `tmp/` is gone after a start ([`Self::clear_tmp`]) until a build.
        let tmp = self.dir.join("tmp");
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let gone = tmp.join(format!("{}.gone", random_hex()?));
        fs::rename(&dir, &gone).map_err(io(&dir))?;
        fs::remove_dir_all(&gone).map_err(io(&gone))
    }

    /// A fresh, unused file name in `tmp/` for building a disk.
    pub fn scratch_file(&self, ext: &str) -> Result<PathBuf, ImageError> {
        let tmp = self.dir.join("tmp");
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        Ok(tmp.join(format!("{}.{ext}", random_hex()?)))
    }

    /// Removes pinned tier versions that no overlay in `used` names, but
    /// the current version of each tier (so the next create links none).
    pub fn prune_tiers(&self, used: &std::collections::HashSet<PathBuf>, cache: &ImagePaths) {
        let current: Vec<PathBuf> = super::Tier::ALL
            .iter()
            .filter_map(|t| {
                let file = cache.rootfs(*t).ok()?;
                fs::metadata(&file).ok()?;
                self.pin(&file, t.name()).ok()
            })
            .collect();
        let Ok(entries) = fs::read_dir(self.dir.join("tiers")) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if !used.contains(&p) && !current.contains(&p) {
                tracing::info!(file = %p.display(), "removing an unused tier version");
                let _ = fs::remove_file(&p);
            }
        }
    }

    /// Removes leftovers of builds an earlier run did not finish.
    pub fn clear_tmp(&self) {
        let _ = fs::remove_dir_all(self.dir.join("tmp"));
        if let Ok(entries) = fs::read_dir(self.dir.join("tiers")) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with('.') {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }
}
