//! `create`: plan → secrets → reserve (quota, new volumes, the row and its
//! volume attachments in one store transaction) → boot. A boot that fails
//! undoes the reservation in one transaction too, and asks the engine to
//! delete the files of volumes this create made.

use std::collections::BTreeMap;

use bhatti_engine::engine::{Engine, SandboxInfo, SandboxSpec, VolumeSpec};
use bhatti_store::sandboxes::{Sandbox, Status, Thermal};
use bhatti_store::users::User;
use bhatti_store::volumes::{Attachment, Volume};

use super::plan::Plan;
use super::{ServiceError, ServiceResult, engine_id};
use crate::keys;
use crate::model::{CreateSandbox, StoredMount, StoredSpec};
use crate::state::{AppState, now_unix};

/// What a create reserved in the store.
pub(super) struct Reserved {
    pub(super) row: Sandbox,
    /// Every mounted volume with its mount.
    volumes: Vec<(Volume, crate::model::Mount)>,
    /// The volumes this create made.
    made: Vec<Volume>,
    /// Keeps the expiry task off the sandbox while it is created.
    _creating: super::creating::Held,
}

impl<E: Engine> AppState<E> {
    /// Creates a sandbox for `user` and returns its row once the guest's
    /// agent answers.
    /// With [`CreateSandbox::snapshot`], the sandbox is restored from
    /// that snapshot instead ([`super::restore`]).
    pub async fn create_sandbox(&self, user: &User, req: CreateSandbox) -> ServiceResult<Sandbox> {
        let start = std::time::Instant::now();
        if req.snapshot.is_some() {
            let sb = self.restore_sandbox(user, req).await?;
            self.metrics.created(start.elapsed(), true);
            return Ok(sb);
        }
        let plan = self.plan(user, req)?;
        let env = self.boot_env(user, &plan)?;
        let r = self.reserve(user, &plan)?;
        let spec = SandboxSpec {
            cpus: plan.cpus,
            memory_mb: plan.memory_mb,
            image: plan.image,
            disk_mb: plan.disk_mb.map(u64::from),
            hostname: None,
            env,
            init: plan.init,
            volumes: r
                .volumes
                .iter()
                .map(|(v, m)| VolumeSpec {
                    name: v.id.clone(),
                    mount: m.mount.clone(),
                    size_mb: u64::from(v.size_mb),
                    readonly: m.readonly,
                })
                .collect(),
            files: plan.files,
            tenant: Some(user.id.clone()),
            peers: plan.peers,
            exec_user: plan.user,
            ..SandboxSpec::default()
        };
        let eid = engine_id(&r.row)?;
        match self.engine.create(eid.clone(), spec).await {
            Ok(info) => {
                let sb = self.created(&r.row, &info).await?;
                self.metrics.created(start.elapsed(), false);
                Ok(sb)
            }
            Err(e) => {
                tracing::warn!(sandbox = %r.row.id, error = %e, "create failed");
                self.unreserve(&r).await;
                Err(e.into())
            }
        }
    }

    /// Records what the engine made of a reserved row (its address and
    /// state) and returns the row.
    pub(super) async fn created(
        &self,
        row: &Sandbox,
        info: &SandboxInfo,
    ) -> ServiceResult<Sandbox> {
        let ip = info.ip.map(|ip| ip.to_string());
        self.store.set_sandbox_ip(&row.id, ip.as_deref())?;
        self.restart_ttl(row)?;
        self.sync_state(&info.id).await?;
        self.activity.touch(&row.id);
        tracing::info!(sandbox = %row.id, name = %row.name, "created");
        let row = self.store.sandbox_by_id(&row.id)?;
        self.events.created(&row, info.seq);
        Ok(row)
    }

    /// The environment the guest boots with: the plan's, plus the values
    /// of its secrets (decrypted here, never stored in the row).
    pub(super) fn boot_env(
        &self,
        user: &User,
        plan: &Plan,
    ) -> ServiceResult<BTreeMap<String, String>> {
        let mut env = plan.env.clone();
        for name in &plan.secrets {
            let ct = self
                .store
                .secret_ciphertext(&user.id, name)
                .map_err(|_| ServiceError::NoSecret(name.clone()))?;
            let value = String::from_utf8(self.secrets.decrypt(&ct)?).map_err(|_| {
                ServiceError::Corrupt {
                    what: "secret",
                    detail: format!("{name} is not UTF-8"),
                }
            })?;
            env.insert(name.clone(), value);
        }
        Ok(env)
    }

    /// Quota check and one store transaction (new volumes, the row, its
    /// attachments), serialised with other creates.
    pub(super) fn reserve(&self, user: &User, plan: &Plan) -> ServiceResult<Reserved> {
        let id = keys::new_id("sb-")?;
        let now = now_unix();
        let made = plan
            .new_volumes
            .iter()
            .map(|nv| {
                let vid = keys::new_id("v-")?;
                Ok(Volume {
                    path: self.engine.volume_path(&vid).to_string_lossy().into_owned(),
                    id: vid,
                    user_id: user.id.clone(),
                    name: nv.name.clone(),
                    size_mb: nv.size_mb,
                    created_at: now,
                })
            })
            .collect::<ServiceResult<Vec<_>>>()?;
        // A blocking mutex: nothing below awaits.
        let _guard = self
            .create_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let have = self.store.count_live_sandboxes(&user.id)?;
        if have >= user.limits.max_sandboxes {
            return Err(ServiceError::Quota {
                have,
                max: user.limits.max_sandboxes,
            });
        }
        let mut volumes = Vec::new();
        for m in plan.all_mounts() {
            let v = match made.iter().find(|v| v.name == m.name) {
                Some(v) => v.clone(),
                None => self.store.find_volume(&user.id, &m.name)?,
            };
            volumes.push((v, m));
        }
        let row = new_row(id, user, plan, &volumes, now);
        let attachments: Vec<Attachment> = volumes
            .iter()
            .map(|(v, m)| Attachment {
                volume_id: v.id.clone(),
                sandbox_id: row.id.clone(),
                mount: m.mount.clone(),
                readonly: m.readonly,
            })
            .collect();
        let _creating = self.creating.hold(&row.id);
        self.store.create_sandbox(&row, &made, &attachments)?;
        Ok(Reserved {
            row,
            volumes,
            made,
            _creating,
        })
    }

    /// Undoes a reservation whose boot failed: the row is marked destroyed
    /// (kept for audit) and the volumes it made are deleted, records and
    /// files.
    pub(super) async fn unreserve(&self, r: &Reserved) {
        let ids: Vec<String> = r.made.iter().map(|v| v.id.clone()).collect();
        if let Err(e) = self
            .store
            .abandon_create(&r.row.id, &r.row.user_id, &ids, now_unix())
        {
            tracing::warn!(sandbox = %r.row.id, error = %e, "undoing a failed create");
        }
        for v in &r.made {
            if let Err(e) = self.engine.delete_volume(&v.id).await {
                tracing::warn!(volume = %v.id, error = %e, "deleting a failed create's volume");
            }
        }
    }
}

/// The store row of a new sandbox.
fn new_row(
    id: String,
    user: &User,
    plan: &Plan,
    volumes: &[(Volume, crate::model::Mount)],
    now: i64,
) -> Sandbox {
    let spec = StoredSpec {
        env: plan.env.clone(),
        secrets: plan.secrets.clone(),
        init: plan.init.clone(),
        volumes: volumes
            .iter()
            .map(|(v, m)| StoredMount {
                volume_id: v.id.clone(),
                name: v.name.clone(),
                mount: m.mount.clone(),
                readonly: m.readonly,
            })
            .collect(),
        files: plan.files.len(),
        peers: plan.peers,
        user: plan.user.clone(),
        disk_size_mb: plan.disk_mb,
        image_name: plan.image_name.clone(),
        workdir: plan.workdir.clone(),
        idempotency_key: plan.idempotency_key.clone(),
    };
    Sandbox {
        id,
        user_id: user.id.clone(),
        name: plan.name.clone(),
        // What the engine will publish once it has booted the VM.
        status: Status::Running,
        thermal: Thermal::Hot,
        status_reason: None,
        ip: None,
        cpus: plan.cpus,
        memory_mb: plan.memory_mb,
        keep_hot: plan.keep_hot,
        template_id: plan.template_id.clone(),
        image: plan.image.to_string(),
        spec: serde_json::to_value(&spec).unwrap_or_default(),
        created_at: now,
        stopped_at: None,
        destroyed_at: None,
        labels: plan.labels.clone(),
        expires_at: plan.ttl.expires_at,
        on_expire: plan.ttl.on_expire,
    }
}
