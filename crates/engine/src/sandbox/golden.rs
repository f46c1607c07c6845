//! Restore-based create: a create restores a pre-booted snapshot of its
//! image ("golden" snapshot) and re-identifies the guest instead of
//! booting it, when one is ready; boot is the fallback.
//!
//! - A golden snapshot is kept per image, vCPU count and memory size in
//!   `<data_dir>/goldens/<tier>-<cpus>c-<memory>m/`, laid out like a named
//!   snapshot ([`super::snapshots`]). It is of a guest booted with no user
//!   data at all (no environment, files, init script or volumes; its own
//!   throwaway token and address), idle right after its agent answered.
//! - It is made by [`VmEngine::prepare_golden`]: by the background task
//!   [`VmEngine::run_goldens`] (the daemon runs it) once
//!   [`GOLDEN_AFTER_BOOTS`] creates of one key had to boot; concurrent
//!   calls for one key make it once. Without that task only an explicit
//!   `prepare` makes one.
//! - [`crate::sandbox::EngineConfig::restore_creates`] off: creates always
//!   boot.
//! - It records a fingerprint of the kernel and rootfs image files (size
//!   and modification time; lohar lives in the image): a snapshot whose
//!   fingerprint no longer matches is not used, and the next
//!   `prepare_golden` replaces it.
//! - Only specs that a restore can honour use it: no volumes, files,
//!   init script, exec user or disk size (each needs the boot). The
//!   environment, hostname and network place come with the identity.
//! - A restore that fails removes the golden snapshot and the create boots.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::PoisonError;

use super::create::{CONFIG_DRIVE_FILE, Made, OVERLAY_FILE, ROOTFS_FILE, random_token};
use super::recover::write_private_json;
use super::snapshots::{SNAPSHOT_META, STATE_FILE, SnapshotMeta, file_sizes, make_private_dir};
use super::{VmEngine, blocking, orphans};
use crate::driver::Driver;
use crate::engine::{EngineError, EngineResult, SandboxId, SandboxSpec};
use crate::image::{self, config_drive};
use crate::snapshot::SnapshotId;

/// Boot-based creates of one key after which its golden snapshot is made.
pub const GOLDEN_AFTER_BOOTS: u32 = 2;

/// Where golden snapshots live, under the data dir.
pub const GOLDENS: &str = "goldens";

/// The golden snapshot a spec can be restored from, by name.
fn key(spec: &SandboxSpec) -> Option<String> {
    let plain = spec.volumes.is_empty()
        && spec.files.is_empty()
        && spec.init.is_none()
        && spec.exec_user.is_none()
        && spec.disk_mb.is_none();
    plain.then(|| format!("{}-{}c-{}m", spec.image.short(), spec.cpus, spec.memory_mb))
}

/// Size and modification time of the kernel and the image: what makes a
/// golden snapshot current.
fn fingerprint(kernel: &Path, rootfs: &Path) -> Option<String> {
    let part = |p: &Path| -> Option<String> {
        let m = std::fs::metadata(p).ok()?;
        Some(format!("{}:{}.{}", m.len(), m.mtime(), m.mtime_nsec()))
    };
    Some(format!("kernel {} image {}", part(kernel)?, part(rootfs)?))
}

/// What the engine tracks of golden snapshots.
#[derive(Debug, Default)]
pub(super) struct Goldens {
    /// Keys being made now.
    building: HashSet<String>,
    /// Boot-based creates per key since its last request.
    boots: HashMap<String, u32>,
    /// Keys to make, with a spec of each.
    wanted: HashMap<String, SandboxSpec>,
}

impl<D: Driver> VmEngine<D> {
    fn goldens_root(&self) -> PathBuf {
        self.config.data_dir.join(GOLDENS)
    }

    /// The current fingerprint for `spec`'s image.
    fn fingerprint_of(&self, spec: &SandboxSpec) -> Option<String> {
        let kernel = self.config.images.kernel().ok()?;
        let rootfs = match &spec.image {
            image::ImageRef::Tier(t) => self.config.images.rootfs(*t).ok()?,
            image::ImageRef::Stored(_) => self.image_base(&spec.image).ok()?,
        };
        fingerprint(&kernel, &rootfs)
    }

    /// The golden snapshot `spec` can be created from, if one is ready,
    /// current and whole.
    pub(super) fn golden_for(&self, spec: &SandboxSpec) -> Option<(SnapshotId, PathBuf)> {
        if !self.config.restore_creates {
            return None;
        }
        let name = key(spec)?;
        let dir = self.goldens_root().join(&name);
        let id: SnapshotId = name.parse().ok()?;
        let (meta, info) = self.read_snapshot(&id, &dir).ok()?;
        let current = meta.fingerprint.is_some() && meta.fingerprint == self.fingerprint_of(spec);
        (current && info.problem.is_none()).then_some((id, dir))
    }

    /// Counts a create of `spec` that booted; asks [`VmEngine::run_goldens`]
    /// for its golden snapshot once there were [`GOLDEN_AFTER_BOOTS`].
    pub(super) fn booted(&self, spec: &SandboxSpec) {
        let Some(name) = key(spec).filter(|_| self.config.restore_creates) else {
            return;
        };
        let mut goldens = self.goldens.lock().unwrap_or_else(PoisonError::into_inner);
        let boots = goldens.boots.entry(name.clone()).or_insert(0);
        *boots += 1;
        if *boots >= GOLDEN_AFTER_BOOTS {
            *boots = 0;
            goldens.wanted.insert(name, spec.clone());
            self.golden_wanted.notify_one();
        }
    }

    /// Makes the golden snapshots creates asked for ([`VmEngine::booted`]),
    /// one at a time, until the future is dropped (which ends a build in
    /// progress: its VMM is killed, and its leftovers are cleared at the
    /// next start).
    pub async fn run_goldens(&self) {
        loop {
            self.golden_wanted.notified().await;
            let wanted = std::mem::take(
                &mut self
                    .goldens
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .wanted,
            );
            for (name, spec) in wanted {
                if let Err(e) = self.prepare_golden(&spec).await {
                    tracing::warn!(golden = %name, error = %e, "making a golden snapshot failed");
                }
            }
        }
    }

    /// Forgets a golden snapshot that failed to restore.
    pub(super) async fn drop_golden(&self, dir: &Path) {
        if let Err(e) = super::remove_dir(dir).await {
            tracing::warn!(error = %e, dir = %dir.display(), "removing a golden snapshot");
        }
    }

    /// Makes the golden snapshot for `spec` unless a current one exists,
    /// another call is making it, or `spec` cannot use one. Returns
    /// whether it made one. Boots a guest: seconds under TCG.
    pub async fn prepare_golden(&self, spec: &SandboxSpec) -> EngineResult<bool> {
        let Some(name) = key(spec) else {
            return Ok(false);
        };
        if self.golden_for(spec).is_some() {
            return Ok(false);
        }
        let fresh = self
            .goldens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .building
            .insert(name.clone());
        if !fresh {
            return Ok(false);
        }
        let res = self.build_golden(spec, &name).await;
        self.goldens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .building
            .remove(&name);
        res.map(|()| true)
    }

    async fn build_golden(&self, asked: &SandboxSpec, name: &str) -> EngineResult<()> {
        let mut spec = SandboxSpec {
            cpus: asked.cpus,
            memory_mb: asked.memory_mb,
            image: asked.image.clone(),
            egress: Some(false),
            peers: false,
            ..SandboxSpec::default()
        };
        let fingerprint = self.fingerprint_of(&spec);
        let kernel = self.config.images.kernel()?;
        let base = self.image_base(&spec.image)?;
        let root = self.goldens_root();
        let (dir, tmp) = (root.join(name), root.join(format!(".{name}.tmp")));
        let _ = std::fs::remove_dir_all(&tmp);
        make_private_dir(&tmp)?;
        // Its own address and port while it boots; a tenant of its own.
        let id: SandboxId =
            format!("golden-{}", random_token()?.get(..8).unwrap_or("0")).parse()?;
        let mut made = Made::default();
        made.dir = Some(tmp.clone());
        let res = async {
            let (ip, tap, port) = self.claim_address(&id, &mut spec, &mut made).await?;
            let token = random_token()?;
            let guest = self.guest_config(&id, &spec, &token, Vec::new());
            let (rootfs, cd) = (tmp.join(OVERLAY_FILE), tmp.join(CONFIG_DRIVE_FILE));
            let net = self.network.clone();
            let (copied, tapped, built) = tokio::join!(
                blocking(move || image::overlay::create(&base, &rootfs, None)
                    .map_err(image::ImageError::from)),
                blocking(move || net.attach(&port)),
                blocking(move || config_drive::build_for_boot(&guest, &cd)),
            );
            copied??;
            tapped??;
            let drive = built??;
            let vm_config = self.vm_config(&tmp, &spec, kernel, ip, &tap, Vec::new());
            let (mut vm, _agent) = self.boot(&vm_config, &token).await?;
            let captured = match drive.scrub() {
                Ok(()) => self.driver.capture(&mut vm, &tmp.join(STATE_FILE)).await,
                Err(e) => Err(crate::driver::DriverError::Snapshot {
                    driver: self.driver.name(),
                    source: Box::new(e),
                }),
            };
            let _ = self.driver.kill(vm).await;
            let captured = captured?;
            keep_only(&tmp, &captured.files);
            let meta = SnapshotMeta {
                id: name.parse()?,
                source: id.clone(),
                cpus: spec.cpus,
                memory_mb: spec.memory_mb,
                image: spec.image.to_string(),
                disk_mb: None,
                token,
                env: Default::default(),
                init: None,
                exec_user: None,
                created_unix: super::snapshots::now_unix(),
                paused_ms: u64::try_from(captured.took.as_millis()).unwrap_or(u64::MAX),
                files: file_sizes(&tmp),
                fingerprint,
            };
            write_private_json(&tmp.join(SNAPSHOT_META), &meta)?;
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&tmp, &dir).map_err(|source| EngineError::Io {
                path: dir.clone(),
                source,
            })
        }
        .await;
        if res.is_ok() {
            made.dir = None;
        }
        self.undo(made).await;
        if res.is_ok() {
            tracing::info!(golden = %name, "golden snapshot ready: creates of it restore");
        }
        res
    }

    /// Removes the golden snapshots of `image` (it is being deleted).
    pub(super) fn drop_goldens_of(&self, image: &image::ImageRef) {
        let prefix = format!("{}-", image.short());
        let Ok(entries) = std::fs::read_dir(self.goldens_root()) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Ends golden builds an earlier run left (their VMMs, their dirs).
    pub(super) fn clear_partial_goldens(&self) {
        let root = self.goldens_root();
        orphans::kill_all(&root);
        let Ok(entries) = std::fs::read_dir(&root) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Removes what the VMM left in the golden snapshot's dir (its logs and
/// sockets: it ran there), keeping the captured files and the disks.
fn keep_only(dir: &Path, captured: &[PathBuf]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let disk = [OVERLAY_FILE, ROOTFS_FILE, CONFIG_DRIVE_FILE]
            .iter()
            .any(|d| path == dir.join(d));
        if !disk && !captured.contains(&path) {
            let _ = std::fs::remove_file(&path);
        }
    }
}
