//! Creating and destroying sandboxes, and changing a sandbox's place on
//! the network ([`VmEngine::set_sandbox_peers`]).
//!
//! Create: validate → reserve the id → sandbox dir → address → volumes →
//! (rootfs copy, grown to `disk_mb` ‖ TAP ‖ config drive, concurrently) →
//! VMM → wait for the agent → scrub the config drive → `sandbox.json` →
//! insert as Hot. Every step records what it made in [`Made`]; on failure
//! [`VmEngine::undo`] removes exactly that, newest first, and the VMM (if
//! spawned) is killed. The agent wait runs with no lock held: the sandbox is
//! not in the map yet, only its id is reserved.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, PoisonError};

use base64::Engine as _;
use bhatti_agent::Client;
use bhatti_proto::config::{GuestConfig, GuestFile, GuestVolume};

use super::recover::{Meta, read_meta, write_meta};
use super::{Sandbox, Slot, VmEngine, blocking, fault};
use crate::driver::{Driver, VmConfig, VmNet};
use crate::engine::{EngineError, EngineResult, SandboxId, SandboxInfo, SandboxSpec, VolumeSpec};
use crate::image::{self, config_drive};
use crate::network::{GuestPort, guest_mac};
use crate::snapshot::CloneSpec;
use crate::state::{Op, SandboxState};

/// The sandbox's root disk in its dir when it is a whole copy of its
/// image (sandboxes made before the image store); newer ones have an
/// overlay over the image ([`OVERLAY_FILE`]).
pub const ROOTFS_FILE: &str = "rootfs.ext4";

pub use crate::image::overlay::OVERLAY_FILE;

/// The root disk in sandbox (or snapshot) dir `dir`: the overlay, or a
/// whole copy when that is what the dir has.
pub fn root_disk(dir: &Path) -> PathBuf {
    let copy = dir.join(ROOTFS_FILE);
    if copy.exists() && !dir.join(OVERLAY_FILE).exists() {
        copy
    } else {
        dir.join(OVERLAY_FILE)
    }
}
/// The sandbox's config drive in its dir.
pub const CONFIG_DRIVE_FILE: &str = "config.ext4";

/// What a create has made so far (undone on failure).
#[derive(Debug, Default)]
pub(super) struct Made {
    pub(super) dir: Option<PathBuf>,
    ip: Option<Ipv4Addr>,
    port: Option<GuestPort>,
    /// Egress was switched on for `ip`.
    egress: bool,
    volumes: Vec<String>,
}

impl<D: Driver> VmEngine<D> {
    /// See [`crate::engine::Engine::create`].
    pub(super) async fn create_sandbox(
        &self,
        id: SandboxId,
        spec: SandboxSpec,
    ) -> EngineResult<SandboxInfo> {
        spec.validate()?;
        if let Some((snap, dir)) = self.golden_for(&spec) {
            match self
                .clone_sandbox(id.clone(), &snap, &dir, clone_of(&spec))
                .await
            {
                Ok(info) => return Ok(info),
                Err(e @ (EngineError::AlreadyExists(_) | EngineError::Spec(_))) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, golden = %snap, "restore-based create failed; booting instead");
                    self.drop_golden(&dir).await;
                }
            }
        }
        self.reserve(&id)?;
        let mut made = Made::default();
        let res = self.build(&id, spec, &mut made).await;
        match res {
            Ok(sb) => {
                self.booted(&sb.spec);
                let sb = Arc::new(sb);
                self.insert(sb.clone()).await;
                Ok(self.info(&sb))
            }
            Err(e) => {
                self.undo(made).await;
                Err(e)
            }
        }
    }

    /// Reserves `id` while it is being created: a second create of the
    /// same id fails at once.
    pub(super) fn reserve(&self, id: &SandboxId) -> EngineResult<()> {
        let mut map = self.creating.lock().unwrap_or_else(PoisonError::into_inner);
        let exists = self
            .sandboxes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(id);
        if exists || !map.insert(id.clone()) {
            return Err(EngineError::AlreadyExists(id.clone()));
        }
        Ok(())
    }

    async fn build(
        &self,
        id: &SandboxId,
        spec: SandboxSpec,
        made: &mut Made,
    ) -> EngineResult<Sandbox<D>> {
        let res = self.build_inner(id, spec, made).await;
        self.creating
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        res
    }

    async fn build_inner(
        &self,
        id: &SandboxId,
        mut spec: SandboxSpec,
        made: &mut Made,
    ) -> EngineResult<Sandbox<D>> {
        let kernel = self.config.images.kernel()?;
        let base = self.image_base(&spec.image)?;
        let disk = match spec.disk_mb {
            Some(_) => spec.disk_bytes(image::disk_limits(&base)?)?,
            None => None,
        };
        let dir = self.make_dir(id, made)?;
        let (ip, tap, port) = self.claim_address(id, &mut spec, made).await?;
        let (volume_paths, guest_volumes) = self.attach_volumes(id, &spec, made).await?;
        let token = random_token()?;
        let guest = self.guest_config(id, &spec, &token, guest_volumes);
        // The root disk, the TAP and the config drive are independent:
        // make them at the same time on the blocking pool.
        let (rootfs, cd) = (dir.join(OVERLAY_FILE), dir.join(CONFIG_DRIVE_FILE));
        let net = self.network.clone();
        let (copied, tapped, built) = tokio::join!(
            blocking(move || image::overlay::create(&base, &rootfs, disk)
                .map_err(image::ImageError::from)),
            blocking(move || net.attach(&port)),
            blocking(move || config_drive::build_for_boot(&guest, &cd)),
        );
        copied??;
        tapped??;
        let boot_drive = built??;

        let vm_config = self.vm_config(&dir, &spec, kernel, ip, &tap, volume_paths);
        let (vm, agent) = self.boot(&vm_config, &token).await?;
        let meta = Meta::of(id, &spec, ip, &tap, token);
        fault::point("create.vmm");
        // The guest has read its config: no secret stays in the drive file.
        let kept = boot_drive
            .scrub()
            .map_err(EngineError::from)
            .and_then(|()| write_meta(&dir, &meta));
        if let Err(e) = kept {
            let _ = self.driver.kill(vm).await;
            return Err(e);
        }
        fault::point("create.meta");
        Ok(hot_sandbox(id, spec, (ip, tap, dir), vm_config, agent, vm))
    }

    /// The engine's image store (`<data_dir>/images`).
    pub(crate) fn image_store(&self) -> image::ImageStore {
        image::ImageStore::new(self.config.data_dir.join("images"))
    }

    /// The raw image a new root disk of `image` is an overlay over.
    pub(super) fn image_base(&self, image: &image::ImageRef) -> EngineResult<PathBuf> {
        Ok(self.image_store().base(image, &self.config.images)?)
    }

    /// The sandbox's own directory (a leftover one means the id is taken).
    pub(super) fn make_dir(&self, id: &SandboxId, made: &mut Made) -> EngineResult<PathBuf> {
        let dir = self.config.data_dir.join("sandboxes").join(id.as_str());
        if dir.exists() {
            return Err(EngineError::AlreadyExists(id.clone()));
        }
        std::fs::create_dir_all(&dir).map_err(|source| EngineError::Io {
            path: dir.clone(),
            source,
        })?;
        made.dir = Some(dir.clone());
        Ok(dir)
    }

    /// An address, egress if asked (`spec.egress` is settled here), and
    /// the sandbox's port on the bridge (attached later, with the rootfs
    /// copy).
    pub(super) async fn claim_address(
        &self,
        id: &SandboxId,
        spec: &mut SandboxSpec,
        made: &mut Made,
    ) -> EngineResult<(Ipv4Addr, String, GuestPort)> {
        let ip = self.network.allocate_ip()?;
        made.ip = Some(ip);
        let egress = spec.egress.unwrap_or(self.network.egress_available());
        spec.egress = Some(egress);
        if egress {
            let net = self.network.clone();
            made.egress = true;
            blocking(move || net.set_guest_egress(ip, true)).await??;
        }
        let tap = self.network.tap_name(id.as_str());
        let port = guest_port(id, spec, ip, &tap);
        // Detaching a port that was never attached is fine, so record it
        // first.
        made.port = Some(port.clone());
        Ok((ip, tap, port))
    }

    /// Attaches the spec's volumes: their files, and where the guest
    /// mounts them (rootfs = vda, config drive = vdb, volumes from vdc on).
    async fn attach_volumes(
        &self,
        id: &SandboxId,
        spec: &SandboxSpec,
        made: &mut Made,
    ) -> EngineResult<(Vec<PathBuf>, Vec<GuestVolume>)> {
        let mut paths = Vec::new();
        for v in &spec.volumes {
            let path = self.volumes.attach(&v.name, v.size_mb, id).await?;
            made.volumes.push(v.name.clone());
            paths.push(path);
        }
        Ok((paths, guest_volumes(&spec.volumes)))
    }

    /// What lohar reads from the config drive at boot.
    pub(super) fn guest_config(
        &self,
        id: &SandboxId,
        spec: &SandboxSpec,
        token: &str,
        volumes: Vec<GuestVolume>,
    ) -> GuestConfig {
        GuestConfig {
            sandbox_id: id.to_string(),
            hostname: spec.hostname.clone().unwrap_or_else(|| id.to_string()),
            token: token.to_owned(),
            env: spec.env.clone(),
            files: spec
                .files
                .iter()
                .map(|f| GuestFile {
                    path: f.path.clone(),
                    content_b64: base64::engine::general_purpose::STANDARD.encode(&f.content),
                    mode: format!("{:o}", f.mode),
                    root_owned: false,
                })
                .collect(),
            volumes,
            init: spec.init.clone(),
            dns: self.config.dns.clone(),
            exec_user: spec.exec_user.clone(),
            ..GuestConfig::default()
        }
    }

    /// The driver's view of a sandbox (same for create and recovery).
    pub(super) fn vm_config(
        &self,
        dir: &Path,
        spec: &SandboxSpec,
        kernel: PathBuf,
        ip: Ipv4Addr,
        tap: &str,
        volumes: Vec<PathBuf>,
    ) -> VmConfig {
        VmConfig {
            vcpus: spec.cpus,
            memory_mib: spec.memory_mb,
            kernel,
            rootfs: root_disk(dir),
            config_drive: Some(dir.join(CONFIG_DRIVE_FILE)),
            volumes,
            net: Some(VmNet {
                tap: tap.to_owned(),
                mac: guest_mac(ip),
                guest_ip: ip,
                gateway: self.network.gateway(),
                prefix_len: 24,
            }),
            init: self.driver.guest_init().to_owned(),
            run_dir: dir.to_owned(),
            netns: Some(self.network.netns().to_owned()),
        }
    }

    /// Removes what a failed create (or a destroy) made, newest first.
    /// Failures are logged: the caller already has the error that matters.
    pub(super) async fn undo(&self, made: Made) {
        for name in made.volumes {
            self.volumes.release(&name);
        }
        if let Some(port) = made.port {
            let net = self.network.clone();
            match blocking(move || net.detach(&port)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "removing TAP"),
                Err(e) => tracing::warn!(error = %e, "removing TAP"),
            }
        }
        if let Some(ip) = made.ip
            && made.egress
        {
            let net = self.network.clone();
            match blocking(move || net.set_guest_egress(ip, false)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "revoking egress"),
                Err(e) => tracing::warn!(error = %e, "revoking egress"),
            }
        }
        if let Some(ip) = made.ip
            && let Err(e) = self.network.release_ip(ip)
        {
            tracing::warn!(error = %e, "releasing address");
        }
        if let Some(dir) = made.dir {
            let d = dir.clone();
            if let Ok(Err(e)) = blocking(move || std::fs::remove_dir_all(&d)).await {
                tracing::warn!(error = %e, dir = %dir.display(), "removing sandbox dir");
            }
        }
    }

    /// See [`crate::engine::Engine::destroy`]. A sandbox this engine does
    /// not hold but whose dir recovery left (it was reported
    /// [`Recovery::Unknown`](super::Recovery::Unknown)) has that dir removed
    /// and its address released.
    pub(super) async fn destroy_sandbox(&self, id: &SandboxId) -> EngineResult<()> {
        let sb = match self.get(id) {
            Ok(sb) => sb,
            Err(e @ EngineError::NotFound(_)) => {
                let dir = self.config.data_dir.join("sandboxes").join(id.as_str());
                if !dir.is_dir() {
                    return Err(e);
                }
                return self.remove_lost(&dir).await;
            }
            Err(e) => return Err(e),
        };
        self.apply(&sb, Op::Destroy).await?;
        fault::point("destroy");
        self.sandboxes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        self.undo(Made {
            dir: Some(sb.dir.clone()),
            ip: Some(sb.ip),
            port: Some(guest_port(&sb.id, &sb.spec, sb.ip, &sb.tap)),
            egress: sb.spec.egress.unwrap_or(false),
            volumes: sb.volumes.clone(),
        })
        .await;
        Ok(())
    }
}

impl<D: Driver> VmEngine<D> {
    /// See [`crate::engine::Engine::set_peers`]. Under the sandbox's lock,
    /// so that it does not race a destroy; `sandbox.json` first, so that a
    /// crash between the two steps is repaired by the next recovery.
    pub(super) async fn set_sandbox_peers(&self, id: &SandboxId, peers: bool) -> EngineResult<()> {
        let sb = self.get(id)?;
        let _slot = sb.slot.lock().await;
        let mut meta = read_meta(&sb.dir).map_err(|e| EngineError::Inconsistent(e.to_string()))?;
        meta.peers = peers;
        write_meta(&sb.dir, &meta)?;
        let port = GuestPort {
            peers,
            ..guest_port(&sb.id, &sb.spec, sb.ip, &sb.tap)
        };
        let net = self.network.clone();
        blocking(move || net.attach(&port)).await??;
        Ok(())
    }
}

/// A new sandbox's entry (booted or restored), hot on `vm`.
pub(super) fn hot_sandbox<D: Driver>(
    id: &SandboxId,
    spec: SandboxSpec,
    (ip, tap, dir): (Ipv4Addr, String, PathBuf),
    vm_config: VmConfig,
    agent: Client,
    vm: D::Vm,
) -> Sandbox<D> {
    Sandbox {
        id: id.clone(),
        ip,
        tap,
        dir,
        vm_config,
        agent,
        volumes: spec.volumes.iter().map(|v| v.name.clone()).collect(),
        boot_env: std::sync::Mutex::new(spec.env.clone()),
        spec,
        restores: AtomicU64::new(0),
        observed: Sandbox::<D>::observed(SandboxState::Hot),
        slot: tokio::sync::Mutex::new(Slot::new(SandboxState::Hot, Some(vm), None)),
    }
}

/// The sandbox's port on the bridge. A sandbox without a tenant is a
/// tenant of its own.
pub(super) fn guest_port(id: &SandboxId, spec: &SandboxSpec, ip: Ipv4Addr, tap: &str) -> GuestPort {
    GuestPort {
        tap: tap.to_owned(),
        ip,
        tenant: spec
            .tenant
            .clone()
            .unwrap_or_else(|| format!("sandbox:{id}")),
        peers: spec.peers,
    }
}

/// Where the guest mounts `volumes`: rootfs = vda, config drive = vdb,
/// volumes from vdc on, in order.
pub(super) fn guest_volumes(volumes: &[VolumeSpec]) -> Vec<GuestVolume> {
    volumes
        .iter()
        .enumerate()
        .map(|(i, v)| GuestVolume {
            device: format!("/dev/vd{}", volume_letter(i)),
            mount: v.mount.clone(),
            readonly: v.readonly,
        })
        .collect()
}

/// Device letter of the `i`-th volume: rootfs is `vda`, the config drive
/// `vdb`, volumes start at `vdc` (the spec allows at most
/// [`MAX_VOLUMES`](crate::engine::MAX_VOLUMES)).
fn volume_letter(i: usize) -> char {
    let i = u8::try_from(i.min(23)).unwrap_or(23);
    char::from(b'c' + i)
}

/// What a restore-based create gives the guest besides the golden
/// snapshot ([`super::golden`]).
fn clone_of(spec: &SandboxSpec) -> CloneSpec {
    CloneSpec {
        hostname: spec.hostname.clone(),
        env: spec.env.clone(),
        tenant: spec.tenant.clone(),
        peers: spec.peers,
        egress: spec.egress,
    }
}

/// A fresh agent token ([`bhatti_proto::token::agent_token`]).
pub(super) fn random_token() -> EngineResult<String> {
    bhatti_proto::token::agent_token().map_err(|e| EngineError::Io {
        path: PathBuf::from("getrandom"),
        source: std::io::Error::other(e),
    })
}
