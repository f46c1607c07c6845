//! E2B's JSON, as the SDK's generated client (`e2b/api/client/models`)
//! reads and writes it: camelCase, ids spelled `sandboxID`, `templateID`,
//! `clientID`. Request bodies ignore fields bhatti does not act on
//! (`network`, `mcp`, `allow_internet_access`, `volumeMounts`,
//! `autoResume`, `autoPauseMemory`, `iam`, `secure`, connect's `memory`).
//!
//! A sandbox's views:
//! - `templateID`: its bhatti template's id, else its image (a tier name
//!   or the caller's image name); `alias`: the template's name, else the
//!   image;
//! - `state`: `running` (hot, warm or cold: the engine wakes it on
//!   demand) or `paused` (stopped: snapshotted to disk, VM gone; a
//!   sandbox whose VM was lost is shown paused too);
//! - `endAt`: when its timeout runs out; a sandbox without one (a paused
//!   one, or one made by the native API without a TTL) shows
//!   [`NO_END`];
//! - `diskSizeMB`: the size asked at create, else the tier's image size
//!   (0 for an imported image created without a size).

use std::collections::BTreeMap;

use bhatti_engine::engine::Engine;
use bhatti_engine::image::{ImagePaths, Tier};
use bhatti_store::sandboxes::{OnExpire, Sandbox, Status};
use serde::{Deserialize, Serialize};

use super::ENVD_VERSION;
use crate::model::time;
use crate::state::Shared;

/// `clientID` (E2B's legacy field; the SDK requires it and ignores it).
pub const CLIENT_ID: &str = "bhatti";
/// `endAt` of a sandbox with no timeout running.
pub const NO_END: &str = "9999-12-31T23:59:59Z";

/// `POST /sandboxes` and `POST /v2/sandboxes`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSandbox {
    #[serde(rename = "templateID")]
    pub template_id: Option<String>,
    /// Seconds; absent: [`super::sandboxes::CREATE_TIMEOUT`]; `0`: none.
    pub timeout: Option<u64>,
    /// At the timeout, pause (our stop) instead of kill (destroy).
    pub auto_pause: Option<bool>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub env_vars: Option<BTreeMap<String, String>>,
}

/// The bodies of timeout, connect, resume and refreshes.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifetime {
    pub timeout: Option<u64>,
    pub auto_pause: Option<bool>,
    /// `refreshes`: seconds.
    pub duration: Option<u64>,
}

/// A created, resumed or connected sandbox (E2B's `Sandbox`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    #[serde(rename = "templateID")]
    pub template_id: String,
    #[serde(rename = "sandboxID")]
    pub sandbox_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(rename = "clientID")]
    pub client_id: &'static str,
    pub envd_version: &'static str,
    pub envd_access_token: String,
    pub traffic_access_token: String,
    pub domain: Option<String>,
}

/// A sandbox in a listing (E2B's `ListedSandbox`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listed {
    #[serde(rename = "templateID")]
    pub template_id: String,
    #[serde(rename = "sandboxID")]
    pub sandbox_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(rename = "clientID")]
    pub client_id: &'static str,
    pub started_at: String,
    pub end_at: String,
    pub cpu_count: u32,
    #[serde(rename = "memoryMB")]
    pub memory_mb: u32,
    #[serde(rename = "diskSizeMB")]
    pub disk_size_mb: u64,
    pub metadata: BTreeMap<String, String>,
    pub state: &'static str,
    pub envd_version: &'static str,
}

/// One sandbox (E2B's `SandboxDetail`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Detail {
    #[serde(flatten)]
    pub listed: Listed,
    pub envd_access_token: String,
    pub domain: Option<String>,
    pub lifecycle: Lifecycle,
}

/// What the timeout does.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    /// `kill` or `pause`.
    pub on_timeout: &'static str,
    pub auto_resume: bool,
}

/// E2B's state of a sandbox.
pub fn state(sb: &Sandbox) -> &'static str {
    if sb.status == Status::Running {
        "running"
    } else {
        "paused"
    }
}

/// `(templateID, alias)` of a sandbox.
fn template_of<E>(st: &Shared<E>, sb: &Sandbox) -> (String, Option<String>) {
    let image = sb
        .spec
        .get("image_name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(&sb.image)
        .to_owned();
    match &sb.template_id {
        Some(id) => {
            let name = st.store.find_template(&sb.user_id, id).ok().map(|t| t.name);
            (id.clone(), name.or(Some(image)))
        }
        None => (image.clone(), Some(image)),
    }
}

/// The root disk's size in MB (see the module docs).
pub fn disk_mb(sb: &Sandbox) -> u64 {
    if let Some(mb) = sb
        .spec
        .get("disk_size_mb")
        .and_then(serde_json::Value::as_u64)
    {
        return mb;
    }
    sb.image
        .parse::<Tier>()
        .ok()
        .and_then(|t| ImagePaths::from_env().rootfs(t).ok())
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len() / (1024 * 1024))
}

/// The listing view of `sb`.
pub fn listed<E>(st: &Shared<E>, sb: &Sandbox) -> Listed {
    let (template_id, alias) = template_of(st, sb);
    Listed {
        template_id,
        sandbox_id: sb.id.clone(),
        alias,
        client_id: CLIENT_ID,
        started_at: time::rfc3339(sb.created_at),
        end_at: sb
            .expires_at
            .map_or_else(|| NO_END.to_owned(), time::rfc3339),
        cpu_count: sb.cpus,
        memory_mb: sb.memory_mb,
        disk_size_mb: disk_mb(sb),
        metadata: sb.labels.clone(),
        state: state(sb),
        envd_version: ENVD_VERSION,
    }
}

/// The detail view of `sb`.
pub fn detail<E>(st: &Shared<E>, sb: &Sandbox) -> Detail {
    Detail {
        listed: listed(st, sb),
        envd_access_token: crate::e2b::access_token(st, &sb.id),
        domain: st.settings.public_domain.clone(),
        lifecycle: Lifecycle {
            on_timeout: match sb.on_expire {
                OnExpire::Destroy => "kill",
                OnExpire::Stop => "pause",
            },
            auto_resume: false,
        },
    }
}

/// The created/connected view of `sb`, with its tokens.
pub fn created<E: Engine>(st: &Shared<E>, sb: &Sandbox) -> Created {
    let (template_id, alias) = template_of(st, sb);
    Created {
        template_id,
        sandbox_id: sb.id.clone(),
        alias,
        client_id: CLIENT_ID,
        envd_version: ENVD_VERSION,
        envd_access_token: crate::e2b::access_token(st, &sb.id),
        traffic_access_token: crate::e2b::traffic_token(st, &sb.id),
        domain: st.settings.public_domain.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_e2b_spelling_and_ignore_the_rest() {
        let req: NewSandbox = serde_json::from_value(serde_json::json!({
            "templateID": "base", "timeout": 3, "autoPause": true,
            "metadata": {"k": "v"}, "envVars": {"A": "1"},
            "allow_internet_access": true, "network": {}, "mcp": null,
        }))
        .expect("parse");
        assert_eq!(req.template_id.as_deref(), Some("base"));
        assert_eq!((req.timeout, req.auto_pause), (Some(3), Some(true)));
        assert_eq!(req.metadata.expect("metadata")["k"], "v");
        assert_eq!(req.env_vars.expect("env")["A"], "1");
    }

    #[test]
    fn details_flatten_the_listing() {
        let d = Detail {
            listed: Listed {
                template_id: "minimal".into(),
                sandbox_id: "sb-1".into(),
                alias: None,
                client_id: CLIENT_ID,
                started_at: time::rfc3339(0),
                end_at: NO_END.into(),
                cpu_count: 1,
                memory_mb: 512,
                disk_size_mb: 0,
                metadata: BTreeMap::new(),
                state: "running",
                envd_version: ENVD_VERSION,
            },
            envd_access_token: "t".into(),
            domain: None,
            lifecycle: Lifecycle {
                on_timeout: "kill",
                auto_resume: false,
            },
        };
        let v = serde_json::to_value(&d).expect("json");
        for k in [
            "templateID",
            "sandboxID",
            "clientID",
            "startedAt",
            "endAt",
            "cpuCount",
            "memoryMB",
            "diskSizeMB",
            "state",
            "envdVersion",
            "envdAccessToken",
        ] {
            assert!(v.get(k).is_some(), "{k} missing in {v}");
        }
        assert!(v["domain"].is_null() && v.get("alias").is_none(), "{v}");
        assert_eq!(v["lifecycle"]["onTimeout"], "kill");
    }
}
