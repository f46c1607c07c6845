//! `--ttl`, `--on-expire` and `--label` on `create` and `edit`, and
//! `list --label`, against the daemon (what each shows, and the filter).

use crate::ensure;
use crate::support::daemon::Daemon;

/// Names in a `list --json` answer.
fn names(v: &serde_json::Value) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    n.sort();
    n
}

pub fn ttl_and_label_flags(d: &Daemon) -> Result<(), String> {
    let sb = d.json(&[
        "create",
        "--name",
        "ttl-box",
        "--memory",
        "256",
        "--ttl",
        "2h",
        "--on-expire",
        "stop",
        "--label",
        "team=ml",
        "-l",
        "ci=yes",
    ])?;
    ensure(
        sb["on_expire"] == "stop" && sb["expires_at"].is_string(),
        || format!("create --ttl: {sb}"),
    )?;
    ensure(
        sb["labels"] == serde_json::json!({"team": "ml", "ci": "yes"}),
        || format!("create --label: {sb}"),
    )?;
    let shown = d.ok(&["inspect", "ttl-box"])?;
    ensure(
        shown.contains("(stop)") && shown.contains("team=ml"),
        || format!("inspect: {shown}"),
    )?;

    let filtered = d.json(&["list", "--label", "team=ml"])?;
    ensure(names(&filtered) == ["ttl-box"], || {
        format!("list --label team=ml: {filtered}")
    })?;
    let none = d.json(&["list", "-l", "team=ml", "-l", "ci=no"])?;
    ensure(names(&none).is_empty(), || format!("two labels: {none}"))?;

    // edit: 0 removes the TTL, labels replace.
    let e = d.json(&["edit", "ttl-box", "--ttl", "0", "--label", "team=web"])?;
    ensure(
        e["expires_at"].is_null() && e["labels"] == serde_json::json!({"team": "web"}),
        || format!("edit: {e}"),
    )?;
    let bad = d.run(&["create", "--name", "never", "--ttl", "soon"]);
    ensure(!bad.status.success(), || {
        "create --ttl soon succeeded".into()
    })?;
    d.ok(&["destroy", "ttl-box"])?;
    Ok(())
}
