//! Images (issue 12): users' names for the engine's stored images, the
//! built-in tiers beside them, saving a sandbox's disk as an image, and
//! what a create's `image` names ([`AppState::resolve_image`]).
//!
//! The engine keeps one copy of an image per content id, whoever
//! imported it; a store row is one user's name for an id. Another user's
//! names are not found (404), and a create names only the caller's images
//! or a tier, never an id, so a user can use only what they imported or
//! saved. Deleting a name deletes the engine's image only when no row
//! (of any user) names its id any more; the caller's sandboxes, snapshots
//! and templates that use it keep it (409, naming them).
//!
//! Images count in the user's storage quota with snapshots
//! (`users.max_storage_mb`): each distinct image once, by the host bytes
//! it takes.
//!
//! # Threads, locks, I/O
//! Store calls are short; the engine's save (a copy of the disk, the
//! sandbox paused meanwhile) is awaited with no lock held. The async
//! lock `imports.names` is held while a row is written and its image
//! checked, and while a name is deleted with (when it was the id's last)
//! the engine's image: an import of the same content that finishes then
//! never records an image being deleted.

use bhatti_engine::engine::{Engine, EngineError};
use bhatti_engine::image::{ImageError, ImagePaths, ImageRef, Tier};
use bhatti_store::StoreError;
use bhatti_store::images::Image;
use bhatti_store::sandboxes::Sandbox;
use bhatti_store::users::User;

use super::validate::{self, Invalid};
use super::{ServiceError, ServiceResult, engine_id};
use crate::model::images::{ImageConfig, ImageView, SaveImage};
use crate::model::time;
use crate::state::{AppState, now_unix};

const MB: u64 = 1024 * 1024;

/// What a storage check refuses.
#[derive(Debug, Clone, Copy)]
pub enum Over {
    /// Storage already used up (before an import starts).
    AtAll,
    /// Adding these bytes would go over.
    Adding(u64),
}

/// What a create's `image` names.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub image: ImageRef,
    /// The caller's name for a stored image (`None`: a tier).
    pub name: Option<String>,
    pub config: ImageConfig,
}

impl Resolved {
    /// The image config's `User` as the sandbox's exec user: its user
    /// part (`user[:group]`; the group is the user's own), when the guest
    /// can name it.
    pub fn exec_user(&self) -> Option<String> {
        let u = self.config.user.as_deref()?.split(':').next()?;
        bhatti_engine::engine::guest_user_ok(u).then(|| u.to_owned())
    }

    /// The image config's `Entrypoint` and `Cmd` as an init command, run
    /// in its `WorkingDir`.
    pub fn init(&self) -> Option<String> {
        let argv = [self.config.entrypoint.clone(), self.config.cmd.clone()].concat();
        if argv.is_empty() {
            return None;
        }
        let cd = self
            .config
            .working_dir
            .as_ref()
            .map(|w| format!("cd {} && ", quote(w)))
            .unwrap_or_default();
        Some(format!("{cd}{}", shell_line(&argv)))
    }
}

impl<E: Engine> AppState<E> {
    /// The image a create asks for (`None`: the default tier).
    pub fn image_of(&self, user: &User, asked: Option<String>) -> ServiceResult<Resolved> {
        match asked {
            Some(i) => self.resolve_image(user, &i),
            None => Ok(Resolved {
                image: self.settings.default_image.into(),
                name: None,
                config: ImageConfig::default(),
            }),
        }
    }

    /// `name` among `user`'s images, else a tier; neither is invalid.
    pub fn resolve_image(&self, user: &User, name: &str) -> ServiceResult<Resolved> {
        match self.store.find_image(&user.id, name) {
            Ok(row) => Ok(Resolved {
                image: ImageRef::stored(&row.image_id).map_err(|e| ServiceError::Corrupt {
                    what: "image id",
                    detail: e.to_string(),
                })?,
                config: ImageConfig::of_row(&row),
                name: Some(row.name),
            }),
            Err(StoreError::NotFound(_)) => match name.parse::<Tier>() {
                Ok(t) => Ok(Resolved {
                    image: t.into(),
                    name: None,
                    config: ImageConfig::default(),
                }),
                Err(_) => Err(Invalid::Image(format!(
                    "unknown image {}: not one of your images (bhatti image ls) nor a built-in \
                     tier (busybox, minimal, dev)",
                    validate::excerpt(name)
                ))
                .into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// `user`'s images, newest first, then the built-in tiers that are
    /// built.
    pub fn list_images(&self, user: &User) -> ServiceResult<Vec<ImageView>> {
        let mut out: Vec<ImageView> = self
            .store
            .list_images(&user.id)?
            .iter()
            .map(ImageView::from)
            .collect();
        out.extend(Tier::ALL.into_iter().filter_map(builtin_view));
        Ok(out)
    }

    /// One of `user`'s images by name, else a built tier.
    pub fn image_view(&self, user: &User, name: &str) -> ServiceResult<ImageView> {
        match self.store.find_image(&user.id, name) {
            Ok(row) => Ok(ImageView::from(&row)),
            Err(StoreError::NotFound(what)) => name
                .parse::<Tier>()
                .ok()
                .and_then(builtin_view)
                .ok_or_else(|| StoreError::NotFound(what).into()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes `user`'s image `name`, refused while their sandboxes,
    /// snapshots or templates use it. The engine's image goes with the
    /// last name of its id.
    pub async fn delete_image(&self, user: &User, name: &str) -> ServiceResult<()> {
        let row = match self.store.find_image(&user.id, name) {
            Err(StoreError::NotFound(_)) if name.parse::<Tier>().is_ok() => {
                return Err(Invalid::Image(format!(
                    "{name} is a built-in image and cannot be deleted"
                ))
                .into());
            }
            r => r?,
        };
        let users = self.image_users(user, &row)?;
        if !users.is_empty() {
            return Err(
                StoreError::InUse(format!("image {name} is used by {}", users.join(", "))).into(),
            );
        }
        let _names = self.imports.names.lock().await;
        if self.store.image_id_refs(&row.image_id)? <= 1 {
            match self.engine.delete_image(&row.image_id).await {
                Ok(()) | Err(EngineError::Image(ImageError::NotStored(_))) => {}
                Err(EngineError::ImageInUse { users, .. }) => {
                    return Err(StoreError::InUse(format!(
                        "image {name} is used by {}",
                        users.join(", ")
                    ))
                    .into());
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.store.delete_image(&user.id, name)?;
        tracing::info!(image = %row.image_id, name, user = %user.id, "image deleted");
        Ok(())
    }

    /// What of `user`'s uses image `row` ("sandbox a", "template t",
    /// "snapshot s"). A sandbox or snapshot made from its id does not
    /// count while the user has another name for the id.
    fn image_users(&self, user: &User, row: &Image) -> ServiceResult<Vec<String>> {
        let mut out = Vec::new();
        let other_name = self
            .store
            .list_images(&user.id)?
            .iter()
            .any(|i| i.image_id == row.image_id && i.name != row.name);
        if !other_name {
            for sb in self.store.list_sandboxes(&user.id)? {
                if sb.image == row.image_id {
                    out.push(format!("sandbox {}", sb.name));
                }
            }
            for s in self.store.list_snapshots(&user.id)? {
                if s.image == row.image_id {
                    out.push(format!("snapshot {}", s.name));
                }
            }
        }
        for t in self.store.list_templates(&user.id)? {
            if t.spec.get("image").and_then(serde_json::Value::as_str) == Some(&row.name) {
                out.push(format!("template {}", t.name));
            }
        }
        Ok(out)
    }

    /// Saves `user`'s sandbox `sandbox` (id or name) as their image
    /// `req.name`: its disk as it is now (a running sandbox pauses for the
    /// copy), with the config of the image it was made from.
    pub async fn save_image(
        &self,
        user: &User,
        sandbox: &str,
        req: SaveImage,
    ) -> ServiceResult<ImageView> {
        validate::name(&req.name)?;
        self.check_image_storage(user, Over::AtAll)?;
        let sb = self.find(user, sandbox)?;
        self.image_name_free(user, &req.name)?;
        let stored = self.engine.save_image(&engine_id(&sb)?).await?;
        let row = Image {
            user_id: user.id.clone(),
            name: req.name,
            image_id: stored.id.clone(),
            source: format!("sandbox:{}", sb.name),
            size_bytes: stored.size,
            used_bytes: stored.used,
            config: serde_json::to_value(self.config_of(user, &sb)).unwrap_or_default(),
            created_at: now_unix(),
        };
        self.record_image(user, row).await
    }

    /// The config of the image `sb` was made from, if it is one of the
    /// user's.
    fn config_of(&self, user: &User, sb: &Sandbox) -> ImageConfig {
        self.store
            .image_name_of(&user.id, &sb.image)
            .ok()
            .flatten()
            .and_then(|n| self.store.find_image(&user.id, &n).ok())
            .map(|row| ImageConfig::of_row(&row))
            .unwrap_or_default()
    }

    /// Writes the row of an image the engine has stored, unless it takes
    /// the user over their storage quota or the name was taken meanwhile;
    /// then the engine's image goes again if nothing else names it.
    pub(super) async fn record_image(&self, user: &User, row: Image) -> ServiceResult<ImageView> {
        let _names = self.imports.names.lock().await;
        let has_id = self.store.image_name_of(&user.id, &row.image_id)?.is_some();
        let adding = if has_id { 0 } else { row.used_bytes };
        let recorded = self
            .check_image_storage(user, Over::Adding(adding))
            .and_then(|()| Ok(self.store.insert_image(&row)?));
        if let Err(e) = recorded {
            self.drop_unnamed(&row.image_id).await;
            return Err(e);
        }
        // Deleted by another user's delete before the row was written.
        if let Err(e) = self.engine.image_info(&row.image_id) {
            self.store.delete_image(&user.id, &row.name)?;
            return Err(ServiceError::Corrupt {
                what: "image",
                detail: format!("{} was deleted meanwhile ({e}); import it again", row.name),
            });
        }
        tracing::info!(image = %row.image_id, name = %row.name, user = %user.id,
            used = row.used_bytes, "image recorded");
        Ok(ImageView::from(&row))
    }

    /// Deletes engine image `id` if no row names it (the caller holds
    /// `imports.names`).
    async fn drop_unnamed(&self, id: &str) {
        if matches!(self.store.image_id_refs(id), Ok(0))
            && let Err(e) = self.engine.delete_image(id).await
        {
            tracing::warn!(image = %id, error = %e, "deleting an unnamed image");
        }
    }

    /// `Conflict` if `user` has an image called `name`.
    pub fn image_name_free(&self, user: &User, name: &str) -> ServiceResult<()> {
        match self.store.find_image(&user.id, name) {
            Ok(_) => Err(StoreError::Conflict(format!("image {name}")).into()),
            Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Refuses when `user`'s snapshots and images take (or would take)
    /// more than their storage quota.
    pub fn check_image_storage(&self, user: &User, over: Over) -> ServiceResult<()> {
        let used = self.store.snapshot_bytes(&user.id)? + self.store.image_bytes(&user.id)?;
        let max = u64::from(user.limits.max_storage_mb) * MB;
        let refused = match over {
            Over::AtAll => used >= max,
            Over::Adding(n) => used.saturating_add(n) > max,
        };
        if refused {
            let adding = if let Over::Adding(n) = over { n } else { 0 };
            return Err(ServiceError::Storage {
                used_mb: (used + adding).div_ceil(MB),
                max_mb: user.limits.max_storage_mb,
            });
        }
        Ok(())
    }
}

/// The working directory of a sandbox's image config (the default `cwd`
/// of its commands), kept in its row.
pub fn workdir_of(sb: &Sandbox) -> Option<String> {
    sb.spec
        .get("workdir")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

/// A built-in tier as an image, if it is built.
fn builtin_view(t: Tier) -> Option<ImageView> {
    use std::os::unix::fs::MetadataExt;
    let path = ImagePaths::from_env().rootfs(t).ok()?;
    let meta = std::fs::metadata(path).ok()?;
    Some(ImageView {
        name: t.name().to_owned(),
        id: t.name().to_owned(),
        source: "builtin".into(),
        size_bytes: meta.len(),
        used_bytes: meta.blocks() * 512,
        created_at: time::rfc3339(meta.mtime()),
        config: ImageConfig::default(),
        builtin: true,
    })
}

/// `argv` as one shell command line (`exec` and each word quoted).
pub fn shell_line(argv: &[String]) -> String {
    let words: Vec<String> = argv.iter().map(|w| quote(w)).collect();
    format!("exec {}", words.join(" "))
}

/// `w` as one single-quoted shell word.
fn quote(w: &str) -> String {
    format!("'{}'", w.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_line_quotes_every_word() {
        let argv = ["/bin/sh", "-c", "echo 'hi' $HOME"].map(String::from);
        assert_eq!(
            shell_line(&argv),
            r"exec '/bin/sh' '-c' 'echo '\''hi'\'' $HOME'"
        );
    }

    #[test]
    fn init_runs_the_entrypoint_and_cmd_in_the_working_dir() {
        let mut r = Resolved {
            image: Tier::Busybox.into(),
            name: None,
            config: ImageConfig::default(),
        };
        assert_eq!(r.init(), None);
        r.config.entrypoint = vec!["/entry".into()];
        r.config.cmd = vec!["run".into()];
        assert_eq!(r.init().as_deref(), Some("exec '/entry' 'run'"));
        r.config.working_dir = Some("/my app".into());
        r.config.user = Some("app:staff".into());
        assert_eq!(
            r.init().as_deref(),
            Some("cd '/my app' && exec '/entry' 'run'")
        );
        assert_eq!(r.exec_user().as_deref(), Some("app"));
    }
}
