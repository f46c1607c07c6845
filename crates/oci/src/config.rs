//! The image config's defaults for a sandbox (being written).

use serde::{Deserialize, Serialize};

/// What an image config asks of a sandbox made from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDefaults {
    /// `Env`, as `KEY=VALUE` pairs split at the first `=`, in order.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// `WorkingDir` (absolute), if set.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// `User` as written (`name`, `uid`, `name:group`, `uid:gid`), if set.
    #[serde(default)]
    pub user: Option<String>,
    /// `Entrypoint`.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    #[serde(default)]
    pub cmd: Vec<String>,
}
