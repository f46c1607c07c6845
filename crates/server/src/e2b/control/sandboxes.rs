//! The control plane's handlers, over the service layer
//! ([`crate::service`]): the caller's own sandboxes only (another user's
//! is 404, as one that does not exist).
//!
//! Timeouts are TTLs ([`crate::service::lifetime`]): the timeout runs out
//! → kill (destroy) or, with `autoPause`, pause (stop). A pause clears
//! the TTL (a paused E2B sandbox does not time out) and keeps what it
//! does; a resume or a connect of a paused sandbox sets it again from
//! that moment. `timeout: 0` means no timeout (a bhatti extension).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bhatti_engine::engine::Engine;
use bhatti_engine::image::Tier;
use bhatti_store::StoreError;
use bhatti_store::sandboxes::{OnExpire, Sandbox, Status};
use bhatti_store::users::User;
use serde::de::DeserializeOwned;

use super::auth::Caller;
use super::error::{ControlError, ControlResult};
use super::list;
use super::model::{self, Created, Detail, Lifetime, Listed, NewSandbox};
use super::template::{self, Source};
use crate::model::{CreateSandbox, OnExpireIn};
use crate::service::{ServiceError, idempotent};
use crate::state::{Shared, now_unix};

/// A create's timeout when it names none (E2B's default).
pub const CREATE_TIMEOUT: u64 = 300;
/// A connect's timeout when it names none (E2B's default).
pub const CONNECT_TIMEOUT: u64 = 300;
/// A resume's timeout when it names none (E2B's default).
pub const RESUME_TIMEOUT: u64 = 15;

/// A JSON body; an empty one is `T::default()`.
fn body<T: DeserializeOwned + Default>(bytes: &Bytes) -> ControlResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ControlError::BadRequest(crate::error::shorten(&format!("invalid JSON body: {e}")))
    })
}

/// The caller's sandbox `id` (another user's is not found).
pub(super) fn find<E: Engine>(st: &Shared<E>, user: &User, id: &str) -> ControlResult<Sandbox> {
    match st.find(user, id) {
        Ok(sb) => Ok(sb),
        Err(crate::service::ServiceError::Store(StoreError::NotFound(_))) => Err(
            ControlError::NoSandbox(crate::service::validate::excerpt(id)),
        ),
        Err(e) => Err(e.into()),
    }
}

/// Sets `sb`'s TTL to `timeout` seconds from now (`0`: none).
fn set_timeout<E: Engine>(
    st: &Shared<E>,
    sb: &Sandbox,
    timeout: u64,
    on_expire: OnExpire,
) -> ControlResult<()> {
    st.update_lifetime(sb, Some(timeout), Some(on_expire.into()), None)?;
    Ok(())
}

pub async fn create<E: Engine>(
    State(st): State<Shared<E>>,
    Caller(user): Caller,
    headers: HeaderMap,
    bytes: Bytes,
) -> ControlResult<(StatusCode, HeaderMap, Json<Created>)> {
    let key = idempotent::from_headers(&headers).map_err(ServiceError::from)?;
    let req: NewSandbox = body(&bytes)?;
    let asked = req
        .template_id
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or(template::BASE);
    let mut create = CreateSandbox {
        env: req.env_vars,
        labels: req.metadata,
        ttl_sec: Some(req.timeout.unwrap_or(CREATE_TIMEOUT)),
        on_expire: Some(if req.auto_pause == Some(true) {
            OnExpireIn::Stop
        } else {
            OnExpireIn::Destroy
        }),
        ..CreateSandbox::default()
    };
    match template::resolve(&st, &user, asked)? {
        Source::Template(id) => create.template_id = Some(id),
        Source::Image(image) => {
            if image == Tier::Interpreter.name() {
                create.init = Some(template::INTERPRETER_INIT.into());
                create.user = Some("user".into());
            }
            create.image = Some(image);
        }
    }
    let interpreter = create.image.as_deref() == Some(Tier::Interpreter.name());
    let once = st.create_sandbox_once(&user, create, key).await?;
    if interpreter && !once.replayed {
        template::wait_ready(&st, &once.sandbox).await?;
    }
    let body = model::created(&st, &once.sandbox);
    Ok((StatusCode::CREATED, once.headers(), Json(body)))
}

/// `GET /v2/sandboxes`: filtered, ordered, paged ([`list`]).
pub async fn list_v2<E: Engine>(
    State(st): State<Shared<E>>,
    Caller(user): Caller,
    uri: Uri,
) -> ControlResult<Response> {
    let f = list::parse(&query(&uri)?)?;
    let rows: Vec<Sandbox> = st
        .store
        .list_sandboxes(&user.id)?
        .into_iter()
        .filter(|sb| list::keeps(&f, sb))
        .filter(|sb| list::keeps_view(&f, &model::listed(&st, sb)))
        .collect();
    let (rows, next) = list::page(&f, rows);
    let views: Vec<Listed> = rows.iter().map(|sb| model::listed(&st, sb)).collect();
    let mut headers = HeaderMap::new();
    if let Some(Ok(t)) = next.map(|t| HeaderValue::from_str(&t)) {
        headers.insert("x-next-token", t);
    }
    Ok((headers, Json(views)).into_response())
}

/// `GET /sandboxes`: the running sandboxes, filtered by `metadata`.
pub async fn list_v1<E: Engine>(
    State(st): State<Shared<E>>,
    Caller(user): Caller,
    uri: Uri,
) -> ControlResult<Json<Vec<Listed>>> {
    let mut f = list::parse(&query(&uri)?)?;
    f.paused = false;
    let views = st
        .store
        .list_sandboxes(&user.id)?
        .iter()
        .filter(|sb| sb.status == Status::Running && list::keeps(&f, sb))
        .map(|sb| model::listed(&st, sb))
        .collect();
    Ok(Json(views))
}

/// The decoded pairs of a request's query.
fn query(uri: &Uri) -> ControlResult<Vec<(String, String)>> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ControlError::BadRequest(format!("invalid query: {e}")))
}

pub async fn get<E: Engine>(
    State(st): State<Shared<E>>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> ControlResult<Json<Detail>> {
    let sb = find(&st, &user, &id)?;
    Ok(Json(model::detail(&st, &sb)))
}

pub async fn kill<E: Engine>(
    State(st): State<Shared<E>>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> ControlResult<StatusCode> {
    let sb = find(&st, &user, &id)?;
    st.destroy_sandbox(&sb).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{id}/timeout`: the timeout from now (a paused
/// sandbox has none: 409).
pub async fn timeout<E: Engine>(
    State(st): State<Shared<E>>,
    Caller(user): Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ControlResult<StatusCode> {
    let req: Lifetime = body(&bytes)?;
    let timeout = req
        .timeout
        .ok_or_else(|| ControlError::BadRequest("timeout is required".into()))?;
    let sb = find(&st, &user, &id)?;
    if sb.status != Status::Running {
        return Err(ControlError::Paused(sb.id));
    }
    set_timeout(&st, &sb, timeout, sb.on_expire)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{id}/refreshes`: keeps a running sandbox alive for
/// `duration` seconds (default [`CONNECT_TIMEOUT`]) unless its timeout
/// is later already.
pub async fn refresh<E: Engine>(
    State(st): State<Shared<E>>,
    Caller(user): Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ControlResult<StatusCode> {
    let req: Lifetime = body(&bytes)?;
    let sb = find(&st, &user, &id)?;
    if sb.status != Status::Running {
        return Err(ControlError::Paused(sb.id));
    }
    extend(&st, &sb, req.duration.unwrap_or(CONNECT_TIMEOUT))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Moves a running sandbox's timeout to `secs` from now if that is
/// later (one without a timeout keeps none).
fn extend<E: Engine>(st: &Shared<E>, sb: &Sandbox, secs: u64) -> ControlResult<()> {
    let until = now_unix().saturating_add(i64::try_from(secs).unwrap_or(i64::MAX));
    if sb.expires_at.is_some_and(|at| at < until) {
        set_timeout(st, sb, secs, sb.on_expire)?;
    }
    Ok(())
}

/// `POST /sandboxes/{id}/pause`: our stop (a snapshot on disk, the VM
/// gone); 409 when it is paused already.
pub async fn pause<E: Engine>(
    State(st): State<Shared<E>>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> ControlResult<StatusCode> {
    let sb = find(&st, &user, &id)?;
    if sb.status == Status::Stopped {
        return Err(ControlError::AlreadyPaused(sb.id));
    }
    // Cleared first, so the timeout cannot run out during the stop.
    st.store.set_sandbox_expiry(&sb.id, None, sb.on_expire)?;
    if let Err(e) = st.stop_sandbox(&sb).await {
        if let Err(undo) = st
            .store
            .set_sandbox_expiry(&sb.id, sb.expires_at, sb.on_expire)
        {
            tracing::warn!(sandbox = %sb.id, error = %undo, "restoring the timeout");
        }
        return Err(e.into());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{id}/resume`: starts a paused sandbox (409 when it
/// runs) with a new timeout (default [`RESUME_TIMEOUT`]); `autoPause`
/// chooses what that timeout does.
pub async fn resume<E: Engine>(
    State(st): State<Shared<E>>,
    Caller(user): Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ControlResult<(StatusCode, Json<Created>)> {
    let req: Lifetime = body(&bytes)?;
    let sb = find(&st, &user, &id)?;
    if sb.status == Status::Running {
        return Err(ControlError::AlreadyRunning(sb.id));
    }
    let on_expire = match req.auto_pause {
        Some(true) => OnExpire::Stop,
        Some(false) => OnExpire::Destroy,
        None => sb.on_expire,
    };
    let sb = wake(&st, &sb, req.timeout.unwrap_or(RESUME_TIMEOUT), on_expire).await?;
    Ok((StatusCode::CREATED, Json(model::created(&st, &sb))))
}

/// `POST /sandboxes/{id}/connect` and `POST /v2/sandboxes/{id}/connect`:
/// a running sandbox gets the later of its timeout and `timeout`
/// (default [`CONNECT_TIMEOUT`]) from now, 200; a paused one is started
/// with that timeout, 201.
pub async fn connect<E: Engine>(
    State(st): State<Shared<E>>,
    Caller(user): Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ControlResult<(StatusCode, Json<Created>)> {
    let req: Lifetime = body(&bytes)?;
    let sb = find(&st, &user, &id)?;
    let timeout = req.timeout.unwrap_or(CONNECT_TIMEOUT);
    if sb.status == Status::Running {
        extend(&st, &sb, timeout)?;
        return Ok((StatusCode::OK, Json(model::created(&st, &sb))));
    }
    let sb = wake(&st, &sb, timeout, sb.on_expire).await?;
    Ok((StatusCode::CREATED, Json(model::created(&st, &sb))))
}

/// Starts a paused sandbox and sets its timeout; returns its new row.
async fn wake<E: Engine>(
    st: &Shared<E>,
    sb: &Sandbox,
    timeout: u64,
    on_expire: OnExpire,
) -> ControlResult<Sandbox> {
    // Checked before the start: a bad timeout starts nothing.
    crate::service::lifetime::Ttl::from_request(Some(timeout), None, 0)?;
    let sb = st.start_sandbox(sb).await?;
    set_timeout(st, &sb, timeout, on_expire)?;
    Ok(st.store.sandbox_by_id(&sb.id)?)
}
