//! Schemas of the replies that handlers build as JSON values rather than
//! typed structs (status objects, health, exec results, secret, template
//! and volume views), and of the protocol types (`bhatti-proto` is also
//! built into the guest agent, so it does not depend on utoipa). These
//! types exist for the document only; each says which handler's JSON it
//! describes. When a handler returns a typed struct instead, derive
//! `ToSchema` on that struct and drop its entry here.

// Never built: only their schemas are used.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::model::Mount;

/// `{"status": ...}`: what a delete, destroy or file write answers
/// (`deleted`, `destroyed`, `ok`).
#[derive(Debug, ToSchema)]
pub struct Status {
    pub status: String,
}

/// `GET /health` (`routes::health`).
#[derive(Debug, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
    pub version: String,
    /// Sandboxes whose VM is live.
    pub sandboxes: u64,
    /// Seconds since the daemon started.
    pub uptime: u64,
}

/// `GET /openapi.json`: an OpenAPI 3.1 document (this one).
#[derive(Debug, ToSchema)]
pub struct OpenApiDocument {
    pub openapi: String,
    #[schema(value_type = Object)]
    pub info: BTreeMap<String, String>,
    #[schema(value_type = Object)]
    pub paths: BTreeMap<String, String>,
    #[schema(value_type = Object)]
    pub components: BTreeMap<String, String>,
}

/// The buffered result of `POST /sandboxes/{id}/exec` (`routes::exec`).
#[derive(Debug, ToSchema)]
pub struct ExecResult {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    /// Present (true) when the command was killed at `timeout_sec`.
    #[schema(nullable = false)]
    pub timed_out: Option<bool>,
    /// Present (true) when stdout or stderr was cut at the output cap.
    #[schema(nullable = false)]
    pub truncated: Option<bool>,
}

/// One line of the NDJSON exec stream (`Accept: application/x-ndjson`).
#[derive(Debug, Serialize, ToSchema)]
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
        #[schema(nullable = false)]
        timed_out: Option<bool>,
    },
    /// The last line when the command could not finish.
    Error {
        data: String,
    },
}

/// `POST /secrets` (`routes::secrets`).
#[derive(Debug, ToSchema)]
pub struct SecretSaved {
    pub name: String,
    /// Unix seconds.
    pub updated_at: i64,
}

/// An element of `GET /secrets`: never the value.
#[derive(Debug, ToSchema)]
pub struct SecretView {
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// A template (`routes::templates`): its stored spec
/// ([`crate::model::TemplateSpec`], whose empty fields are omitted) plus
/// id, name and date. Spelled out rather than flattened: the spec refuses
/// unknown fields, so `allOf` with it would refuse the id.
#[derive(Debug, ToSchema)]
pub struct TemplateView {
    pub id: String,
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    #[schema(nullable = false)]
    pub cpus: Option<u32>,
    #[schema(nullable = false)]
    pub memory_mb: Option<u32>,
    #[schema(nullable = false)]
    pub image: Option<String>,
    #[schema(nullable = false)]
    pub env: Option<BTreeMap<String, String>>,
    #[schema(nullable = false)]
    pub init: Option<String>,
    #[schema(nullable = false)]
    pub secrets: Option<Vec<String>>,
    #[schema(nullable = false)]
    pub mounts: Option<Vec<Mount>>,
}

/// A volume (`routes::volumes`).
#[derive(Debug, ToSchema)]
pub struct VolumeView {
    pub id: String,
    pub name: String,
    pub size_mb: u32,
    /// Unix seconds.
    pub created_at: i64,
}

/// `DELETE /sandboxes/{id}/publish/{port}`.
#[derive(Debug, ToSchema)]
pub struct Unpublished {
    /// Always `unpublished`.
    pub status: String,
    pub port: u16,
}

/// `DELETE /sandboxes/{id}/sessions/{sid}`.
#[derive(Debug, ToSchema)]
pub struct Killed {
    /// Always `killed`.
    pub status: String,
    pub session_id: String,
}

/// An entry of a directory listing (`GET /sandboxes/{id}/files?ls=true`;
/// `bhatti_proto::FileInfo`).
#[derive(Debug, ToSchema)]
pub struct FileInfo {
    /// Base name.
    pub name: String,
    pub size: i64,
    /// Four-digit octal permission string, e.g. `"0644"`.
    pub mode: String,
    pub is_dir: bool,
    /// Unix seconds.
    pub mtime: i64,
}

/// A TTY session (`GET /sandboxes/{id}/sessions`; `bhatti_proto::SessionInfo`).
#[derive(Debug, ToSchema)]
pub struct SessionInfo {
    pub session_id: String,
    /// The session's argv joined with spaces.
    pub argv: String,
    pub tty: bool,
    pub running: bool,
    /// Omitted while the session runs.
    #[schema(nullable = false)]
    pub exit_code: Option<i32>,
    pub attached: bool,
    /// Unix seconds.
    pub created_at: i64,
}
