//! Which guest user a request runs as, and who owns what it writes — one
//! rule for exec, TTY sessions, the `init` script and file writes.
//!
//! The user named by the request (`user` of EXEC_REQ / FILE_WRITE_REQ)
//! wins; else the sandbox's `exec_user` (config drive); else the agent's
//! defaults, which in PID-1 mode are v1's rule: commands and sessions as
//! root, the `init` script and new files written through the API as the
//! sandbox user (`config.user`, `lohar`). A named user is looked up in
//! `passwd`/`group` under [`Agent::etc`] on every request (a user added
//! after boot is found). Only a root agent switches users: asking a
//! non-root agent (test mode) for another uid is
//! [`UserError::CannotSwitch`]; its own uid runs as usual.
//!
//! What `user` means per operation: exec and sessions run with the user's
//! uid, gid and supplementary groups, `HOME`/`USER`/`LOGNAME` of the user
//! and its home as the default working directory (`/` when the home does
//! not exist). A file write is still done by the agent (root): `user`
//! sets the owner of the file and of the directories the write creates,
//! it is no access check. Reads, stat and ls take no user.

use std::path::Path;

use crate::agent::Agent;
use crate::env::{Creds, Identity};
use crate::users::{self, Account, UserError};

/// Owner of a file write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileOwner {
    /// uid/gid to give the file and the directories the write creates;
    /// `None` leaves the agent's own.
    pub owner: Option<(u32, u32)>,
    /// A replaced file keeps its owner (no user named by the request).
    pub keep_existing: bool,
}

impl Agent {
    /// The request's user if it names one, else the sandbox's `exec_user`.
    fn named_user<'a>(&'a self, requested: Option<&'a str>) -> Option<&'a str> {
        let named = |u: &&str| !u.trim().is_empty();
        requested
            .filter(named)
            .or_else(|| self.config.exec_user.as_deref().filter(named))
    }

    /// Who an exec or a new session asking for `requested` runs as.
    pub fn command_identity(&self, requested: Option<&str>) -> Result<Identity, UserError> {
        match self.named_user(requested) {
            Some(name) => self.identity_of(name),
            None => Ok(self.identity.clone()),
        }
    }

    /// Who the `init` script runs as.
    pub fn init_identity(&self) -> Result<Identity, UserError> {
        match self.named_user(None) {
            Some(name) => self.identity_of(name),
            None => Ok(self.init_identity.clone()),
        }
    }

    /// Who owns what a file write asking for `requested` writes.
    pub fn file_owner(&self, requested: Option<&str>) -> Result<FileOwner, UserError> {
        let keep_existing = requested.is_none_or(|u| u.trim().is_empty());
        let Some(name) = self.named_user(requested) else {
            return Ok(FileOwner {
                owner: self.file_owner,
                keep_existing,
            });
        };
        let a = self.account(name)?;
        // A non-root agent's files are its own already.
        let owner = (self.own_uid == 0).then_some((a.uid, a.gid));
        Ok(FileOwner {
            owner,
            keep_existing,
        })
    }

    /// Looks `name` up; an account this agent cannot become is an error.
    fn account(&self, name: &str) -> Result<Account, UserError> {
        let a = users::lookup(&self.etc, name)?;
        if a.uid != self.own_uid && self.own_uid != 0 {
            return Err(UserError::CannotSwitch {
                name: a.name,
                uid: a.uid,
                own: self.own_uid,
            });
        }
        Ok(a)
    }

    fn identity_of(&self, name: &str) -> Result<Identity, UserError> {
        let a = self.account(name)?;
        let switch_to = (a.uid != self.own_uid).then(|| Creds {
            uid: a.uid,
            gid: a.gid,
            groups: a.groups.clone(),
        });
        Ok(identity(switch_to, a.home, a.name))
    }
}

/// The identity of a user with home `home`: its home is the default
/// working directory when it exists, `/` otherwise.
pub fn identity(switch_to: Option<Creds>, home: String, name: String) -> Identity {
    let default_cwd = if Path::new(&home).is_dir() {
        home.clone()
    } else {
        "/".to_owned()
    };
    Identity {
        switch_to,
        home,
        user: Some(name),
        default_cwd: Some(default_cwd.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::Limits;
    use bhatti_proto::config::GuestConfig;

    fn agent(dir: &Path, own_uid: u32, exec_user: Option<&str>) -> Agent {
        std::fs::write(
            dir.join("passwd"),
            "root:x:0:0::/root:/bin/sh\nlohar:x:1000:1000::/home/lohar:/bin/sh\n",
        )
        .expect("passwd");
        std::fs::write(dir.join("group"), "wheel:x:10:lohar\n").expect("group");
        let config = GuestConfig {
            exec_user: exec_user.map(str::to_owned),
            ..GuestConfig::default()
        };
        let mut a = Agent::new(
            None,
            config,
            identity(None, "/root".into(), "root".into()),
            Limits::default(),
        );
        a.etc = dir.to_path_buf();
        a.own_uid = own_uid;
        a.file_owner = Some((1000, 1000));
        a
    }

    #[test]
    fn request_beats_sandbox_beats_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = agent(dir.path(), 0, None);
        let id = a.command_identity(None).expect("default");
        assert_eq!((id.switch_to, id.home.as_str()), (None, "/root"));
        let id = a.command_identity(Some("lohar")).expect("lohar");
        assert_eq!(
            id.switch_to,
            Some(Creds {
                uid: 1000,
                gid: 1000,
                groups: vec![1000, 10]
            })
        );
        assert_eq!(id.home, "/home/lohar");
        assert_eq!(id.user.as_deref(), Some("lohar"));
        assert_eq!(
            a.command_identity(Some("")).expect("empty = none").home,
            "/root"
        );
        let s = agent(dir.path(), 0, Some("lohar"));
        assert_eq!(
            s.command_identity(None).expect("sandbox").home,
            "/home/lohar"
        );
        assert_eq!(s.init_identity().expect("init").home, "/home/lohar");
        let root = s.command_identity(Some("root")).expect("request wins");
        assert_eq!(root.switch_to, None);
    }

    #[test]
    fn file_owner_rule() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = agent(dir.path(), 0, None);
        let default = a.file_owner(None).expect("default");
        assert_eq!(
            (default.owner, default.keep_existing),
            (Some((1000, 1000)), true)
        );
        let root = a.file_owner(Some("root")).expect("root");
        assert_eq!((root.owner, root.keep_existing), (Some((0, 0)), false));
        let s = agent(dir.path(), 0, Some("root"));
        let sandbox = s.file_owner(None).expect("sandbox");
        assert_eq!((sandbox.owner, sandbox.keep_existing), (Some((0, 0)), true));
    }

    #[test]
    fn a_non_root_agent_runs_only_as_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = agent(dir.path(), 1000, None);
        let me = a.command_identity(Some("lohar")).expect("own uid");
        assert_eq!(me.switch_to, None);
        let e = a.command_identity(Some("root")).expect_err("root");
        assert!(
            matches!(
                e,
                UserError::CannotSwitch {
                    uid: 0,
                    own: 1000,
                    ..
                }
            ),
            "{e}"
        );
        assert!(a.file_owner(Some("0")).is_err());
        assert_eq!(a.file_owner(Some("1000")).expect("own").owner, None);
        assert!(matches!(
            a.command_identity(Some("nobody-here")),
            Err(UserError::Unknown(_))
        ));
    }
}
