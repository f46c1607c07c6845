//! At daemon start, envd adopts the running kept commands of every hot
//! sandbox ([`super::kept`]): each is attached to, registered and pumped
//! as if this daemon had started it, so it keeps its sandbox busy (the
//! thermal manager does not freeze a sandbox under a running command, as
//! before the restart) and List, Connect and the rest find it at once.
//! Cold, warm and stopped sandboxes are left alone (asking their agents
//! would wake them); theirs are found when a call names them.

use std::sync::Arc;

use bhatti_engine::engine::Engine;
use bhatti_store::sandboxes::{Sandbox, Status, Thermal};

use super::Call;
use super::connect::{Code, RpcError};
use super::kept::{adopt, is_envds};
use super::native::{Agents, feature};
use super::procs::Registry;
use crate::service::engine_id;
use crate::state::Shared;

/// Adopts the running kept commands of every hot sandbox.
pub async fn at_start<E: Engine>(st: Shared<E>, reg: Arc<Registry>, agents: Arc<Agents>) {
    let rows = match st.store.list_live_sandboxes() {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "envd: listing sandboxes to adopt their commands");
            return;
        }
    };
    for sb in rows
        .into_iter()
        .filter(|sb| sb.status == Status::Running && sb.thermal == Thermal::Hot)
    {
        let id = sb.id.clone();
        match adopt_running(&st, sb, &reg, &agents).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sandbox = %id, commands = n, "envd: adopted running commands"),
            Err(e) => tracing::warn!(sandbox = %id, error = %e.message, "envd: adopting commands"),
        }
    }
}

/// Adopts `sb`'s running kept commands that envd started; how many.
async fn adopt_running<E: Engine>(
    st: &Shared<E>,
    sb: Sandbox,
    reg: &Arc<Registry>,
    agents: &Agents,
) -> Result<usize, RpcError> {
    let eid = engine_id(&sb).map_err(|e| RpcError::new(Code::Internal, e.to_string()))?;
    let call = Call {
        st: st.clone(),
        sb,
        user: None,
        deadline: None,
    };
    if !agents.has(&call, &eid, feature::KEEP).await {
        return Ok(0);
    }
    let list = st
        .engine
        .agent_call(&eid, |a| async move { a.list_kept().await })
        .await?;
    let mut n = 0;
    for info in list.commands.iter().filter(|i| i.running && is_envds(i)) {
        if u32::try_from(info.pid).is_ok_and(|pid| reg.has(&call.sb.id, pid)) {
            continue;
        }
        let id = info.id.clone();
        let kept = st
            .engine
            .agent_call(&eid, |a| {
                let id = id.clone();
                async move { a.attach_kept(&id).await }
            })
            .await?;
        adopt(&call, &eid, reg, kept);
        n += 1;
    }
    Ok(n)
}
