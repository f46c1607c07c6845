//! Named snapshots, restore into a new sandbox, and fork: the plain data
//! of [`crate::engine::Engine::snapshot`],
//! [`crate::engine::Engine::create_from_snapshot`] and
//! [`crate::engine::Engine::fork`].
//!
//! A snapshot is a directory `<data_dir>/snapshots/<id>/` owned by the
//! engine: the VM's memory and device state (`mem.snap`), copies of its
//! root disk and config drive, and `snapshot.json` (what the sandbox was:
//! size, image, its agent token and boot environment; 0600, like the
//! memory file, which holds the same secrets). It is written under a
//! temporary name and renamed when complete, so a crash never leaves a
//! half snapshot under a real name. A sandbox made from it gets its own
//! copies of the disks, its own address, MAC, hostname, agent token and
//! entropy ([`bhatti_proto::identify`]); its memory is loaded from the
//! file, which stays for the next one.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::{SandboxId, SpecError};
use crate::image::ImageRef;

/// Most children one fork makes.
pub const MAX_FORK: usize = 16;

/// A snapshot's id in the engine: the rules of a [`SandboxId`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SnapshotId(String);

impl SnapshotId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SnapshotId {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        s.parse::<SandboxId>()
            .map(|id| Self(id.as_str().to_owned()))
    }
}

impl TryFrom<String> for SnapshotId {
    type Error = SpecError;
    fn try_from(s: String) -> Result<Self, SpecError> {
        s.parse()
    }
}

impl From<SnapshotId> for String {
    fn from(id: SnapshotId) -> String {
        id.0
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A snapshot as the engine has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub id: SnapshotId,
    /// The sandbox it was taken of.
    pub source: SandboxId,
    pub cpus: u32,
    pub memory_mb: u32,
    pub image: ImageRef,
    pub disk_mb: Option<u64>,
    /// Bytes its files take on disk (sparse files count what they use).
    pub size_bytes: u64,
    /// How long the source was paused for it (zero for a stopped source).
    pub paused: Duration,
    /// Seconds since the Unix epoch when it was taken.
    pub created_unix: u64,
    /// Why it cannot be restored (a file missing, cut short or not a
    /// snapshot); `None` when it looks restorable.
    pub problem: Option<String>,
}

/// What a sandbox made from a snapshot gets besides the snapshot's state.
/// Size, image, init and exec user are the snapshot's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneSpec {
    /// `None`: the new sandbox's id.
    pub hostname: Option<String>,
    /// Added to (and overriding) the snapshot's environment, for every
    /// later command.
    pub env: BTreeMap<String, String>,
    /// As in [`crate::engine::SandboxSpec`].
    pub tenant: Option<String>,
    pub peers: bool,
    pub egress: Option<bool>,
}

impl Default for CloneSpec {
    fn default() -> Self {
        Self {
            hostname: None,
            env: BTreeMap::new(),
            tenant: None,
            peers: true,
            egress: None,
        }
    }
}
