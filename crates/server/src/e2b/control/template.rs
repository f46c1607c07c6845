//! What an E2B `templateID` names, in this order: one of the caller's
//! bhatti templates (by id or name), one of the caller's images or a
//! built-in tier (`busybox`, `minimal`, `interpreter`, `dev`), E2B's
//! default template `base`, which is the Debian `minimal` tier when it is
//! built (the SDK runs commands with `/bin/bash -l -c`, which busybox
//! lacks), else `busybox`, or E2B's code-interpreter template
//! ([`CODE_INTERPRETER`]), which is the `interpreter` tier. Anything else
//! is 404, as E2B answers an unknown template.
//!
//! A sandbox of the `interpreter` tier runs as the user `user` in
//! `/home/user` (as E2B's template does) and starts the code-interpreter
//! server as its init ([`INTERPRETER_INIT`]), which the
//! `e2b-code-interpreter` SDK's `run_code` reaches on port 49999.

use std::time::Duration;

use bhatti_engine::engine::Engine;
use bhatti_engine::image::{ImagePaths, Tier};
use bhatti_store::StoreError;
use bhatti_store::sandboxes::Sandbox;
use bhatti_store::users::User;

use super::error::{ControlError, ControlResult};
use crate::service::{ServiceError, engine_id};
use crate::state::Shared;

/// E2B's default template (the SDK's `Sandbox.default_template`).
pub const BASE: &str = "base";
/// The `e2b-code-interpreter` SDK's default template.
pub const CODE_INTERPRETER: &str = "code-interpreter-v1";
/// The init of an `interpreter` sandbox: the code-interpreter server
/// (`images/interpreter/interpreter.py`, installed by the tier's build).
pub const INTERPRETER_INIT: &str =
    "PYDEVD_DISABLE_FILE_VALIDATION=1 exec python3 /usr/local/lib/bhatti/interpreter.py";

/// What a create boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A bhatti template, by id.
    Template(String),
    /// An image: the caller's image name or a tier name.
    Image(String),
}

/// The source `asked` names for `user` (see the module docs).
pub fn resolve<E: Engine>(st: &Shared<E>, user: &User, asked: &str) -> ControlResult<Source> {
    match st.store.find_template(&user.id, asked) {
        Ok(t) => return Ok(Source::Template(t.id)),
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match st.resolve_image(user, asked) {
        Ok(_) => return Ok(Source::Image(asked.to_owned())),
        Err(ServiceError::Invalid(_)) => {}
        Err(e) => return Err(e.into()),
    }
    if asked == BASE {
        return Ok(Source::Image(
            base_tier(&ImagePaths::from_env()).name().into(),
        ));
    }
    if asked == CODE_INTERPRETER && ImagePaths::from_env().rootfs(Tier::Interpreter).is_ok() {
        return Ok(Source::Image(Tier::Interpreter.name().into()));
    }
    Err(ControlError::NoTemplate(crate::service::validate::excerpt(
        asked,
    )))
}

/// The tier `base` means with the images in `paths`.
pub fn base_tier(paths: &ImagePaths) -> Tier {
    if paths.rootfs(Tier::Minimal).is_ok() {
        Tier::Minimal
    } else {
        Tier::Busybox
    }
}

/// The port the code-interpreter server listens on (the SDK's
/// `JUPYTER_PORT`).
pub const INTERPRETER_PORT: u16 = 49999;
/// Longest a new `interpreter` sandbox may take to listen on
/// [`INTERPRETER_PORT`] (Python starts slowly under TCG).
pub const INTERPRETER_READY: Duration = Duration::from_secs(300);

/// Waits until a new `interpreter` sandbox's server listens, as E2B's
/// template readiness check does, so the SDK's first `run_code` finds it;
/// destroys the sandbox and says why when it does not in time.
pub async fn wait_ready<E: Engine>(st: &Shared<E>, sb: &Sandbox) -> ControlResult<()> {
    let eid = engine_id(sb)?;
    let listening = async {
        loop {
            match st.engine.listening_ports(&eid).await {
                Ok(ports) if ports.contains(&INTERPRETER_PORT) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let why = match tokio::time::timeout(INTERPRETER_READY, listening).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e,
        Err(_) => {
            format!("nothing listened on port {INTERPRETER_PORT} within {INTERPRETER_READY:?}")
        }
    };
    let console = st.engine.console(&eid, 20).await.unwrap_or_default();
    if let Err(e) = st.destroy_sandbox(sb).await {
        tracing::warn!(sandbox = %sb.id, error = %e, "destroying a code-interpreter sandbox that did not start");
    }
    Err(ControlError::NotReady(format!(
        "the code-interpreter server of sandbox {} did not start: {why}; console:\n{console}",
        sb.id
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_is_minimal_when_built() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = ImagePaths::new(dir.path());
        assert_eq!(base_tier(&paths), Tier::Busybox);
        std::fs::write(dir.path().join(Tier::Minimal.file_name()), b"").expect("write");
        assert_eq!(base_tier(&paths), Tier::Minimal);
    }
}
