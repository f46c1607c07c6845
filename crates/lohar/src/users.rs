//! Guest users: `/etc/passwd` and `/etc/group` parsing and the lookup of
//! a request's `user` (a name or a numeric uid).
//!
//! Pure functions over the files' text ([`parse_passwd`], [`parse_group`],
//! [`resolve`]) plus [`lookup`], which reads the two files under a root
//! directory each time it is asked (an `init` script or an exec may add
//! users after boot, so nothing is cached). A resolved [`Account`] carries
//! the supplementary groups `initgroups(3)` would give it: its primary
//! group and every group of `/etc/group` that lists its name.

use std::path::Path;

/// Why a requested user cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("user: empty name")]
    Empty,
    #[error("unknown user {0:?} (not in the guest's /etc/passwd)")]
    Unknown(String),
    #[error("user {0:?}: cannot read {1}: {2}")]
    Io(String, String, String),
    #[error(
        "cannot run as user {name:?} (uid {uid}): the agent runs as uid {own}, not root, and cannot switch users"
    )]
    CannotSwitch { name: String, uid: u32, own: u32 },
}

impl crate::handlers::Reply for UserError {
    fn code(&self) -> Option<bhatti_proto::ErrorCode> {
        use bhatti_proto::ErrorCode;
        Some(match self {
            UserError::Empty | UserError::Unknown(_) => ErrorCode::InvalidRequest,
            UserError::Io(..) => ErrorCode::Io,
            UserError::CannotSwitch { .. } => ErrorCode::PermissionDenied,
        })
    }
}

/// A user with everything a switch to it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Home directory; `/` when passwd has none.
    pub home: String,
    /// Supplementary groups, the primary one first, no duplicates.
    pub groups: Vec<u32>,
}

/// One `/etc/passwd` line's fields that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// One `/etc/group` line: name, gid and member names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Parses `/etc/passwd` (`name:pw:uid:gid:gecos:home:shell`); malformed
/// lines, comments and NIS `+`/`-` lines are skipped.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 || f[0].is_empty() || f[0].starts_with(['#', '+', '-']) {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_owned(),
            })
        })
        .collect()
}

/// Parses `/etc/group` (`name:pw:gid:member,member`); malformed lines are
/// skipped.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 || f[0].is_empty() || f[0].starts_with(['#', '+', '-']) {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_owned(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

/// Resolves `spec` against the two files' text: a name must be in
/// `passwd`; a numeric uid takes its passwd entry when there is one, else
/// the number as name, gid = uid and home `/`.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<Account, UserError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(UserError::Empty);
    }
    let entries = parse_passwd(passwd);
    let entry = match spec.parse::<u32>() {
        Ok(uid) => entries
            .into_iter()
            .find(|e| e.uid == uid)
            .unwrap_or_else(|| PasswdEntry {
                name: spec.to_owned(),
                uid,
                gid: uid,
                home: "/".to_owned(),
            }),
        Err(_) => entries
            .into_iter()
            .find(|e| e.name == spec)
            .ok_or_else(|| UserError::Unknown(bhatti_proto::text::short(spec)))?,
    };
    Ok(account(entry, group))
}

/// `entry` with its supplementary groups from `group`'s text.
pub fn account(entry: PasswdEntry, group: &str) -> Account {
    let mut groups = vec![entry.gid];
    for g in parse_group(group) {
        if g.members.contains(&entry.name) && !groups.contains(&g.gid) {
            groups.push(g.gid);
        }
    }
    Account {
        home: if entry.home.is_empty() {
            "/".to_owned()
        } else {
            entry.home
        },
        name: entry.name,
        uid: entry.uid,
        gid: entry.gid,
        groups,
    }
}

/// Resolves `spec` against `<etc>/passwd` and `<etc>/group` (a missing
/// group file means no supplementary groups).
pub fn lookup(etc: &Path, spec: &str) -> Result<Account, UserError> {
    let read = |name: &str| -> Result<String, UserError> {
        let path = etc.join(name);
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && name == "group" => {
                Ok(String::new())
            }
            Err(e) => Err(UserError::Io(
                bhatti_proto::text::short(spec),
                path.display().to_string(),
                crate::handlers::io_text(&e),
            )),
        }
    };
    let passwd = read("passwd")?;
    let group = read("group")?;
    resolve(spec, &passwd, &group)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment
broken line
lohar:x:1000:1000:Sandbox user:/home/lohar:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
nohome:x:1001:1001:::/bin/sh
bad:x:notanumber:1:::/bin/sh
";
    const GROUP: &str = "\
root:x:0:
lohar:x:1000:
docker:x:999:lohar,other
wheel:x:10: other , lohar
again:x:1000:lohar
bad:x:zz:lohar
";

    #[test]
    fn passwd_skips_comments_and_malformed_lines() {
        let e = parse_passwd(PASSWD);
        let names: Vec<&str> = e.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["root", "lohar", "nobody", "nohome"]);
        assert_eq!(e[1].home, "/home/lohar");
        assert_eq!((e[2].uid, e[2].gid), (65534, 65534));
    }

    #[test]
    fn group_members_are_trimmed() {
        let g = parse_group(GROUP);
        assert_eq!(g.len(), 5);
        assert_eq!(g[3].members, ["other", "lohar"]);
        assert!(g[0].members.is_empty());
    }

    #[test]
    fn name_resolves_with_supplementary_groups() {
        let a = resolve("lohar", PASSWD, GROUP).expect("lohar");
        assert_eq!(
            a,
            Account {
                name: "lohar".into(),
                uid: 1000,
                gid: 1000,
                home: "/home/lohar".into(),
                groups: vec![1000, 999, 10],
            }
        );
        let root = resolve("root", PASSWD, GROUP).expect("root");
        assert_eq!((root.uid, root.home.as_str()), (0, "/root"));
        assert_eq!(root.groups, [0]);
    }

    #[test]
    fn numeric_uid_uses_passwd_or_itself() {
        let a = resolve("1000", PASSWD, GROUP).expect("uid");
        assert_eq!((a.name.as_str(), a.gid), ("lohar", 1000));
        let n = resolve(" 4242 ", PASSWD, GROUP).expect("unknown uid");
        assert_eq!(
            (n.name.as_str(), n.uid, n.gid, n.home.as_str()),
            ("4242", 4242, 4242, "/")
        );
        assert_eq!(n.groups, [4242]);
        let h = resolve("nohome", PASSWD, GROUP).expect("nohome");
        assert_eq!(h.home, "/");
    }

    #[test]
    fn unknown_and_empty_names_are_errors() {
        assert_eq!(
            resolve("alice", PASSWD, GROUP),
            Err(UserError::Unknown("alice".into()))
        );
        assert_eq!(resolve("", PASSWD, GROUP), Err(UserError::Empty));
        assert_eq!(
            resolve("alice", PASSWD, GROUP)
                .expect_err("unknown")
                .to_string(),
            "unknown user \"alice\" (not in the guest's /etc/passwd)"
        );
        // A name that only a comment or broken line mentions is unknown.
        assert!(resolve("broken line", PASSWD, GROUP).is_err());
        assert!(resolve("-1", PASSWD, GROUP).is_err());
    }

    #[test]
    fn lookup_reads_the_files_under_a_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            lookup(dir.path(), "lohar"),
            Err(UserError::Io(..))
        ));
        std::fs::write(dir.path().join("passwd"), PASSWD).expect("write");
        let a = lookup(dir.path(), "lohar").expect("no group file is fine");
        assert_eq!(a.groups, [1000]);
        std::fs::write(dir.path().join("group"), GROUP).expect("write");
        assert_eq!(
            lookup(dir.path(), "lohar").expect("lohar").groups,
            [1000, 999, 10]
        );
    }
}
