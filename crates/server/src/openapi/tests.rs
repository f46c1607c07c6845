use super::*;
use crate::daemon::DaemonEngine;

fn doc() -> Value {
    document::<DaemonEngine>()
}

/// Follows a `$ref` into `components.schemas`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            let s = &doc["components"]["schemas"][name];
            assert!(s.is_object(), "dangling $ref {r}");
            s
        }
        None => schema,
    }
}

/// A schema that says something: a type, a `$ref`, a composition, or
/// (for pass-through bodies) a description.
fn non_empty(doc: &Value, schema: &Value) -> bool {
    let s = resolve(doc, schema);
    [
        "type",
        "properties",
        "oneOf",
        "allOf",
        "anyOf",
        "items",
        "description",
    ]
    .iter()
    .any(|k| s.get(k).is_some())
}

#[test]
fn every_route_is_documented() {
    let doc = doc();
    let routes = table::<DaemonEngine>();
    for r in &routes {
        let p = &doc["paths"][openapi_path(r.path)];
        for v in methods_of(r.verb) {
            assert_eq!(p[v]["summary"], r.summary, "{v} {} missing", r.path);
            if r.access == Access::Public {
                assert_eq!(p[v]["security"], json!([]), "{}", r.path);
            }
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
    let routed: usize = routes.iter().map(|r| methods_of(r.verb).len()).sum();
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
        ("get", "/ports"),
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
        ("post", "/sandboxes/{id}/snapshots"),
        ("get", "/snapshots"),
        ("get", "/snapshots/{name}"),
        ("delete", "/snapshots/{name}"),
        ("post", "/sandboxes/{id}/fork"),
    ] {
        assert!(doc["paths"][p][m].is_object(), "{m} {p} not documented");
    }
}

/// Writes that take no body.
const NO_BODY: [&str; 2] = ["/sandboxes/{id}/stop", "/sandboxes/{id}/start"];

#[test]
fn every_body_and_success_reply_has_a_schema() {
    let doc = doc();
    for r in table::<DaemonEngine>() {
        let path = openapi_path(r.path);
        for m in methods_of(r.verb) {
            let op = &doc["paths"][&path][m];
            let writes = matches!(m, "post" | "put" | "patch");
            let body = &op["requestBody"]["content"];
            if writes && !NO_BODY.contains(&r.path) {
                let media = body.as_object().expect("request body");
                assert!(!media.is_empty(), "{m} {path}: no request body");
                for (t, c) in media {
                    assert!(non_empty(&doc, &c["schema"]), "{m} {path}: {t} body");
                }
            }
            let reply = r.doc.reply.as_ref().expect("a success reply");
            let ok = &op["responses"][reply.status.to_string()];
            assert!(ok.is_object(), "{m} {path}: no {} reply", reply.status);
            // Upgrades, 204 and HEAD have no body; everything else has one.
            if matches!(reply.status, 101 | 204) || m == "head" {
                assert!(ok.get("content").is_none(), "{m} {path}");
                continue;
            }
            let media = ok["content"].as_object().expect("reply content");
            assert!(!media.is_empty(), "{m} {path}: empty reply content");
            for (t, c) in media {
                assert!(non_empty(&doc, &c["schema"]), "{m} {path}: {t} reply");
            }
            let err = &op["responses"]["default"]["content"]["application/json"]["schema"];
            assert_eq!(err["$ref"], "#/components/schemas/ErrorBody", "{m} {path}");
        }
    }
}

/// `POST /images` takes a registry source as JSON or an archive upload.
#[test]
fn image_import_takes_json_or_an_upload() {
    let doc = doc();
    let body = &doc["paths"]["/images"]["post"]["requestBody"]["content"];
    assert!(
        body["application/json"]["schema"]["$ref"].is_string(),
        "{body}"
    );
    assert_eq!(
        body["application/octet-stream"]["schema"]["format"],
        "binary"
    );
    let params = doc["paths"]["/images"]["post"]["parameters"].to_string();
    assert!(
        params.contains("\"format\"") && params.contains("\"name\""),
        "{params}"
    );
}

#[test]
fn schemas_come_from_the_real_types() {
    let doc = doc();
    let s = &doc["components"]["schemas"];
    // CreateSandbox: every field optional, unknown fields ignored (v1).
    let create = &s["CreateSandbox"];
    assert_ne!(create["additionalProperties"], json!(false));
    for f in [
        "name",
        "cpus",
        "memory_mb",
        "env",
        "volumes",
        "new_volumes",
        "peers",
    ] {
        assert!(create["properties"][f].is_object(), "CreateSandbox.{f}");
    }
    assert!(create.get("required").is_none_or(|r| r == &json!([])));
    // An empty body is `{}`: optional where every field is, required where
    // `{}` would be refused.
    let body_required = |path: &str| doc["paths"][path]["post"]["requestBody"]["required"].clone();
    assert_eq!(body_required("/sandboxes"), json!(false));
    assert_eq!(body_required("/secrets"), json!(true));
    assert_eq!(body_required("/sandboxes/{id}/exec"), json!(true));
    // Types it uses are components too.
    for name in [
        "NewVolume",
        "Mount",
        "FileIn",
        "SandboxView",
        "ExecBody",
        "ExecEvent",
        "SnapshotView",
        "CreateSnapshot",
        "ForkSandbox",
        "ForkReply",
    ] {
        assert!(s[name].is_object(), "{name} missing");
    }
    assert!(
        create["properties"]["snapshot"].is_object(),
        "CreateSandbox.snapshot"
    );
    let exec = &doc["paths"]["/sandboxes/{id}/exec"]["post"];
    assert_eq!(
        exec["responses"]["200"]["content"]["application/x-ndjson"]["schema"]["$ref"],
        "#/components/schemas/ExecEvent"
    );
    // Typed path and query parameters.
    let unpublish = &doc["paths"]["/sandboxes/{id}/publish/{port}"]["delete"];
    let port = unpublish["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "port"))
        .expect("port parameter");
    assert_eq!(port["schema"]["type"], "integer");
    let read = &doc["paths"]["/sandboxes/{id}/files"]["get"];
    let names: Vec<&str> = read["parameters"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    for q in ["id", "path", "offset", "limit", "max_bytes", "ls"] {
        assert!(names.contains(&q), "files query {q}: {names:?}");
    }
    let ws = &doc["paths"]["/sandboxes/{id}/ws"]["get"]["responses"];
    assert!(ws["101"].is_object());
}

/// The property names of schema `name`.
fn properties(doc: &Value, name: &str) -> Vec<String> {
    let mut v: Vec<String> = doc["components"]["schemas"][name]["properties"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The keys a value serializes to.
fn keys<T: serde::Serialize>(value: &T) -> Vec<String> {
    let mut v: Vec<String> = serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_object().map(|m| m.keys().cloned().collect()))
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn protocol_mirrors_match_the_protocol_types() {
    use bhatti_proto::messages::{FileInfo, SessionInfo};
    let doc = doc();
    let file = FileInfo {
        name: "a".into(),
        size: 1,
        mode: "0644".into(),
        is_dir: false,
        mtime: 0,
    };
    assert_eq!(properties(&doc, "FileInfo"), keys(&file));
    let session = SessionInfo {
        session_id: "s".into(),
        argv: "sh".into(),
        tty: true,
        running: false,
        exit_code: Some(0),
        attached: false,
        created_at: 0,
    };
    assert_eq!(properties(&doc, "SessionInfo"), keys(&session));
}
