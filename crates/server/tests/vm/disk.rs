//! `disk_size_mb`: a sandbox's root disk of the size asked for, by the
//! create or by its template (the create's wins, `0` is the default), at
//! least its image's and at most what its file system grows to (64 GiB
//! for the busybox tier); the guest's root file system fills it.

use bhatti_engine::image::{ImagePaths, Tier};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestDaemon, TestResult, Timers, ensure, run};

/// Creates a sandbox from `body` (256 MB of memory added), checks the
/// `disk_size_mb` it shows and that its root file system has at least
/// `min_mb` MiB, then destroys it.
async fn check_disk(
    d: &TestDaemon,
    body: Value,
    shown: Option<u64>,
    min_mb: u64,
    max_mb: u64,
) -> TestResult {
    let mut body = body;
    body["memory_mb"] = json!(256);
    let sb = d
        .expect(d.req(Method::POST, "/sandboxes").json(&body), 201)
        .await?;
    let id = sb["id"].as_str().unwrap_or_default().to_owned();
    ensure(sb["disk_size_mb"].as_u64() == shown, || {
        format!("{body}: created {sb}")
    })?;
    let got = d
        .expect(d.req(Method::GET, &format!("/sandboxes/{id}")), 200)
        .await?;
    ensure(got["disk_size_mb"].as_u64() == shown, || {
        format!("{body}: GET shows {got}")
    })?;
    let df = d.sh(&id, "df -k / | awk 'NR==2 {print $2}'").await?;
    let kib: u64 = df
        .trim()
        .parse()
        .map_err(|_| format!("df printed {df:?}"))?;
    ensure((min_mb << 10..=max_mb << 10).contains(&kib), || {
        format!("{body}: root is {kib} KiB, expected {min_mb}-{max_mb} MiB")
    })?;
    d.expect(d.req(Method::DELETE, &format!("/sandboxes/{id}")), 200)
        .await?;
    Ok(())
}

pub fn disk_size_from_request_and_template() -> TestResult {
    run(async {
        let image_mb =
            std::fs::metadata(ImagePaths::from_env().rootfs(Tier::Busybox)?)?.len() >> 20;
        let d = TestDaemon::start(Timers::default()).await?;

        // The request's size; `0` is the image's. (A grown root loses
        // about a tenth of the new space to its metadata.)
        let big = image_mb + 256;
        check_disk(&d, json!({"disk_size_mb": big}), Some(big), big - 64, big).await?;
        check_disk(&d, json!({"disk_size_mb": 0}), None, 1, image_mb).await?;

        // A template's size, and a create's that wins over it.
        let t = d
            .expect(
                d.req(Method::POST, "/templates").json(&json!({
                    "name": "roomy", "image": "busybox", "disk_size_mb": image_mb + 128
                })),
                201,
            )
            .await?;
        ensure(t["disk_size_mb"].as_u64() == Some(image_mb + 128), || {
            format!("template: {t}")
        })?;
        let tid = t["id"].as_str().unwrap_or_default().to_owned();
        let from_t = json!({"template_id": tid});
        let t_mb = image_mb + 128;
        check_disk(&d, from_t, Some(t_mb), t_mb - 32, t_mb).await?;
        let mine = image_mb + 32;
        let body = json!({"template_id": tid, "disk_size_mb": mine});
        check_disk(&d, body, Some(mine), mine - 16, mine).await?;

        // Smaller than the image, or above the cap: 400, nothing kept.
        let (status, small) = d
            .call(
                d.req(Method::POST, "/sandboxes")
                    .json(&json!({"name": "tiny", "disk_size_mb": image_mb - 1})),
            )
            .await?;
        ensure(status.as_u16() == 400, || {
            format!("a disk below the image's: {status} {small}")
        })?;
        let msg = small["error"].as_str().unwrap_or_default();
        ensure(msg.contains("smaller than the busybox image"), || {
            format!("error: {small}")
        })?;
        for huge in [2 << 20, (64 << 10) + 1] {
            d.expect(
                d.req(Method::POST, "/sandboxes")
                    .json(&json!({"name": "huge", "disk_size_mb": huge})),
                400,
            )
            .await?;
        }
        let tiny_t = d
            .expect(
                d.req(Method::POST, "/templates")
                    .json(&json!({"name": "tight", "disk_size_mb": 1})),
                201,
            )
            .await?;
        d.expect(
            d.req(Method::POST, "/sandboxes").json(&json!({
                "name": "tight", "image": "busybox", "template_id": tiny_t["id"]
            })),
            400,
        )
        .await?;
        let left = d.expect(d.req(Method::GET, "/sandboxes"), 200).await?;
        ensure(left.as_array().is_some_and(Vec::is_empty), || {
            format!("sandboxes left: {left}")
        })?;
        d.finish().await
    })
}
