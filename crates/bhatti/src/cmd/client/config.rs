//! Client configuration: which daemon to talk to and which API key to send.
//!
//! Precedence, highest first: the `--url`/`--token` flags, the
//! `BHATTI_URL`/`BHATTI_TOKEN` environment variables, the config file
//! `~/.bhatti/config.yaml` (written by `bhatti setup`, mode 0600), and the
//! default URL [`DEFAULT_URL`] (no token). [`resolve`] is the pure rule;
//! [`Settings::load`] gathers its inputs. Plain blocking file I/O.
//!
//! The file is shared with bhatti v1 and with the daemon: besides our
//! `url:`/`token:` it may hold v1's `api_url:`/`auth_token:` (read when
//! ours are absent) and daemon keys (`listen`, `engine`, `data_dir`,
//! `firecracker_bin`, …), which the client ignores. [`save`] rewrites only
//! the connection keys and keeps everything else in the file.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where a daemon listens when nothing else says.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// What the client takes from the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileConfig {
    pub url: Option<String>,
    pub token: Option<String>,
}

/// The keys of the file the client reads; every other key (v1's daemon
/// keys in a shared file) is ignored.
#[derive(Debug, Default, Deserialize)]
struct RawFile {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    token: Option<String>,
    /// v1's name for `url`.
    #[serde(default)]
    api_url: Option<String>,
    /// v1's name for `token`.
    #[serde(default)]
    auth_token: Option<String>,
}

impl RawFile {
    fn into_config(self) -> FileConfig {
        let first = |a: Option<String>, b: Option<String>| {
            [a, b].into_iter().flatten().find(|s| !s.is_empty())
        };
        FileConfig {
            url: first(self.url, self.api_url),
            token: first(self.token, self.auth_token),
        }
    }
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
    serde_yaml_ng::from_str::<RawFile>(&text)
        .map(RawFile::into_config)
        .map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
}

/// The file's other keys with `cfg`'s URL and token set: `url`/`token`,
/// and v1's `api_url`/`auth_token` too where the file already has them
/// (so a v1 client sharing the file sees the same daemon). A file that is
/// missing, empty or not a YAML mapping starts from nothing.
fn merged(path: &Path, cfg: &FileConfig) -> serde_yaml_ng::Mapping {
    use serde_yaml_ng::Value;
    let mut map = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_yaml_ng::from_str::<Value>(&t).ok())
        .and_then(|v| match v {
            Value::Mapping(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default();
    for (ours, v1, value) in [
        ("url", "api_url", &cfg.url),
        ("token", "auth_token", &cfg.token),
    ] {
        let Some(value) = value else { continue };
        map.insert(ours.into(), value.as_str().into());
        if map.contains_key(v1) {
            map.insert(v1.into(), value.as_str().into());
        }
    }
    map
}

/// Writes the config file atomically with mode 0600 (its directory 0700),
/// keeping the keys it does not own (see [`merged`]).
pub fn save(path: &Path, cfg: &FileConfig) -> Result<(), ConfigError> {
    let werr = |source| ConfigError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(werr)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(werr)?;
    }
    let text =
        serde_yaml_ng::to_string(&merged(path, cfg)).map_err(|e| werr(std::io::Error::other(e)))?;
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
    fn v1_file_with_daemon_keys_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.yaml");
        let v1 = "engine: firecracker\nlisten: :8080\ndata_dir: /home/op/.bhatti\n\
                  api_url: http://10.0.0.5:8080\nauth_token: bht_v1\n\
                  firecracker_bin: /usr/local/bin/firecracker\njail_uid: 10000\n\
                  domain:\n  proxy_zone: example.com\nbackup:\n  s3_bucket: b\n";
        std::fs::write(&path, v1).expect("write");
        let got = load(&path).expect("a v1 file parses");
        assert_eq!(got.url.as_deref(), Some("http://10.0.0.5:8080"));
        assert_eq!(got.token.as_deref(), Some("bht_v1"));

        // Ours win over v1's names in the same file.
        std::fs::write(&path, format!("{v1}url: http://ours:1\ntoken: bht_ours\n")).expect("w");
        let got = load(&path).expect("both");
        assert_eq!(got.url.as_deref(), Some("http://ours:1"));
        assert_eq!(got.token.as_deref(), Some("bht_ours"));

        // Saving keeps the daemon keys and updates v1's names as well.
        std::fs::write(&path, v1).expect("write");
        let new = FileConfig {
            url: s("http://127.0.0.1:9"),
            token: s("bht_new"),
        };
        save(&path, &new).expect("save");
        let text = std::fs::read_to_string(&path).expect("read");
        for kept in [
            "firecracker_bin",
            "jail_uid: 10000",
            "proxy_zone: example.com",
        ] {
            assert!(text.contains(kept), "{kept} kept: {text}");
        }
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("yaml");
        assert_eq!(v["auth_token"].as_str(), Some("bht_new"));
        assert_eq!(v["api_url"].as_str(), Some("http://127.0.0.1:9"));
        assert_eq!(load(&path).expect("load"), new);
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
