//! The route table: every route of the API, one module per resource, each
//! exporting `routes()` with the same shape. The router
//! ([`crate::app::router`]) and the OpenAPI document
//! ([`crate::openapi::document`]) are both built from [`table`], so a
//! route cannot exist without being documented. Each [`RouteDef`] carries a
//! [`Doc`]: its request body, success reply, query and typed path
//! parameters, filled by small builders (`.body::<CreateSandbox>()`,
//! `.reply::<SandboxView>(201)`) whose schemas utoipa generates from the
//! real Rust types.

pub mod console;
pub mod events;
pub mod exec;
pub mod files;
pub mod health;
pub mod images;
pub mod metrics;
pub mod ports;
pub mod proxy;
pub mod publish;
pub mod sandboxes;
pub mod secrets;
pub mod sessions;
pub mod shell;
pub mod snapshots;
pub mod stats;
pub mod templates;
pub mod volumes;

use axum::routing::MethodRouter;
use bhatti_engine::engine::Engine;

pub use crate::openapi::route_doc::{Body, Doc, Reply};
use crate::state::Shared;

/// An HTTP method of a route (`Any` for the reverse proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Any,
}

impl Verb {
    /// Lower-case name, as OpenAPI keys operations.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Head => "head",
            Self::Post => "post",
            Self::Put => "put",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::Any => "any",
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No API key (health, the API document).
    Public,
    /// A Bearer API key (or `?token=` on a WebSocket upgrade).
    User,
}

/// One route: where, who, what it does, its handler, and what the
/// OpenAPI document says of its inputs and outputs.
#[derive(Debug)]
pub struct RouteDef<E: Engine> {
    pub verb: Verb,
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
    pub handler: MethodRouter<Shared<E>>,
    pub doc: Doc,
}

/// A public route (no API key).
pub fn public<E: Engine>(
    verb: Verb,
    path: &'static str,
    summary: &'static str,
    handler: MethodRouter<Shared<E>>,
) -> RouteDef<E> {
    let mut r = user(verb, path, summary, handler);
    r.access = Access::Public;
    r
}

/// A user route.
pub fn user<E: Engine>(
    verb: Verb,
    path: &'static str,
    summary: &'static str,
    handler: MethodRouter<Shared<E>>,
) -> RouteDef<E> {
    RouteDef {
        verb,
        path,
        access: Access::User,
        summary,
        handler,
        doc: Doc::default(),
    }
}

/// Every route of the API.
pub fn table<E: Engine>() -> Vec<RouteDef<E>> {
    let mut all = Vec::new();
    all.extend(health::routes());
    all.extend(events::routes());
    all.extend(metrics::routes());
    all.extend(stats::routes());
    all.extend(console::routes());
    all.extend(sandboxes::routes());
    all.extend(snapshots::routes());
    all.extend(images::routes());
    all.extend(exec::routes());
    all.extend(shell::routes());
    all.extend(files::routes());
    all.extend(sessions::routes());
    all.extend(ports::routes());
    all.extend(proxy::routes());
    all.extend(publish::routes());
    all.extend(templates::routes());
    all.extend(secrets::routes());
    all.extend(volumes::routes());
    all
}
