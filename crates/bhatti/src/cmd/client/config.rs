//! Client configuration: which daemon to talk to and which API key to send.
//!
//! Precedence, highest first: the `--url`/`--token` flags, the
//! `BHATTI_URL`/`BHATTI_TOKEN` environment variables, the config file
//! `~/.bhatti/config.yaml` (written by `bhatti setup`, mode 0600), and the
//! default URL [`DEFAULT_URL`] (no token). [`resolve`] is the pure rule;
//! [`Settings::load`] gathers its inputs. Plain blocking file I/O.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where a daemon listens when nothing else says.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// The config file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// One source of settings (flags or environment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer {
    pub url: Option<String>,
    pub token: Option<String>,
}

/// The settings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub url: String,
    pub token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("HOME is not set; cannot locate ~/.bhatti/config.yaml")]
    NoHome,
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid config file: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `~/.bhatti/config.yaml`.
pub fn config_path() -> Result<PathBuf, ConfigError> {
    match std::env::var_os("HOME") {
        Some(h) if !h.is_empty() => Ok(PathBuf::from(h).join(".bhatti").join("config.yaml")),
        _ => Err(ConfigError::NoHome),
    }
}

/// Reads the config file; a missing file is an empty config.
pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_yaml_ng::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Writes the config file atomically with mode 0600 (its directory 0700).
pub fn save(path: &Path, cfg: &FileConfig) -> Result<(), ConfigError> {
    let werr = |source| ConfigError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(werr)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(werr)?;
    }
    let text = serde_yaml_ng::to_string(cfg).map_err(|e| werr(std::io::Error::other(e)))?;
    let tmp = path.with_extension("yaml.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(werr)?;
    f.write_all(text.as_bytes()).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    std::fs::rename(&tmp, path).map_err(werr)
}

/// The precedence rule: flag > environment > file > default.
pub fn resolve(flags: &Layer, env: &Layer, file: &FileConfig) -> Settings {
    let pick = |a: &Option<String>, b: &Option<String>, c: &Option<String>| {
        [a, b, c]
            .into_iter()
            .flatten()
            .find(|s| !s.is_empty())
            .cloned()
    };
    Settings {
        url: pick(&flags.url, &env.url, &file.url).unwrap_or_else(|| DEFAULT_URL.to_owned()),
        token: pick(&flags.token, &env.token, &file.token),
    }
}

/// The environment layer (`BHATTI_URL`, `BHATTI_TOKEN`).
pub fn env_layer() -> Layer {
    Layer {
        url: std::env::var("BHATTI_URL").ok(),
        token: std::env::var("BHATTI_TOKEN").ok(),
    }
}

impl Settings {
    /// Settings for a command: `flags` over the environment over the file.
    pub fn load(flags: &Layer) -> Result<Settings, ConfigError> {
        let env = env_layer();
        // The file is only needed for what flags and env leave open.
        let need_file = [&flags.url, &env.url].iter().all(|v| v.is_none())
            || [&flags.token, &env.token].iter().all(|v| v.is_none());
        let file = if need_file {
            match config_path() {
                Ok(p) => load(&p)?,
                Err(ConfigError::NoHome) => FileConfig::default(),
                Err(e) => return Err(e),
            }
        } else {
            FileConfig::default()
        };
        Ok(resolve(flags, &env, &file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn precedence_flag_env_file_default() {
        let file = FileConfig {
            url: s("http://file:1"),
            token: s("file-token"),
        };
        let env = Layer {
            url: s("http://env:2"),
            token: s("env-token"),
        };
        let flags = Layer {
            url: s("http://flag:3"),
            token: None,
        };
        let got = resolve(&flags, &env, &file);
        assert_eq!(got.url, "http://flag:3");
        assert_eq!(got.token.as_deref(), Some("env-token"));

        let got = resolve(&Layer::default(), &Layer::default(), &file);
        assert_eq!(got.url, "http://file:1");
        assert_eq!(got.token.as_deref(), Some("file-token"));

        let got = resolve(&Layer::default(), &Layer::default(), &FileConfig::default());
        assert_eq!(got.url, DEFAULT_URL);
        assert_eq!(got.token, None);

        // An empty value counts as unset.
        let empty = Layer {
            url: s(""),
            token: s(""),
        };
        let got = resolve(&empty, &empty, &file);
        assert_eq!(got.url, "http://file:1");
    }

    #[test]
    fn save_is_0600_and_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".bhatti").join("config.yaml");
        let cfg = FileConfig {
            url: s("http://127.0.0.1:9"),
            token: s("bht_x"),
        };
        save(&path, &cfg).expect("save");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load(&path).expect("load"), cfg);
        assert_eq!(
            load(&dir.path().join("missing.yaml")).expect("missing"),
            FileConfig::default()
        );
    }

    #[test]
    fn bad_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "url: [1, 2\n").expect("write");
        let err = load(&path).expect_err("bad yaml");
        assert!(err.to_string().contains("not a valid config file"), "{err}");
    }
}
