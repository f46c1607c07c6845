//! envd's piped commands as kept commands of the agent (protocol version
//! 5, `docs/protocol.md`): when the sandbox's agent lists `keep`, Start
//! runs a piped command with `keep`, its guest pid as its pid and, as the
//! agent's `tag`, a [`Label`] with the E2B config. The agent then holds
//! the command independently of the daemon's connection, so a daemon
//! that restarted (and lost its [`Registry`]) finds it again:
//!
//! - [`find`]: a process the registry does not hold is looked up in the
//!   agent's list (running commands only, by pid or by tag), attached to
//!   (KEPT_ATTACH), registered under its guest pid and pumped like a
//!   started one — the replay the agent sends first is skipped, so a
//!   Connect streams only further output, as envd's does. Connect,
//!   SendInput, StreamInput, CloseStdin, SendSignal and Update use it.
//! - [`unregistered`]: List adds the agent's running kept commands the
//!   registry does not hold.
//!
//! The request's environment is never stored in the guest: a command
//! found again lists no `envs`.

use std::sync::Arc;

use bhatti_agent::{Kept, KeptInfo};
use bhatti_engine::engine::{Engine, SandboxId};
use bhatti_proto::kept::MAX_TAG;
use serde::{Deserialize, Serialize};

use super::Call;
use super::connect::{Code, RpcError};
use super::native::{Agents, feature};
use super::process_pb::{ProcessConfig, ProcessInfo, ProcessSelector};
use super::procs::{NewProc, Proc, Registry};

/// What envd keeps in a kept command's agent `tag`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// Marks the tag as envd's.
    pub e2b: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

/// The agent tag of a command started with `config` and `tag`: the whole
/// config (without `envs`) when it fits [`MAX_TAG`], else without `cmd`
/// and `args` (the agent's argv stands in for them), then without `cwd`,
/// then without `tag`.
pub fn label(config: &ProcessConfig, tag: Option<&str>) -> String {
    let mut l = Label {
        e2b: 1,
        tag: tag.map(str::to_owned),
        cmd: Some(config.cmd.clone()),
        args: config.args.clone(),
        cwd: config.cwd.clone(),
    };
    let fits = |l: &Label| serde_json::to_string(l).unwrap_or_default();
    let mut s = fits(&l);
    if s.len() > MAX_TAG {
        (l.cmd, l.args) = (None, Vec::new());
        s = fits(&l);
    }
    if s.len() > MAX_TAG {
        l.cwd = None;
        s = fits(&l);
    }
    if s.len() > MAX_TAG {
        l.tag = None;
        s = fits(&l);
    }
    s
}

/// The E2B config and tag of a kept command, from its [`Label`] (or its
/// argv when the label lacks them).
pub fn config_of(info: &KeptInfo) -> (ProcessConfig, Option<String>) {
    let l: Label = info
        .tag
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    let (cmd, args) = match l.cmd {
        Some(cmd) => (cmd, l.args),
        None => match info.argv.split_first() {
            Some((c, rest)) => (c.clone(), rest.to_vec()),
            None => (String::new(), Vec::new()),
        },
    };
    let config = ProcessConfig {
        cmd,
        args,
        envs: Default::default(),
        cwd: l.cwd.or_else(|| info.cwd.clone()),
    };
    (config, l.tag)
}

/// Whether envd started kept command `info` (its tag is envd's label).
pub fn is_envds(info: &KeptInfo) -> bool {
    info.tag
        .as_deref()
        .and_then(|t| serde_json::from_str::<Label>(t).ok())
        .is_some_and(|l| l.e2b == 1)
}

/// Whether kept command `info` is the one `sel` names.
fn selects(info: &KeptInfo, sel: &ProcessSelector) -> bool {
    info.running
        && match sel {
            ProcessSelector::Pid(pid) => u32::try_from(info.pid).ok() == Some(*pid),
            ProcessSelector::Tag(tag) => config_of(info).1.as_deref() == Some(tag.as_str()),
        }
}

/// The process `sel` names: from the registry, else (when the agent
/// keeps commands) a running kept command found again.
pub async fn find<E: Engine>(
    call: &Call<E>,
    reg: &Arc<Registry>,
    agents: &Agents,
    sel: &ProcessSelector,
) -> Result<Arc<Proc>, RpcError> {
    let missing = match reg.find(&call.sb.id, sel) {
        Ok(p) => return Ok(p),
        Err(e) => e,
    };
    let eid = call.wake().await?;
    if !agents.has(call, &eid, feature::KEEP).await {
        return Err(missing);
    }
    let list = call
        .st
        .engine
        .agent_call(&eid, |a| async move { a.list_kept().await })
        .await?;
    let Some(info) = list.commands.into_iter().find(|i| selects(i, sel)) else {
        return Err(missing);
    };
    let id = info.id.clone();
    let kept = call
        .st
        .engine
        .agent_call(&eid, |a| {
            let id = id.clone();
            async move { a.attach_kept(&id).await }
        })
        .await
        .map_err(|e| RpcError::new(Code::NotFound, format!("process {sel:?}: {e}")))?;
    Ok(adopt(call, &eid, reg, kept))
}

/// Registers an attached kept command (unless another call did first)
/// and starts its pump.
pub(super) fn adopt<E: Engine>(
    call: &Call<E>,
    eid: &SandboxId,
    reg: &Arc<Registry>,
    kept: Kept,
) -> Arc<Proc> {
    let Kept {
        info,
        input,
        events,
    } = kept;
    let (config, tag) = config_of(&info);
    let pid = u32::try_from(info.pid).unwrap_or(0);
    let new = NewProc {
        config,
        tag,
        session: None,
        input,
        pid: Some(pid),
        kept: true,
    };
    let proc = match reg.adopt(&call.sb.id, pid, new) {
        Ok(p) => p,
        // Dropping this attach detaches it; the command goes on.
        Err(existing) => return existing,
    };
    if !info.stdin_open {
        proc.stdin_closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let states = call.st.engine.subscribe();
    let busy = call.st.activity.busy(&call.sb.id);
    let gone = super::procs::vmm_gone(states, eid.clone());
    reg.pump(
        call.sb.id.clone(),
        proc.clone(),
        (events, info.replay),
        gone,
        busy,
    );
    proc
}

/// The agent's running kept commands that the registry does not hold
/// (none when the agent does not keep commands or cannot be asked).
pub async fn unregistered<E: Engine>(
    call: &Call<E>,
    reg: &Registry,
    agents: &Agents,
) -> Vec<ProcessInfo> {
    let Ok(eid) = call.wake().await else {
        return Vec::new();
    };
    if !agents.has(call, &eid, feature::KEEP).await {
        return Vec::new();
    }
    let list = match call
        .st
        .engine
        .agent_call(&eid, |a| async move { a.list_kept().await })
        .await
    {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(sandbox = %call.sb.id, error = %e, "kept commands not listed");
            return Vec::new();
        }
    };
    list.commands
        .iter()
        .filter(|i| i.running)
        .filter_map(|i| Some((u32::try_from(i.pid).ok()?, i)))
        .filter(|(pid, _)| !reg.has(&call.sb.id, *pid))
        .map(|(pid, i)| {
            let (config, tag) = config_of(i);
            ProcessInfo { config, pid, tag }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ProcessConfig {
        ProcessConfig {
            cmd: "/bin/bash".into(),
            args: vec!["-l".into(), "-c".into(), "sleep 5".into()],
            envs: [("SECRET".to_owned(), "x".to_owned())].into(),
            cwd: Some("/w".into()),
        }
    }

    #[test]
    fn labels_carry_the_config_without_envs_and_shrink_to_fit() {
        let l = label(&config(), Some("t"));
        assert!(!l.contains("SECRET"), "{l}");
        let info = KeptInfo {
            tag: Some(l),
            argv: vec!["/bin/sh".into(), "-c".into(), "x".into()],
            running: true,
            pid: 7,
            ..KeptInfo::default()
        };
        let (c, tag) = config_of(&info);
        assert_eq!(
            (c.cmd.as_str(), c.args.len(), tag.as_deref()),
            ("/bin/bash", 3, Some("t"))
        );
        assert_eq!(c.cwd.as_deref(), Some("/w"));
        assert!(selects(&info, &ProcessSelector::Pid(7)));
        assert!(selects(&info, &ProcessSelector::Tag("t".into())));
        assert!(!selects(&info, &ProcessSelector::Pid(8)));
        // Too long for the agent's tag: the argv stands in for cmd and args.
        let mut big = config();
        big.args = vec!["a".repeat(MAX_TAG)];
        let l = label(&big, Some("t"));
        assert!(l.len() <= MAX_TAG);
        let info = KeptInfo {
            tag: Some(l),
            argv: vec!["/bin/sh".into(), "-c".into(), "x".into()],
            ..KeptInfo::default()
        };
        let (c, tag) = config_of(&info);
        assert_eq!(
            (c.cmd.as_str(), c.args.len(), tag.as_deref()),
            ("/bin/sh", 2, Some("t"))
        );
        assert_eq!(c.cwd.as_deref(), Some("/w"));
        // No label (not envd's): the argv.
        let (c, tag) = config_of(&KeptInfo {
            argv: vec!["sleep".into(), "1".into()],
            ..KeptInfo::default()
        });
        assert_eq!(
            (c.cmd.as_str(), c.args, tag),
            ("sleep", vec!["1".to_owned()], None)
        );
    }
}
