//! Command environment and program lookup.
//!
//! Pure functions, no shared state: the environment of every command is
//! built as defaults → sandbox env (config drive) → request env, later
//! layers winning, and the program is looked up on the merged `PATH` before
//! spawning so that "command not found" is an ERROR, not a failed child.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// `PATH` of every command unless the sandbox or the request overrides it.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Credentials a command switches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (what `initgroups` gives the user: its primary
    /// group and the groups of `/etc/group` that list it).
    pub groups: Vec<u32>,
}

/// Who commands run as, and the identity-derived defaults of their env.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `Some` when commands switch to these credentials (the agent is
    /// root and the user is another); `None` to run as the agent's own
    /// user.
    pub switch_to: Option<Creds>,
    /// `HOME` of commands.
    pub home: String,
    /// `USER`/`LOGNAME` of commands, when known.
    pub user: Option<String>,
    /// Working directory when the request has none; `None` inherits the
    /// agent's own.
    pub default_cwd: Option<PathBuf>,
}

/// Builds the environment: defaults, then `sandbox`, then `request`.
pub fn merge(
    id: &Identity,
    sandbox: &BTreeMap<String, String>,
    request: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_owned(), DEFAULT_PATH.to_owned());
    env.insert("TERM".to_owned(), "xterm-256color".to_owned());
    env.insert("HOME".to_owned(), id.home.clone());
    env.insert("LANG".to_owned(), "en_US.UTF-8".to_owned());
    if let Some(user) = &id.user {
        env.insert("USER".to_owned(), user.clone());
        env.insert("LOGNAME".to_owned(), user.clone());
    }
    for layer in [sandbox, request] {
        for (k, v) in layer {
            env.insert(k.clone(), v.clone());
        }
    }
    env
}

/// Why a program could not be found.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LookupError {
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
}

/// Resolves `program` the way a shell does: a name containing `/` is used
/// as is (relative to the command's working directory; spawn reports
/// problems with it), any other name is searched in `path` (an empty entry
/// means the working directory `cwd`).
pub fn lookup(
    program: &str,
    path: Option<&str>,
    cwd: Option<&Path>,
) -> Result<PathBuf, LookupError> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    if program.is_empty() {
        return Err(LookupError::NotFound(bhatti_proto::text::short(program)));
    }
    for dir in path.unwrap_or(DEFAULT_PATH).split(':') {
        let base = if dir.is_empty() {
            cwd.map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."))
        } else if Path::new(dir).is_relative() {
            match cwd {
                Some(c) => c.join(dir),
                None => PathBuf::from(dir),
            }
        } else {
            PathBuf::from(dir)
        };
        let candidate = base.join(program);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(LookupError::NotFound(bhatti_proto::text::short(program)))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            switch_to: None,
            home: "/home/u".into(),
            user: Some("u".into()),
            default_cwd: None,
        }
    }

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn later_layers_win() {
        let env = merge(
            &id(),
            &map(&[("A", "sandbox"), ("B", "sandbox"), ("PATH", "/sb")]),
            &map(&[("B", "request")]),
        );
        assert_eq!(env["A"], "sandbox");
        assert_eq!(env["B"], "request");
        assert_eq!(env["PATH"], "/sb");
        assert_eq!(env["TERM"], "xterm-256color");
        assert_eq!(env["HOME"], "/home/u");
        assert_eq!(env["LANG"], "en_US.UTF-8");
        assert_eq!(env["USER"], "u");
        assert_eq!(env["LOGNAME"], "u");
    }

    #[test]
    fn defaults_alone() {
        let env = merge(&id(), &BTreeMap::new(), &BTreeMap::new());
        assert_eq!(env["PATH"], DEFAULT_PATH);
        assert_eq!(env.len(), 6);
    }

    #[test]
    fn lookup_finds_executables_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = dir.path().join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let data = dir.path().join("data");
        std::fs::write(&data, "x").expect("write");
        let path = format!("/nonexistent:{}", dir.path().display());
        assert_eq!(lookup("tool", Some(&path), None), Ok(exe));
        assert_eq!(
            lookup("data", Some(&path), None),
            Err(LookupError::NotFound("data".into()))
        );
        assert!(lookup("sh", None, None).is_ok());
        assert_eq!(lookup("./x", Some(""), None), Ok(PathBuf::from("./x")));
    }

    #[test]
    fn not_found_message() {
        let e = lookup("no-such-cmd-xyz", Some("/nonexistent"), None).expect_err("missing");
        assert_eq!(
            e.to_string(),
            "exec: \"no-such-cmd-xyz\": executable file not found in $PATH"
        );
    }
}
