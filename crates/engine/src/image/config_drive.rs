//! The per-sandbox config drive: a small read-only ext4 image (label
//! [`LABEL`]) holding `config.json` ([`GuestConfig`]), attached as the
//! second virtio-blk device and read by lohar at boot.
//!
//! Built without mounting: the JSON is written into a private staging
//! directory next to the output and packed with `mkfs.ext4 -d` into a
//! sparse file. The image is written to a temporary name and renamed into
//! place, so a reader never sees a half-built drive.
//!
//! Secrets (env values, the agent token, file contents, the init script)
//! are on the drive only until the guest has read it: [`build_for_boot`]
//! also builds, beside it, a scrubbed drive of the same size ([`scrubbed`])
//! that [`BootDrive::scrub`] renames over the boot drive once the agent
//! answers. lohar reads the drive once at boot and unmounts it; the guest
//! never reads it again (a guest reboot ends QEMU, `-no-reboot`), and a
//! restore only has QEMU reopen the file. A VMM already running keeps the
//! old inode open until it exits; it is freed then.
//!
//! # Threads, locks, I/O
//! Blocking file I/O and `mkfs.ext4` children; [`build_for_boot`] runs its
//! two on a scoped second thread; no shared state.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bhatti_proto::config::{CONFIG_FILE, GuestConfig};

/// Filesystem label of every config drive.
pub const LABEL: &str = "bhatti-cfg";

/// Smallest drive size (ext4 needs a little room for its metadata).
pub const MIN_SIZE: u64 = 4 << 20;

/// Largest accepted `config.json` (files to write at boot travel in it).
pub const MAX_CONFIG_LEN: usize = 64 << 20;

/// Suffix of the scrubbed drive waiting beside a boot drive.
pub const SCRUBBED_SUFFIX: &str = ".scrubbed";

/// Errors building a config drive.
#[derive(Debug, thiserror::Error)]
pub enum ConfigDriveError {
    #[error("could not serialize the guest config")]
    Serialize(#[source] serde_json::Error),
    #[error("guest config is {0} bytes, more than the {MAX_CONFIG_LEN}-byte limit")]
    TooLarge(usize),
    #[error("{what} {}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run mkfs.ext4 (install the Debian package e2fsprogs)")]
    MkfsMissing(#[source] std::io::Error),
    #[error("mkfs.ext4 failed for {}: {stderr}", .path.display())]
    Mkfs { path: PathBuf, stderr: String },
}

/// Writes `config` as `config.json` into a fresh ext4 image at `out`
/// (replacing any previous file there). `out`'s directory must exist.
pub fn build(config: &GuestConfig, out: &Path) -> Result<(), ConfigDriveError> {
    let json = to_json(config)?;
    build_image(&json, out, image_size(json.len()))
}

/// A boot drive and the scrubbed drive that replaces it after boot.
#[derive(Debug)]
#[must_use = "the boot drive holds secrets until it is scrubbed"]
pub struct BootDrive {
    drive: PathBuf,
    scrubbed: PathBuf,
}

/// Builds `config` at `out` for the first boot and, at `out` +
/// [`SCRUBBED_SUFFIX`], the same-size drive holding only [`scrubbed`]`(config)`.
pub fn build_for_boot(config: &GuestConfig, out: &Path) -> Result<BootDrive, ConfigDriveError> {
    let json = to_json(config)?;
    let size = image_size(json.len());
    let mut name = out.as_os_str().to_owned();
    name.push(SCRUBBED_SUFFIX);
    let scrubbed_path = PathBuf::from(name);
    let scrubbed_json = to_json(&scrubbed(config, lockout_token(&scrubbed_path)?))?;
    // Two mkfs runs at once: create waits for this beside the rootfs copy.
    std::thread::scope(|s| {
        let other = s.spawn(|| build_image(&scrubbed_json, &scrubbed_path, size));
        let boot = build_image(&json, out, size);
        other
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            .and(boot)
    })?;
    Ok(BootDrive {
        drive: out.to_owned(),
        scrubbed: scrubbed_path,
    })
}

impl BootDrive {
    /// Renames the scrubbed drive over the boot drive: from now on the
    /// file holds no secret. Call once the guest has read its config (the
    /// agent answered).
    pub fn scrub(self) -> Result<(), ConfigDriveError> {
        fs::rename(&self.scrubbed, &self.drive).map_err(|source| ConfigDriveError::Io {
            what: "cannot rename into",
            path: self.drive.clone(),
            source,
        })
    }
}

/// What a drive keeps once the guest has booted: identity, hostname,
/// volumes, DNS, user and exec_user (all a restore or a new boot of the same disk
/// could want that is not secret). Env, files and the init script are
/// dropped; the token becomes `lockout`, a random value nobody holds, so
/// a guest that ever booted from this drive would refuse every client
/// (an empty token would mean "no auth").
pub fn scrubbed(config: &GuestConfig, lockout: String) -> GuestConfig {
    GuestConfig {
        sandbox_id: config.sandbox_id.clone(),
        hostname: config.hostname.clone(),
        token: lockout,
        volumes: config.volumes.clone(),
        dns: config.dns.clone(),
        user: config.user.clone(),
        exec_user: config.exec_user.clone(),
        ..GuestConfig::default()
    }
}

/// A token nobody holds ([`bhatti_proto::token::agent_token`]; `path`
/// names the drive in errors).
fn lockout_token(path: &Path) -> Result<String, ConfigDriveError> {
    bhatti_proto::token::agent_token().map_err(|e| ConfigDriveError::Io {
        what: "no randomness for the lockout token of",
        path: path.to_owned(),
        source: std::io::Error::other(e),
    })
}

fn to_json(config: &GuestConfig) -> Result<Vec<u8>, ConfigDriveError> {
    let json = serde_json::to_vec_pretty(config).map_err(ConfigDriveError::Serialize)?;
    if json.len() > MAX_CONFIG_LEN {
        return Err(ConfigDriveError::TooLarge(json.len()));
    }
    Ok(json)
}

/// Packs `json` as `config.json` into a `size`-byte ext4 image at `out`.
fn build_image(json: &[u8], out: &Path, size: u64) -> Result<(), ConfigDriveError> {
    let staging = Staging::new(out)?;
    let cfg_path = staging.dir.join(CONFIG_FILE);
    let io = |what, path: &Path| {
        let path = path.to_owned();
        move |source| ConfigDriveError::Io { what, path, source }
    };
    // The token is a secret: readable by root only.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&cfg_path)
        .map_err(io("cannot create", &cfg_path))?;
    f.write_all(json).map_err(io("cannot write", &cfg_path))?;
    f.sync_all().map_err(io("cannot sync", &cfg_path))?;
    drop(f);
    fs::set_permissions(&staging.dir, fs::Permissions::from_mode(0o700))
        .map_err(io("cannot chmod", &staging.dir))?;

    let tmp = staging.image.clone();
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("cannot create", &tmp))?;
    file.set_len(size).map_err(io("cannot size", &tmp))?;
    drop(file);
    let output = Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-L",
            LABEL,
            "-m",
            "0",
            "-O",
            "^has_journal",
            "-d",
        ])
        .arg(&staging.dir)
        .arg(&tmp)
        .stdin(Stdio::null())
        .output()
        .map_err(ConfigDriveError::MkfsMissing)?;
    if !output.status.success() {
        return Err(ConfigDriveError::Mkfs {
            path: out.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    fs::rename(&tmp, out).map_err(io("cannot rename into", out))?;
    Ok(())
}

/// Drive size for a config of `len` bytes: [`MIN_SIZE`] of room for the
/// filesystem plus twice the content, rounded up to a MiB.
fn image_size(len: usize) -> u64 {
    const MIB: u64 = 1 << 20;
    let content = (len as u64)
        .saturating_mul(2)
        .div_ceil(MIB)
        .saturating_mul(MIB);
    MIN_SIZE.saturating_add(content)
}

/// Staging dir and temporary image path next to the output; both removed
/// on drop (the image only if it was not renamed into place).
struct Staging {
    dir: PathBuf,
    image: PathBuf,
}

impl Staging {
    fn new(out: &Path) -> Result<Self, ConfigDriveError> {
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let stem = out
            .file_name()
            .map_or_else(|| "config".into(), |n| n.to_string_lossy().into_owned());
        let tag = format!(".{stem}.{}.{}", std::process::id(), unique());
        let dir = parent.join(format!("{tag}.d"));
        let image = parent.join(format!("{tag}.tmp"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).map_err(|source| ConfigDriveError::Io {
            what: "cannot create staging dir",
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir, image })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(&self.image);
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests;
