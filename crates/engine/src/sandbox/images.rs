//! Stored images: packing an imported image root into the store, saving
//! a sandbox's disk as an image, listing and deleting
//! ([`crate::image::store`] has the layout).
//!
//! - [`VmEngine::store_image`]: lohar and the sandbox basics added to the
//!   unpacked root ([`crate::image::build`]), packed into a sparse ext4
//!   file, stored under the image's content id (an id already stored is
//!   kept: two imports of one image are one image).
//! - [`VmEngine::save_image`]: the root disk as it is now, flattened (its
//!   overlay and image as one raw file). A hot or warm sandbox is paused
//!   for the copy (pausing flushes QEMU's disk caches to the overlay) and
//!   runs on as it was; a hot guest syncs its page cache first
//!   ([`super::durable`]; a warm one did before its pause), so what the
//!   guest's commands wrote is in it. The new image's id is a random
//!   `sha256:` id.
//! - [`VmEngine::delete_image`]: refused while a sandbox or snapshot of
//!   the engine is made from it ([`EngineError::ImageInUse`]); its golden
//!   snapshots go with it.

use std::sync::PoisonError;

use super::{VmEngine, blocking};
use crate::driver::Driver;
use crate::engine::{EngineError, EngineResult, SandboxId};
use crate::image::store::Staging;
use crate::image::{self, ImageRef, StoredImage};
use crate::state::SandboxState;

impl<D: Driver> VmEngine<D> {
    /// A private staging directory to unpack an image into.
    pub(super) fn new_image_staging(&self) -> EngineResult<Staging> {
        Ok(self.image_store().staging()?)
    }

    /// Packs `staging`'s root into stored image `id`.
    pub(super) async fn pack_image(
        &self,
        staging: Staging,
        id: &str,
        source: &str,
    ) -> EngineResult<StoredImage> {
        ImageRef::stored(id)?;
        let store = self.image_store();
        if let Ok(have) = store.get(id) {
            return Ok(have);
        }
        let lohar = self.config.images.lohar()?;
        let (id, source) = (id.to_owned(), source.to_owned());
        let started = std::time::Instant::now();
        let stored = blocking(move || -> EngineResult<StoredImage> {
            let root = staging.root();
            image::build::prepare_root(&root, &lohar)?;
            let disk = store.scratch_file("ext4")?;
            let packed = image::build::pack(&root, &disk);
            drop(staging);
            packed?;
            Ok(store.store(&disk, &id, &source)?)
        })
        .await??;
        tracing::info!(
            image = %stored.id, size = stored.size, used = stored.used,
            ms = started.elapsed().as_millis() as u64, "image stored"
        );
        Ok(stored)
    }

    /// Sandbox `id`'s root disk as it is now, as a new stored image.
    pub(super) async fn save_sandbox_image(&self, id: &SandboxId) -> EngineResult<StoredImage> {
        let sb = self.get(id)?;
        let store = self.image_store();
        let out = store.scratch_file("ext4")?;
        let disk = super::root_disk(&sb.dir);
        let mut slot = sb.slot.lock().await;
        let state = slot.state;
        let flatten = {
            let (disk, out) = (disk.clone(), out.clone());
            move || image::overlay::flatten(&disk, &out).map_err(image::ImageError::from)
        };
        let flattened = match (state, slot.vm.as_mut()) {
            (SandboxState::Hot, Some(vm)) => {
                super::durable::sync_guest(&sb.agent, &sb.id, state).await;
                self.driver.pause(vm).await?;
                let res = blocking(flatten).await;
                self.driver.resume(vm).await?;
                res
            }
            (SandboxState::Warm, Some(_)) | (SandboxState::Cold | SandboxState::Stopped, None) => {
                blocking(flatten).await
            }
            _ => {
                return Err(EngineError::Inconsistent(format!(
                    "sandbox {id} is {state:?} without a matching VMM"
                )));
            }
        };
        drop(slot);
        if let Err(e) = flattened.and_then(|r| Ok(r?)) {
            let _ = std::fs::remove_file(&out);
            return Err(e);
        }
        let new_id = format!(
            "sha256:{}{}",
            super::create::random_token()?,
            super::create::random_token()?
        );
        let source = format!("sandbox:{id}");
        Ok(blocking(move || store.store(&out, &new_id, &source)).await??)
    }

    /// Deletes stored image `id`, unless something of the engine uses it.
    pub(super) async fn remove_image(&self, id: &str) -> EngineResult<()> {
        let image = ImageRef::stored(id)?;
        let store = self.image_store();
        store.get(id)?;
        let mut users: Vec<String> = self
            .sandboxes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|sb| sb.spec.image == image)
            .map(|sb| format!("sandbox {}", sb.id))
            .collect();
        for snap in self.all_snapshots() {
            if snap.image == image {
                users.push(format!("snapshot {}", snap.id));
            }
        }
        if !users.is_empty() {
            return Err(EngineError::ImageInUse {
                image: id.to_owned(),
                users,
            });
        }
        self.drop_goldens_of(&image);
        let id = id.to_owned();
        Ok(blocking(move || store.remove(&id)).await??)
    }

    /// Clears unfinished image builds and removes tier versions no disk
    /// of a sandbox, snapshot or golden snapshot is an overlay over.
    pub(super) fn tidy_images(&self) {
        let store = self.image_store();
        store.clear_tmp();
        let mut used = std::collections::HashSet::new();
        for sub in ["sandboxes", "snapshots", "goldens", "forks"] {
            let Ok(dirs) = std::fs::read_dir(self.config.data_dir.join(sub)) else {
                continue;
            };
            for d in dirs.flatten() {
                let overlay = d.path().join(image::overlay::OVERLAY_FILE);
                used.extend(image::overlay::backing_of(&overlay));
            }
        }
        store.prune_tiers(&used, &self.config.images);
    }
}
