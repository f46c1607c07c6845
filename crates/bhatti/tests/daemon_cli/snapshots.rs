//! `bhatti snapshot create|list|inspect|rm`, `create --snapshot` and
//! `fork` against the daemon: what each shows, the label filter, a
//! duplicate name refused, restored and forked sandboxes with the
//! source's memory, and a deleted snapshot gone.

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
    d.ok(&["exec", "snap-src", "--", "sh", "-c", "echo kept > /tmp/x"])?;
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

    restore_and_fork(d)?;

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

/// `create --snapshot` and `fork`: the new sandboxes have the source's
/// `/tmp` (its memory) and are listed.
fn restore_and_fork(d: &Daemon) -> Result<(), String> {
    let line = d.ok(&["create", "--snapshot", "base", "--name", "from-base"])?;
    ensure(line.split('\t').nth(1) == Some("from-base"), || {
        format!("create --snapshot: {line}")
    })?;
    let x = d.ok(&["exec", "from-base", "--", "cat", "/tmp/x"])?;
    ensure(x == "kept\n", || format!("restored /tmp/x: {x:?}"))?;
    d.ok(&["destroy", "from-base"])?;

    let bad = d.run(&["fork", "snap-src", "--count", "3", "--name", "k1"]);
    ensure(!bad.status.success(), || "--count 3 with one --name".into())?;
    let kids = d.json(&["fork", "snap-src", "--name", "k1", "--name", "k2"])?;
    ensure(names(&kids["sandboxes"]) == ["k1", "k2"], || {
        format!("fork --json: {kids}")
    })?;
    let x = d.ok(&["exec", "k2", "--", "cat", "/tmp/x"])?;
    ensure(x == "kept\n", || format!("child's /tmp/x: {x:?}"))?;
    let table = d.ok(&["fork", "snap-src"])?;
    ensure(
        table.starts_with("ID") && table.lines().count() == 2,
        || format!("fork: {table}"),
    )?;
    let child = table
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_owned();
    d.ok(&["destroy", "k1", "k2", &child])?;
    Ok(())
}
