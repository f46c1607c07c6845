//! The image config's defaults for a sandbox.
//!
//! An OCI image config (`application/vnd.oci.image.config.v1+json`) and a
//! Docker one (`application/vnd.docker.container.image.v1+json`) carry the
//! same `config` object: [`ImageDefaults::from_config_json`] reads its
//! `Env`, `WorkingDir`, `User`, `Entrypoint` and `Cmd`. [`ImageConfig`]
//! also keeps what fetching checks: the platform and the layers' diff ids.

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

/// Why an image config is not one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not JSON, or not the shape of an image config.
    #[error("image config is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// An `Env` entry without `=`.
    #[error("image config Env entry {0:?} has no '='")]
    BadEnv(String),
    /// A `WorkingDir` that is not absolute.
    #[error("image config WorkingDir {0:?} is not absolute")]
    RelativeWorkingDir(String),
}

/// The parts of an image config that import uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `os` (`linux`), empty when absent.
    pub os: String,
    /// `architecture` in OCI names (`amd64`, `arm64`), empty when absent.
    pub architecture: String,
    /// `variant` (`v8`), if any.
    pub variant: Option<String>,
    /// `rootfs.diff_ids`: the sha256 of each layer uncompressed.
    pub diff_ids: Vec<String>,
    /// The sandbox defaults.
    pub defaults: ImageDefaults,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    config: Option<RawRunConfig>,
    #[serde(default)]
    rootfs: Option<RawRootfs>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawRunConfig {
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawRootfs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

impl ImageConfig {
    /// Parses an OCI or Docker image config.
    ///
    /// # Errors
    /// [`ConfigError`] when it is not JSON of that shape, an `Env` entry
    /// has no `=`, or `WorkingDir` is relative.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_json::from_slice(bytes)?;
        let rc = raw.config.unwrap_or_default();
        let env = rc
            .env
            .unwrap_or_default()
            .into_iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => Err(ConfigError::BadEnv(e)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let working_dir = rc.working_dir.filter(|w| !w.is_empty());
        if let Some(w) = &working_dir
            && !w.starts_with('/')
        {
            return Err(ConfigError::RelativeWorkingDir(w.clone()));
        }
        Ok(Self {
            os: raw.os.unwrap_or_default(),
            architecture: raw.architecture.unwrap_or_default(),
            variant: raw.variant.filter(|v| !v.is_empty()),
            diff_ids: raw.rootfs.map(|r| r.diff_ids).unwrap_or_default(),
            defaults: ImageDefaults {
                env,
                working_dir,
                user: rc.user.filter(|u| !u.is_empty()),
                entrypoint: rc.entrypoint.unwrap_or_default(),
                cmd: rc.cmd.unwrap_or_default(),
            },
        })
    }
}

impl ImageDefaults {
    /// The defaults of an OCI or Docker image config.
    ///
    /// # Errors
    /// As [`ImageConfig::from_json`].
    pub fn from_config_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        ImageConfig::from_json(bytes).map(|c| c.defaults)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_oci_config() {
        let json = br#"{"architecture":"amd64","os":"linux",
            "config":{"Env":["PATH=/usr/bin:/bin","A=b=c","EMPTY="],
            "WorkingDir":"/srv","User":"1000:1000",
            "Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"]},
            "rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;
        let c = ImageConfig::from_json(json).expect("parses");
        assert_eq!((c.os.as_str(), c.architecture.as_str()), ("linux", "amd64"));
        assert_eq!(c.diff_ids, ["sha256:aa"]);
        let d = c.defaults;
        let env: Vec<(&str, &str)> = d.env.iter().map(|(k, v)| (&**k, &**v)).collect();
        assert_eq!(
            env,
            [("PATH", "/usr/bin:/bin"), ("A", "b=c"), ("EMPTY", "")]
        );
        assert_eq!(d.working_dir.as_deref(), Some("/srv"));
        assert_eq!(d.user.as_deref(), Some("1000:1000"));
        assert_eq!(d.entrypoint, ["/bin/sh", "-c"]);
        assert_eq!(d.cmd, ["echo hi"]);
    }

    #[test]
    fn nulls_and_missing_fields_are_empty() {
        let json = br#"{"config":{"Env":null,"Cmd":null,"WorkingDir":"","User":""}}"#;
        assert_eq!(
            ImageDefaults::from_config_json(json).ok(),
            Some(ImageDefaults::default())
        );
        assert_eq!(
            ImageDefaults::from_config_json(b"{}").ok(),
            Some(ImageDefaults::default())
        );
    }

    #[test]
    fn bad_configs_are_errors() {
        let e = ImageDefaults::from_config_json(br#"{"config":{"Env":["NOEQ"]}}"#);
        assert!(
            matches!(e, Err(ConfigError::BadEnv(ref s)) if s == "NOEQ"),
            "{e:?}"
        );
        let e = ImageDefaults::from_config_json(br#"{"config":{"WorkingDir":"rel"}}"#);
        assert!(
            matches!(e, Err(ConfigError::RelativeWorkingDir(_))),
            "{e:?}"
        );
        assert!(ImageDefaults::from_config_json(b"not json").is_err());
        assert!(ImageDefaults::from_config_json(br#"{"config":{"Cmd":"str"}}"#).is_err());
    }
}
