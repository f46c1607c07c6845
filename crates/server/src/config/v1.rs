//! bhatti v1's config keys in a daemon config file.
//!
//! v1 (Go) kept the daemon's and the CLI's keys in one `config.yaml`.
//! [`translate`] rewrites a file's top-level mapping in place before it is
//! read as a [`super::ServerConfig`]: keys with a meaning here become ours
//! (`domain.proxy_zone` → `public_domain`, `engine: firecracker` → `auto`
//! when this build has no Firecracker driver); CLI keys are dropped
//! silently (the client reads them); every other v1 key is dropped with a
//! warning that says what it does here. Our own keys are left alone, so a
//! typo in one of them is still rejected by the typed parse that follows.
//! `listen`'s Go form (`:8080`) is [`super::parse_listen`]'s.

use serde_yaml_ng::{Mapping, Value};

/// Keys the CLI reads from a shared file; the daemon ignores them.
const CLI_KEYS: &[&str] = &["url", "token", "api_url", "auth_token"];

/// v1 daemon keys with no meaning in this build, and what they do here.
const IGNORED: &[(&str, &str)] = &[
    (
        "firecracker_bin",
        "this build runs VMs under QEMU; see engine:",
    ),
    (
        "firecracker_kernel",
        "this build boots the guest kernel from its image cache ($BHATTI_CACHE_DIR/images, \
         default /var/cache/bhatti/images; `cargo xtask images` builds it)",
    ),
    (
        "firecracker_rootfs",
        "this build takes the guest rootfs from its image cache ($BHATTI_CACHE_DIR/images, \
         default /var/cache/bhatti/images) by tier; see image:",
    ),
    (
        "firecracker_jailer",
        "this build confines each VMM itself (its own cgroup and network namespace, see netns:) \
         and has no jailer",
    ),
    (
        "jail_uid",
        "there is no jailer in this build; see firecracker_jailer",
    ),
    (
        "jail_gid",
        "there is no jailer in this build; see firecracker_jailer",
    ),
    (
        "public_proxy_listen",
        "published aliases are served on listen:, chosen by the request's Host \
         (<alias>-<tag>.<public_domain>)",
    ),
    (
        "backup",
        "this build has no S3 backup; volumes are plain files under <data_dir>/volumes — \
         back them up with your own tools",
    ),
];

/// What `domain:` sub-keys other than `proxy_zone` do here.
const DOMAIN_IGNORED: &[(&str, &str)] = &[
    (
        "api_host",
        "the API answers on listen: whatever the Host header says",
    ),
    (
        "acme_email",
        "this build serves plain HTTP; terminate TLS in a reverse proxy in front of listen:",
    ),
    (
        "tls_cert",
        "this build serves plain HTTP; terminate TLS in a reverse proxy in front of listen:",
    ),
    (
        "tls_key",
        "this build serves plain HTTP; terminate TLS in a reverse proxy in front of listen:",
    ),
];

/// Whether v1 would have treated `v` as set (YAML null, `""`, `0`,
/// `false` and empty collections are v1's "unset").
fn is_set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Sequence(s) => !s.is_empty(),
        Value::Mapping(m) => !m.is_empty(),
        Value::Tagged(t) => is_set(&t.value),
    }
}

/// Rewrites v1 keys of `map` (see the module doc); the warnings say what
/// was ignored or changed. `Err` names a v1 key whose value has the wrong
/// shape.
pub fn translate(map: &mut Mapping, warnings: &mut Vec<String>) -> Result<(), String> {
    for k in CLI_KEYS {
        map.remove(*k);
    }
    engine(map, warnings);
    for (key, why) in IGNORED {
        if let Some(v) = map.remove(*key)
            && is_set(&v)
        {
            warnings.push(format!("{key}: ignored — {why}"));
        }
    }
    match map.remove("domain") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Mapping(d)) => {
            domain(map, d, warnings);
            Ok(())
        }
        Some(_) => Err(
            "domain: expected a mapping (api_host, proxy_zone, acme_email, \
                        tls_cert, tls_key)"
                .into(),
        ),
    }
}

/// v1's `engine: firecracker` (its default, also `""`): Firecracker when
/// this build has it, else `auto` with a warning.
fn engine(map: &mut Mapping, warnings: &mut Vec<String>) {
    let name = match map.get("engine") {
        Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        _ => return,
    };
    let has_fc = bhatti_engine::drivers::AnyDriver::NAMES.contains(&"firecracker");
    let auto = match name {
        "" => true,
        "firecracker" if !has_fc => {
            warnings.push(format!(
                "engine: firecracker: this build has no Firecracker driver (it has: {}); \
                 using auto",
                bhatti_engine::drivers::AnyDriver::NAMES.join(", ")
            ));
            true
        }
        _ => false,
    };
    if auto {
        map.insert("engine".into(), "auto".into());
    }
}

/// `domain:`: `proxy_zone` becomes `public_domain` (unless the file sets
/// that too); the rest is ignored with a warning.
fn domain(map: &mut Mapping, d: Mapping, warnings: &mut Vec<String>) {
    for (k, v) in d {
        let key = k.as_str().unwrap_or("?").to_owned();
        if !is_set(&v) {
            continue;
        }
        if key == "proxy_zone" {
            if map.get("public_domain").is_some_and(is_set) {
                warnings.push("domain.proxy_zone: ignored — public_domain is set".into());
            } else {
                warnings.push(format!(
                    "domain.proxy_zone: used as public_domain — published aliases are served at \
                     <alias>-<tag>.{} (v1: <alias>.{0})",
                    v.as_str().unwrap_or("?")
                ));
                map.insert("public_domain".into(), v);
            }
            continue;
        }
        let why = DOMAIN_IGNORED
            .iter()
            .find(|(n, _)| *n == key)
            .map_or("not a v1 key this build knows", |(_, w)| *w);
        warnings.push(format!("domain.{key}: ignored — {why}"));
    }
}
