//! v1 templates, secrets and volumes, then one sandbox made from the
//! template the way a v1 client asks: the template's sizes and env as the
//! base with the request's env merged over; `volumes:[{name,target}]`,
//! `new_volumes:[{name,size_mb,mount}]` and the template's
//! `mounts:[{volume_name,target,auto_create}]` all mounted together.

use reqwest::Method;
use serde_json::{Value, json};

use super::{Rows, exec, is_text, rfc3339_utc, sandbox_object, send};
use crate::support::{TestDaemon, TestResult, Timers, run};

pub fn templates_secrets_volumes() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let mut rows = Rows::default();
        secrets(&d, &mut rows).await?;
        volumes(&d, &mut rows).await?;
        let tid = template(&d, &mut rows).await?;
        from_template(&d, &mut rows, tid).await?;
        d.finish().await?;
        rows.done()
    })
}

/// A v1 object's date fields are RFC 3339 UTC strings.
fn dates(rows: &mut Rows, what: &str, v: &Value, keys: &[&str]) {
    for k in keys {
        rows.check("timestamps", rfc3339_utc(&v[*k]), || {
            format!("{what}: `{k}` must be an RFC 3339 UTC string: {v}")
        });
    }
}

async fn secrets(d: &TestDaemon, rows: &mut Rows) -> TestResult {
    let row = "secrets";
    for (round, value) in [("create", "v1-one"), ("update", "v1-two")] {
        let body = json!({"name": "V1_SECRET", "value": value});
        let (s, v) = send(d, Method::POST, "/secrets", Some(body)).await?;
        rows.check(row, s == 201 && v["name"] == "V1_SECRET", || {
            format!("POST /secrets ({round}): want 201 {{name,created_at,updated_at}}, got {s} {v}")
        });
        dates(
            rows,
            &format!("POST /secrets ({round})"),
            &v,
            &["created_at", "updated_at"],
        );
        rows.check(row, !v.to_string().contains(value), || {
            format!("the value is echoed: {v}")
        });
    }
    let body = json!({"name": "V1_OTHER", "value": "x", "description": "from a v1 script"});
    let (s, v) = send(d, Method::POST, "/secrets", Some(body)).await?;
    rows.check("unknown JSON fields in requests", s == 201, || {
        format!("POST /secrets with an unknown field: want 201, got {s} {v}")
    });
    let (s, list) = send(d, Method::GET, "/secrets", None).await?;
    let items = list.as_array().cloned().unwrap_or_default();
    rows.check(
        row,
        s == 200 && items.iter().any(|i| i["name"] == "V1_SECRET"),
        || format!("GET /secrets: {s} {list}"),
    );
    for it in &items {
        dates(rows, "GET /secrets item", it, &["created_at", "updated_at"]);
    }
    Ok(())
}

async fn volumes(d: &TestDaemon, rows: &mut Rows) -> TestResult {
    let row = "volumes";
    let mut first = Value::Null;
    for round in ["create", "again"] {
        let (s, v) = send(d, Method::POST, "/volumes", Some(json!({"name": "v1vol"}))).await?;
        rows.check(row, (s == 200 || s == 201) && v["name"] == "v1vol", || {
            format!("POST /volumes {{name}} ({round}): want 200/201 with the volume, got {s} {v}")
        });
        dates(
            rows,
            &format!("POST /volumes ({round})"),
            &v,
            &["created_at"],
        );
        if round == "create" {
            first = v;
        } else {
            rows.check(row, v == first, || {
                format!("POST /volumes of an existing name must return it: {first} then {v}")
            });
        }
    }
    let body = json!({"name": "v1vol2", "size_mb": 64, "labels": {"a": "b"}});
    let (s, v) = send(d, Method::POST, "/volumes", Some(body)).await?;
    rows.check(
        "unknown JSON fields in requests",
        s == 200 || s == 201,
        || format!("POST /volumes with an unknown field: want 200/201, got {s} {v}"),
    );
    let (s, v) = send(d, Method::GET, "/volumes/v1vol", None).await?;
    rows.check(row, s == 200 && v["name"] == "v1vol", || {
        format!("GET /volumes/v1vol: {s} {v}")
    });
    dates(rows, "GET /volumes/v1vol", &v, &["created_at"]);
    let (s, list) = send(d, Method::GET, "/volumes", None).await?;
    let items = list.as_array().cloned().unwrap_or_default();
    rows.check(row, s == 200 && items.len() >= 2, || {
        format!("GET /volumes: {s} {list}")
    });
    for it in &items {
        dates(rows, "GET /volumes item", it, &["created_at"]);
    }
    Ok(())
}

/// A template as v1 posts it; its id (None when refused).
async fn template(
    d: &TestDaemon,
    rows: &mut Rows,
) -> Result<Option<String>, libtest_mimic::Failed> {
    let row = "templates";
    let body = json!({
        "id": "tpl-v1", "name": "v1tpl", "engine": "firecracker",
        "cpus": 2, "memory_mb": 256, "disk_size_mb": 1024,
        "userdata": "#!/bin/sh\necho hi\n", "labels": {"team": "v1"},
        "env": {"A": "from-tpl", "B": "from-tpl"},
        "mounts": [{"volume_name": "v1tplvol", "target": "/data", "auto_create": true}]
    });
    let (s, t) = send(d, Method::POST, "/templates", Some(body.clone())).await?;
    if !rows.check(row, (s == 200 || s == 201) && is_text(&t["id"]), || {
        format!("POST /templates {body}: want 201 with `id`, got {s} {t}")
    }) {
        return Ok(None);
    }
    dates(rows, "POST /templates", &t, &["created_at"]);
    let id = t["id"].as_str().unwrap_or_default().to_owned();
    rows.check(row, id == "tpl-v1" && t["name"] == "v1tpl", || {
        format!("POST /templates with id \"tpl-v1\" must return that id: {t}")
    });
    let (s, got) = send(d, Method::GET, &format!("/templates/{id}"), None).await?;
    rows.check(row, s == 200 && got["id"] == id.as_str(), || {
        format!("GET /templates/{id}: {s} {got}")
    });
    let (s, list) = send(d, Method::GET, "/templates", None).await?;
    rows.check(
        row,
        s == 200
            && list
                .as_array()
                .is_some_and(|a| a.iter().all(|t| is_text(&t["id"]))),
        || format!("GET /templates: every template has an `id`: {s} {list}"),
    );
    Ok(Some(id))
}

/// A sandbox from the template, with v1's volume forms; checked inside.
async fn from_template(d: &TestDaemon, rows: &mut Rows, tid: Option<String>) -> TestResult {
    let mut body = json!({
        "name": "fromtpl", "env": {"B": "from-req"},
        "volumes": [{"name": "v1vol2", "target": "/mnt/v2"}],
        "new_volumes": [{"name": "v1new", "size_mb": 64, "mount": "/mnt/new"}]
    });
    if let Some(t) = &tid {
        // Zero means "default": the template's.
        body["template_id"] = json!(t);
        body["cpus"] = json!(0);
        body["memory_mb"] = json!(0);
    } else {
        body["memory_mb"] = json!(256);
    }
    let (s, sb) = send(d, Method::POST, "/sandboxes", Some(body.clone())).await?;
    if !rows.check("create volumes", s == 201, || {
        format!("POST /sandboxes {body}: want 201, got {s} {sb}")
    }) {
        return Ok(());
    }
    sandbox_object(rows, "create from template", &sb);
    let (_, mounts) = exec(d, "fromtpl", "cat /proc/mounts", json!({})).await?;
    rows.check("create volumes", mounts.contains(" /mnt/new "), || {
        format!("new_volumes[].mount: nothing mounted at /mnt/new in {mounts:?}")
    });
    rows.check("create volumes", mounts.contains(" /mnt/v2 "), || {
        format!("volumes[].target beside a template's mounts: nothing at /mnt/v2 in {mounts:?}")
    });
    if let Some(t) = tid {
        let row = "POST /sandboxes";
        rows.check("sandbox object", sb["template_id"] == t.as_str(), || {
            format!("`template_id` of a sandbox made from {t}: {sb}")
        });
        rows.check(row, sb["cpus"] == 2 && sb["memory_mb"] == 256, || {
            format!(
                "with cpus:0, memory_mb:0 the template's cpus 2, memory_mb 256 are the base: {sb}"
            )
        });
        let (code, out) = exec(d, "fromtpl", "echo $A $B", json!({})).await?;
        rows.check(row, code == 0 && out == "from-tpl from-req\n", || {
            format!(
                "template env A,B=from-tpl with request env B=from-req merged over: {code} {out:?}"
            )
        });
        rows.check("templates", mounts.contains(" /data "), || {
            format!("template mounts[{{volume_name,target,auto_create}}]: nothing at /data in {mounts:?}")
        });
    }
    d.expect(d.req(Method::DELETE, "/sandboxes/fromtpl"), 200)
        .await?;
    Ok(())
}
