//! Protocol version 4 (bhatti-rs 0.1): the messages of the frames added
//! for file management, signals, watches and the capability query
//! (`docs/protocol.md`, "Version 4").
//!
//! Every message here travels only in frame types a v1 peer never sees
//! from our host unless the agent listed the feature in its CAPS_RESP, so
//! field names are free of v1 constraints; golden strings in
//! `tests/ext.rs` pin them.
//!
//! - CAPS_REQ / CAPS_RESP: [`Caps`], the agent's version and features. A
//!   v1 agent answers CAPS_REQ with ERROR `unexpected frame type 0x70`
//!   (no code); a version 2–3 lohar adds ERROR_CODE `unexpected_frame`.
//!   [`Caps::legacy`] is what the host concludes then.
//! - MKDIR, MOVE, REMOVE, STAT2, LS2: [`MkdirRequest`] / [`MkdirResponse`],
//!   [`MoveRequest`] / [`EntryInfo`], [`crate::messages::PathRequest`] /
//!   [`crate::messages::StatusResponse`], [`crate::messages::PathRequest`]
//!   / [`EntryInfo`], [`Ls2Request`] / [`Ls2Response`].
//! - SIGNAL: [`SignalRequest`], on an exec or TTY session connection.
//! - WATCH: [`WatchRequest`] → [`WatchStarted`], then [`WatchEvent`]s.

use serde::{Deserialize, Serialize};

use crate::PROTOCOL_VERSION;

/// Feature names of CAPS_RESP.
pub mod feature {
    /// ERROR_CODE frames before ERROR (version 2).
    pub const ERROR_CODE: &str = "error_code";
    /// `user` in EXEC_REQ and FILE_WRITE_REQ (version 3).
    pub const USER: &str = "user";
    /// The serial-console identify line (not a frame).
    pub const IDENTIFY: &str = "identify";
    /// CAPS_REQ itself.
    pub const CAPS: &str = "caps";
    pub const MKDIR: &str = "mkdir";
    pub const MOVE: &str = "move";
    pub const REMOVE: &str = "remove";
    pub const STAT2: &str = "stat2";
    pub const LS2: &str = "ls2";
    pub const SIGNAL: &str = "signal";
    pub const WATCH: &str = "watch";
    /// An empty STDIN frame closes a piped exec's stdin and leaves the
    /// connection open for KILL and SIGNAL (version 5).
    pub const STDIN_EOF: &str = "stdin_eof";
    /// `keep` in EXEC_REQ, KEPT_LIST, KEPT_ATTACH (version 5).
    pub const KEEP: &str = "keep";
    /// REUSE: one control connection serves request after request
    /// (version 6).
    pub const REUSE: &str = "reuse";
    /// SYNC_REQ, and `defer_sync` in EXEC_REQ: EXIT before the exec's
    /// `sync()` (version 7).
    pub const SYNC: &str = "sync";
    /// `stdin_closed` in EXEC_REQ (version 7).
    pub const STDIN_CLOSED: &str = "stdin_closed";
    /// `stdin_null` in EXEC_REQ (version 7).
    pub const STDIN_NULL: &str = "stdin_null";

    /// Everything an agent of this crate's version offers, in the order
    /// added.
    pub const ALL: [&str; 17] = [
        ERROR_CODE,
        USER,
        IDENTIFY,
        CAPS,
        MKDIR,
        MOVE,
        REMOVE,
        STAT2,
        LS2,
        SIGNAL,
        WATCH,
        STDIN_EOF,
        KEEP,
        REUSE,
        SYNC,
        STDIN_CLOSED,
        STDIN_NULL,
    ];
}

/// CAPS_RESP: the protocol version the agent speaks and its features.
/// Features are strings so that an older host keeps the ones it does not
/// know (and ignores them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caps {
    pub version: u32,
    #[serde(default)]
    pub features: Vec<String>,
}

impl Caps {
    /// What an agent built from this crate offers.
    pub fn current() -> Self {
        Self {
            version: PROTOCOL_VERSION,
            features: feature::ALL.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    /// What the host concludes from an agent that answered CAPS_REQ with
    /// ERROR `unexpected frame type …`: with an ERROR_CODE frame before it
    /// (`sent_code`), a bhatti-rs lohar of version 2 or 3 (only
    /// `error_code` is certain); without, a v1 agent with no extensions.
    pub fn legacy(sent_code: bool) -> Self {
        if sent_code {
            Self {
                version: 2,
                features: vec![feature::ERROR_CODE.to_owned()],
            }
        } else {
            Self {
                version: 1,
                features: Vec::new(),
            }
        }
    }

    /// Whether the agent listed `feature` (one of [`feature`]'s names).
    pub fn has(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }
}

/// SIGNAL: a signal number for the process group of the exec or session
/// on this connection (e.g. 15 for SIGTERM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalRequest {
    pub signal: i32,
}

/// What a directory entry is (lstat: a symlink is a symlink).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryType {
    File,
    Dir,
    Symlink,
    /// A FIFO, socket or device node; also a type this side does not know.
    #[serde(other)]
    Other,
}

/// STAT2_RESP, MOVE_RESP, the entries of LS2_RESP and MKDIR_RESP's entry:
/// what E2B's EntryInfo needs. Metadata is lstat's (a symlink is
/// described, not followed); for a symlink the `symlink_target`,
/// `resolved_path` and `target_type` fields say where it leads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryInfo {
    /// Base name (`/` for the root).
    pub name: String,
    /// The path as requested (STAT2, MKDIR, MOVE's destination), or the
    /// listed directory's path as requested joined with the entry's
    /// relative path (LS2).
    pub path: String,
    #[serde(rename = "type")]
    pub kind: EntryType,
    pub size: i64,
    /// Permission bits with setuid, setgid and sticky (at most 0o7777), as
    /// a number.
    pub mode: u32,
    /// `ls -l` style: type character then nine permission characters, e.g.
    /// `-rw-r--r--`, `drwxr-xr-x`, `lrwxrwxrwx`, `-rwsr-xr-x`.
    pub permissions: String,
    pub uid: u32,
    pub gid: u32,
    /// The owner's name from the guest's `/etc/passwd`; the uid in
    /// decimal when it has no entry.
    pub owner: String,
    /// The group's name from the guest's `/etc/group`; the gid in decimal
    /// when it has no entry.
    pub group: String,
    /// Modification time, unix seconds.
    pub mtime: i64,
    /// Modification time, unix nanoseconds.
    pub mtime_ns: i64,
    /// A symlink's target as stored (readlink), omitted for other types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlink_target: Option<String>,
    /// A symlink's fully resolved absolute path (realpath); omitted for
    /// other types and for a dangling or looping link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_path: Option<String>,
    /// The type of what a symlink resolves to; omitted like
    /// `resolved_path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<EntryType>,
}

/// Formats `ls -l` style permissions from a full `st_mode` (type bits
/// included).
pub fn permissions_string(st_mode: u32) -> String {
    let kind = match st_mode & 0o170_000 {
        0o040_000 => 'd',
        0o120_000 => 'l',
        0o020_000 => 'c',
        0o060_000 => 'b',
        0o010_000 => 'p',
        0o140_000 => 's',
        _ => '-',
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    let special = [(0o4000, 's', 'S'), (0o2000, 's', 'S'), (0o1000, 't', 'T')];
    for (i, (bit, on, off)) in special.into_iter().enumerate() {
        let shift = 6 - 3 * i;
        let rwx = (st_mode >> shift) & 0o7;
        s.push(if rwx & 4 != 0 { 'r' } else { '-' });
        s.push(if rwx & 2 != 0 { 'w' } else { '-' });
        let x = rwx & 1 != 0;
        s.push(match (st_mode & bit != 0, x) {
            (true, true) => on,
            (true, false) => off,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// MKDIR_REQ. Missing parents are always created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MkdirRequest {
    pub path: String,
    /// Octal permission bits of the directories created (`"0755"` when
    /// absent); at most 0777.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Owner of the directories created, as FILE_WRITE_REQ's `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// MKDIR_RESP: `created` false means the directory existed already
/// (nothing changed); `entry` describes it either way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MkdirResponse {
    pub created: bool,
    pub entry: EntryInfo,
}

/// MOVE_REQ: rename(2) `source` to `destination`, creating the
/// destination's missing parent directories (owned as `user`, as
/// FILE_WRITE_REQ's). An existing destination file is replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRequest {
    pub source: String,
    pub destination: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// Most entries one LS2_RESP carries.
pub const LS2_MAX_ENTRIES: usize = 10_000;

/// LS2_REQ: the entries of `path` down to `depth` levels (1, the default,
/// is the directory's own entries; 0 counts as 1). Symlinks are never
/// descended into.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ls2Request {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<u32>,
}

/// LS2_RESP: entries sorted by path; `truncated` when more existed than
/// [`LS2_MAX_ENTRIES`] or than fit in one frame.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ls2Response {
    pub entries: Vec<EntryInfo>,
    #[serde(default)]
    pub truncated: bool,
}

/// WATCH_REQ: watch the directory `path` (and, `recursive`, every
/// directory below it, including ones created later).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRequest {
    pub path: String,
    #[serde(default, skip_serializing_if = "crate::ext::is_false")]
    pub recursive: bool,
}

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

/// WATCH_RESP: the watch is in place; events from now on are reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchStarted {
    /// The watched directory as requested.
    pub path: String,
}

/// What happened to a watched entry (fsnotify's names, which E2B uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchEventType {
    /// Created, or moved into the watched tree (IN_CREATE, IN_MOVED_TO).
    Create,
    /// Content written (IN_MODIFY).
    Write,
    /// Deleted (IN_DELETE).
    Remove,
    /// Moved away from this name (IN_MOVED_FROM); a move within the tree
    /// also reports `create` of the new name.
    Rename,
    /// Metadata changed: mode, owner, times (IN_ATTRIB).
    Chmod,
    /// The kernel's event queue overflowed: events were lost.
    Overflow,
    /// A type this side does not know.
    #[serde(other)]
    Other,
}

/// WATCH_EVENT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    #[serde(rename = "type")]
    pub kind: WatchEventType,
    /// Path relative to the watched directory (`sub/file.txt`); empty for
    /// `overflow`.
    pub name: String,
    /// The entry is a directory.
    #[serde(default, skip_serializing_if = "crate::ext::is_false")]
    pub is_dir: bool,
}
