//! Volumes outside a create: ext4 images that outlive sandboxes. The
//! image file is the engine's (made sparse when a sandbox first mounts the
//! volume, deleted by the engine); deleting a volume mounted by a live
//! sandbox is refused. Creating one whose name the user already has
//! returns that volume (v1: create is idempotent).

use bhatti_engine::engine::Engine;
use bhatti_store::StoreError;
use bhatti_store::users::User;
use bhatti_store::volumes::Volume;

use super::ServiceResult;
use super::validate::{self, DEFAULT_VOLUME_MB};
use crate::keys;
use crate::state::{AppState, now_unix};

impl<E: Engine> AppState<E> {
    /// Creates a volume record (the file is made on first mount), or
    /// finds the user's volume of that name: `(volume, created)`.
    pub fn create_volume(
        &self,
        user: &User,
        name: String,
        size_mb: Option<u32>,
    ) -> ServiceResult<(Volume, bool)> {
        let size_mb = size_mb.unwrap_or(DEFAULT_VOLUME_MB);
        validate::volume(&name, size_mb)?;
        let id = keys::new_id("v-")?;
        let v = Volume {
            path: self.engine.volume_path(&id).to_string_lossy().into_owned(),
            id,
            user_id: user.id.clone(),
            name,
            size_mb,
            created_at: now_unix(),
        };
        match self.store.create_volume(&v) {
            Ok(()) => Ok((v, true)),
            Err(StoreError::Conflict(_)) => Ok((self.store.find_volume(&user.id, &v.name)?, false)),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a volume: its record, then (through the engine) its file.
    pub async fn delete_volume(&self, user: &User, name: &str) -> ServiceResult<Volume> {
        let v = self.store.delete_volume(&user.id, name)?;
        self.engine.delete_volume(&v.id).await?;
        Ok(v)
    }
}
