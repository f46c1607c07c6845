//! Image imports (issue 12): a job per `POST /images`, run as a task.
//!
//! The pipeline: the source (parsed when the job is made) is fetched with
//! [`bhatti_oci::fetch::fetch`] into the user's blob cache under the data
//! dir (`oci-blobs/<user id>/`, content addressed; not shared between
//! users: a blob present is reused by its digest alone, so a shared cache
//! would hand a user another's private layer for knowing its digest),
//! unpacked (blocking, on the blocking pool) into a staging directory of
//! the engine, each layer checked against the config's `rootfs.diff_ids`
//! (the image's id is its config's digest, shared between users: the
//! config must pin the content), packed by the engine into its image
//! store under that id (an id the engine already has is kept as it is,
//! but the import is unpacked and checked all the same: that proves the
//! caller has the content, not only its config), and recorded as the
//! user's name for it. Progress events update the job.
//!
//! At most [`MAX_RUNNING`] imports run at once; the others wait in the
//! `queued` phase. Jobs live in memory ([`Jobs`]): a daemon restart
//! forgets running imports; their leftovers (the engine's staging
//! directories, uploaded archives under `image-uploads/`, blob caches)
//! are removed when the daemon starts. Finished jobs are forgotten an
//! hour after they end. A user's blob cache is removed when their last
//! running import ends (the image store keeps what was imported; the
//! cache counts in no quota), so it only serves imports that run at the
//! same time.
//!
//! Registry sources come as JSON; archives are uploaded (the route
//! streams the body to a file under `image-uploads/`, which the job
//! removes when it ends): the daemon never opens a path a client names.
//!
//! # Threads, locks, I/O
//! The jobs' mutex is held only to read or update one job. Fetching is
//! async; unpacking runs on the blocking pool; the engine packs the image
//! with no lock of ours held.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bhatti_engine::engine::Engine;
use bhatti_oci::fetch::FetchError;
use bhatti_oci::unpack::{self, UnpackError};
use bhatti_oci::{Event, Limits, Progress};
use bhatti_store::images::Image;
use bhatti_store::users::User;

use super::images::Over;
use super::validate;
use super::{ServiceError, ServiceResult};
use crate::keys;
use crate::model::images::{ImageConfig, ImageView, JobError, JobView};
use crate::model::time;
use crate::state::{AppState, Shared, now_unix};

/// Directory (under the data dir) of uploaded archives being imported.
pub const UPLOADS: &str = "image-uploads";
/// Directory (under the data dir) of the users' blob caches.
pub const BLOBS: &str = "oci-blobs";
/// How long a finished job stays readable.
const KEEP_FINISHED: Duration = Duration::from_secs(3600);

/// One job and what its progress counts.
#[derive(Debug)]
struct Job {
    user_id: String,
    view: JobView,
    /// Bytes per item (a blob) of the current phase.
    items: BTreeMap<String, (u64, u64)>,
    ended: Option<Instant>,
}

/// The daemon's import jobs.
#[derive(Debug)]
pub struct Jobs {
    jobs: Mutex<HashMap<String, Job>>,
    /// Running jobs per user: a user's blob cache goes when none runs.
    active: Mutex<HashMap<String, usize>>,
    uploads: PathBuf,
    blobs: PathBuf,
    limits: Limits,
    /// Imports that fetch, unpack and pack at once (the others wait,
    /// `queued`).
    running: tokio::sync::Semaphore,
    /// Held while a row naming an image is written and checked, and while
    /// the engine's image of an id no row names is deleted, so that an
    /// import of the same content never records an image being deleted.
    pub(crate) names: tokio::sync::Mutex<()>,
}

/// How many imports run at once.
const MAX_RUNNING: usize = 2;

impl Jobs {
    /// The jobs of a daemon over `data_dir`: none. Uploads left by a
    /// daemon that stopped mid-import are removed.
    pub fn new(data_dir: &Path) -> Self {
        let (uploads, blobs) = (data_dir.join(UPLOADS), data_dir.join(BLOBS));
        for dir in [&uploads, &blobs] {
            if dir.exists()
                && let Err(e) = std::fs::remove_dir_all(dir)
            {
                tracing::warn!(dir = %dir.display(), error = %e, "removing stale import files");
            }
        }
        Self {
            jobs: Mutex::new(HashMap::new()),
            active: Mutex::new(HashMap::new()),
            uploads,
            blobs,
            limits: Limits::default(),
            running: tokio::sync::Semaphore::new(MAX_RUNNING),
            names: tokio::sync::Mutex::new(()),
        }
    }

    /// The directory uploads are written to (created 0700).
    pub fn upload_dir(&self) -> std::io::Result<&Path> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.uploads)?;
        Ok(&self.uploads)
    }

    /// The largest upload accepted, in bytes.
    pub fn upload_limit(&self) -> u64 {
        self.limits.max_unpacked_bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Job>> {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Job `id` if `user_id` started it.
    pub fn get(&self, user_id: &str, id: &str) -> Option<JobView> {
        self.lock()
            .get(id)
            .filter(|j| j.user_id == user_id)
            .map(|j| j.view.clone())
    }

    /// Counts a job of `user_id` that starts running.
    fn enter(&self, user_id: &str) {
        let mut active = self
            .active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *active.entry(user_id.to_owned()).or_default() += 1;
    }

    /// Counts a job of `user_id` that ended; the user's blob cache is
    /// removed when it was their last (the image store keeps what was
    /// imported, and the cache is not counted in any quota).
    fn leave(&self, user_id: &str) {
        let mut active = self
            .active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = active.entry(user_id.to_owned()).or_default();
        *n = n.saturating_sub(1);
        if *n == 0 {
            active.remove(user_id);
            let dir = self.blobs.join(user_id);
            if dir.exists()
                && let Err(e) = std::fs::remove_dir_all(&dir)
            {
                tracing::warn!(dir = %dir.display(), error = %e, "removing a blob cache");
            }
        }
    }

    fn add(&self, user_id: &str, view: JobView) {
        let mut jobs = self.lock();
        jobs.retain(|_, j| j.ended.is_none_or(|t| t.elapsed() < KEEP_FINISHED));
        jobs.insert(
            view.id.clone(),
            Job {
                user_id: user_id.to_owned(),
                view,
                items: BTreeMap::new(),
                ended: None,
            },
        );
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Job)) {
        if let Some(j) = self.lock().get_mut(id) {
            f(j);
        }
    }

    /// A [`Progress`] that updates job `id`.
    fn progress(self: &Arc<Self>, id: &str) -> Progress {
        let jobs = Arc::clone(self);
        let id = id.to_owned();
        Arc::new(move |ev| {
            jobs.update(&id, |j| match ev {
                Event::Phase(p) => {
                    j.view.phase = p;
                    j.items.clear();
                    (j.view.bytes_done, j.view.bytes_total) = (0, 0);
                }
                Event::Bytes { what, done, total } => {
                    j.items.insert(what, (done, total));
                    j.view.bytes_done = j.items.values().map(|v| v.0).sum();
                    j.view.bytes_total = j.items.values().map(|v| v.1).sum();
                }
            });
        })
    }

    fn finish(&self, id: &str, outcome: Result<ImageView, JobError>) {
        self.update(id, |j| {
            j.ended = Some(Instant::now());
            match outcome {
                Ok(image) => {
                    j.view.state = "done".into();
                    j.view.phase = "done".into();
                    j.view.image = Some(image);
                }
                Err(e) => {
                    j.view.state = "failed".into();
                    j.view.error = Some(e);
                }
            }
        });
    }
}

/// [`bhatti_oci::fetch::fetch`], its error as the job's.
async fn fetch(
    req: &Request,
    blobs: &Path,
    limits: Limits,
    progress: Progress,
) -> Result<bhatti_oci::Fetched, JobError> {
    bhatti_oci::fetch::fetch(&req.source, &req.opts, blobs, limits, progress)
        .await
        .map_err(|e| fetch_error(&e))
}

/// Removes a request's uploaded file, if any.
fn cleanup(r: &Request) {
    if let Some(p) = &r.upload {
        let _ = std::fs::remove_file(p);
    }
}

/// A failed step of an import, as the job reports it.
fn job_error(code: &str, message: impl std::fmt::Display) -> JobError {
    JobError {
        code: code.to_owned(),
        message: message.to_string(),
    }
}

fn fetch_error(e: &FetchError) -> JobError {
    use bhatti_oci::fetch::ErrorClass as C;
    let code = match e.status_class() {
        C::BadRequest => "bad_image",
        C::NotFound => "not_found",
        C::Unauthorized => "unauthorized",
        C::TooLarge => "too_large",
        C::Upstream => "upstream",
        C::Internal => "internal",
    };
    job_error(code, e)
}

fn unpack_error(e: &UnpackError) -> JobError {
    use bhatti_oci::unpack::ErrorClass as C;
    let code = match e.class() {
        C::BadImage => "bad_image",
        C::TooLarge => "too_large",
        C::Internal => "internal",
    };
    job_error(code, e)
}

/// A service error of an import's last steps, as the job reports it.
fn service_error(e: &ServiceError) -> JobError {
    let code = match e {
        ServiceError::Storage { .. } => "quota",
        ServiceError::Store(bhatti_store::StoreError::Conflict(_)) => "conflict",
        _ => "internal",
    };
    job_error(code, e)
}

impl<E: Engine> AppState<E> {
    /// Starts importing `req` for `user`: checks the name and the storage
    /// quota, then runs the import as a task. Returns the new job.
    pub fn start_import(st: &Shared<E>, user: &User, req: Request) -> ServiceResult<JobView> {
        let name = match req.name.clone() {
            Some(n) => n,
            None => req.default_name()?,
        };
        let checked = validate::name(&name)
            .map_err(ServiceError::from)
            .and_then(|()| st.image_name_free(user, &name))
            .and_then(|()| st.check_image_storage(user, Over::AtAll));
        if let Err(e) = checked {
            cleanup(&req);
            return Err(e);
        }
        let view = JobView {
            id: keys::new_id("imp-")?,
            name,
            source: req.source_text.clone(),
            state: "running".into(),
            phase: "queued".into(),
            bytes_done: 0,
            bytes_total: 0,
            image: None,
            error: None,
            created_at: time::rfc3339(now_unix()),
        };
        st.imports.add(&user.id, view.clone());
        let (st2, user2, job) = (Arc::clone(st), user.clone(), view.clone());
        st.imports.enter(&user.id);
        tokio::spawn(async move {
            let outcome = st2.run_import(&user2, &job, &req).await;
            cleanup(&req);
            st2.imports.leave(&user2.id);
            match &outcome {
                Ok(i) => tracing::info!(job = %job.id, image = %i.id, name = %i.name, "imported"),
                Err(e) => tracing::warn!(job = %job.id, code = %e.code, error = %e.message,
                    "import failed"),
            }
            st2.imports.finish(&job.id, outcome);
        });
        Ok(view)
    }

    /// Fetch, unpack, pack, record (see the module docs).
    async fn run_import(
        self: &Arc<Self>,
        user: &User,
        job: &JobView,
        req: &Request,
    ) -> Result<ImageView, JobError> {
        let jobs = &self.imports;
        let _running = jobs
            .running
            .acquire()
            .await
            .map_err(|e| job_error("internal", e))?;
        let progress = jobs.progress(&job.id);
        let limits = jobs.limits;
        let blobs = jobs.blobs.join(&user.id);
        let fetched = fetch(req, &blobs, limits, progress.clone()).await?;
        // Unpacked even when the engine has the id: the check against the
        // config is what proves the caller has the content, not only its
        // config (then the engine keeps the image it has).
        let staging = self
            .engine
            .image_staging()
            .map_err(|e| job_error("internal", e))?;
        // The id an image is stored (and shared between users) under is
        // its config's digest, so the config's diff_ids must pin the
        // layers, or a copied config with other layers would be taken for
        // the real image.
        let pins = fetched.diff_ids.clone();
        let (layers, root, p) = (fetched.layers.clone(), staging.root(), progress.clone());
        tokio::task::spawn_blocking(move || match pins {
            Some(ids) => unpack::unpack_verified(&layers, &ids, &root, limits, &p),
            None => unpack::unpack(&layers, &root, limits, &p),
        })
        .await
        .map_err(|e| job_error("internal", e))?
        .map_err(|e| unpack_error(&e))?;
        progress(Event::Phase("packing".into()));
        let stored = self
            .engine
            .store_image(staging, &fetched.id, &req.source_text)
            .await
            .map_err(|e| job_error("internal", e))?;
        let row = Image {
            user_id: user.id.clone(),
            name: job.name.clone(),
            image_id: stored.id.clone(),
            source: req.source_text.clone(),
            size_bytes: stored.size,
            used_bytes: stored.used,
            config: serde_json::to_value(ImageConfig::from(&fetched.defaults)).unwrap_or_default(),
            created_at: now_unix(),
        };
        self.record_image(user, row)
            .await
            .map_err(|e| service_error(&e))
    }
}

mod request;
#[cfg(test)]
mod tests;

pub use request::Request;
