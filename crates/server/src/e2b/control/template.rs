//! What an E2B `templateID` names, in this order: one of the caller's
//! bhatti templates (by id or name), one of the caller's images or a
//! built-in tier (`busybox`, `minimal`, `dev`), or E2B's default template
//! `base`, which is the Debian `minimal` tier when it is built (the SDK
//! runs commands with `/bin/bash -l -c`, which busybox lacks), else
//! `busybox`. Anything else is 404, as E2B answers an unknown template.

use bhatti_engine::engine::Engine;
use bhatti_engine::image::{ImagePaths, Tier};
use bhatti_store::StoreError;
use bhatti_store::users::User;

use super::error::{ControlError, ControlResult};
use crate::service::ServiceError;
use crate::state::Shared;

/// E2B's default template (the SDK's `Sandbox.default_template`).
pub const BASE: &str = "base";

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
