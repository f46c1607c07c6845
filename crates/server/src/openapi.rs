//! The OpenAPI document, generated from the route table
//! ([`crate::routes::table`]): one operation per route, with its summary,
//! path parameters and security. `ANY` routes (the reverse proxy) are
//! listed under every method they accept.

use bhatti_engine::engine::Engine;
use serde_json::{Map, Value, json};

use crate::routes::{Access, Verb, table};

/// Methods an `ANY` route is documented under.
const ANY_METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The whole API as an OpenAPI 3.1 document.
pub fn document<E: Engine>() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for r in table::<E>() {
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|p| {
                json!({"name": p.trim_start_matches('*'), "in": "path", "required": true,
                       "schema": {"type": "string"}})
            })
            .collect();
        let mut op = json!({
            "summary": r.summary,
            "operationId": format!("{}{}", r.verb.as_str(), r.path.replace(['/', '{', '}', '*', '.'], "_")),
            "parameters": params,
            "responses": {
                "default": {"description": "JSON result, or {\"error\": message}",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        if r.access == Access::Public {
            op["security"] = json!([]);
        }
        let entry = paths
            .entry(openapi_path(r.path))
            .or_insert_with(|| Value::Object(Map::new()));
        let methods: Vec<&str> = if r.verb == Verb::Any {
            ANY_METHODS.to_vec()
        } else {
            vec![r.verb.as_str()]
        };
        for m in methods {
            entry[m] = op.clone();
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "bhatti", "version": env!("CARGO_PKG_VERSION"),
                 "description": "MicroVM sandboxes: lifecycle, exec, shells, files, ports, proxy."},
        "paths": paths,
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "required": ["error"],
                                  "properties": {"error": {"type": "string"}}}}
        }
    })
}

/// `{*rest}` (axum) → `{rest}` (OpenAPI).
pub fn openapi_path(p: &str) -> String {
    p.replace("{*", "{")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::DaemonEngine;

    #[test]
    fn every_route_is_documented() {
        let doc = document::<DaemonEngine>();
        let routes = table::<DaemonEngine>();
        for r in &routes {
            let p = &doc["paths"][openapi_path(r.path)];
            let verbs: Vec<&str> = if r.verb == Verb::Any {
                ANY_METHODS.to_vec()
            } else {
                vec![r.verb.as_str()]
            };
            for v in verbs {
                assert_eq!(p[v]["summary"], r.summary, "{v} {} missing", r.path);
            }
            if r.access == Access::Public {
                assert_eq!(p[r.verb.as_str()]["security"], json!([]), "{}", r.path);
            }
        }
        // Nothing documented that is not routed.
        let documented: usize = doc["paths"]
            .as_object()
            .map(|m| {
                m.values()
                    .map(|ops| ops.as_object().map_or(0, Map::len))
                    .sum()
            })
            .unwrap_or(0);
        let routed: usize = routes
            .iter()
            .map(|r| {
                if r.verb == Verb::Any {
                    ANY_METHODS.len()
                } else {
                    1
                }
            })
            .sum();
        assert_eq!(documented, routed);
        // Every route of API.md is there.
        for (m, p) in [
            ("get", "/health"),
            ("post", "/sandboxes"),
            ("get", "/sandboxes"),
            ("get", "/sandboxes/{id}"),
            ("patch", "/sandboxes/{id}"),
            ("delete", "/sandboxes/{id}"),
            ("post", "/sandboxes/{id}/stop"),
            ("post", "/sandboxes/{id}/start"),
            ("post", "/sandboxes/{id}/exec"),
            ("get", "/sandboxes/{id}/ws"),
            ("get", "/sandboxes/{id}/files"),
            ("put", "/sandboxes/{id}/files"),
            ("head", "/sandboxes/{id}/files"),
            ("get", "/sandboxes/{id}/sessions"),
            ("delete", "/sandboxes/{id}/sessions/{sid}"),
            ("get", "/sandboxes/{id}/ports"),
            ("get", "/sandboxes/{id}/proxy/{port}/{path}"),
            ("post", "/sandboxes/{id}/publish"),
            ("get", "/sandboxes/{id}/publish"),
            ("delete", "/sandboxes/{id}/publish/{port}"),
            ("post", "/templates"),
            ("get", "/templates"),
            ("get", "/templates/{id}"),
            ("delete", "/templates/{id}"),
            ("post", "/secrets"),
            ("get", "/secrets"),
            ("delete", "/secrets/{name}"),
            ("post", "/volumes"),
            ("get", "/volumes"),
            ("get", "/volumes/{name}"),
            ("delete", "/volumes/{name}"),
        ] {
            assert!(doc["paths"][p][m].is_object(), "{m} {p} not documented");
        }
    }
}
