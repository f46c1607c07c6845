//! Waiting for a new guest's agent: after a boot ([`VmEngine::boot`]) or
//! a restore into a new sandbox ([`VmEngine::await_agent`]), polled at a
//! short fixed interval until it answers with the sandbox's token.

use std::time::Duration;

use bhatti_agent::Client;

use super::VmEngine;
use crate::agent_link::NetnsConnector;
use crate::driver::{Driver, VmConfig};
use crate::engine::{EngineError, EngineResult};

impl<D: Driver> VmEngine<D> {
    /// Spawns the VMM and waits for the guest's agent; a guest that never
    /// answers is killed, with its console's last lines in the error.
    pub(super) async fn boot(
        &self,
        vm_config: &VmConfig,
        token: &str,
    ) -> EngineResult<(D::Vm, Client)> {
        let vm = self.driver.spawn(vm_config).await?;
        self.await_agent(vm, vm_config, token, false).await
    }

    /// Waits for the agent of `vm` to answer with `token`; a guest that
    /// never does is killed, with its console's last lines in the error.
    /// A refused token ends the wait, unless `token_coming` (a restored
    /// guest still has its source's token until it reads its identity,
    /// and may have its source's address too).
    pub(super) async fn await_agent(
        &self,
        mut vm: D::Vm,
        vm_config: &VmConfig,
        token: &str,
        token_coming: bool,
    ) -> EngineResult<(D::Vm, Client)> {
        let link = self.driver.agent_transport(vm_config);
        // Log lines about this agent name its sandbox (the run dir's name).
        let peer = vm_config.run_dir.file_name().map_or_else(
            || vm_config.run_dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let agent = Client::new(NetnsConnector::for_transport(link, self.sockets.clone()))
            .with_token(token)
            .with_peer(peer)
            .with_reuse()
            .with_deferred_sync();
        let ready = wait_agent(
            &agent,
            self.config.agent_ready_timeout,
            token_coming,
            || self.driver.exited(&mut vm),
        )
        .await;
        if let Err(e) = ready {
            let tail = self.driver.console_tail(vm_config, 20);
            let _ = self.driver.kill(vm).await;
            return Err(EngineError::NotReady(format!("{e}; console tail:\n{tail}")));
        }
        Ok((vm, agent))
    }
}

/// Polls the new guest's agent every [`READY_POLL`] (each attempt cut off
/// after [`READY_ATTEMPT`]) until it answers, giving up early when
/// `exited` reports that the VMM is gone. A fixed short interval notices
/// readiness sooner than the client's exponential backoff; boot under TCG
/// takes about a second, so the extra attempts are cheap.
async fn wait_agent(
    agent: &Client,
    timeout: Duration,
    token_coming: bool,
    mut exited: impl FnMut() -> Option<String>,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match tokio::time::timeout(READY_ATTEMPT, agent.activity()).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e @ bhatti_agent::Error::AuthRefused(_))) if !token_coming => {
                return Err(e.to_string());
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {READY_ATTEMPT:?}"),
        };
        if let Some(why) = exited() {
            return Err(why);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("not ready after {timeout:?}: {last}"));
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// Interval between readiness attempts.
const READY_POLL: Duration = Duration::from_millis(10);
/// Longest single readiness attempt.
const READY_ATTEMPT: Duration = Duration::from_millis(250);
