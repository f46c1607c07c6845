//! [`Engine`] for [`VmEngine`]: lifecycle calls go through
//! [`VmEngine::apply`]; agent calls make the sandbox hot, take a clone of
//! its agent client and talk to the guest with no lock held
//! (`exec_if_hot` instead skips a sandbox that is not hot or whose lock
//! is taken: background work never wakes one).

use std::sync::PoisonError;

use super::VmEngine;
use crate::driver::Driver;
use crate::engine::{
    ActivityInfo, Engine, EngineResult, ExecOptions, ExecRequest, ExecResult, ExecStream, FileInfo,
    FileReader, FileSource, ReadOptions, SandboxId, SandboxInfo, SandboxSpec, Session, SessionInfo,
    ShellOptions, Tunnel,
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
        Ok(self.agent(id).await?.exec(opts).await?)
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
        Ok(self.agent(id).await?.exec_stream(&req).await?)
    }

    async fn shell(&self, id: &SandboxId, opts: ShellOptions) -> EngineResult<Session> {
        Ok(self.agent(id).await?.shell(&opts).await?)
    }

    async fn attach(&self, id: &SandboxId, session_id: &str) -> EngineResult<Session> {
        Ok(self.agent(id).await?.attach(session_id).await?)
    }

    async fn list_sessions(&self, id: &SandboxId) -> EngineResult<Vec<SessionInfo>> {
        Ok(self.agent(id).await?.list_sessions().await?)
    }

    async fn kill_session(&self, id: &SandboxId, session_id: &str) -> EngineResult<()> {
        Ok(self.agent(id).await?.kill_session(session_id).await?)
    }

    async fn read_file(
        &self,
        id: &SandboxId,
        path: &str,
        opts: ReadOptions,
    ) -> EngineResult<FileReader> {
        Ok(self.agent(id).await?.read_file(path, opts).await?)
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
        Ok(self.agent(id).await?.stat(path).await?)
    }

    async fn ls(&self, id: &SandboxId, path: &str) -> EngineResult<Vec<FileInfo>> {
        Ok(self.agent(id).await?.ls(path).await?)
    }

    async fn activity(&self, id: &SandboxId) -> EngineResult<ActivityInfo> {
        Ok(self.agent(id).await?.activity().await?)
    }

    async fn listening_ports(&self, id: &SandboxId) -> EngineResult<Vec<u16>> {
        let r = self
            .agent(id)
            .await?
            .exec(ExecOptions::new(super::ports::COMMAND))
            .await?;
        Ok(super::ports::parse_listening(&String::from_utf8_lossy(
            &r.stdout,
        )))
    }

    async fn tunnel(&self, id: &SandboxId, port: u16) -> EngineResult<Tunnel> {
        Ok(self.agent(id).await?.forward(port).await?)
    }
}

impl<D: Driver> VmEngine<D> {
    async fn lifecycle(&self, id: &SandboxId, op: Op) -> EngineResult<()> {
        let sb = self.get(id)?;
        self.apply(&sb, op).await.map(drop)
    }
}
