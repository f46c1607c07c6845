//! Templates, secrets and volumes: CRUD, per-user isolation, a secret
//! that is never returned and is stored encrypted but reaches a sandbox
//! that asks for it, and a volume that outlives its sandbox and cannot be
//! deleted while mounted.

use bhatti_store::users::Limits;
use reqwest::Method;
use serde_json::json;

use crate::support::{TestDaemon, TestResult, Timers, ensure, run};

#[allow(clippy::too_many_lines)] // one scenario on one daemon, step by step
pub fn templates_secrets_volumes() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let bob = d.user("bob", Limits::default())?;

        // Secrets.
        let v = d
            .expect(
                d.req(Method::POST, "/secrets")
                    .json(&json!({"name": "API_TOKEN", "value": "s3cret-v"})),
                201,
            )
            .await?;
        ensure(!v.to_string().contains("s3cret"), || {
            format!("value echoed: {v}")
        })?;
        // Replacing answers 201 too (v1), with the first creation date.
        let again = d
            .expect(
                d.req(Method::POST, "/secrets")
                    .json(&json!({"name": "API_TOKEN", "value": "s3cret-v2"})),
                201,
            )
            .await?;
        ensure(again["created_at"] == v["created_at"], || {
            format!("replaced: {again} after {v}")
        })?;
        d.expect(
            d.req(Method::POST, "/secrets")
                .json(&json!({"name": "bad-name", "value": "x"})),
            400,
        )
        .await?;
        let list = d.expect(d.req(Method::GET, "/secrets"), 200).await?;
        ensure(
            list.as_array()
                .is_some_and(|a| a.len() == 1 && a[0]["name"] == "API_TOKEN")
                && !list.to_string().contains("s3cret"),
            || format!("secrets: {list}"),
        )?;
        let user = d.state.store.user_by_name("alice")?;
        let ct = d.state.store.secret_ciphertext(&user.id, "API_TOKEN")?;
        ensure(!ct.windows(6).any(|w| w == b"s3cret"), || {
            "plaintext in the store".into()
        })?;
        let bob_list = d
            .expect(d.req_as(&bob, Method::GET, "/secrets"), 200)
            .await?;
        ensure(bob_list == json!([]), || format!("bob sees {bob_list}"))?;
        d.expect(d.req_as(&bob, Method::DELETE, "/secrets/API_TOKEN"), 404)
            .await?;

        // Volumes.
        let v = d
            .expect(
                d.req(Method::POST, "/volumes")
                    .json(&json!({"name": "data", "size_mb": 64})),
                201,
            )
            .await?;
        ensure(v["name"] == "data" && v["size_mb"] == 64, || {
            format!("volume: {v}")
        })?;
        // Idempotent, as in v1: the same name answers 200 with that volume.
        let again = d
            .expect(
                d.req(Method::POST, "/volumes")
                    .json(&json!({"name": "data"})),
                200,
            )
            .await?;
        ensure(again["id"] == v["id"] && again["size_mb"] == 64, || {
            format!("volume again: {again}")
        })?;
        d.expect(d.req(Method::GET, "/volumes/data"), 200).await?;
        d.expect(d.req_as(&bob, Method::GET, "/volumes/data"), 404)
            .await?;

        // Templates: defaults, a secret and a mount for new sandboxes.
        let t = d
            .expect(
                d.req(Method::POST, "/templates").json(&json!({
                    "name": "tpl", "memory_mb": 256, "env": {"MODE": "templated"},
                    "secrets": ["API_TOKEN"], "mounts": [{"name": "data", "mount": "/data"}]
                })),
                201,
            )
            .await?;
        let tid = t["id"].as_str().unwrap_or_default().to_owned();
        d.expect(d.req(Method::GET, "/templates/tpl"), 200).await?;
        let tl = d.expect(d.req(Method::GET, "/templates"), 200).await?;
        ensure(tl.as_array().is_some_and(|a| a.len() == 1), || {
            format!("templates: {tl}")
        })?;
        d.expect(
            d.req_as(&bob, Method::GET, &format!("/templates/{tid}")),
            404,
        )
        .await?;
        d.expect(
            d.req(Method::POST, "/templates")
                .json(&json!({"name": "x", "image": "nope"})),
            400,
        )
        .await?;

        let sb = d
            .expect(
                d.req(Method::POST, "/sandboxes")
                    .json(&json!({"name": "t1", "template_id": tid})),
                201,
            )
            .await?;
        ensure(
            sb["template_id"] == tid.as_str() && sb["memory_mb"] == 256,
            || format!("from template: {sb}"),
        )?;
        d.expect(
            d.req(Method::PUT, "/sandboxes/t1/files?path=/data/f")
                .body("persisted\n"),
            200,
        )
        .await?;
        let out = d.sh("t1", "echo $MODE $API_TOKEN").await?;
        ensure(out == "templated s3cret-v2\n", || format!("env: {out:?}"))?;
        // A sandbox that does not ask gets no secret: checked on the
        // spec the store keeps (no values there either).
        let row = d.state.store.find_sandbox(&user.id, "t1")?;
        ensure(!row.spec.to_string().contains("s3cret"), || {
            "secret value in the stored spec".into()
        })?;

        // In use → 409; the volume survives its sandbox.
        let e = d
            .expect(d.req(Method::DELETE, "/volumes/data"), 409)
            .await?;
        ensure(
            e["error"].as_str().is_some_and(|m| m.contains("t1")),
            || format!("in use: {e}"),
        )?;
        let body = json!({"name": "t2", "memory_mb": 256, "volumes": [{"name": "data", "mount": "/data"}]});
        d.expect(d.req(Method::POST, "/sandboxes").json(&body), 409)
            .await?;
        d.expect(d.req(Method::DELETE, "/sandboxes/t1"), 200)
            .await?;
        d.expect(d.req(Method::POST, "/sandboxes").json(&body), 201)
            .await?;
        let out = d.sh("t2", "cat /data/f; echo ${API_TOKEN:-none}").await?;
        ensure(out == "persisted\nnone\n", || {
            format!("second sandbox: {out:?}")
        })?;
        d.expect(d.req(Method::DELETE, "/sandboxes/t2"), 200)
            .await?;
        d.expect(d.req(Method::DELETE, "/volumes/data"), 200)
            .await?;
        d.expect(d.req(Method::GET, "/volumes/data"), 404).await?;
        d.expect(d.req(Method::DELETE, "/templates/tpl"), 200)
            .await?;
        d.expect(d.req(Method::DELETE, "/secrets/API_TOKEN"), 200)
            .await?;
        d.finish().await
    })
}
