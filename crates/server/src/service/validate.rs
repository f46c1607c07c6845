//! Every input rule of the service layer, once: names, sizes against a
//! user's limits, environment variable names, volumes, boot files, modes.
//! An error quotes at most an [`excerpt`] of the bad input (a 1 MB name
//! is not echoed back).
//! The engine checks its own rules again ([`SandboxSpec::validate`]); the
//! service checks first so that nothing is reserved for a request that
//! cannot succeed.
//!
//! [`SandboxSpec::validate`]: bhatti_engine::engine::SandboxSpec::validate

use bhatti_engine::engine::{MIN_MEMORY_MB, SandboxSpec, SpecError, VolumeSpec};
use bhatti_store::users::Limits;

use crate::model::TemplateSpec;

/// Largest volume, in MiB (1 TiB).
pub const MAX_VOLUME_MB: u32 = 1024 * 1024;
/// Size of a volume created without one.
pub const DEFAULT_VOLUME_MB: u32 = 1024;

/// Longest TTL, in seconds (one year).
pub const MAX_TTL_SEC: u64 = 365 * 24 * 3600;
/// Most labels on one sandbox or template.
pub const MAX_LABELS: usize = 64;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE: usize = 256;

/// Most characters of a client's input an error message quotes.
pub const EXCERPT_CHARS: usize = 100;

/// `s` cut to [`EXCERPT_CHARS`] characters, with `…` when cut.
pub fn excerpt(s: &str) -> String {
    bhatti_proto::text::cut(s, EXCERPT_CHARS)
}

/// An input rule a request breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("invalid name {0:?}: 1-63 characters of [a-zA-Z0-9._-], starting alphanumeric")]
    Name(String),
    #[error("invalid volume name {0:?}")]
    VolumeName(String),
    #[error("volume {name}: size_mb must be 1-{MAX_VOLUME_MB}, got {got}")]
    VolumeSize { name: String, got: u32 },
    #[error("cpus must be 1-{max} for this user, got {got}")]
    Cpus { max: u32, got: u32 },
    #[error("memory_mb must be {MIN_MEMORY_MB}-{max} for this user, got {got}")]
    Memory { max: u32, got: u32 },
    #[error("invalid environment variable name {0:?}")]
    EnvName(String),
    #[error("file {path}: content_b64: {reason}")]
    FileContent { path: String, reason: String },
    #[error("file {path}: invalid mode {mode:?}")]
    FileMode { path: String, mode: String },
    #[error("{0}")]
    Image(String),
    #[error(
        "invalid user {0:?}: a user name of the guest (1-32 characters of [a-zA-Z0-9._-]) or a uid"
    )]
    User(String),
    #[error("ttl_sec must be 0 (none) or 1-{MAX_TTL_SEC}, got {0}")]
    Ttl(u64),
    #[error("invalid label key {0:?}: 1-63 characters of [a-zA-Z0-9._/-], starting alphanumeric")]
    LabelKey(String),
    #[error("label {0}: the value is longer than {MAX_LABEL_VALUE} bytes")]
    LabelValue(String),
    #[error("at most {MAX_LABELS} labels, got {0}")]
    LabelCount(usize),
    #[error("invalid Idempotency-Key {0:?}: 1-255 characters of [A-Za-z0-9._:-]")]
    IdempotencyKey(String),
    #[error("invalid label filter {0:?}: use label=KEY=VALUE")]
    LabelFilter(String),
    /// A create from a snapshot that asks for something the snapshot
    /// fixes (size, image, disk) or cannot give (volumes, files, …).
    #[error("with snapshot: {0}")]
    FromSnapshot(String),
    #[error("count must be 1-{max}, got {got}")]
    ForkCount { max: usize, got: u32 },
    #[error("names: {got} given for {count} children")]
    ForkNames { count: u32, got: usize },
    #[error(transparent)]
    Spec(#[from] SpecError),
}

/// A TTL in seconds (not 0: callers treat 0 as "none" first).
pub fn ttl(sec: u64) -> Result<(), Invalid> {
    if (1..=MAX_TTL_SEC).contains(&sec) {
        Ok(())
    } else {
        Err(Invalid::Ttl(sec))
    }
}

/// Labels: at most [`MAX_LABELS`], keys `[a-zA-Z0-9][a-zA-Z0-9._/-]{0,62}`,
/// values up to [`MAX_LABEL_VALUE`] bytes.
pub fn labels(labels: &std::collections::BTreeMap<String, String>) -> Result<(), Invalid> {
    if labels.len() > MAX_LABELS {
        return Err(Invalid::LabelCount(labels.len()));
    }
    for (k, v) in labels {
        let ok = k.len() <= 63
            && k.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
        if !ok {
            return Err(Invalid::LabelKey(excerpt(k)));
        }
        if v.len() > MAX_LABEL_VALUE {
            return Err(Invalid::LabelValue(excerpt(k)));
        }
    }
    Ok(())
}

/// Names of sandboxes, volumes, templates and users:
/// `[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A sandbox or template name.
pub fn name(n: &str) -> Result<(), Invalid> {
    valid_name(n)
        .then_some(())
        .ok_or_else(|| Invalid::Name(excerpt(n)))
}

/// A guest user (`user` of exec, shells, file writes, sandboxes and
/// templates): a name the guest's `/etc/passwd` may hold, or a uid.
pub fn user(u: &str) -> Result<(), Invalid> {
    bhatti_engine::engine::guest_user_ok(u)
        .then_some(())
        .ok_or_else(|| Invalid::User(excerpt(u)))
}

/// A volume name and size.
pub fn volume(name: &str, size_mb: u32) -> Result<(), Invalid> {
    if !valid_name(name) {
        return Err(Invalid::VolumeName(excerpt(name)));
    }
    if size_mb == 0 || size_mb > MAX_VOLUME_MB {
        return Err(Invalid::VolumeSize {
            name: excerpt(name),
            got: size_mb,
        });
    }
    Ok(())
}

/// Environment variable names: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn valid_env_name(k: &str) -> bool {
    k.bytes().next().is_some_and(|b| !b.is_ascii_digit())
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Every key of an environment.
pub fn env<'a>(keys: impl IntoIterator<Item = &'a String>) -> Result<(), Invalid> {
    match keys.into_iter().find(|k| !valid_env_name(k)) {
        Some(k) => Err(Invalid::EnvName(excerpt(k))),
        None => Ok(()),
    }
}

/// A template, when it is made: the engine's bounds on its size (a user's
/// limits apply when a sandbox is created from it), its environment names
/// and its mounts (volume names; targets absolute, not `/`, distinct).
pub fn template(t: &TemplateSpec) -> Result<(), Invalid> {
    env(t.env.keys())?;
    labels(&t.labels)?;
    if let Some(u) = &t.user {
        user(u)?;
    }
    let mut volumes = Vec::new();
    for (i, m) in t.mounts.iter().enumerate() {
        if !valid_name(&m.name) {
            return Err(Invalid::VolumeName(excerpt(&m.name)));
        }
        volumes.push(VolumeSpec {
            name: format!("v{i}"),
            mount: m.mount.clone(),
            size_mb: 1,
            readonly: m.readonly,
        });
    }
    let defaults = SandboxSpec::default();
    let probe = SandboxSpec {
        cpus: t.cpus.unwrap_or(defaults.cpus),
        memory_mb: t.memory_mb.unwrap_or(defaults.memory_mb),
        volumes,
        ..defaults
    };
    Ok(probe.validate()?)
}

/// A sandbox's size against its owner's limits.
pub fn size(cpus: u32, memory_mb: u32, limits: &Limits) -> Result<(), Invalid> {
    if cpus == 0 || cpus > limits.max_cpus {
        return Err(Invalid::Cpus {
            max: limits.max_cpus,
            got: cpus,
        });
    }
    if !(MIN_MEMORY_MB..=limits.max_memory_mb).contains(&memory_mb) {
        return Err(Invalid::Memory {
            max: limits.max_memory_mb,
            got: memory_mb,
        });
    }
    Ok(())
}

/// Parses an octal mode string (`"644"`, `"0644"`).
pub fn parse_mode(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 5 {
        return None;
    }
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_env_names() {
        assert_eq!(parse_mode("0644"), Some(0o644));
        assert_eq!(parse_mode("755"), Some(0o755));
        for bad in ["", "9", "-1", "77777", "0o644", "123456"] {
            assert_eq!(parse_mode(bad), None, "{bad}");
        }
        assert!(valid_env_name("PATH") && valid_env_name("_x1"));
        assert!(!valid_env_name("1X") && !valid_env_name("A-B") && !valid_env_name(""));
        assert_eq!(
            env(&["OK".to_owned(), "9X".to_owned()]),
            Err(Invalid::EnvName("9X".into()))
        );
    }

    #[test]
    fn names_sizes_and_volumes() {
        assert!(name("web-1.a_b").is_ok());
        for bad in ["", "-x", ".x", "a/b", &"a".repeat(64)] {
            assert_eq!(name(bad), Err(Invalid::Name(bad.to_owned())), "{bad}");
        }
        let l = Limits {
            max_sandboxes: 5,
            max_cpus: 4,
            max_memory_mb: 4096,
            ..Limits::default()
        };
        assert!(size(4, 4096, &l).is_ok());
        assert_eq!(size(0, 512, &l), Err(Invalid::Cpus { max: 4, got: 0 }));
        assert_eq!(size(5, 512, &l), Err(Invalid::Cpus { max: 4, got: 5 }));
        assert_eq!(
            size(1, 8192, &l),
            Err(Invalid::Memory {
                max: 4096,
                got: 8192
            })
        );
        assert!(volume("data", 1).is_ok());
        assert!(matches!(volume("data", 0), Err(Invalid::VolumeSize { .. })));
        assert!(matches!(
            volume("data", MAX_VOLUME_MB + 1),
            Err(Invalid::VolumeSize { .. })
        ));
        assert!(matches!(volume("../x", 1), Err(Invalid::VolumeName(_))));
    }

    #[test]
    fn templates_are_checked_when_made() {
        let mount = |name: &str, mount: &str| crate::model::Mount {
            name: name.into(),
            mount: mount.into(),
            readonly: false,
            auto_create: false,
        };
        let ok = TemplateSpec {
            mounts: vec![mount("data", "/data")],
            memory_mb: Some(256),
            ..TemplateSpec::default()
        };
        assert!(template(&ok).is_ok());
        for bad in [
            TemplateSpec {
                mounts: vec![mount("", "/data")],
                ..TemplateSpec::default()
            },
            TemplateSpec {
                mounts: vec![mount("data", "/")],
                ..TemplateSpec::default()
            },
            TemplateSpec {
                mounts: vec![mount("a", "/x"), mount("b", "/x")],
                ..TemplateSpec::default()
            },
            TemplateSpec {
                memory_mb: Some(0),
                ..TemplateSpec::default()
            },
            TemplateSpec {
                cpus: Some(0),
                ..TemplateSpec::default()
            },
        ] {
            assert!(template(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_quote_a_short_prefix_of_the_input() {
        let long = "é".repeat(1 << 20);
        let msg = name(&long).expect_err("too long").to_string();
        assert!(msg.chars().count() < 200, "{} chars", msg.len());
        assert!(
            msg.contains(&format!("{}…", "é".repeat(EXCERPT_CHARS))),
            "{msg}"
        );
        assert_eq!(excerpt("short"), "short");
        assert_eq!(
            excerpt(&"x".repeat(EXCERPT_CHARS)),
            "x".repeat(EXCERPT_CHARS)
        );
        let env_err = env(&[format!("9{}", "x".repeat(5000))]).expect_err("bad");
        assert!(env_err.to_string().len() < 200, "{env_err}");
    }
}
