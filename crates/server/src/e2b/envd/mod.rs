//! envd, answered by the daemon: the Connect-JSON RPCs of
//! `process.Process` and `filesystem.Filesystem`, `/files` and `/health`,
//! for the sandbox named by `E2b-Sandbox-Id`, authenticated by its
//! `X-Access-Token` ([`super::sandbox_of`]). There is no envd in the
//! guest: every call becomes lohar agent requests (the sandbox is woken
//! first if it is cold).
//!
//! - [`connect`]: the Connect protocol (unary, server streams, errors,
//!   `Connect-Timeout-Ms`); [`pbjson`], [`process_pb`], [`fs_pb`]: the
//!   messages in proto3 JSON.
//! - [`process`]: `process.Process` over [`procs`], the per-sandbox
//!   registry of the processes envd started (pids are per-sandbox
//!   counters; output fanned out to every stream that follows a process).
//! - [`fs`]: `filesystem.Filesystem`; [`watch`]: its watchers
//!   ([`poll`]: by comparing listings).
//! - [`native`]: the agent's protocol-v4 requests (extended stat and
//!   listing, mkdir, move, remove, signal, watch), used when the agent
//!   lists them (`caps`). An older agent gets plain stat and listings,
//!   KILL for every signal and polled watches; mkdir, move and remove are
//!   `unimplemented` for it (never faked with tools in the guest).
//! - [`files`]: `GET`/`POST /files`, `GET /health`.
//! - [`users`]: the guest user of a call (`Authorization: Basic` with
//!   `user:`, or `?username=`) and relative paths (against its home).
//!
//! Behaviour that follows envd: a process started by `Start` outlives its
//! stream (background commands); the stream's `Connect-Timeout-Ms` is the
//! command's timeout and SIGKILLs it; a process leaves the registry when it
//! exits. [`ENVD_VERSION`] is the envd version whose features this envd
//! serves, and what the control plane advertises as `envdVersion`.

pub mod adopt;
pub mod connect;
pub mod files;
pub mod fs;
pub mod fs_pb;
pub mod input;
pub mod kept;
pub mod native;
pub mod pbjson;
pub mod poll;
pub mod process;
pub mod process_pb;
pub mod procs;
pub mod spool;
pub mod users;
pub mod watch;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Extension, Router};
use bhatti_engine::engine::{Engine, SandboxId};
use bhatti_store::sandboxes::Sandbox;
use tokio::time::Instant;

use self::connect::{Code, RpcError};
use super::SandboxAccessError;
use crate::state::Shared;

/// The envd version whose features this envd serves, advertised by the
/// control plane as `envdVersion` (the SDK gates features on it,
/// `e2b/envd/versions.py`): below 0.1.0 it refuses the sandbox, below
/// 0.4.0 it sends every call as the user `user`; served: the stdin flag (0.3.0), no default user (0.4.0),
/// CloseStdin (0.5.2), octet-stream and gzip uploads (0.5.7); not file
/// metadata (0.6.2, xattrs) nor watch entry info (0.6.3), so not higher.
pub const ENVD_VERSION: &str = "0.5.7";

/// envd's routes. Within a runtime, also starts adopting the running
/// commands of hot sandboxes ([`adopt`]: a daemon that restarted).
pub fn router<E: Engine>(state: &Shared<E>) -> Router<Shared<E>> {
    let procs = Arc::new(procs::Registry::default());
    let watchers = Arc::new(watch::Watchers::default());
    let agents = Arc::new(native::Agents::default());
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(adopt::at_start(
            state.clone(),
            procs.clone(),
            agents.clone(),
        ));
    }
    Router::new()
        .merge(process::routes::<E>())
        .merge(fs::routes::<E>())
        .route(
            "/files",
            get(files::download::<E>)
                .post(files::upload::<E>)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/health", get(files::health::<E>))
        .fallback(connect::unknown_method)
        .layer(Extension(procs))
        .layer(Extension(watchers))
        .layer(Extension(agents))
}

/// One authenticated call: the sandbox, the guest user it asks for, its
/// deadline.
#[derive(Debug)]
pub struct Call<E> {
    pub st: Shared<E>,
    pub sb: Sandbox,
    /// The guest user named by the request (none: the sandbox's default).
    pub user: Option<String>,
    pub deadline: Option<Instant>,
}

impl<E: Engine> Call<E> {
    /// Authenticates a request with the sandbox's access token.
    pub fn new(st: &Shared<E>, headers: &HeaderMap) -> Result<Self, RpcError> {
        let (_, sb) = super::sandbox_of(st, headers, super::ACCESS_TOKEN, super::access_token)
            .map_err(access_error)?;
        Ok(Self {
            st: st.clone(),
            sb,
            user: users::from_headers(headers)?,
            deadline: connect::deadline(headers),
        })
    }

    /// The sandbox made hot (woken if cold, started if stopped).
    pub async fn wake(&self) -> Result<SandboxId, RpcError> {
        Ok(self.st.wake(&self.sb).await?)
    }
}

/// The Connect error for a refused sandbox request.
pub fn access_error(e: SandboxAccessError) -> RpcError {
    let code = match &e {
        SandboxAccessError::NoSandbox => Code::InvalidArgument,
        SandboxAccessError::NotFound(_) => Code::NotFound,
        SandboxAccessError::Unauthenticated(_) => Code::Unauthenticated,
        SandboxAccessError::Store(_) => Code::Internal,
    };
    RpcError::new(code, e.to_string())
}
