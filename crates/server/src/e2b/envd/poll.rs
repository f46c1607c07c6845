//! Watching a directory by comparing listings, for agents without the
//! watch request (see [`super::watch`]): the last listing is kept as
//! path → (is_dir, size, mtime, entry) and the next one is compared with
//! it: what appeared is `CREATE`, what went `REMOVE`, a file whose size
//! or mtime changed `WRITE`. Changes undone between two looks, and writes
//! that keep the size within the same second, are not seen.

use std::collections::BTreeMap;

use bhatti_engine::engine::{Engine, SandboxId};

use super::Call;
use super::connect::RpcError;
use super::fs::walk;
use super::fs_pb::{EntryInfo, EventType, FileType, FilesystemEvent};
use super::native::Agents;

/// What a listing remembers of an entry.
pub type Seen = BTreeMap<String, (bool, i64, String, EntryInfo)>;

/// The listing of `dir` (`depth` levels), by path relative to it.
pub async fn look<E: Engine>(
    call: &Call<E>,
    agents: &Agents,
    eid: &SandboxId,
    dir: &str,
    depth: u32,
) -> Result<Seen, RpcError> {
    let prefix = format!("{}/", dir.trim_end_matches('/'));
    let entries = walk(call, agents, eid, dir, depth).await?;
    Ok(entries
        .into_iter()
        .map(|e| {
            let rel = e.path.strip_prefix(&prefix).unwrap_or(&e.path).to_owned();
            let dir = e.kind == FileType::Directory;
            (rel, (dir, e.size, e.modified_time.clone(), e))
        })
        .collect())
}

/// What changed from `old` to `new`.
pub fn diff(old: &Seen, new: &Seen, with_entry: bool) -> Vec<FilesystemEvent> {
    let ev = |name: &str, kind, e: Option<&EntryInfo>| FilesystemEvent {
        name: name.to_owned(),
        kind,
        entry: e.filter(|_| with_entry).cloned(),
    };
    let mut out = Vec::new();
    for (name, n) in new {
        match old.get(name) {
            None => out.push(ev(name, EventType::Create, Some(&n.3))),
            Some(o) if !n.0 && (o.0, o.1, &o.2) != (n.0, n.1, &n.2) => {
                out.push(ev(name, EventType::Write, Some(&n.3)));
            }
            Some(_) => {}
        }
    }
    for name in old.keys().filter(|k| !new.contains_key(*k)) {
        out.push(ev(name, EventType::Remove, None));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, size: i64) -> (String, (bool, i64, String, EntryInfo)) {
        let info = bhatti_engine::engine::FileInfo {
            name: name.into(),
            size,
            mode: "0644".into(),
            is_dir: false,
            mtime: 1,
        };
        let entry = super::super::fs::entry(&info, &format!("/d/{name}"));
        (
            name.into(),
            (false, size, entry.modified_time.clone(), entry),
        )
    }

    #[test]
    fn listings_diff_into_events() {
        let old: Seen = [e("a", 1), e("b", 1)].into_iter().collect();
        let new: Seen = [e("a", 2), e("c", 1)].into_iter().collect();
        let kinds: Vec<(String, EventType)> = diff(&old, &new, false)
            .into_iter()
            .map(|x| (x.name, x.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("a".into(), EventType::Write),
                ("c".into(), EventType::Create),
                ("b".into(), EventType::Remove)
            ]
        );
    }
}
