//! Sandboxes made from a snapshot (extensions over v1): `create` with
//! [`CreateSandbox::snapshot`] restores one of the caller's snapshots into
//! a new sandbox, and `fork` makes children of a sandbox from one
//! snapshot taken now. Both go through a create's bookkeeping
//! ([`super::create`]): a [`Plan`] (from the snapshot, or from the
//! parent's row), the quota check and store row of `reserve` (for every
//! child before any is made), and on failure `unreserve`. Size, image and
//! disk are the snapshot's (a request that asks for others is refused);
//! the guest's memory, files, init and environment are the source's, the
//! request's `env` added over it. Each new sandbox gets its own address,
//! hostname and agent token from the engine, and belongs to the caller
//! (tenant, peers, egress as any of the caller's sandboxes).
//!
//! # Threads, locks, I/O
//! As a create: each reservation takes `create_lock` for its quota check
//! and store transaction only; the engine's restore or fork is awaited
//! with no lock of ours held. A fork's children are reserved one by one
//! (each counted against the quota with those before it), then made by
//! one engine call.

use std::collections::BTreeMap;

use bhatti_engine::engine::{Engine, EngineError, SandboxId};
use bhatti_engine::image::ImageRef;
use bhatti_engine::snapshot::{CloneSpec, MAX_FORK};
use bhatti_store::sandboxes::Sandbox;
use bhatti_store::snapshots::Snapshot;
use bhatti_store::users::User;

use super::create::Reserved;
use super::plan::{Plan, generate_name};
use super::snapshots::snapshot_id;
use super::validate::{self, Invalid};
use super::{ServiceError, ServiceResult, engine_id, lifetime};
use crate::model::snapshots::ForkSandbox;
use crate::model::{CreateSandbox, StoredSpec};
use crate::state::AppState;

impl<E: Engine> AppState<E> {
    /// Creates a sandbox for `user` from their snapshot `req.snapshot`.
    pub(super) async fn restore_sandbox(
        &self,
        user: &User,
        req: CreateSandbox,
    ) -> ServiceResult<Sandbox> {
        let name = req.snapshot.clone().unwrap_or_default();
        let snap = self.store.find_snapshot(&user.id, &name)?;
        let sid = snapshot_id(&snap.id)?;
        let (req, image_name, workdir) = self.snapshot_image(user, req, &snap)?;
        let mut plan = snapshot_plan(user, req, &snap)?;
        (plan.image_name, plan.workdir) = (image_name, workdir);
        // The request's env and secrets, over the snapshot's env.
        let asked_env = self.boot_env(user, &plan)?;
        let r = self.reserve(user, &plan)?;
        let spec = clone_spec(user, &plan, asked_env);
        let eid = engine_id(&r.row)?;
        match self.engine.create_from_snapshot(eid, &sid, spec).await {
            Ok(info) => self.created(&r.row, &info).await,
            Err(e) => {
                tracing::warn!(sandbox = %r.row.id, snapshot = %snap.id, error = %e,
                    "create from snapshot failed");
                self.unreserve(&r).await;
                // The row is there, its files are not: broken, not absent.
                Err(match e {
                    EngineError::SnapshotNotFound(id) => EngineError::SnapshotBroken {
                        id,
                        problem: super::snapshots::MISSING.to_owned(),
                    },
                    e => e,
                }
                .into())
            }
        }
    }

    /// The caller's name for `snap`'s image and its working directory;
    /// a request's `image` that names the same image is taken as the
    /// snapshot's.
    fn snapshot_image(
        &self,
        user: &User,
        mut req: CreateSandbox,
        snap: &Snapshot,
    ) -> ServiceResult<(CreateSandbox, Option<String>, Option<String>)> {
        let same = |i: &String| {
            self.resolve_image(user, i)
                .is_ok_and(|r| r.image.to_string() == snap.image)
        };
        if req.image.as_ref().is_some_and(same) {
            req.image = Some(snap.image.clone());
        }
        let Some(name) = self.store.image_name_of(&user.id, &snap.image)? else {
            return Ok((req, None, None));
        };
        let workdir = self
            .store
            .find_image(&user.id, &name)
            .ok()
            .and_then(|row| crate::model::images::ImageConfig::of_row(&row).working_dir);
        Ok((req, Some(name), workdir))
    }

    /// Makes `req.count` children of `user`'s sandbox `parent` (by id or
    /// name), all or none; returns them in order.
    pub async fn fork_sandbox(
        &self,
        user: &User,
        parent: &str,
        req: ForkSandbox,
    ) -> ServiceResult<Vec<Sandbox>> {
        let given = req.names.as_ref().map(Vec::len);
        let count = req
            .count
            .unwrap_or_else(|| given.map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX)));
        if count == 0 || count as usize > MAX_FORK {
            return Err(Invalid::ForkCount {
                max: MAX_FORK,
                got: count,
            }
            .into());
        }
        let names = fork_names(count, req.names)?;
        let sb = self.find(user, parent)?;
        let asked_env = req.env.unwrap_or_default();
        let mut reserved: Vec<Reserved> = Vec::new();
        let mut children = Vec::new();
        for name in names {
            let plan = match fork_plan(user, &sb, name, &asked_env, req.labels.clone()) {
                Ok(p) => p,
                Err(e) => return Err(self.unreserve_all(&reserved, e).await),
            };
            let r = match self.reserve(user, &plan) {
                Ok(r) => r,
                Err(e) => return Err(self.unreserve_all(&reserved, e).await),
            };
            children.push((
                engine_id(&r.row)?,
                clone_spec(user, &plan, asked_env.clone()),
            ));
            reserved.push(r);
        }
        match self.engine.fork(&engine_id(&sb)?, children).await {
            Ok(infos) => {
                let mut out = Vec::new();
                for r in &reserved {
                    let id: SandboxId = engine_id(&r.row)?;
                    match infos.iter().find(|i| i.id == id) {
                        Some(info) => out.push(self.created(&r.row, info).await?),
                        None => out.push(self.store.sandbox_by_id(&r.row.id)?),
                    }
                }
                tracing::info!(parent = %sb.id, children = out.len(), "forked");
                Ok(out)
            }
            Err(e) => {
                tracing::warn!(parent = %sb.id, error = %e, "fork failed");
                Err(self.unreserve_all(&reserved, e.into()).await)
            }
        }
    }

    /// Undoes every reservation in `reserved`; returns `e`.
    async fn unreserve_all(&self, reserved: &[Reserved], e: ServiceError) -> ServiceError {
        for r in reserved {
            self.unreserve(r).await;
        }
        e
    }
}

/// The names of `count` children: `names` (one each, valid), or
/// generated.
fn fork_names(count: u32, names: Option<Vec<String>>) -> ServiceResult<Vec<String>> {
    match names {
        Some(names) => {
            if names.len() != count as usize {
                return Err(Invalid::ForkNames {
                    count,
                    got: names.len(),
                }
                .into());
            }
            for n in &names {
                validate::name(n)?;
            }
            Ok(names)
        }
        None => (0..count).map(|_| generate_name()).collect(),
    }
}

/// What the engine gets besides the snapshot: the caller's tenant, the
/// plan's peers, and the request's environment over the snapshot's.
fn clone_spec(user: &User, plan: &Plan, env: BTreeMap<String, String>) -> CloneSpec {
    CloneSpec {
        hostname: None,
        env,
        tenant: Some(user.id.clone()),
        peers: plan.peers,
        egress: None,
    }
}

/// The plan of a create from `snap`: its size, image and disk; a request
/// that asks for others, or for what a snapshot cannot take (a template,
/// volumes, files, init, a guest user), is refused. Secrets, like `env`,
/// are added to the snapshot's environment.
fn snapshot_plan(user: &User, req: CreateSandbox, snap: &Snapshot) -> ServiceResult<Plan> {
    let refuse = |what: String| ServiceError::from(Invalid::FromSnapshot(what));
    let differs = |field: &str, got: Option<String>, have: String| match got {
        Some(g) if g != have => Err(refuse(format!(
            "{field} is the snapshot's ({have}), not {g}"
        ))),
        _ => Ok(()),
    };
    differs(
        "cpus",
        req.cpus.map(|c| c.to_string()),
        snap.cpus.to_string(),
    )?;
    let mem = snap.memory_mb.to_string();
    differs("memory_mb", req.memory_mb.map(|m| m.to_string()), mem)?;
    differs("image", req.image.clone(), snap.image.clone())?;
    let disk = snap
        .disk_mb
        .map_or_else(|| "the image's".to_owned(), |d| d.to_string());
    differs(
        "disk_size_mb",
        req.disk_size_mb.map(|d| d.to_string()),
        disk,
    )?;
    let given = [
        ("template_id", req.template_id.is_some()),
        (
            "volumes",
            req.volumes.as_ref().is_some_and(|v| !v.is_empty()),
        ),
        (
            "new_volumes",
            req.new_volumes.as_ref().is_some_and(|v| !v.is_empty()),
        ),
        ("files", req.files.as_ref().is_some_and(|v| !v.is_empty())),
        ("init", req.init.is_some()),
        ("user", req.user.is_some()),
    ];
    if let Some((field, _)) = given.iter().find(|(_, g)| *g) {
        return Err(refuse(format!(
            "{field} cannot be given (the snapshot's apply)"
        )));
    }
    let name = match req.name {
        Some(n) => {
            validate::name(&n)?;
            n
        }
        None => generate_name()?,
    };
    let env = req.env.unwrap_or_default();
    validate::env(env.keys())?;
    let (labels, ttl) =
        lifetime::of_create(BTreeMap::new(), req.labels, req.ttl_sec, req.on_expire)?;
    let mut plan = base_plan(user, name, snap.cpus, snap.memory_mb, &snap.image)?;
    plan.disk_mb = snap.disk_mb.and_then(|d| u32::try_from(d).ok());
    plan.env = env;
    plan.secrets = req.secrets.unwrap_or_default();
    plan.labels = labels;
    plan.ttl = ttl;
    plan.keep_hot = req.keep_hot.unwrap_or(false);
    plan.peers = req.peers.unwrap_or(true);
    plan.idempotency_key = req.idempotency_key;
    Ok(plan)
}

/// The plan of a child of `parent`: the parent's size, image, disk,
/// environment (with `env` over it), secrets, init, guest user and peers.
fn fork_plan(
    user: &User,
    parent: &Sandbox,
    name: String,
    env: &BTreeMap<String, String>,
    labels: Option<BTreeMap<String, String>>,
) -> ServiceResult<Plan> {
    let spec: StoredSpec =
        serde_json::from_value(parent.spec.clone()).map_err(|e| ServiceError::Corrupt {
            what: "sandbox spec",
            detail: format!("{}: {e}", parent.id),
        })?;
    validate::env(env.keys())?;
    let (labels, ttl) = lifetime::of_create(BTreeMap::new(), labels, None, None)?;
    let mut plan = base_plan(user, name, parent.cpus, parent.memory_mb, &parent.image)?;
    plan.env = spec.env;
    plan.env.extend(env.clone());
    plan.secrets = spec.secrets;
    plan.init = spec.init;
    plan.user = spec.user;
    plan.image_name = spec.image_name;
    plan.workdir = spec.workdir;
    plan.disk_mb = spec.disk_size_mb;
    plan.peers = spec.peers;
    plan.labels = labels;
    plan.ttl = ttl;
    Ok(plan)
}

/// A plan of the given size and image, nothing else set; the size within
/// `user`'s limits.
fn base_plan(
    user: &User,
    name: String,
    cpus: u32,
    memory_mb: u32,
    image: &str,
) -> ServiceResult<Plan> {
    validate::size(cpus, memory_mb, &user.limits)?;
    let image = image
        .parse::<ImageRef>()
        .map_err(|e| Invalid::Image(e.to_string()))?;
    Ok(Plan {
        name,
        cpus,
        memory_mb,
        image,
        image_name: None,
        workdir: None,
        env: BTreeMap::new(),
        secrets: Vec::new(),
        init: None,
        keep_hot: false,
        peers: true,
        mounts: Vec::new(),
        new_volumes: Vec::new(),
        files: Vec::new(),
        template_id: None,
        user: None,
        disk_mb: None,
        labels: BTreeMap::new(),
        idempotency_key: None,
        ttl: lifetime::Ttl {
            expires_at: None,
            on_expire: Default::default(),
        },
    })
}
