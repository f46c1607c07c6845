//! Protocol version 5 (bhatti-rs 0.1): kept piped execs
//! (`docs/protocol.md`, "Version 5").
//!
//! An EXEC_REQ with `"keep": true` (see [`crate::messages::ExecRequest`])
//! starts a piped exec that outlives its connection in a reconnectable
//! way: the agent answers with KEPT_INFO ([`KeptInfo`]) first, keeps the
//! command's output in a bounded ring and its exit code after it ends,
//! lists it in KEPT_LIST_RESP ([`KeptList`]), and lets any connection
//! attach to it with KEPT_ATTACH ([`KeptAttachRequest`]): KEPT_INFO, the
//! ring replayed as STDOUT/STDERR frames, live output, EXIT.
//!
//! These frames travel only to and from an agent that listed
//! [`crate::ext::feature::KEEP`] in its CAPS_RESP; golden strings in
//! `tests/kept.rs` pin the field names.

use serde::{Deserialize, Serialize};

/// Longest `tag` an agent accepts in EXEC_REQ, bytes.
pub const MAX_TAG: usize = 4096;
/// Most bytes of argv a [`KeptInfo`] carries (summed over the arguments);
/// a longer argv is cut there and [`KeptInfo::argv_cut`] is set, so that
/// a full list fits one frame.
pub const MAX_INFO_ARGV: usize = 4096;

/// KEPT_INFO and the elements of KEPT_LIST_RESP: one kept piped exec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptInfo {
    /// The agent's id of the command (`k1`, `k2`, …; never reused while
    /// the agent runs).
    pub id: String,
    /// The command's pid in the guest (also its process group id).
    #[serde(default)]
    pub pid: i32,
    /// The request's argv (cut at [`MAX_INFO_ARGV`] bytes).
    #[serde(default)]
    pub argv: Vec<String>,
    /// `argv` was cut.
    #[serde(default, skip_serializing_if = "is_false")]
    pub argv_cut: bool,
    /// The working directory the command started in, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The request's `tag`, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The request's `user`, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default)]
    pub running: bool,
    /// Omitted while the command runs (128 + n for a death by signal n).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The command's stdin is still open (no empty STDIN frame yet).
    #[serde(default)]
    pub stdin_open: bool,
    /// Connections attached now (the one this frame goes to included).
    #[serde(default)]
    pub attached: u32,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: i64,
    /// Output bytes dropped from the front of the ring so far: in a
    /// KEPT_INFO before a replay, what the replay is missing.
    #[serde(default)]
    pub dropped: u64,
    /// In a KEPT_INFO: the payload bytes of the STDOUT/STDERR frames of
    /// the replay that follows it (what comes after them is live); 0 in
    /// KEPT_LIST_RESP and at the start of a kept exec.
    #[serde(default)]
    pub replay: u64,
}

/// KEPT_LIST_RESP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptList {
    #[serde(default)]
    pub commands: Vec<KeptInfo>,
    /// The oldest commands were left out so that the list fits one frame.
    #[serde(default, skip_serializing_if = "is_false")]
    pub truncated: bool,
}

/// KEPT_ATTACH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptAttachRequest {
    pub id: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `argv` as a [`KeptInfo`] carries it: whole when its bytes sum to at
/// most `max`, else the arguments that fit, the last one cut on a
/// character boundary; `true` when cut.
pub fn info_argv(argv: &[String], max: usize) -> (Vec<String>, bool) {
    let mut left = max;
    let mut out = Vec::new();
    for a in argv {
        if a.len() <= left {
            left -= a.len();
            out.push(a.clone());
            continue;
        }
        let mut end = left;
        while !a.is_char_boundary(end) {
            end -= 1;
        }
        out.push(a[..end].to_owned());
        return (out, true);
    }
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_cut_at_the_byte_budget_on_a_char_boundary() {
        let argv = vec!["ab".to_owned(), "cdé".to_owned(), "x".to_owned()];
        assert_eq!(info_argv(&argv, 100), (argv.clone(), false));
        assert_eq!(
            info_argv(&argv, 5),
            (vec!["ab".to_owned(), "cd".to_owned()], true)
        );
        assert_eq!(
            info_argv(&argv, 2),
            (vec!["ab".to_owned(), String::new()], true)
        );
    }
}
