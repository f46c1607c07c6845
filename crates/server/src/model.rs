//! The API's objects and request bodies (field names as in API.md), and
//! the conversions from store rows. Request bodies reject unknown fields
//! so that a typo is a 400, not a silently ignored option. The replies
//! that are not objects of their own (status objects, views, exec results)
//! are in [`replies`].
//!
//! The schemas state the input rules of [`crate::service::validate`] that
//! JSON Schema can say (name patterns, absolute paths, ranges), so that the
//! document's clients and the API fuzzer send what the daemon accepts.

pub mod replies;

use std::collections::BTreeMap;

use bhatti_store::sandboxes::{Sandbox, Status, Thermal};
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
    /// Unix seconds.
    pub created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stopped_at: Option<i64>,
    /// Why the status is `unknown`, or something else the user should
    /// know about the sandbox's state: e.g. that its VMM died and its
    /// memory is lost, so the next request boots it from its disk.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status_reason: Option<String>,
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
            image: s.image.clone(),
            template_id: s.template_id.clone(),
            created_at: s.created_at,
            stopped_at: s.stopped_at,
            status_reason: s.status_reason.clone(),
        }
    }
}

/// A volume to create with the sandbox.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVolume {
    #[schema(pattern = "^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$")]
    pub name: String,
    #[schema(minimum = 1, maximum = 1048576)]
    pub size_mb: u32,
    #[schema(pattern = "^/.")]
    pub mount: String,
}

/// An existing volume to mount.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    #[schema(pattern = "^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$")]
    pub name: String,
    #[schema(pattern = "^/.")]
    pub mount: String,
    #[serde(default)]
    pub readonly: bool,
}

/// A file written into the guest at boot.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileIn {
    #[schema(pattern = "^/")]
    pub path: String,
    pub content_b64: String,
    /// Octal permission string, default `"0644"`.
    #[schema(pattern = "^0?[0-7]{1,4}$")]
    pub mode: Option<String>,
}

/// `POST /sandboxes`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSandbox {
    #[schema(pattern = "^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$")]
    pub name: Option<String>,
    pub template_id: Option<String>,
    #[schema(minimum = 1)]
    pub cpus: Option<u32>,
    #[schema(minimum = 64)]
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
}

/// `PATCH /sandboxes/{id}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchSandbox {
    #[schema(pattern = "^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$")]
    pub name: Option<String>,
    pub keep_hot: Option<bool>,
    pub peers: Option<bool>,
}

/// A template's stored spec (`POST /templates`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
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
