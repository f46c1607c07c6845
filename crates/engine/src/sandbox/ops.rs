//! [`Engine`] for [`VmEngine`]: lifecycle calls go through
//! [`VmEngine::apply`]; agent calls make the sandbox hot, take a clone of
//! its agent client and talk to the guest with no lock held
//! (`exec_if_hot` instead skips a sandbox that is not hot or whose lock
//! is taken: background work never wakes one).

use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use super::VmEngine;
use crate::driver::Driver;
use crate::engine::{
    ActivityInfo, Engine, EngineError, EngineResult, ExecOptions, ExecRequest, ExecResult,
    ExecStream, FileInfo, FileReader, FileSource, ReadOptions, SandboxId, SandboxInfo, SandboxSpec,
    Session, SessionInfo, ShellOptions, Tunnel,
};
use crate::snapshot::{CloneSpec, SnapshotId, SnapshotInfo};
use crate::state::Op;

impl<D: Driver> Engine for VmEngine<D> {
    async fn create(&self, id: SandboxId, spec: SandboxSpec) -> EngineResult<SandboxInfo> {
        self.create_sandbox(id, spec).await
    }

    async fn destroy(&self, id: &SandboxId) -> EngineResult<()> {
        self.destroy_sandbox(id).await
    }

    fn volume_path(&self, name: &str) -> std::path::PathBuf {
        self.volumes.path(name)
    }

    async fn delete_volume(&self, name: &str) -> EngineResult<()> {
        self.volumes.delete(name)
    }

    async fn prepare(&self, spec: &SandboxSpec) -> EngineResult<bool> {
        self.prepare_golden(spec).await
    }

    async fn run_preparations(&self) {
        self.run_goldens().await;
    }

    async fn snapshot(&self, id: &SandboxId, snap: &SnapshotId) -> EngineResult<SnapshotInfo> {
        let dir = self.snapshots_root().join(snap.as_str());
        self.take_snapshot(id, snap, &dir).await
    }

    fn image_staging(&self) -> EngineResult<crate::image::store::Staging> {
        self.new_image_staging()
    }

    async fn store_image(
        &self,
        staging: crate::image::store::Staging,
        id: &str,
        source: &str,
    ) -> EngineResult<crate::image::StoredImage> {
        self.pack_image(staging, id, source).await
    }

    async fn save_image(&self, id: &SandboxId) -> EngineResult<crate::image::StoredImage> {
        self.save_sandbox_image(id).await
    }

    fn list_images(&self) -> Vec<crate::image::StoredImage> {
        self.image_store().list()
    }

    fn image_info(&self, id: &str) -> EngineResult<crate::image::StoredImage> {
        Ok(self.image_store().get(id)?)
    }

    async fn delete_image(&self, id: &str) -> EngineResult<()> {
        self.remove_image(id).await
    }

    async fn list_snapshots(&self) -> Vec<SnapshotInfo> {
        self.all_snapshots()
    }

    async fn delete_snapshot(&self, snap: &SnapshotId) -> EngineResult<()> {
        self.remove_snapshot(snap).await
    }

    async fn create_from_snapshot(
        &self,
        id: SandboxId,
        snap: &SnapshotId,
        spec: CloneSpec,
    ) -> EngineResult<SandboxInfo> {
        let dir = self.snapshots_root().join(snap.as_str());
        self.clone_sandbox(id, snap, &dir, spec).await
    }

    async fn fork(
        &self,
        id: &SandboxId,
        children: Vec<(SandboxId, CloneSpec)>,
    ) -> EngineResult<Vec<SandboxInfo>> {
        self.fork_sandbox(id, children).await
    }

    async fn set_peers(&self, id: &SandboxId, peers: bool) -> EngineResult<()> {
        self.set_sandbox_peers(id, peers).await
    }

    async fn status(&self, id: &SandboxId) -> EngineResult<SandboxInfo> {
        Ok(self.info(&*self.get(id)?))
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::engine::StateEvent> {
        self.subscribe_events()
    }

    async fn list(&self) -> Vec<SandboxInfo> {
        let mut out: Vec<_> = self
            .sandboxes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|sb| self.info(sb))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    async fn ensure_hot(&self, id: &SandboxId) -> EngineResult<()> {
        self.lifecycle(id, Op::Wake).await
    }

    async fn pause(&self, id: &SandboxId) -> EngineResult<()> {
        self.lifecycle(id, Op::Pause).await
    }

    async fn resume(&self, id: &SandboxId) -> EngineResult<()> {
        self.lifecycle(id, Op::Resume).await
    }

    async fn freeze(&self, id: &SandboxId) -> EngineResult<()> {
        self.lifecycle(id, Op::Freeze).await
    }

    async fn stop(&self, id: &SandboxId) -> EngineResult<()> {
        self.lifecycle(id, Op::Stop).await
    }

    async fn start(&self, id: &SandboxId) -> EngineResult<()> {
        self.lifecycle(id, Op::Start).await
    }

    async fn exec(&self, id: &SandboxId, opts: ExecOptions) -> EngineResult<ExecResult> {
        self.with_agent(id, |a| {
            let opts = opts.clone();
            async move { a.exec(opts).await }
        })
        .await
    }

    async fn exec_if_hot(
        &self,
        id: &SandboxId,
        opts: ExecOptions,
    ) -> EngineResult<Option<ExecResult>> {
        let sb = self.get(id)?;
        // A lifecycle operation holds the slot: skip rather than wait.
        let agent = match sb.slot.try_lock() {
            Ok(slot) if slot.state == crate::state::SandboxState::Hot => sb.agent.clone(),
            _ => return Ok(None),
        };
        Ok(Some(agent.exec(opts).await?))
    }

    async fn exec_stream(&self, id: &SandboxId, req: ExecRequest) -> EngineResult<ExecStream> {
        self.with_agent(id, |a| {
            let req = req.clone();
            async move { a.exec_stream(&req).await }
        })
        .await
    }

    async fn shell(&self, id: &SandboxId, opts: ShellOptions) -> EngineResult<Session> {
        self.with_agent(id, |a| {
            let opts = opts.clone();
            async move { a.shell(&opts).await }
        })
        .await
    }

    async fn attach(&self, id: &SandboxId, session_id: &str) -> EngineResult<Session> {
        self.with_agent(id, |a| async move { a.attach(session_id).await })
            .await
    }

    async fn list_sessions(&self, id: &SandboxId) -> EngineResult<Vec<SessionInfo>> {
        self.with_agent(id, |a| async move { a.list_sessions().await })
            .await
    }

    async fn kill_session(&self, id: &SandboxId, session_id: &str) -> EngineResult<()> {
        self.with_agent(id, |a| async move { a.kill_session(session_id).await })
            .await
    }

    async fn read_file(
        &self,
        id: &SandboxId,
        path: &str,
        opts: ReadOptions,
    ) -> EngineResult<FileReader> {
        self.with_agent(id, |a| async move { a.read_file(path, opts).await })
            .await
    }

    async fn write_file(
        &self,
        id: &SandboxId,
        path: &str,
        mode: u32,
        size: u64,
        data: FileSource,
    ) -> EngineResult<()> {
        self.write_file_as(id, path, mode, size, data, None).await
    }

    async fn write_file_as(
        &self,
        id: &SandboxId,
        path: &str,
        mode: u32,
        size: u64,
        data: FileSource,
        user: Option<&str>,
    ) -> EngineResult<()> {
        Ok(self
            .agent(id)
            .await?
            .write_file_as(path, mode, size, data, user)
            .await?)
    }

    async fn stat(&self, id: &SandboxId, path: &str) -> EngineResult<FileInfo> {
        self.with_agent(id, |a| async move { a.stat(path).await })
            .await
    }

    async fn ls(&self, id: &SandboxId, path: &str) -> EngineResult<Vec<FileInfo>> {
        self.with_agent(id, |a| async move { a.ls(path).await })
            .await
    }

    async fn activity(&self, id: &SandboxId) -> EngineResult<ActivityInfo> {
        self.with_agent(id, |a| async move { a.activity().await })
            .await
    }

    async fn agent_call<T, F, Fut>(&self, id: &SandboxId, op: F) -> EngineResult<T>
    where
        T: Send,
        F: Fn(bhatti_agent::Client) -> Fut + Send + Sync,
        Fut: std::future::Future<Output = bhatti_agent::Result<T>> + Send,
    {
        self.with_agent(id, op).await
    }

    fn agent_redials(&self) -> u64 {
        self.redials.load(Ordering::Relaxed)
    }

    async fn console(&self, id: &SandboxId, lines: usize) -> EngineResult<String> {
        let sb = self.get(id)?;
        let driver = self.driver.clone();
        super::blocking(move || driver.console_tail(&sb.vm_config, lines)).await
    }

    async fn listening_ports(&self, id: &SandboxId) -> EngineResult<Vec<u16>> {
        let r = self
            .with_agent(id, |a| async move {
                a.exec(ExecOptions::new(super::ports::COMMAND)).await
            })
            .await?;
        Ok(super::ports::parse_listening(&String::from_utf8_lossy(
            &r.stdout,
        )))
    }

    async fn tunnel(&self, id: &SandboxId, port: u16) -> EngineResult<Tunnel> {
        self.with_agent(id, |a| async move { a.forward(port).await })
            .await
    }
}

impl<D: Driver> VmEngine<D> {
    /// Runs `op` with the sandbox's agent (waking it first, see
    /// [`VmEngine::agent_op`]). When the connection could not even be made — the sandbox was stopped or
    /// frozen between the wake and the connect (a TTL, the thermal
    /// manager, its owner), so nothing reached the guest — it wakes it
    /// again and retries once.
    async fn with_agent<T, F, Fut>(&self, id: &SandboxId, op: F) -> EngineResult<T>
    where
        F: Fn(bhatti_agent::Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, bhatti_agent::Error>>,
    {
        match self.agent_op(id, &op).await? {
            Err(e) if never_connected(&e) => {
                tracing::info!(sandbox = %id, error = %e, "agent unreachable; waking again");
                self.redials.fetch_add(1, Ordering::Relaxed);
                Ok(self.agent_op(id, &op).await??)
            }
            r => Ok(r?),
        }
    }

    /// Wakes the sandbox and runs `op` with its agent, ended early with
    /// [`EngineError::Interrupted`] when the VMM it runs on goes away
    /// (stopped, frozen, destroyed, died) before it is done: its
    /// connection would otherwise wait for its timeout.
    async fn agent_op<T, F, Fut>(
        &self,
        id: &SandboxId,
        op: &F,
    ) -> EngineResult<Result<T, bhatti_agent::Error>>
    where
        F: Fn(bhatti_agent::Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, bhatti_agent::Error>>,
    {
        let sb = self.get(id)?;
        let mut seen = sb.observed.subscribe();
        let agent = self.agent(id).await?;
        let pid = seen.borrow_and_update().pid;
        let gone = seen.wait_for(|o| !o.state.has_vmm() || o.pid != pid);
        tokio::select! {
            r = op(agent) => Ok(r),
            _ = gone => Err(EngineError::Interrupted(id.clone())),
        }
    }

    async fn lifecycle(&self, id: &SandboxId, op: Op) -> EngineResult<()> {
        let sb = self.get(id)?;
        self.apply(&sb, op).await.map(drop)
    }
}

/// Whether `e` says the connection to the agent was never made.
fn never_connected(e: &bhatti_agent::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(e, bhatti_agent::Error::Transport(io) if matches!(
        io.kind(),
        K::ConnectionRefused | K::HostUnreachable | K::NetworkUnreachable
    ))
}
