//! The checks of a [`SandboxSpec`] that need nothing but the spec: sizes,
//! names and guest paths. The engine runs them before it makes anything;
//! the server runs them too, on a stand-in spec, before it reserves
//! anything. (That the root disk fits its image, at least its size and at
//! most what its file system grows to, is checked by the engine's create,
//! which reads the image: [`SandboxSpec::disk_bytes`].)

use std::str::FromStr;

use super::{
    DiskLimits, MAX_CPUS, MAX_DISK_MB, MAX_MEMORY_MB, MAX_VOLUMES, MIN_MEMORY_MB, SandboxId,
    SandboxSpec,
};
use crate::image::ImageRef;

/// A request that cannot be carried out as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("invalid sandbox id {0:?} (1-64 chars of a-z, 0-9, -)")]
    Id(String),
    #[error("cpus must be 1-{MAX_CPUS}, got {0}")]
    Cpus(u32),
    #[error("memory must be {MIN_MEMORY_MB}-{MAX_MEMORY_MB} MB, got {0}")]
    Memory(u32),
    #[error("disk size must be 1-{MAX_DISK_MB} MB, got {0}")]
    DiskSize(u64),
    #[error(
        "disk size {asked_mb} MB is smaller than the {image} image ({image_mb} MB); a disk can grow, never shrink"
    )]
    DiskTooSmall {
        asked_mb: u64,
        image: ImageRef,
        image_mb: u64,
    },
    #[error(
        "disk size {asked_mb} MB is more than the {image} image's file system grows to at boot ({max_mb} MB)"
    )]
    DiskTooLarge {
        asked_mb: u64,
        image: ImageRef,
        max_mb: u64,
    },
    #[error("invalid environment variable name {0:?}")]
    EnvKey(String),
    #[error("invalid hostname {0:?}")]
    Hostname(String),
    #[error("invalid volume name {0:?}")]
    VolumeName(String),
    #[error("volume {0:?} needs a size above 0")]
    VolumeSize(String),
    #[error("guest path {0:?} must be absolute without `..`")]
    Path(String),
    #[error("at most {MAX_VOLUMES} volumes, got {0}")]
    TooManyVolumes(usize),
    #[error("two volumes mount at {0:?}")]
    DuplicateMount(String),
    #[error("file mode {0:o} is not a permission mode")]
    Mode(u32),
    #[error("the tenant must not be empty")]
    Tenant,
    #[error("invalid guest user {0:?} (a user name of letters, digits, _ . - or a numeric uid)")]
    User(String),
}

impl SandboxSpec {
    /// Checks sizes, names and paths; the engine calls this before doing
    /// anything.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.cpus == 0 || self.cpus > MAX_CPUS {
            return Err(SpecError::Cpus(self.cpus));
        }
        if !(MIN_MEMORY_MB..=MAX_MEMORY_MB).contains(&self.memory_mb) {
            return Err(SpecError::Memory(self.memory_mb));
        }
        if let Some(mb) = self.disk_mb
            && !(1..=MAX_DISK_MB).contains(&mb)
        {
            return Err(SpecError::DiskSize(mb));
        }
        for key in self.env.keys() {
            let ok = key.bytes().next().is_some_and(|b| !b.is_ascii_digit())
                && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                return Err(SpecError::EnvKey(key.clone()));
            }
        }
        if let Some(h) = &self.hostname {
            let ok = !h.is_empty()
                && h.len() <= 63
                && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !ok {
                return Err(SpecError::Hostname(h.clone()));
            }
        }
        if self.tenant.as_ref().is_some_and(|t| t.is_empty()) {
            return Err(SpecError::Tenant);
        }
        if let Some(u) = &self.exec_user
            && !guest_user_ok(u)
        {
            return Err(SpecError::User(u.chars().take(80).collect()));
        }
        self.validate_volumes()?;
        for f in &self.files {
            if !guest_path_ok(&f.path) {
                return Err(SpecError::Path(f.path.clone()));
            }
            if f.mode > 0o7777 {
                return Err(SpecError::Mode(f.mode));
            }
        }
        Ok(())
    }

    /// The root disk's size in bytes with an image whose [`DiskLimits`]
    /// are `limits`: `None` to keep the image's size (no `disk_mb`, or
    /// exactly the image's); [`SpecError::DiskTooSmall`] below it,
    /// [`SpecError::DiskTooLarge`] above the most it grows to.
    pub fn disk_bytes(&self, limits: DiskLimits) -> Result<Option<u64>, SpecError> {
        const MIB: u64 = 1 << 20;
        let Some(mb) = self.disk_mb else {
            return Ok(None);
        };
        let bytes = mb.saturating_mul(MIB);
        if bytes < limits.min {
            return Err(SpecError::DiskTooSmall {
                asked_mb: mb,
                image: self.image.clone(),
                image_mb: limits.min.div_ceil(MIB),
            });
        }
        if bytes > limits.max {
            return Err(SpecError::DiskTooLarge {
                asked_mb: mb,
                image: self.image.clone(),
                max_mb: limits.max / MIB,
            });
        }
        Ok((bytes > limits.min).then_some(bytes))
    }

    fn validate_volumes(&self) -> Result<(), SpecError> {
        if self.volumes.len() > MAX_VOLUMES {
            return Err(SpecError::TooManyVolumes(self.volumes.len()));
        }
        let mut mounts = std::collections::HashSet::new();
        for v in &self.volumes {
            SandboxId::from_str(&v.name).map_err(|_| SpecError::VolumeName(v.name.clone()))?;
            if !guest_path_ok(&v.mount) || v.mount == "/" {
                return Err(SpecError::Path(v.mount.clone()));
            }
            if !mounts.insert(v.mount.as_str()) {
                return Err(SpecError::DuplicateMount(v.mount.clone()));
            }
            if v.size_mb == 0 {
                return Err(SpecError::VolumeSize(v.name.clone()));
            }
        }
        Ok(())
    }
}

/// A guest user as `user`/`exec_user` take it: a passwd name (1-32 chars
/// of letters, digits, `_`, `.`, `-`, not starting with `-`) or a uid.
pub fn guest_user_ok(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 32
        && !u.starts_with('-')
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && (u.bytes().any(|b| !b.is_ascii_digit()) || u.parse::<u32>().is_ok())
}

fn guest_path_ok(p: &str) -> bool {
    p.starts_with('/') && !p.contains('\0') && !p.split('/').any(|c| c == "..")
}
