//! Schemas of the replies whose Rust types cannot derive `ToSchema`: the
//! protocol types (`bhatti-proto` is also built into the guest agent, so
//! it does not depend on utoipa) and the document itself. These types
//! exist for the document only; each says which type it describes. Every
//! other reply is a real type that the handler returns
//! ([`crate::model::replies`]).

// Never built: only their schemas are used.
#![allow(dead_code)]

use std::collections::BTreeMap;

use utoipa::ToSchema;

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
