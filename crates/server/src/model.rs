//! The API's objects and request bodies (field names as in API.md), and
//! the conversions from store rows. The API is v1-compatible
//! (`docs/api.md`): request bodies ignore fields they do not know (a v1
//! client sends some we have no use for), accept v1's spellings
//! (`volumes[].target`, fractional `cpus`, `0`/`""` for "default"), and
//! replies carry every field a v1 client reads with v1's name and type
//! (dates as RFC 3339 strings, [`time`]). The replies that are not objects
//! of their own (status objects, views, exec results) are in [`replies`].
//!
//! The schemas state the input rules of [`crate::service::validate`] that
//! JSON Schema can say (name patterns, absolute paths, ranges), so that the
//! document's clients and the API fuzzer send what the daemon accepts.

pub mod images;
pub mod replies;
pub mod snapshots;
pub mod time;
pub(crate) mod v1;

use std::collections::BTreeMap;

use bhatti_store::sandboxes::{OnExpire, Sandbox, Status, Thermal};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A sandbox as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct SandboxView {
    pub id: String,
    pub name: String,
    /// `running` | `stopped` | `unknown`.
    pub status: String,
    /// `hot` | `warm` | `cold`.
    pub thermal: String,
    pub ip: Option<String>,
    pub cpus: u32,
    pub memory_mb: u32,
    pub keep_hot: bool,
    /// Whether the guest may exchange packets with the same user's other
    /// sandboxes (that allow it too).
    pub peers: bool,
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub template_id: Option<String>,
    /// The engine's name for the sandbox's VM (v1 field; here its id).
    pub engine_id: String,
    /// The id of the user who created it (v1 field).
    pub created_by: String,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// RFC 3339, UTC; when the user last stopped it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(format = DateTime)]
    pub stopped_at: Option<String>,
    /// Why the status is `unknown`, or something else the user should
    /// know about the sandbox's state: e.g. that its VMM died and its
    /// memory is lost, so the next request boots it from its disk.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status_reason: Option<String>,
    /// The guest user set at create ([`CreateSandbox::user`]); absent:
    /// v1's rule.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user: Option<String>,
    /// The root disk's size in MB when set at create
    /// ([`CreateSandbox::disk_size_mb`]); absent: its image's size.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub disk_size_mb: Option<u32>,
    /// Labels; `{}` when none.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// RFC 3339, UTC: when the TTL runs out; absent: no TTL.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// What expiry does (with `expires_at`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub on_expire: Option<OnExpireIn>,
}

impl From<&Sandbox> for SandboxView {
    fn from(s: &Sandbox) -> Self {
        Self {
            id: s.id.clone(),
            name: s.name.clone(),
            status: s.status.as_str().to_owned(),
            thermal: if s.status == Status::Running {
                s.thermal
            } else {
                Thermal::Cold
            }
            .as_str()
            .to_owned(),
            ip: s.ip.clone(),
            cpus: s.cpus,
            memory_mb: s.memory_mb,
            keep_hot: s.keep_hot,
            peers: StoredSpec::peers_of(&s.spec),
            image: s
                .spec
                .get("image_name")
                .and_then(serde_json::Value::as_str)
                .unwrap_or(&s.image)
                .to_owned(),
            template_id: s.template_id.clone(),
            engine_id: s.id.clone(),
            created_by: s.user_id.clone(),
            created_at: time::rfc3339(s.created_at),
            stopped_at: time::rfc3339_opt(s.stopped_at),
            status_reason: s.status_reason.clone(),
            user: s
                .spec
                .get("user")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            disk_size_mb: s
                .spec
                .get("disk_size_mb")
                .and_then(serde_json::Value::as_u64)
                .and_then(|n| u32::try_from(n).ok()),
            labels: s.labels.clone(),
            expires_at: time::rfc3339_opt(s.expires_at),
            on_expire: s.expires_at.map(|_| s.on_expire.into()),
        }
    }
}

/// A volume to create with the sandbox.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, ToSchema)]
pub struct NewVolume {
    #[schema(pattern = "^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$")]
    pub name: String,
    #[schema(minimum = 1, maximum = 1048576)]
    pub size_mb: u32,
    /// Where it is mounted in the guest (`target` is accepted too).
    #[schema(pattern = "^/.")]
    #[serde(alias = "target")]
    pub mount: String,
}

/// An existing volume to mount. v1 spells it `{name, target}` on a
/// sandbox and `{volume_name, target, auto_create}` in a template; both
/// are accepted.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, ToSchema)]
pub struct Mount {
    #[schema(pattern = "^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$")]
    #[serde(alias = "volume_name")]
    pub name: String,
    #[schema(pattern = "^/.")]
    #[serde(alias = "target")]
    pub mount: String,
    #[serde(default)]
    pub readonly: bool,
    /// In a template: create the volume (at the default size) when a
    /// sandbox is made from it and the user has none of that name.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_create: bool,
}

/// A file written into the guest at boot.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct FileIn {
    #[schema(pattern = "^/")]
    pub path: String,
    pub content_b64: String,
    /// Octal permission string, default `"0644"`.
    #[schema(pattern = "^0?[0-7]{1,4}$")]
    pub mode: Option<String>,
}

/// `POST /sandboxes`. As in v1, `name: ""`, `cpus: 0` and `memory_mb: 0`
/// mean "the default", and `cpus` may have a fraction (rounded up).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct CreateSandbox {
    #[schema(pattern = "^([a-zA-Z0-9][a-zA-Z0-9._-]{0,62})?$")]
    #[serde(default, deserialize_with = "v1::blank_is_none")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "v1::blank_is_none")]
    pub template_id: Option<String>,
    /// Whole CPUs; a fraction is rounded up, `0` is the default.
    #[schema(value_type = Option<f64>, minimum = 0)]
    #[serde(default, deserialize_with = "v1::cpus")]
    pub cpus: Option<u32>,
    /// `0` is the default.
    #[schema(minimum = 0)]
    #[serde(default, deserialize_with = "v1::zero_is_none")]
    pub memory_mb: Option<u32>,
    pub env: Option<BTreeMap<String, String>>,
    pub init: Option<String>,
    pub keep_hot: Option<bool>,
    pub image: Option<String>,
    pub new_volumes: Option<Vec<NewVolume>>,
    pub volumes: Option<Vec<Mount>>,
    pub secrets: Option<Vec<String>>,
    pub files: Option<Vec<FileIn>>,
    /// Whether the guest may exchange packets with the same user's other
    /// sandboxes that allow it too (default true). Other users' guests
    /// are never reachable.
    pub peers: Option<bool>,
    /// The guest user its commands run as and API-written files belong
    /// to (a name in the guest's `/etc/passwd`, or a uid); absent: v1's
    /// rule, commands as root and files owned by the sandbox user
    /// `lohar`. Each exec, shell and file write may name another.
    #[schema(pattern = "^[a-zA-Z0-9._][a-zA-Z0-9._-]{0,31}$")]
    #[serde(default, deserialize_with = "v1::blank_is_none")]
    pub user: Option<String>,
    /// Size of the root disk in MB, at least its image's and at most what
    /// the image's file system grows to at boot (64 GiB for `busybox`,
    /// 1 TiB for `minimal`); the space is taken on the host only as the
    /// guest writes. `0` or absent: the template's, else the image's size.
    #[schema(minimum = 0, maximum = 1048576)]
    #[serde(default, deserialize_with = "v1::zero_is_none")]
    pub disk_size_mb: Option<u32>,
    /// Seconds until the sandbox expires (then `on_expire` applies);
    /// `0` or absent: never.
    #[schema(maximum = 31536000)]
    pub ttl_sec: Option<u64>,
    /// What expiry does: `destroy` (default) or `stop`.
    pub on_expire: Option<OnExpireIn>,
    /// Labels (string map), over the template's; filter a listing with
    /// `GET /sandboxes?label=KEY=VALUE`.
    pub labels: Option<BTreeMap<String, String>>,
    /// A snapshot of the caller's (by name) to restore instead of booting
    /// an image: the new sandbox runs on from the snapshot's memory, with
    /// its own address, hostname and copies of the disks. Its size, image
    /// and disk are the snapshot's (others are refused); `name`,
    /// `ttl_sec`, `on_expire`, `labels`, `env`, `keep_hot` and `peers`
    /// apply as on any create.
    #[serde(default, deserialize_with = "v1::blank_is_none")]
    pub snapshot: Option<String>,
    /// From the `Idempotency-Key` header, never the body
    /// ([`crate::service::idempotent`]).
    #[serde(skip)]
    #[schema(ignore)]
    pub idempotency_key: Option<String>,
}

/// `PATCH /sandboxes/{id}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct PatchSandbox {
    #[schema(pattern = "^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$")]
    pub name: Option<String>,
    pub keep_hot: Option<bool>,
    pub peers: Option<bool>,
    /// A new TTL counted from now (extends or shortens it); `0` removes it.
    #[schema(maximum = 31536000)]
    pub ttl_sec: Option<u64>,
    /// What expiry does from now on.
    pub on_expire: Option<OnExpireIn>,
    /// Replaces every label.
    pub labels: Option<BTreeMap<String, String>>,
}

/// What happens when a sandbox's TTL runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnExpireIn {
    /// Destroy it (the default); its volumes stay.
    Destroy,
    /// Stop it (snapshot to disk); the TTL is then cleared.
    Stop,
}

impl From<OnExpireIn> for OnExpire {
    fn from(o: OnExpireIn) -> Self {
        match o {
            OnExpireIn::Destroy => OnExpire::Destroy,
            OnExpireIn::Stop => OnExpire::Stop,
        }
    }
}

impl From<OnExpire> for OnExpireIn {
    fn from(o: OnExpire) -> Self {
        match o {
            OnExpire::Destroy => OnExpireIn::Destroy,
            OnExpire::Stop => OnExpireIn::Stop,
        }
    }
}

/// A template's stored spec (`POST /templates`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq, ToSchema)]
pub struct TemplateSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// v1's engine name; kept and shown, the daemon's engine is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// v1's disk size: the root disk of sandboxes made from it
    /// ([`CreateSandbox::disk_size_mb`], which wins); `0`: the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size_mb: Option<u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// See [`CreateSandbox::user`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// What the store keeps as a sandbox's spec (never secret values).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct StoredSpec {
    pub env: BTreeMap<String, String>,
    pub secrets: Vec<String>,
    pub init: Option<String>,
    /// (volume id, name, mount, readonly)
    pub volumes: Vec<StoredMount>,
    pub files: usize,
    /// See [`CreateSandbox::peers`]; absent in rows from before it: true.
    #[serde(default = "yes")]
    pub peers: bool,
    /// See [`CreateSandbox::user`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// See [`CreateSandbox::disk_size_mb`] (the template's when the
    /// request had none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size_mb: Option<u32>,
    /// The caller's name for the stored image it was made from (the row's
    /// `image` is the engine's `sha256:…`): what the API shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
    /// The image config's working directory: the default `cwd` of exec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// The `Idempotency-Key` of the create that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

fn yes() -> bool {
    true
}

impl StoredSpec {
    /// The `peers` setting of a stored spec (true where absent).
    pub fn peers_of(spec: &serde_json::Value) -> bool {
        spec.get("peers")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(true)
    }
}

/// A mounted volume in a stored spec.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct StoredMount {
    pub volume_id: String,
    pub name: String,
    pub mount: String,
    pub readonly: bool,
}
