//! Snapshots and fork, extensions over v1 (`docs/api.md`): the request
//! bodies of `POST /sandboxes/{id}/snapshots` and
//! `POST /sandboxes/{id}/fork`, the snapshot object, and the fork reply.

use std::collections::BTreeMap;

use bhatti_store::snapshots::Snapshot;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{SandboxView, time};

/// `POST /sandboxes/{id}/snapshots`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CreateSnapshot {
    /// Unique among the caller's snapshots; the rules of sandbox names.
    #[schema(pattern = "^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$")]
    pub name: String,
    /// Labels; filter a listing with `GET /snapshots?label=KEY=VALUE`.
    pub labels: Option<BTreeMap<String, String>>,
}

/// `POST /sandboxes/{id}/fork`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct ForkSandbox {
    /// How many children (default: as many as `names`, else 1).
    #[schema(minimum = 1, maximum = 16)]
    pub count: Option<u32>,
    /// The children's names, one each (`count` of them); absent:
    /// generated.
    pub names: Option<Vec<String>>,
    /// Labels of every child.
    pub labels: Option<BTreeMap<String, String>>,
    /// Added to (and overriding) the parent's environment, for every
    /// later command of each child.
    pub env: Option<BTreeMap<String, String>>,
}

/// The reply of `POST /sandboxes/{id}/fork`: the children, in the order
/// of `names`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ForkReply {
    pub sandboxes: Vec<SandboxView>,
}

/// The sandbox a snapshot was taken of, as it was then.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct SnapshotSource {
    pub id: String,
    pub name: String,
}

/// A snapshot as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct SnapshotView {
    /// The engine's id of its files (`snap-…`); the API names it by
    /// `name`.
    pub id: String,
    pub name: String,
    pub source: SnapshotSource,
    /// Bytes its files take on the host's disk.
    pub size_bytes: u64,
    /// How long the source was paused to take it (0 for a stopped one).
    pub paused_ms: u64,
    /// What a sandbox made from it has (a create may not ask for others).
    pub cpus: u32,
    pub memory_mb: u32,
    /// The image it was made from: a built-in tier, or the caller's name
    /// for the stored image (its `sha256:` id when they have none left).
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub disk_size_mb: Option<u64>,
    /// Labels; `{}` when none.
    pub labels: BTreeMap<String, String>,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// `ready`, or `broken`: it cannot be restored (`problem` says why).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub problem: Option<String>,
}

impl SnapshotView {
    /// The view of a row; `problem`: why the engine cannot restore it.
    pub fn new(s: &Snapshot, problem: Option<String>) -> Self {
        Self {
            id: s.id.clone(),
            name: s.name.clone(),
            source: SnapshotSource {
                id: s.source_id.clone(),
                name: s.source_name.clone(),
            },
            size_bytes: s.size_bytes,
            paused_ms: s.paused_ms,
            cpus: s.cpus,
            memory_mb: s.memory_mb,
            image: s.image.clone(),
            disk_size_mb: s.disk_mb,
            labels: s.labels.clone(),
            created_at: time::rfc3339(s.created_at),
            status: if problem.is_some() { "broken" } else { "ready" }.to_owned(),
            problem,
        }
    }

    /// The view with the caller's name for its image, from `names` (engine
    /// image id → name).
    pub fn named(mut self, names: &std::collections::HashMap<String, String>) -> Self {
        if let Some(name) = names.get(&self.image) {
            self.image = name.clone();
        }
        self
    }
}
