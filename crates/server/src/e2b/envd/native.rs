//! The agent's protocol-v4 requests (`docs/protocol.md`: mkdir, move,
//! remove, stat2, ls2, signal, watch), used when the sandbox's agent
//! lists them in its capabilities; envd falls back to what every agent
//! has (FILE_STAT, FILE_LS, `mkdir`/`mv`/`rm` in the guest, KILL, polled
//! listings) otherwise. An agent's capabilities are asked once per
//! sandbox and kept for the daemon's life (a sandbox keeps its agent);
//! a failed query is not kept. So is that a guest has `/bin/bash` (what
//! the E2B SDK runs every command with), until a start of it fails.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use bhatti_engine::engine::{Engine, SandboxId};
use bhatti_proto::ext::{self, EntryType};

use super::Call;
use super::connect::RpcError;
use super::fs_pb::{EntryInfo, FileType};

pub use bhatti_proto::ext::feature;

/// Every sandbox's agent capabilities, and the sandboxes whose guest has
/// `/bin/bash`.
#[derive(Debug, Default)]
pub struct Agents {
    caps: Mutex<HashMap<String, Arc<Vec<String>>>>,
    bash: Mutex<HashSet<String>>,
}

impl Agents {
    /// Whether sandbox `sb`'s guest is known to have `/bin/bash`.
    pub fn has_bash(&self, sb: &str) -> bool {
        self.bash
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(sb)
    }

    /// Records whether sandbox `sb`'s guest has `/bin/bash` (a guest
    /// without it is asked again next time: it may be installed).
    pub fn set_bash(&self, sb: &str, has: bool) {
        let mut known = self.bash.lock().unwrap_or_else(PoisonError::into_inner);
        if has {
            known.insert(sb.to_owned());
        } else {
            known.remove(sb);
        }
    }

    /// Whether the sandbox's agent serves `feature`.
    pub async fn has<E: Engine>(&self, call: &Call<E>, eid: &SandboxId, feature: &str) -> bool {
        let known = self
            .caps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&call.sb.id)
            .cloned();
        let features = match known {
            Some(f) => f,
            None => match call
                .st
                .engine
                .agent_call(eid, |a| async move { a.caps().await })
                .await
            {
                Ok(c) => {
                    let f = Arc::new(c.features);
                    self.caps
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(call.sb.id.clone(), f.clone());
                    f
                }
                Err(e) => {
                    tracing::warn!(sandbox = %call.sb.id, error = %e, "agent capabilities unknown");
                    return false;
                }
            },
        };
        features.iter().any(|f| f == feature)
    }
}

/// envd's EntryInfo of the agent's extended entry: a symlink is described
/// by its target's type with `isSymlink` set, as newer envd does.
pub fn entry(e: &ext::EntryInfo) -> EntryInfo {
    let kind_of = |t: EntryType| match t {
        EntryType::Dir => FileType::Directory,
        _ => FileType::File,
    };
    let is_symlink = e.kind == EntryType::Symlink;
    let kind = if is_symlink {
        e.target_type.map_or(FileType::File, kind_of)
    } else {
        kind_of(e.kind)
    };
    EntryInfo {
        name: e.name.clone(),
        kind,
        path: e.path.clone(),
        size: e.size,
        mode: e.mode,
        permissions: e.permissions.clone(),
        owner: e.owner.clone(),
        group: e.group.clone(),
        modified_time: super::pbjson::timestamp(e.mtime),
        symlink_target: e.symlink_target.clone(),
        metadata: std::collections::BTreeMap::new(),
        is_symlink,
    }
}

/// The extended entry at `path` (lstat).
pub async fn stat2<E: Engine>(
    call: &Call<E>,
    eid: &SandboxId,
    path: &str,
) -> Result<EntryInfo, RpcError> {
    let p = path.to_owned();
    let e = call
        .st
        .engine
        .agent_call(eid, move |a| {
            let p = p.clone();
            async move { a.stat2(&p).await }
        })
        .await?;
    Ok(entry(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_take_their_targets_type() {
        let link = ext::EntryInfo {
            name: "l".into(),
            path: "/l".into(),
            kind: EntryType::Symlink,
            size: 4,
            mode: 0o777,
            permissions: "lrwxrwxrwx".into(),
            uid: 0,
            gid: 0,
            owner: "root".into(),
            group: "root".into(),
            mtime: 0,
            mtime_ns: 0,
            symlink_target: Some("/etc".into()),
            resolved_path: Some("/etc".into()),
            target_type: Some(EntryType::Dir),
        };
        let e = entry(&link);
        assert_eq!((e.kind, e.is_symlink), (FileType::Directory, true));
        assert_eq!(e.symlink_target.as_deref(), Some("/etc"));
        assert_eq!(e.owner, "root");
    }
}
