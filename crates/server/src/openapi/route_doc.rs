//! What a route of the table ([`crate::routes::RouteDef`]) tells the OpenAPI
//! document: its request body, success reply, query and path parameters and
//! reply headers, set by builders on the route (`.body::<T>()`,
//! `.reply::<T>(201)`, `.query::<Q>()`, `.param::<u16>("port")`). Schemas
//! come from utoipa (`ToSchema`/`IntoParams` derived on the real types) and
//! are written into `components.schemas` when the document is built.

use std::collections::BTreeMap;

use bhatti_engine::engine::Engine;
use serde_json::{Value, json};
use utoipa::openapi::path::ParameterIn;
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::routes::RouteDef;

/// Named schemas gathered while the document is built (`components.schemas`).
pub type Schemas = BTreeMap<String, Value>;

/// Adds a type's schema (and those it uses) to [`Schemas`] and returns the
/// schema to put where the type appears (a `$ref` for named types).
pub type SchemaFn = fn(&mut Schemas) -> Value;

/// A body of one media type.
#[derive(Debug, Clone, Copy)]
pub struct Body {
    pub media: &'static str,
    pub schema: SchemaFn,
}

/// The success reply of a route: its status and body (one per media type;
/// none for `101` upgrades and `HEAD`).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Another success status with the same body (a replace answers 200
    /// where a create answers 201).
    pub also: Option<u16>,
    pub description: &'static str,
    pub content: Vec<Body>,
}

/// Documentation of one route.
#[derive(Debug, Clone, Default)]
pub struct Doc {
    pub body: Option<Body>,
    /// Another media type the request body may have (`POST /images`
    /// takes JSON or an uploaded archive).
    pub alt_body: Option<Body>,
    pub reply: Option<Reply>,
    /// The route's query parameters, as OpenAPI parameter objects.
    pub query: Option<fn() -> Vec<Value>>,
    /// Path parameters that are not strings.
    pub params: Vec<(&'static str, SchemaFn)>,
    /// Reply headers: name, description.
    pub headers: Vec<(&'static str, &'static str)>,
    /// Optional request headers: name, description, pattern.
    pub request_headers: Vec<(&'static str, &'static str, &'static str)>,
}

/// `$ref` to `T`'s schema, which is added with everything it uses.
pub fn named<T: ToSchema>(schemas: &mut Schemas) -> Value {
    let mut used = Vec::new();
    T::schemas(&mut used);
    for (name, s) in used {
        schemas.insert(name, to_json(&s));
    }
    schemas.insert(T::name().into_owned(), to_json(&T::schema()));
    json!({"$ref": format!("#/components/schemas/{}", T::name())})
}

/// An array of `T`.
pub fn list<T: ToSchema>(schemas: &mut Schemas) -> Value {
    json!({"type": "array", "items": named::<T>(schemas)})
}

/// `T`'s schema inline (primitives).
pub fn inline<T: PartialSchema>(_: &mut Schemas) -> Value {
    to_json(&T::schema())
}

/// Raw bytes.
pub fn binary(_: &mut Schemas) -> Value {
    json!({"type": "string", "format": "binary"})
}

/// Whatever the guest's server takes or sends (the reverse proxy).
pub fn anything(_: &mut Schemas) -> Value {
    json!({"description": "Any body: passed through to or from the guest unchanged"})
}

fn to_json<S: serde::Serialize>(s: &S) -> Value {
    serde_json::to_value(s).unwrap_or(Value::Null)
}

fn query_of<Q: IntoParams>() -> Vec<Value> {
    Q::into_params(|| Some(ParameterIn::Query))
        .iter()
        .map(to_json)
        .collect()
}

/// The description of a success status.
pub fn described(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        201 => "Created",
        204 => "No Content",
        _ => "OK",
    }
}

impl<E: Engine> RouteDef<E> {
    /// A JSON request body of type `T`.
    pub fn body<T: ToSchema>(mut self) -> Self {
        self.doc.body = Some(Body {
            media: "application/json",
            schema: named::<T>,
        });
        self
    }

    /// A request body of raw bytes of `media` type.
    pub fn raw_body(mut self, media: &'static str) -> Self {
        self.doc.body = Some(Body {
            media,
            schema: binary,
        });
        self
    }

    /// The request body may instead be raw bytes of `media` type.
    pub fn or_raw_body(mut self, media: &'static str) -> Self {
        self.doc.alt_body = Some(Body {
            media,
            schema: binary,
        });
        self
    }

    /// A request body of any type (the reverse proxy).
    pub fn any_body(mut self) -> Self {
        self.doc.body = Some(Body {
            media: "*/*",
            schema: anything,
        });
        self
    }

    fn reply_with(mut self, status: u16, body: Option<Body>) -> Self {
        self.doc.reply = Some(Reply {
            status,
            also: None,
            description: described(status),
            content: body.into_iter().collect(),
        });
        self
    }

    /// A JSON reply of type `T` with `status`.
    pub fn reply<T: ToSchema>(self, status: u16) -> Self {
        self.reply_with(
            status,
            Some(Body {
                media: "application/json",
                schema: named::<T>,
            }),
        )
    }

    /// A JSON reply: an array of `T`.
    pub fn reply_list<T: ToSchema>(self, status: u16) -> Self {
        self.reply_with(
            status,
            Some(Body {
                media: "application/json",
                schema: list::<T>,
            }),
        )
    }

    /// A reply of raw bytes of `media` type.
    pub fn reply_raw(self, status: u16, media: &'static str) -> Self {
        self.reply_with(
            status,
            Some(Body {
                media,
                schema: binary,
            }),
        )
    }

    /// A reply of any type (the reverse proxy).
    pub fn reply_any(self) -> Self {
        self.reply_with(
            200,
            Some(Body {
                media: "*/*",
                schema: anything,
            }),
        )
    }

    /// A reply with no body (`HEAD`): only status and headers.
    pub fn reply_empty(self, status: u16) -> Self {
        self.reply_with(status, None)
    }

    /// A WebSocket upgrade: `101 Switching Protocols`.
    pub fn upgrade(self) -> Self {
        self.reply_with(101, None)
    }

    /// The reply may also be `media`, each line (NDJSON) or message a `T`.
    pub fn or_stream<T: ToSchema>(mut self, media: &'static str) -> Self {
        if let Some(r) = self.doc.reply.as_mut() {
            r.content.push(Body {
                media,
                schema: named::<T>,
            });
        }
        self
    }

    /// The reply may also be `media`: an array of `T`.
    pub fn or_list<T: ToSchema>(mut self, media: &'static str) -> Self {
        if let Some(r) = self.doc.reply.as_mut() {
            r.content.push(Body {
                media,
                schema: list::<T>,
            });
        }
        self
    }

    /// The reply may also come with `status` (same body).
    pub fn or_status(mut self, status: u16) -> Self {
        if let Some(r) = self.doc.reply.as_mut() {
            r.also = Some(status);
        }
        self
    }

    /// Query parameters from `Q`'s fields.
    pub fn query<Q: IntoParams>(mut self) -> Self {
        self.doc.query = Some(query_of::<Q>);
        self
    }

    /// Path parameter `name` is a `T` (path parameters are strings unless
    /// said otherwise).
    pub fn param<T: PartialSchema>(mut self, name: &'static str) -> Self {
        self.doc.params.push((name, inline::<T>));
        self
    }

    /// The reply carries header `name`.
    pub fn header(mut self, name: &'static str, description: &'static str) -> Self {
        self.doc.headers.push((name, description));
        self
    }

    /// The request may carry header `name`, matching `pattern`.
    pub fn request_header(
        mut self,
        name: &'static str,
        description: &'static str,
        pattern: &'static str,
    ) -> Self {
        self.doc.request_headers.push((name, description, pattern));
        self
    }
}
