//! Images (issue 12, an extension over v1; `docs/api.md` "Images"): the
//! request bodies of `POST /images` and `POST /sandboxes/{id}/image`, the
//! image object, its config, and the import job object.

use std::collections::BTreeMap;

use bhatti_store::images::Image;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::time;

/// `POST /images` (JSON): import from a registry.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ImportImage {
    /// `docker://HOST/REPO:TAG` or `REPO:TAG`. Files (`oci:`,
    /// `oci-archive:`, `docker-archive:`, `rootfs:`) are uploaded as the
    /// body instead (`?format=`): the daemon never reads its own files
    /// for a client.
    pub source: String,
    /// The caller's name for it (default: the repository's last part).
    #[schema(pattern = "^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$")]
    pub name: Option<String>,
    /// Talk plain HTTP to the registry.
    pub insecure: Option<bool>,
    /// Registry credentials: `username` with `password`, or `token`.
    pub username: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
}

/// The query of `POST /images` with an archive as the body.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// `oci-archive`, `docker-archive` or `rootfs` (a plain tarball of a
    /// root file system). Absent: the body is JSON ([`ImportImage`]).
    pub format: Option<String>,
    /// The caller's name for it (default: generated).
    pub name: Option<String>,
}

/// `POST /sandboxes/{id}/image`: save a sandbox's disk as an image.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct SaveImage {
    #[schema(pattern = "^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$")]
    pub name: String,
}

/// An image config's defaults for sandboxes made from it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ImageConfig {
    /// Under the template's and the request's env.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The default `cwd` of exec, shells and sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// The sandbox's guest user unless the request or template sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// With `cmd`: the init command, unless the request or template
    /// gives an `init`.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
}

impl From<&bhatti_oci::ImageDefaults> for ImageConfig {
    fn from(d: &bhatti_oci::ImageDefaults) -> Self {
        Self {
            env: d.env.iter().cloned().collect(),
            working_dir: d.working_dir.clone().filter(|w| !w.is_empty()),
            user: d.user.clone().filter(|u| !u.is_empty()),
            entrypoint: d.entrypoint.clone(),
            cmd: d.cmd.clone(),
        }
    }
}

impl ImageConfig {
    /// The config a row keeps (an unreadable one reads as empty).
    pub fn of_row(i: &Image) -> Self {
        serde_json::from_value(i.config.clone()).unwrap_or_default()
    }
}

/// An image as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ImageView {
    pub name: String,
    /// `sha256:…` (the content id); a built-in tier's name for those.
    pub id: String,
    /// Where it came from.
    pub source: String,
    /// The disk's size (what a guest sees).
    pub size_bytes: u64,
    /// Bytes of host disk it takes (counted in the storage quota).
    pub used_bytes: u64,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub created_at: String,
    pub config: ImageConfig,
    /// A built-in tier (cannot be deleted).
    pub builtin: bool,
}

impl From<&Image> for ImageView {
    fn from(i: &Image) -> Self {
        Self {
            name: i.name.clone(),
            id: i.image_id.clone(),
            source: i.source.clone(),
            size_bytes: i.size_bytes,
            used_bytes: i.used_bytes,
            created_at: time::rfc3339(i.created_at),
            config: ImageConfig::of_row(i),
            builtin: false,
        }
    }
}

/// Why an import failed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct JobError {
    /// `unauthorized`, `not_found`, `bad_image`, `too_large`, `upstream`,
    /// `quota`, `conflict` or `internal`.
    pub code: String,
    pub message: String,
}

/// An import job (kept in memory: a daemon restart forgets it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct JobView {
    /// `imp-…`.
    pub id: String,
    /// The image's name once done.
    pub name: String,
    pub source: String,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// `queued`, `resolving`, `fetching`, `unpacking`, `packing`, `done`.
    pub phase: String,
    /// Bytes of the current phase done, of `bytes_total` (0: unknown).
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// The image, once done.
    pub image: Option<ImageView>,
    /// Why it failed.
    pub error: Option<JobError>,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub created_at: String,
}
