//! Images (issue 12, an extension over v1): import (a job: registry
//! sources as JSON, archives uploaded as the body), import jobs, list,
//! get and delete the caller's images (built-in tiers are listed too),
//! and save a sandbox's disk as an image. A sandbox is made from an image
//! by `POST /sandboxes` with `image` ([`super::sandboxes`]).
//!
//! An upload is streamed to a file under the data dir (never held in
//! memory), at most [`Jobs::upload_limit`](crate::service::import::Jobs::upload_limit)
//! bytes; the job removes it when it ends.

use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use bhatti_engine::engine::Engine;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{RouteDef, Verb, user};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, ApiResult, AuthUser};
use crate::keys;
use crate::model::images::{ImageView, ImportImage, JobView, SaveImage, UploadQuery};
use crate::service::images::Over;
use crate::service::import::Request as ImportRequest;
use crate::service::{ServiceError, validate};
use crate::state::{AppState, Shared};

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    vec![
        user(
            Verb::Post,
            "/images",
            "Import an image (a job): JSON {source} from a registry, or with ?format=oci-archive|docker-archive|rootfs the archive as the body",
            post(import::<E>),
        )
        .query::<UploadQuery>()
        .body::<ImportImage>()
        .or_raw_body("application/octet-stream")
        .reply::<JobView>(202)
        .header("Location", "The job: /images/jobs/{id}"),
        user(
            Verb::Get,
            "/images/jobs/{id}",
            "Get an import job (running, done with the image, or failed with an error code)",
            get(job::<E>),
        )
        .reply::<JobView>(200),
        user(
            Verb::Get,
            "/images",
            "List your images, newest first, then the built-in tiers that are built",
            get(list::<E>),
        )
        .reply_list::<ImageView>(200),
        user(
            Verb::Get,
            "/images/{name}",
            "Get an image (yours, or a built-in tier)",
            get(show::<E>),
        )
        .reply::<ImageView>(200),
        user(
            Verb::Delete,
            "/images/{name}",
            "Delete an image (409 while your sandboxes, snapshots or templates use it)",
            delete(remove::<E>),
        )
        .reply_empty(204),
        user(
            Verb::Post,
            "/sandboxes/{id}/image",
            "Save a sandbox's disk as an image (a running sandbox pauses for the copy)",
            post(save::<E>),
        )
        .body::<SaveImage>()
        .reply::<ImageView>(201),
    ]
}

async fn import<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiQuery(q): ApiQuery<UploadQuery>,
    req: Request,
) -> ApiResult<Response> {
    let request = match q.format {
        Some(format) => {
            if let Some(n) = &q.name {
                validate::name(n).map_err(ServiceError::from)?;
                st.image_name_free(&u, n)?;
            }
            st.check_image_storage(&u, Over::AtAll)?;
            let path = receive(&st, req.into_body()).await?;
            ImportRequest::upload(&format, q.name, path)?
        }
        None => {
            let ApiJson(body) = ApiJson::<ImportImage>::from_request(req, &()).await?;
            ImportRequest::registry(body)?
        }
    };
    let job = AppState::start_import(&st, &u, request)?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/images/jobs/{}", job.id))],
        Json(job),
    )
        .into_response())
}

/// Streams an upload to a new file (0600) under the uploads directory;
/// over the limit, or cut short, it is removed.
async fn receive<E: Engine>(st: &Shared<E>, body: Body) -> ApiResult<PathBuf> {
    let internal = |e: std::io::Error| ApiError::Internal(format!("storing the upload: {e}"));
    let dir = st.imports.upload_dir().map_err(internal)?;
    let path = dir.join(format!(
        "{}.tar",
        keys::new_id("up-").map_err(ServiceError::from)?
    ));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(internal)?;
    let written = copy_capped(
        body,
        tokio::fs::File::from_std(file),
        st.imports.upload_limit(),
    )
    .await;
    if written.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    written.map(|_| path)
}

/// Copies `body` into `file`, at most `limit` bytes.
async fn copy_capped(body: Body, mut file: tokio::fs::File, limit: u64) -> ApiResult<u64> {
    let internal = |e: std::io::Error| ApiError::Internal(format!("storing the upload: {e}"));
    let mut stream = body.into_data_stream();
    let mut n: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the upload: {e}")))?;
        n += chunk.len() as u64;
        if n > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "upload larger than the limit of {limit} bytes"
            )));
        }
        file.write_all(&chunk).await.map_err(internal)?;
    }
    if n == 0 {
        return Err(ApiError::BadRequest("the upload is empty".into()));
    }
    file.flush().await.map_err(internal)?;
    file.sync_all().await.map_err(internal)?;
    Ok(n)
}

async fn job<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<JobView>> {
    st.imports
        .get(&u.id, &id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("import job {}", validate::excerpt(&id))))
}

async fn list<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
) -> ApiResult<Json<Vec<ImageView>>> {
    Ok(Json(st.list_images(&u)?))
}

async fn show<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<ImageView>> {
    Ok(Json(st.image_view(&u, &name)?))
}

async fn remove<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    st.delete_image(&u, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn save<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<SaveImage>,
) -> ApiResult<(StatusCode, Json<ImageView>)> {
    let view = st.save_image(&u, &id, req).await?;
    Ok((StatusCode::CREATED, Json(view)))
}
