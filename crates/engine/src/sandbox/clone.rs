//! Sandboxes made from a snapshot instead of a boot: restore into a new
//! sandbox ([`VmEngine::clone_sandbox`]) and fork ([`VmEngine::fork_sandbox`]).
//!
//! Restore: validate → reserve the id → sandbox dir → address → (copies
//! of the snapshot's disks ‖ TAP) → the driver starts a VMM from the
//! snapshot (the guest runs with its source's identity, and its bridge
//! port drops everything it sends) → the new identity goes over the
//! driver's side channel ([`bhatti_proto::identify`]) → the agent answers
//! at the new address with the new token → `sandbox.json` → insert as
//! Hot. A failure undoes every step, as a create's does.
//!
//! Fork: one snapshot of the parent under `forks/`, one restore per
//! child, in turn (each is CPU-bound under TCG), then the snapshot is
//! deleted. All or nothing: a child that fails destroys its siblings.

use std::sync::{Arc, PoisonError};

use bhatti_proto::identify::{ENTROPY_LEN, Identity};

use super::create::{Made, hot_sandbox, random_token};
use super::recover::{Meta, write_meta};
use super::snapshots::{SnapshotMeta, copy_disks, state_snapshot};
use super::{Sandbox, VmEngine, blocking, fault};
use crate::driver::Driver;
use crate::engine::{EngineError, EngineResult, SandboxId, SandboxInfo, SandboxSpec};
use crate::network::{guest_mac, mac_string};
use crate::snapshot::{CloneSpec, MAX_FORK, SnapshotId};

impl<D: Driver> VmEngine<D> {
    /// See [`crate::engine::Engine::create_from_snapshot`].
    pub(super) async fn clone_sandbox(
        &self,
        id: SandboxId,
        snap: &SnapshotId,
        dir: &std::path::Path,
        clone: CloneSpec,
    ) -> EngineResult<SandboxInfo> {
        let (meta, info) = self.read_snapshot(snap, dir)?;
        if let Some(problem) = info.problem {
            return Err(EngineError::SnapshotBroken {
                id: snap.clone(),
                problem,
            });
        }
        let spec = clone_spec(&meta, clone)?;
        spec.validate()?;
        self.reserve(&id)?;
        let mut made = Made::default();
        let res = self.build_clone(&id, spec, &meta, dir, &mut made).await;
        self.creating
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        match res {
            Ok(sb) => {
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

    async fn build_clone(
        &self,
        id: &SandboxId,
        mut spec: SandboxSpec,
        meta: &SnapshotMeta,
        snap_dir: &std::path::Path,
        made: &mut Made,
    ) -> EngineResult<Sandbox<D>> {
        let kernel = self.config.images.kernel()?;
        let dir = self.make_dir(id, made)?;
        let (ip, tap, port) = self.claim_address(id, &mut spec, made).await?;
        let net = self.network.clone();
        let (copied, tapped) = tokio::join!(
            copy_disks(snap_dir, &dir),
            blocking(move || net.attach(&port)),
        );
        copied?;
        tapped??;
        let vm_config = self.vm_config(&dir, &spec, kernel, ip, &tap, Vec::new());
        let mut vm = self
            .driver
            .restore_clone(&vm_config, &state_snapshot(snap_dir))
            .await?;
        let token = random_token()?;
        let identity = Identity {
            auth: meta.token.clone(),
            token: token.clone(),
            sandbox_id: id.to_string(),
            hostname: spec.hostname.clone().unwrap_or_else(|| id.to_string()),
            mac: mac_string(guest_mac(ip)),
            ip,
            prefix_len: 24,
            gateway: self.network.gateway(),
            entropy: random_hex()?,
            env: (spec.env != meta.env).then(|| spec.env.clone()),
        };
        if let Err(e) = self
            .driver
            .send_identity(&mut vm, identity.to_line().as_bytes())
            .await
        {
            let _ = self.driver.kill(vm).await;
            return Err(e.into());
        }
        let (vm, agent) = self.await_agent(vm, &vm_config, &token, true).await?;
        let child = Meta::of(id, &spec, ip, &tap, token);
        fault::point("clone.vmm");
        if let Err(e) = write_meta(&dir, &child) {
            let _ = self.driver.kill(vm).await;
            return Err(e);
        }
        Ok(hot_sandbox(id, spec, (ip, tap, dir), vm_config, agent, vm))
    }

    /// See [`crate::engine::Engine::fork`].
    pub(super) async fn fork_sandbox(
        &self,
        id: &SandboxId,
        children: Vec<(SandboxId, CloneSpec)>,
    ) -> EngineResult<Vec<SandboxInfo>> {
        if children.is_empty() || children.len() > MAX_FORK {
            return Err(EngineError::Unsupported(format!(
                "a fork makes 1-{MAX_FORK} sandboxes, not {}",
                children.len()
            )));
        }
        let snap: SnapshotId = format!("fork-{}", random_hex_n::<8>()?).parse()?;
        let dir = self.forks_root().join(snap.as_str());
        self.take_snapshot(id, &snap, &dir).await?;
        let mut made = Vec::new();
        let mut failed = None;
        for (child, clone) in children {
            match self.clone_sandbox(child, &snap, &dir, clone).await {
                Ok(info) => made.push(info),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Err(e) = super::remove_dir(&dir).await {
            tracing::warn!(error = %e, "removing a fork's snapshot");
        }
        match failed {
            None => Ok(made),
            Some(e) => {
                for info in made {
                    if let Err(err) = self.destroy_sandbox(&info.id).await {
                        tracing::warn!(error = %err, id = %info.id, "removing a failed fork's child");
                    }
                }
                Err(e)
            }
        }
    }
}

/// The new sandbox's spec: the snapshot's size, image and guest settings,
/// the request's identity and network place.
fn clone_spec(meta: &SnapshotMeta, clone: CloneSpec) -> EngineResult<SandboxSpec> {
    let mut env = meta.env.clone();
    env.extend(clone.env);
    Ok(SandboxSpec {
        cpus: meta.cpus,
        memory_mb: meta.memory_mb,
        image: meta.image.parse()?,
        disk_mb: meta.disk_mb,
        hostname: clone.hostname,
        env,
        init: meta.init.clone(),
        volumes: Vec::new(),
        files: Vec::new(),
        egress: clone.egress,
        tenant: clone.tenant,
        peers: clone.peers,
        exec_user: meta.exec_user.clone(),
    })
}

fn random_hex() -> EngineResult<String> {
    random_hex_n::<ENTROPY_LEN>()
}

fn random_hex_n<const N: usize>() -> EngineResult<String> {
    bhatti_proto::token::random_hex::<N>().map_err(|e| EngineError::Io {
        path: std::path::PathBuf::from("getrandom"),
        source: std::io::Error::other(e),
    })
}
