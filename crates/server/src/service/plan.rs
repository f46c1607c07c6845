//! A create request after its template is merged in and every rule is
//! checked ([`AppState::plan`]): nothing is reserved for a request that
//! cannot succeed.

use std::collections::BTreeMap;

use base64::Engine as _;
use bhatti_engine::engine::{Engine, FileSpec, SandboxSpec, VolumeSpec};
use bhatti_engine::image::ImageRef;
use bhatti_store::users::User;

use super::validate::{self, Invalid, parse_mode};
use super::{ServiceError, ServiceResult};
use crate::keys;
use crate::model::{CreateSandbox, FileIn, Mount, NewVolume, TemplateSpec};
use crate::state::AppState;

/// A create request after template merge and validation.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub cpus: u32,
    pub memory_mb: u32,
    pub image: ImageRef,
    /// The caller's name for a stored image (`None`: a tier).
    pub image_name: Option<String>,
    /// The image config's working directory: the default `cwd` of exec.
    pub workdir: Option<String>,
    /// Without secret values (those are added at boot only).
    pub env: BTreeMap<String, String>,
    pub secrets: Vec<String>,
    pub init: Option<String>,
    pub keep_hot: bool,
    pub peers: bool,
    /// Existing volumes to mount.
    pub mounts: Vec<Mount>,
    /// Volumes made by this create.
    pub new_volumes: Vec<NewVolume>,
    pub files: Vec<FileSpec>,
    pub template_id: Option<String>,
    /// The guest user of its commands and files ([`CreateSandbox::user`]).
    pub user: Option<String>,
    /// The root disk's size in MB ([`CreateSandbox::disk_size_mb`], else
    /// the template's); `None`: the image's.
    pub disk_mb: Option<u32>,
    /// The template's labels with the request's over them.
    pub labels: BTreeMap<String, String>,
    pub ttl: super::lifetime::Ttl,
    /// The create's `Idempotency-Key` ([`super::idempotent`]).
    pub idempotency_key: Option<String>,
}

impl Plan {
    /// Every mount of the sandbox: existing volumes, then new ones.
    pub fn all_mounts(&self) -> Vec<Mount> {
        let mut all = self.mounts.clone();
        all.extend(self.new_volumes.iter().map(|nv| Mount {
            name: nv.name.clone(),
            mount: nv.mount.clone(),
            readonly: false,
            auto_create: false,
        }));
        all
    }

    /// The engine's own checks (paths, mounts, sizes) on a stand-in spec,
    /// before anything is reserved.
    fn engine_check(&self) -> Result<(), Invalid> {
        let probe = SandboxSpec {
            cpus: self.cpus,
            memory_mb: self.memory_mb,
            image: self.image.clone(),
            disk_mb: self.disk_mb.map(u64::from),
            env: self.env.clone(),
            volumes: self
                .all_mounts()
                .into_iter()
                .enumerate()
                .map(|(i, m)| VolumeSpec {
                    name: format!("v{i}"),
                    mount: m.mount,
                    size_mb: 1,
                    readonly: m.readonly,
                })
                .collect(),
            files: self.files.clone(),
            ..SandboxSpec::default()
        };
        Ok(probe.validate()?)
    }
}

impl<E: Engine> AppState<E> {
    /// Merges the template into `req` and validates everything that can
    /// be checked before anything is reserved.
    pub fn plan(&self, user: &User, req: CreateSandbox) -> ServiceResult<Plan> {
        let (template_id, tspec) = self.template_of(user, req.template_id.as_deref())?;
        let name = match req.name {
            Some(n) => {
                validate::name(&n)?;
                n
            }
            None => generate_name()?,
        };
        let cpus = req.cpus.or(tspec.cpus).unwrap_or(1);
        let memory_mb = req.memory_mb.or(tspec.memory_mb).unwrap_or(512);
        validate::size(cpus, memory_mb, &user.limits)?;
        let resolved = self.image_of(user, req.image.or(tspec.image))?;
        let (image_init, image_user) = (resolved.init(), resolved.exec_user());
        // The image's env under the template's, under the request's.
        let mut env = resolved.config.env;
        env.extend(tspec.env);
        env.extend(req.env.unwrap_or_default());
        validate::env(env.keys())?;
        let mut secrets = tspec.secrets;
        for s in req.secrets.unwrap_or_default() {
            if !secrets.contains(&s) {
                secrets.push(s);
            }
        }
        let mut new_volumes = req.new_volumes.unwrap_or_default();
        // The template's mounts, then the request's; a request mount of
        // the same volume or target replaces the template's.
        let asked = req.volumes.unwrap_or_default();
        let taken = |t: &Mount| {
            asked.iter().any(|m| m.name == t.name || m.mount == t.mount)
                || new_volumes
                    .iter()
                    .any(|nv| nv.name == t.name || nv.mount == t.mount)
        };
        let template_mounts: Vec<Mount> = tspec.mounts.into_iter().filter(|t| !taken(t)).collect();
        let mut mounts = self.auto_create(user, template_mounts, &mut new_volumes)?;
        mounts.extend(asked);
        for nv in &new_volumes {
            validate::volume(&nv.name, nv.size_mb)?;
        }
        let guest_user = req.user.or(tspec.user);
        if let Some(u) = &guest_user {
            validate::user(u)?;
        }
        let guest_user = guest_user.or(image_user);
        let files = req
            .files
            .unwrap_or_default()
            .into_iter()
            .map(boot_file)
            .collect::<Result<Vec<_>, _>>()?;
        let (labels, ttl) =
            super::lifetime::of_create(tspec.labels, req.labels, req.ttl_sec, req.on_expire)?;
        let plan = Plan {
            labels,
            ttl,
            idempotency_key: req.idempotency_key,
            name,
            cpus,
            memory_mb,
            image: resolved.image,
            image_name: resolved.name,
            workdir: resolved.config.working_dir,
            env,
            secrets,
            init: req.init.or(tspec.init).or(image_init),
            keep_hot: req.keep_hot.unwrap_or(false),
            peers: req.peers.unwrap_or(true),
            mounts,
            new_volumes,
            files,
            template_id,
            user: guest_user,
            disk_mb: req
                .disk_size_mb
                .or(tspec.disk_size_mb.filter(|mb| *mb != 0)),
        };
        plan.engine_check()?;
        Ok(plan)
    }

    /// A template's mounts, those marked `auto_create` whose volume the
    /// user lacks moved to `new_volumes` (at the default size).
    fn auto_create(
        &self,
        user: &User,
        mounts: Vec<Mount>,
        new_volumes: &mut Vec<NewVolume>,
    ) -> ServiceResult<Vec<Mount>> {
        let mut existing = Vec::new();
        for m in mounts {
            let missing = m.auto_create
                && !new_volumes.iter().any(|nv| nv.name == m.name)
                && match self.store.find_volume(&user.id, &m.name) {
                    Ok(_) => false,
                    Err(bhatti_store::StoreError::NotFound(_)) => true,
                    // A store failure is not "the volume exists".
                    Err(e) => return Err(e.into()),
                };
            if missing {
                new_volumes.push(NewVolume {
                    name: m.name,
                    size_mb: validate::DEFAULT_VOLUME_MB,
                    mount: m.mount,
                });
            } else {
                existing.push(m);
            }
        }
        Ok(existing)
    }

    /// The template a request names (its id and spec), or the empty one.
    fn template_of(
        &self,
        user: &User,
        template: Option<&str>,
    ) -> ServiceResult<(Option<String>, TemplateSpec)> {
        let Some(t) = template else {
            return Ok((None, TemplateSpec::default()));
        };
        let t = self.store.find_template(&user.id, t)?;
        let spec = serde_json::from_value(t.spec).map_err(|e| ServiceError::Corrupt {
            what: "template",
            detail: format!("{}: {e}", t.id),
        })?;
        Ok((Some(t.id), spec))
    }
}

/// A boot file of a request: content decoded, mode parsed.
fn boot_file(f: FileIn) -> Result<FileSpec, Invalid> {
    let content = base64::engine::general_purpose::STANDARD
        .decode(f.content_b64.as_bytes())
        .map_err(|e| Invalid::FileContent {
            path: f.path.clone(),
            reason: e.to_string(),
        })?;
    let mode = match &f.mode {
        Some(m) => parse_mode(m).ok_or_else(|| Invalid::FileMode {
            path: f.path.clone(),
            mode: m.clone(),
        })?,
        None => 0o644,
    };
    Ok(FileSpec {
        path: f.path,
        content,
        mode,
    })
}

/// `adjective-noun-xxxx`.
pub(super) fn generate_name() -> ServiceResult<String> {
    const ADJ: [&str; 16] = [
        "amber", "brisk", "calm", "deft", "eager", "fond", "glad", "hazy", "idle", "jolly", "keen",
        "lucid", "mellow", "nimble", "quiet", "rapid",
    ];
    const NOUN: [&str; 16] = [
        "anvil", "bellows", "coal", "crucible", "ember", "flame", "forge", "furnace", "hearth",
        "ingot", "kiln", "ladle", "oven", "smelter", "spark", "tongs",
    ];
    let r = keys::random_bytes::<4>()?;
    Ok(format!(
        "{}-{}-{:02x}{:02x}",
        ADJ[usize::from(r[0] & 15)],
        NOUN[usize::from(r[1] & 15)],
        r[2],
        r[3]
    ))
}
