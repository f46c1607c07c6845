//! The messages of envd's `filesystem.Filesystem` service
//! (`filesystem/filesystem.proto` as the SDK's `filesystem_pb.py` defines
//! them), in proto3 JSON ([`super::pbjson`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::pbjson::{i64_ser, u32_de};

/// A request naming one path: `StatRequest`, `MakeDirRequest`,
/// `RemoveRequest`.
#[derive(Debug, Clone, Deserialize)]
pub struct PathRequest {
    #[serde(default)]
    pub path: String,
}

/// `filesystem.ListDirRequest`.
#[derive(Debug, Clone, Deserialize)]
pub struct ListDirRequest {
    #[serde(default)]
    pub path: String,
    /// 0 means 1 (envd).
    #[serde(default, deserialize_with = "u32_de")]
    pub depth: u32,
}

/// `filesystem.MoveRequest`.
#[derive(Debug, Clone, Deserialize)]
pub struct MoveRequest {
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub destination: String,
}

/// `filesystem.WatchDirRequest` and `filesystem.CreateWatcherRequest`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchRequest {
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub recursive: bool,
    #[serde(default, alias = "include_entry")]
    pub include_entry: bool,
}

/// A request naming one watcher: `GetWatcherEventsRequest`,
/// `RemoveWatcherRequest`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatcherRequest {
    #[serde(default, alias = "watcher_id")]
    pub watcher_id: String,
}

/// `filesystem.FileType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FileType {
    #[serde(rename = "FILE_TYPE_FILE")]
    File,
    #[serde(rename = "FILE_TYPE_DIRECTORY")]
    Directory,
}

/// `filesystem.EntryInfo`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EntryInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FileType,
    pub path: String,
    #[serde(serialize_with = "i64_ser")]
    pub size: i64,
    /// Permission bits.
    pub mode: u32,
    /// As `ls -l` shows them, e.g. `-rw-r--r--`.
    pub permissions: String,
    pub owner: String,
    pub group: String,
    pub modified_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symlink_target: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub is_symlink: bool,
}

/// A reply carrying one entry: `StatResponse`, `MakeDirResponse`,
/// `MoveResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct EntryResponse {
    pub entry: EntryInfo,
}

/// `filesystem.ListDirResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct ListDirResponse {
    pub entries: Vec<EntryInfo>,
}

/// `filesystem.EventType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EventType {
    #[serde(rename = "EVENT_TYPE_CREATE")]
    Create,
    #[serde(rename = "EVENT_TYPE_WRITE")]
    Write,
    #[serde(rename = "EVENT_TYPE_REMOVE")]
    Remove,
    #[serde(rename = "EVENT_TYPE_RENAME")]
    Rename,
    #[serde(rename = "EVENT_TYPE_CHMOD")]
    Chmod,
}

/// `filesystem.FilesystemEvent`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FilesystemEvent {
    /// Relative to the watched directory.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<EntryInfo>,
}

/// `filesystem.CreateWatcherResponse`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateWatcherResponse {
    pub watcher_id: String,
}

/// `filesystem.GetWatcherEventsResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct WatcherEventsResponse {
    pub events: Vec<FilesystemEvent>,
}

/// `filesystem.WatchDirResponse` (oneof `event`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum WatchDirResponse {
    Start(super::process_pb::Empty),
    Filesystem(Box<FilesystemEvent>),
    Keepalive(super::process_pb::Empty),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_info_in_proto3_json() {
        let e = EntryInfo {
            name: "a".into(),
            kind: FileType::File,
            path: "/a".into(),
            size: 5,
            mode: 0o644,
            permissions: "-rw-r--r--".into(),
            owner: String::new(),
            group: String::new(),
            modified_time: "1970-01-01T00:00:00Z".into(),
            symlink_target: None,
            metadata: BTreeMap::new(),
            is_symlink: false,
        };
        let v = serde_json::to_value(&e).expect("encode");
        assert_eq!(v["type"], "FILE_TYPE_FILE");
        assert_eq!(v["size"], "5");
        assert_eq!(v["modifiedTime"], "1970-01-01T00:00:00Z");
        assert_eq!(v["isSymlink"], false);
        let w = WatchDirResponse::Start(super::super::process_pb::Empty {});
        assert_eq!(serde_json::to_string(&w).expect("w"), r#"{"start":{}}"#);
        let l: ListDirRequest = serde_json::from_str(r#"{"path":"/","depth":2}"#).expect("list");
        assert_eq!(l.depth, 2);
    }
}
