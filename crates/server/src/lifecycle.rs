//! Sandbox lifecycle as the API sees it: the store row and the engine
//! kept in step. Create (quota, template, secrets, volumes, boot),
//! destroy, stop, start, and [`AppState::live`], which every operation
//! that needs the VM goes through (ownership → status → touch → wake).
//!
//! Status in the store: `running` (thermal hot/warm/cold: the engine wakes
//! it on demand), `stopped` (the user's stop; only `start` brings it
//! back), `unknown` (its VM is gone without a snapshot; the reason is
//! kept), `destroyed` (row kept for audit, name free again).
//!
//! # Threads, locks, I/O
//! The quota check and the row insert run under `create_lock`; the VM
//! boot runs after it is released. Store calls are short and synchronous;
//! engine calls are awaited with no lock of ours held.

use std::collections::BTreeMap;

use base64::Engine as _;
use bhatti_engine::engine::{Engine, FileSpec, SandboxId, SandboxSpec, VolumeSpec};
use bhatti_engine::image::Tier;
use bhatti_store::sandboxes::{Sandbox, Status, Thermal};
use bhatti_store::users::User;
use bhatti_store::volumes::{Attachment, Volume};

use crate::error::ApiError;
use crate::extract::ApiResult;
use crate::keys;
use crate::model::{CreateSandbox, Mount, StoredMount, StoredSpec, TemplateSpec, parse_mode};
use crate::state::{AppState, now_unix};
use crate::users::valid_name;

/// A sandbox's engine id (store ids are made to be valid engine ids).
pub fn engine_id(sb: &Sandbox) -> ApiResult<SandboxId> {
    sb.id
        .parse()
        .map_err(|e| ApiError::Internal(format!("stored sandbox id: {e}")))
}

/// The image file of a volume (the engine's layout).
pub fn volume_path(data_dir: &std::path::Path, volume_id: &str) -> std::path::PathBuf {
    data_dir.join("volumes").join(format!("{volume_id}.ext4"))
}

/// A create request after template merge and validation.
struct Plan {
    name: String,
    cpus: u32,
    memory_mb: u32,
    image: Tier,
    env: BTreeMap<String, String>,
    secrets: Vec<String>,
    init: Option<String>,
    keep_hot: bool,
    peers: bool,
    mounts: Vec<Mount>,
    new_volumes: Vec<crate::model::NewVolume>,
    files: Vec<FileSpec>,
    template_id: Option<String>,
}

impl<E: Engine> AppState<E> {
    /// A live sandbox of `user`, by id or name (another user's is 404).
    pub fn find(&self, user: &User, id_or_name: &str) -> ApiResult<Sandbox> {
        Ok(self.store.find_sandbox(&user.id, id_or_name)?)
    }

    /// A sandbox whose VM is needed: it must be running; the call counts
    /// as activity and the VM is made hot (a cold one is restored; many
    /// concurrent callers share one wake).
    pub async fn live(&self, user: &User, id_or_name: &str) -> ApiResult<(Sandbox, SandboxId)> {
        let sb = self.find(user, id_or_name)?;
        let id = self.wake(&sb).await?;
        Ok((sb, id))
    }

    /// Makes a running sandbox hot (see [`AppState::live`]); any other
    /// status is 409 with what to do.
    pub async fn wake(&self, sb: &Sandbox) -> ApiResult<SandboxId> {
        match sb.status {
            Status::Running => {}
            Status::Stopped => {
                return Err(ApiError::Conflict(format!(
                    "sandbox {} is stopped; start it first",
                    sb.name
                )));
            }
            Status::Unknown | Status::Destroyed => {
                return Err(ApiError::Conflict(format!(
                    "sandbox {} is unavailable: {}",
                    sb.name,
                    sb.status_reason.as_deref().unwrap_or("state unknown")
                )));
            }
        }
        let id = engine_id(sb)?;
        self.activity.touch(&sb.id);
        self.engine.ensure_hot(&id).await?;
        if sb.thermal != Thermal::Hot {
            // `sb` was read before the wake: never revive a row that a
            // stop changed meanwhile.
            self.store.set_running_thermal(&sb.id, Thermal::Hot)?;
        }
        Ok(id)
    }

    /// `POST /sandboxes`.
    pub async fn create_sandbox(&self, user: &User, req: CreateSandbox) -> ApiResult<Sandbox> {
        let plan = self.plan(user, req)?;
        let mut env = plan.env.clone();
        for name in &plan.secrets {
            let ct = self
                .store
                .secret_ciphertext(&user.id, name)
                .map_err(|_| ApiError::NotFound(format!("secret {name}")))?;
            let value = String::from_utf8(self.secrets.decrypt(&ct)?)
                .map_err(|_| ApiError::Internal(format!("secret {name} is not UTF-8")))?;
            env.insert(name.clone(), value);
        }
        let id = keys::new_id("sb-").map_err(|e| ApiError::Internal(e.to_string()))?;
        let now = now_unix();

        // Reserve: quota, row, volumes (serialised with other creates).
        let (row, volumes, made) = {
            let _guard = self.create_lock.lock().await;
            let n = self.store.count_live_sandboxes(&user.id)?;
            if n >= user.limits.max_sandboxes {
                return Err(ApiError::TooManyRequests(format!(
                    "sandbox limit reached ({n}/{})",
                    user.limits.max_sandboxes
                )));
            }
            let mut made = Vec::new();
            for nv in &plan.new_volumes {
                let v = Volume {
                    id: keys::new_id("v-").map_err(|e| ApiError::Internal(e.to_string()))?,
                    user_id: user.id.clone(),
                    name: nv.name.clone(),
                    size_mb: nv.size_mb,
                    path: String::new(),
                    created_at: now,
                };
                let v = Volume {
                    path: volume_path(&self.settings.data_dir, &v.id)
                        .to_string_lossy()
                        .into_owned(),
                    ..v
                };
                if let Err(e) = self.store.create_volume(&v) {
                    self.drop_volumes(&user.id, &made);
                    return Err(e.into());
                }
                made.push(v);
            }
            let mut volumes = Vec::new();
            let mut mounts: Vec<Mount> = plan.mounts.clone();
            mounts.extend(plan.new_volumes.iter().map(|nv| Mount {
                name: nv.name.clone(),
                mount: nv.mount.clone(),
                readonly: false,
            }));
            for m in &mounts {
                match self.store.find_volume(&user.id, &m.name) {
                    Ok(v) => volumes.push((v, m.clone())),
                    Err(e) => {
                        self.drop_volumes(&user.id, &made);
                        return Err(e.into());
                    }
                }
            }
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
            };
            let row = Sandbox {
                id: id.clone(),
                user_id: user.id.clone(),
                name: plan.name.clone(),
                status: Status::Running,
                thermal: Thermal::Hot,
                status_reason: None,
                ip: None,
                cpus: plan.cpus,
                memory_mb: plan.memory_mb,
                keep_hot: plan.keep_hot,
                template_id: plan.template_id.clone(),
                image: plan.image.name().to_owned(),
                // The agent token lives with the engine (sandbox.json).
                agent_token: String::new(),
                spec: serde_json::to_value(&spec).unwrap_or_default(),
                snapshot_path: None,
                created_at: now,
                stopped_at: None,
                destroyed_at: None,
            };
            if let Err(e) = self.store.insert_sandbox(&row) {
                self.drop_volumes(&user.id, &made);
                return Err(e.into());
            }
            for (v, m) in &volumes {
                let a = Attachment {
                    volume_id: v.id.clone(),
                    sandbox_id: id.clone(),
                    mount: m.mount.clone(),
                    readonly: m.readonly,
                };
                if let Err(e) = self.store.attach_volume(&a) {
                    let _ = self.store.mark_sandbox_destroyed(&id, now_unix());
                    self.drop_volumes(&user.id, &made);
                    return Err(e.into());
                }
            }
            (row, volumes, made)
        };

        let spec = SandboxSpec {
            cpus: plan.cpus,
            memory_mb: plan.memory_mb,
            image: plan.image,
            hostname: None,
            env,
            init: plan.init,
            volumes: volumes
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
            ..SandboxSpec::default()
        };
        let eid = engine_id(&row)?;
        match self.engine.create(eid, spec).await {
            Ok(info) => {
                let ip = info.ip.map(|ip| ip.to_string());
                self.store.set_sandbox_ip(&row.id, ip.as_deref())?;
                self.activity.touch(&row.id);
                tracing::info!(sandbox = %row.id, name = %row.name, "created");
                Ok(self.store.sandbox_by_id(&row.id)?)
            }
            Err(e) => {
                tracing::warn!(sandbox = %row.id, error = %e, "create failed");
                let _ = self.store.mark_sandbox_destroyed(&row.id, now_unix());
                self.drop_volumes(&user.id, &made);
                Err(e.into())
            }
        }
    }

    /// Removes volumes made by a create that failed (records and files).
    fn drop_volumes(&self, user_id: &str, made: &[Volume]) {
        for v in made {
            if self.store.delete_volume(user_id, &v.name).is_ok() {
                let _ = std::fs::remove_file(volume_path(&self.settings.data_dir, &v.id));
            }
        }
    }

    /// Merges the template and validates everything that can be checked
    /// before anything is reserved.
    fn plan(&self, user: &User, req: CreateSandbox) -> ApiResult<Plan> {
        let tpl = match &req.template_id {
            Some(t) => {
                let t = self.store.find_template(&user.id, t)?;
                let spec: TemplateSpec = serde_json::from_value(t.spec)
                    .map_err(|e| ApiError::Internal(format!("stored template: {e}")))?;
                Some((t.id, spec))
            }
            None => None,
        };
        let (template_id, tspec) = match tpl {
            Some((id, s)) => (Some(id), s),
            None => (None, TemplateSpec::default()),
        };
        let name = match req.name {
            Some(n) if !valid_name(&n) => {
                return Err(ApiError::BadRequest(format!(
                    "invalid name {n:?}: 1-63 characters of [a-zA-Z0-9._-], starting alphanumeric"
                )));
            }
            Some(n) => n,
            None => generate_name()?,
        };
        let cpus = req.cpus.or(tspec.cpus).unwrap_or(1);
        let memory_mb = req.memory_mb.or(tspec.memory_mb).unwrap_or(512);
        if cpus == 0 || cpus > user.limits.max_cpus {
            return Err(ApiError::BadRequest(format!(
                "cpus must be 1-{} for this user, got {cpus}",
                user.limits.max_cpus
            )));
        }
        if !(bhatti_engine::engine::MIN_MEMORY_MB..=user.limits.max_memory_mb).contains(&memory_mb)
        {
            return Err(ApiError::BadRequest(format!(
                "memory_mb must be {}-{} for this user, got {memory_mb}",
                bhatti_engine::engine::MIN_MEMORY_MB,
                user.limits.max_memory_mb
            )));
        }
        let image = match req.image.or(tspec.image) {
            Some(i) => i
                .parse::<Tier>()
                .map_err(|e| ApiError::BadRequest(e.to_string()))?,
            None => self.settings.default_image,
        };
        let mut env = tspec.env;
        env.extend(req.env.unwrap_or_default());
        if let Some(k) = env.keys().find(|k| !crate::model::valid_env_name(k)) {
            return Err(ApiError::BadRequest(format!(
                "invalid environment variable name {k:?}"
            )));
        }
        let mut secrets = tspec.secrets;
        for s in req.secrets.unwrap_or_default() {
            if !secrets.contains(&s) {
                secrets.push(s);
            }
        }
        let mounts = req.volumes.unwrap_or(tspec.mounts);
        let new_volumes = req.new_volumes.unwrap_or_default();
        for nv in &new_volumes {
            if !valid_name(&nv.name) {
                return Err(ApiError::BadRequest(format!(
                    "invalid volume name {:?}",
                    nv.name
                )));
            }
            if nv.size_mb == 0 || nv.size_mb > 1024 * 1024 {
                return Err(ApiError::BadRequest(format!(
                    "volume {}: size_mb must be 1-1048576",
                    nv.name
                )));
            }
        }
        let mut files = Vec::new();
        for f in req.files.unwrap_or_default() {
            let content = base64::engine::general_purpose::STANDARD
                .decode(f.content_b64.as_bytes())
                .map_err(|e| ApiError::BadRequest(format!("file {}: content_b64: {e}", f.path)))?;
            let mode = match &f.mode {
                Some(m) => parse_mode(m).ok_or_else(|| {
                    ApiError::BadRequest(format!("file {}: invalid mode {m:?}", f.path))
                })?,
                None => 0o644,
            };
            files.push(FileSpec {
                path: f.path,
                content,
                mode,
            });
        }
        let plan = Plan {
            name,
            cpus,
            memory_mb,
            image,
            env,
            secrets,
            init: req.init.or(tspec.init),
            keep_hot: req.keep_hot.unwrap_or(false),
            peers: req.peers.unwrap_or(true),
            mounts,
            new_volumes,
            files,
            template_id,
        };
        // The engine's own checks (paths, mounts, sizes), before anything
        // is reserved.
        let probe = SandboxSpec {
            cpus: plan.cpus,
            memory_mb: plan.memory_mb,
            image: plan.image,
            hostname: None,
            env: plan.env.clone(),
            init: None,
            volumes: plan
                .mounts
                .iter()
                .map(|m| (m.mount.clone(), m.readonly))
                .chain(plan.new_volumes.iter().map(|n| (n.mount.clone(), false)))
                .enumerate()
                .map(|(i, (mount, readonly))| VolumeSpec {
                    name: format!("v{i}"),
                    mount,
                    size_mb: 1,
                    readonly,
                })
                .collect(),
            files: plan.files.clone(),
            ..SandboxSpec::default()
        };
        probe
            .validate()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        Ok(plan)
    }

    /// `DELETE /sandboxes/{id}`: the VM and its files go; volumes stay.
    pub async fn destroy_sandbox(&self, sb: &Sandbox) -> ApiResult<()> {
        let id = engine_id(sb)?;
        match self.engine.destroy(&id).await {
            Ok(()) | Err(bhatti_engine::engine::EngineError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.store.mark_sandbox_destroyed(&sb.id, now_unix())?;
        self.activity.forget(&sb.id);
        tracing::info!(sandbox = %sb.id, name = %sb.name, "destroyed");
        Ok(())
    }

    /// `POST /sandboxes/{id}/stop`: snapshot to disk, VM gone.
    pub async fn stop_sandbox(&self, sb: &Sandbox) -> ApiResult<Sandbox> {
        if sb.status == Status::Stopped {
            return Ok(sb.clone());
        }
        self.require_known(sb)?;
        let id = engine_id(sb)?;
        self.engine.stop(&id).await?;
        self.store
            .set_sandbox_state(&sb.id, Status::Stopped, Thermal::Cold, None)?;
        self.store
            .set_sandbox_stopped_at(&sb.id, Some(now_unix()))?;
        Ok(self.store.sandbox_by_id(&sb.id)?)
    }

    /// `POST /sandboxes/{id}/start`: restore from the snapshot.
    pub async fn start_sandbox(&self, sb: &Sandbox) -> ApiResult<Sandbox> {
        self.require_known(sb)?;
        let id = engine_id(sb)?;
        self.engine.start(&id).await?;
        self.store
            .set_sandbox_state(&sb.id, Status::Running, Thermal::Hot, None)?;
        self.activity.touch(&sb.id);
        Ok(self.store.sandbox_by_id(&sb.id)?)
    }

    fn require_known(&self, sb: &Sandbox) -> ApiResult<()> {
        if sb.status == Status::Unknown {
            return Err(ApiError::Conflict(format!(
                "sandbox {} is unavailable: {}; only delete is possible",
                sb.name,
                sb.status_reason.as_deref().unwrap_or("state unknown")
            )));
        }
        Ok(())
    }
}

/// `adjective-noun-xxxx`.
fn generate_name() -> ApiResult<String> {
    const ADJ: [&str; 16] = [
        "amber", "brisk", "calm", "deft", "eager", "fond", "glad", "hazy", "idle", "jolly", "keen",
        "lucid", "mellow", "nimble", "quiet", "rapid",
    ];
    const NOUN: [&str; 16] = [
        "anvil", "bellows", "coal", "crucible", "ember", "flame", "forge", "furnace", "hearth",
        "ingot", "kiln", "ladle", "oven", "smelter", "spark", "tongs",
    ];
    let r = keys::random_bytes::<4>().map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(format!(
        "{}-{}-{:02x}{:02x}",
        ADJ[usize::from(r[0] & 15)],
        NOUN[usize::from(r[1] & 15)],
        r[2],
        r[3]
    ))
}
