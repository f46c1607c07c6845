//! `bhatti snapshot create|list|inspect|rm` against the daemon: what each
//! shows, the label filter, a duplicate name refused, and a deleted
//! snapshot gone.

use crate::ensure;
use crate::support::daemon::Daemon;

/// Names in a `snapshot list --json` answer.
fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub fn snapshot_commands(d: &Daemon) -> Result<(), String> {
    d.ok(&["create", "--name", "snap-src", "--memory", "256"])?;
    let s = d.json(&[
        "snapshot",
        "create",
        "snap-src",
        "base",
        "--label",
        "kind=test",
    ])?;
    ensure(
        s["name"] == "base"
            && s["status"] == "ready"
            && s["source"]["name"] == "snap-src"
            && s["labels"]["kind"] == "test",
        || format!("snapshot create: {s}"),
    )?;
    let dup = d.run(&["snapshot", "create", "snap-src", "base"]);
    ensure(!dup.status.success(), || {
        "a duplicate name succeeded".into()
    })?;

    let table = d.ok(&["snapshot", "list"])?;
    ensure(
        table.contains("NAME") && table.contains("base") && table.contains("snap-src"),
        || format!("snapshot list: {table}"),
    )?;
    let hit = d.json(&["snapshot", "ls", "--label", "kind=test"])?;
    let miss = d.json(&["snapshot", "list", "-l", "kind=other"])?;
    ensure(names(&hit) == ["base"] && names(&miss).is_empty(), || {
        format!("--label: {hit} / {miss}")
    })?;
    let shown = d.ok(&["snapshot", "inspect", "base"])?;
    ensure(
        shown.contains("ready") && shown.contains("kind=test"),
        || format!("snapshot inspect: {shown}"),
    )?;

    let gone = d.ok(&["snapshot", "rm", "base"])?;
    ensure(gone.contains("deleted snapshot base"), || {
        format!("snapshot rm: {gone}")
    })?;
    let after = d.run(&["snapshot", "inspect", "base"]);
    ensure(!after.status.success(), || "inspect after rm".into())?;
    ensure(names(&d.json(&["snapshot", "list"])?).is_empty(), || {
        "list after rm".into()
    })?;
    d.ok(&["destroy", "snap-src"])?;
    Ok(())
}
