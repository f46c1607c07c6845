//! The replies that are not API objects of their own: status objects,
//! health, exec results and events, secret, template and volume views.
//! Each type is what its handler returns and what the OpenAPI document
//! describes (`ToSchema`), so the two cannot drift.
//!
//! Fields are declared in alphabetical order: these replies were once
//! `serde_json::json!` values, whose keys serde_json sorts, and declaring
//! them in that order keeps the bytes on the wire as they were. Flags that
//! are only ever sent as `true` (`timed_out`, `truncated`) are omitted
//! when false.

use std::collections::BTreeMap;

use bhatti_store::templates::Template;
use serde::Serialize;
use utoipa::ToSchema;

use super::{Mount, TemplateSpec};

/// `{"status": ...}`: what a delete, destroy or file write answers
/// (`deleted`, `destroyed`, `ok`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Status {
    pub status: &'static str,
}

impl Status {
    /// `{"status": "deleted"}`.
    pub const DELETED: Self = Self { status: "deleted" };
    /// `{"status": "destroyed"}`.
    pub const DESTROYED: Self = Self {
        status: "destroyed",
    };
    /// `{"status": "ok"}`.
    pub const OK: Self = Self { status: "ok" };
}

/// `GET /health` (`routes::health`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Health {
    /// Sandboxes whose VM is live.
    pub sandboxes: u64,
    /// Always `ok`.
    pub status: &'static str,
    /// Time since the daemon started, as Go prints a duration
    /// (`2h15m30s`), as in v1.
    pub uptime: String,
    pub version: &'static str,
}

/// The buffered result of `POST /sandboxes/{id}/exec` (`routes::exec`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ExecResult {
    pub exit_code: i32,
    pub stderr: String,
    pub stdout: String,
    /// Present (true) when the command was killed at `timeout_sec`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    /// Present (true) when stdout or stderr was cut at the output cap.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// One line of the NDJSON exec stream (`Accept: application/x-ndjson`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ExecEvent {
    Stdout {
        data: String,
    },
    Stderr {
        data: String,
    },
    /// The last line of a finished command.
    Exit {
        exit_code: i32,
        /// Present (true) when the command was killed at `timeout_sec`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        timed_out: bool,
    },
    /// The last line when the command could not finish.
    Error {
        data: String,
    },
}

/// A secret as the API shows it, never its value: what `POST /secrets`
/// answers (created or replaced) and each element of `GET /secrets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SecretView {
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub created_at: String,
    pub name: String,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// A template (`routes::templates`): its stored spec
/// ([`TemplateSpec`], whose empty fields are omitted) plus id, name and
/// date. Spelled out rather than flattened: the spec refuses unknown
/// fields, so `allOf` with it would refuse the id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TemplateView {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub cpus: Option<u32>,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub disk_size_mb: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub engine: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub init: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub memory_mb: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub user: Option<String>,
}

impl TemplateView {
    /// A stored template shown with its (already parsed) spec.
    pub fn new(t: &Template, spec: TemplateSpec) -> Self {
        Self {
            cpus: spec.cpus,
            created_at: super::time::rfc3339(t.created_at),
            disk_size_mb: spec.disk_size_mb,
            engine: spec.engine,
            env: spec.env,
            id: t.id.clone(),
            image: spec.image,
            init: spec.init,
            labels: spec.labels,
            memory_mb: spec.memory_mb,
            mounts: spec.mounts,
            name: t.name.clone(),
            secrets: spec.secrets,
            user: spec.user,
        }
    }
}

/// A volume (`routes::volumes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct VolumeView {
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub created_at: String,
    pub id: String,
    pub name: String,
    pub size_mb: u32,
}

/// `DELETE /sandboxes/{id}/publish/{port}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Unpublished {
    pub port: u16,
    /// Always `unpublished`.
    pub status: &'static str,
}

/// `DELETE /sandboxes/{id}/sessions/{sid}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Killed {
    pub session_id: String,
    /// Always `killed`.
    pub status: &'static str,
}

/// `v` as JSON text with every object's keys in alphabetical order (an
/// enum's `type` tag among them), as the `json!` values these lines once
/// were: for the NDJSON exec stream and the shell's WebSocket messages.
pub fn sorted_json<T: Serialize>(v: &T) -> serde_json::Result<String> {
    serde_json::to_value(v).map(|v| v.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn to<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).expect("serializes")
    }

    /// The typed replies give the bytes the `json!` values gave.
    #[test]
    fn bytes_are_those_of_the_json_values_they_replaced() {
        let same = |typed: String, old: serde_json::Value| assert_eq!(typed, old.to_string());
        let r = ExecResult {
            exit_code: 0,
            stderr: String::new(),
            stdout: "hi\n".into(),
            timed_out: false,
            truncated: false,
        };
        same(
            to(&r),
            json!({"exit_code": 0, "stdout": "hi\n", "stderr": ""}),
        );
        let r = ExecResult {
            timed_out: true,
            truncated: true,
            exit_code: 137,
            ..r
        };
        same(
            to(&r),
            json!({"exit_code": 137, "stdout": "hi\n", "stderr": "",
                   "timed_out": true, "truncated": true}),
        );
        let exit = |timed_out| ExecEvent::Exit {
            exit_code: 1,
            timed_out,
        };
        same(
            sorted_json(&exit(false)).expect("serializes"),
            json!({"type": "exit", "exit_code": 1}),
        );
        same(
            sorted_json(&exit(true)).expect("serializes"),
            json!({"type": "exit", "exit_code": 1, "timed_out": true}),
        );
        let out = ExecEvent::Stdout { data: "x".into() };
        same(
            sorted_json(&out).expect("serializes"),
            json!({"type": "stdout", "data": "x"}),
        );
        same(to(&Status::DELETED), json!({"status": "deleted"}));
        let h = Health {
            sandboxes: 2,
            status: "ok",
            uptime: "5s".into(),
            version: "1",
        };
        same(
            to(&h),
            json!({"status": "ok", "version": "1", "sandboxes": 2, "uptime": "5s"}),
        );
        let v = VolumeView {
            created_at: "1970-01-01T00:00:09Z".into(),
            id: "v-1".into(),
            name: "data".into(),
            size_mb: 64,
        };
        same(
            to(&v),
            json!({"id": "v-1", "name": "data", "size_mb": 64,
                   "created_at": "1970-01-01T00:00:09Z"}),
        );
        let k = Killed {
            session_id: "s1".into(),
            status: "killed",
        };
        same(to(&k), json!({"status": "killed", "session_id": "s1"}));
        let u = Unpublished {
            port: 80,
            status: "unpublished",
        };
        same(to(&u), json!({"status": "unpublished", "port": 80}));
    }

    /// A template's view is its stored spec plus id, name and date, empty
    /// fields omitted as the spec omits them.
    #[test]
    fn template_view_is_the_spec_plus_id_name_and_date() {
        let spec = TemplateSpec {
            cpus: Some(2),
            env: BTreeMap::from([("A".into(), "b".into())]),
            ..TemplateSpec::default()
        };
        let t = Template {
            id: "t-1".into(),
            user_id: "u".into(),
            name: "py".into(),
            spec: serde_json::to_value(&spec).expect("serializes"),
            created_at: 7,
        };
        let mut old = t.spec.clone();
        old["id"] = json!(t.id);
        old["name"] = json!(t.name);
        old["created_at"] = json!("1970-01-01T00:00:07Z");
        let typed = serde_json::to_string(&TemplateView::new(&t, spec)).expect("serializes");
        assert_eq!(typed, old.to_string());
    }
}
