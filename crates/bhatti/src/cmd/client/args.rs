//! Arguments shared by client commands and the parsers of structured
//! values (`K=V`, `name:/mount[:ro]`, `local:guest`). A value that does not
//! parse is a usage error (exit status 2) with a message saying the form.

use std::path::PathBuf;

use clap::Args;

use super::config::Layer;

/// Connection and output options every client command takes.
#[derive(Debug, Clone, Default, Args)]
pub struct Global {
    /// Daemon URL [default: $BHATTI_URL, then ~/.bhatti/config.yaml, then http://127.0.0.1:8080]
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// API key [default: $BHATTI_TOKEN, then ~/.bhatti/config.yaml]
    #[arg(long, global = true, value_name = "KEY")]
    pub token: Option<String>,
    /// Print machine-readable JSON and nothing else on stdout
    #[arg(long, global = true)]
    pub json: bool,
}

impl Global {
    pub fn layer(&self) -> Layer {
        Layer {
            url: self.url.clone(),
            token: self.token.clone(),
        }
    }
}

/// A sandbox, by name or id.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Sandbox name or id
    pub sandbox: String,
    #[command(flatten)]
    pub g: Global,
}

/// `KEY=VALUE` (an environment variable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVal {
    pub key: String,
    pub value: String,
}

pub fn parse_key_val(s: &str) -> Result<KeyVal, String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok(KeyVal {
            key: k.to_owned(),
            value: v.to_owned(),
        }),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// One `--env` value: `KEY=VALUE`, or several pairs separated by commas
/// as v1 wrote them (`A=1,B=2`). A comma starts a new pair only when what
/// follows it has an `=`; otherwise it is part of the value (`A=x,y`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvArg(pub Vec<KeyVal>);

pub fn parse_env(s: &str) -> Result<EnvArg, String> {
    let mut pairs: Vec<KeyVal> = Vec::new();
    for piece in s.split(',') {
        match pairs.last_mut() {
            Some(last) if !piece.contains('=') => {
                last.value.push(',');
                last.value.push_str(piece);
            }
            _ => pairs.push(parse_key_val(piece)?),
        }
    }
    Ok(EnvArg(pairs))
}

/// Every pair of every `--env` value, in order.
pub fn env_pairs(args: &[EnvArg]) -> Vec<KeyVal> {
    args.iter().flat_map(|a| a.0.iter().cloned()).collect()
}

/// `--cpus`: a whole number, or a fraction as v1 took it (`0.5`),
/// rounded up as the daemon rounds it.
pub fn parse_cpus(s: &str) -> Result<u32, String> {
    let bad = || format!("expected a number of CPUs such as 2 (or 0.5), got {s:?}");
    if let Ok(n) = s.parse::<u32>() {
        return Ok(n);
    }
    let f: f64 = s.parse().map_err(|_| bad())?;
    if !f.is_finite() || f < 0.0 || f > f64::from(u32::MAX) {
        return Err(bad());
    }
    // In range and finite: the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(f.ceil() as u32)
}

/// `name:/mount[:ro]` (a volume attached to a sandbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    pub name: String,
    pub mount: String,
    pub readonly: bool,
}

pub fn parse_volume(s: &str) -> Result<VolumeMount, String> {
    let bad = || format!("expected NAME:/MOUNT[:ro], got {s:?}");
    let (name, rest) = s.split_once(':').ok_or_else(bad)?;
    let (mount, readonly) = match rest.strip_suffix(":ro") {
        Some(m) => (m, true),
        None => (rest.strip_suffix(":rw").unwrap_or(rest), false),
    };
    if name.is_empty() || !mount.starts_with('/') {
        return Err(bad());
    }
    Ok(VolumeMount {
        name: name.to_owned(),
        mount: mount.to_owned(),
        readonly,
    })
}

/// `local:guest` (a host file copied into the sandbox at creation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub local: PathBuf,
    pub guest: String,
}

pub fn parse_file(s: &str) -> Result<FileSpec, String> {
    // The guest path is absolute, so split at the last ":/".
    let bad = || format!("expected LOCAL_PATH:/GUEST_PATH, got {s:?}");
    let i = s.rfind(":/").ok_or_else(bad)?;
    let (local, guest) = (&s[..i], &s[i + 1..]);
    if local.is_empty() || guest.len() < 2 {
        return Err(bad());
    }
    Ok(FileSpec {
        local: PathBuf::from(local),
        guest: guest.to_owned(),
    })
}

/// The pairs of `--env` values as a JSON object (later pairs win).
pub fn env_object(args: &[EnvArg]) -> serde_json::Map<String, serde_json::Value> {
    env_pairs(args)
        .iter()
        .map(|kv| (kv.key.clone(), serde_json::Value::from(kv.value.clone())))
        .collect()
}

/// `--ttl`: a duration (`90s`, `30m`, `2h`, or plain seconds); `0` means
/// none. Returns whole seconds.
pub fn parse_ttl(s: &str) -> Result<u64, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(secs);
    }
    humantime::parse_duration(s)
        .map(|d| d.as_secs())
        .map_err(|e| format!("expected a duration like 90s, 30m or 2h: {e}"))
}

/// Labels as a JSON object (a later key wins).
pub fn labels_object(labels: &[KeyVal]) -> serde_json::Map<String, serde_json::Value> {
    labels
        .iter()
        .map(|kv| (kv.key.clone(), serde_json::Value::String(kv.value.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_val() {
        assert_eq!(
            parse_key_val("A=b=c").expect("ok"),
            KeyVal {
                key: "A".into(),
                value: "b=c".into()
            }
        );
        assert_eq!(parse_key_val("A=").expect("ok").value, "");
        assert!(parse_key_val("=x").is_err());
        assert!(parse_key_val("novalue").is_err());
    }

    #[test]
    fn env_lists() {
        let kv = |k: &str, v: &str| KeyVal {
            key: k.into(),
            value: v.into(),
        };
        assert_eq!(
            parse_env("A=1,B=2").expect("ok").0,
            [kv("A", "1"), kv("B", "2")]
        );
        assert_eq!(
            parse_env("A=x,y,B=").expect("ok").0,
            [kv("A", "x,y"), kv("B", "")]
        );
        assert_eq!(parse_env("A=b=c").expect("ok").0, [kv("A", "b=c")]);
        assert!(parse_env("noequals").is_err());
        assert!(parse_env("A=1,=2").is_err());
        let all = env_pairs(&[
            parse_env("A=1,B=2").expect("ok"),
            parse_env("C=3").expect("ok"),
        ]);
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("2"), Ok(2));
        assert_eq!(parse_cpus("0.5"), Ok(1));
        assert_eq!(parse_cpus("1.5"), Ok(2));
        assert_eq!(parse_cpus("0"), Ok(0));
        for bad in ["-1", "x", "NaN", "inf", "1e12"] {
            assert!(parse_cpus(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn volume() {
        assert_eq!(
            parse_volume("data:/mnt/data").expect("ok"),
            VolumeMount {
                name: "data".into(),
                mount: "/mnt/data".into(),
                readonly: false
            }
        );
        assert!(parse_volume("data:/mnt:ro").expect("ok").readonly);
        assert!(parse_volume("data").is_err());
        assert!(parse_volume("data:relative").is_err());
        assert!(parse_volume(":/mnt").is_err());
    }

    #[test]
    fn file() {
        assert_eq!(
            parse_file("./a:b.txt:/etc/app.conf").expect("ok"),
            FileSpec {
                local: "./a:b.txt".into(),
                guest: "/etc/app.conf".into()
            }
        );
        assert!(parse_file("local").is_err());
        assert!(parse_file(":/x").is_err());
        assert!(parse_file("a:/").is_err());
    }

    #[test]
    fn ttl_takes_seconds_or_durations() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("0"), Ok(0));
        assert_eq!(parse_ttl("30m"), Ok(1800));
        assert_eq!(parse_ttl("2h"), Ok(7200));
        assert!(parse_ttl("soon").is_err());
    }
}
