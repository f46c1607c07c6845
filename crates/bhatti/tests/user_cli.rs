//! `bhatti user …` run as a real process against a temp data dir.

use std::process::{Command, Output};

fn bhatti(data_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bhatti"))
        .arg("user")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("BHATTI_DATA_DIR")
        .output()
        .expect("run bhatti")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is exactly one JSON document")
}

#[test]
fn create_list_rotate_delete_with_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let created = json(&bhatti(
        &data,
        &["create", "--name", "alice", "--max-cpus", "2", "--json"],
    ));
    let key = created["key"].as_str().expect("key").to_owned();
    assert!(key.starts_with("bht_") && key.len() == 68);
    assert_eq!(created["max_cpus"], 2);
    assert_eq!(created["max_sandboxes"], 5);

    let list = json(&bhatti(&data, &["list", "--json"]));
    assert_eq!(list.as_array().expect("array").len(), 1);
    assert_eq!(list[0]["name"], "alice");
    assert!(list[0].get("key").is_none(), "listing never shows keys");

    let rotated = json(&bhatti(&data, &["rotate-key", "alice", "--json"]));
    assert_ne!(rotated["key"].as_str().expect("key"), key);

    let dup = bhatti(&data, &["create", "--name", "alice"]);
    assert_eq!(dup.status.code(), Some(1));
    let err = String::from_utf8_lossy(&dup.stderr);
    assert!(err.contains("already exists"), "{err}");

    let deleted = json(&bhatti(&data, &["delete", "alice", "--json"]));
    assert_eq!(deleted["status"], "deleted");
    assert_eq!(
        json(&bhatti(&data, &["list", "--json"])),
        serde_json::json!([])
    );
}

#[test]
fn human_output_and_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bhatti(dir.path(), &["create", "--name", "bob"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("key:   bht_"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown only once"));
    let table = String::from_utf8_lossy(&bhatti(dir.path(), &["list"]).stdout).into_owned();
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.lines().nth(1).is_some_and(|l| l.starts_with("bob ")),
        "{table}"
    );

    let bad = bhatti(dir.path(), &["create", "--name", "no spaces"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid user name"));

    let missing = bhatti(&dir.path().join("nope"), &["list"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"));

    let usage = bhatti(dir.path(), &["create"]);
    assert_eq!(usage.status.code(), Some(2), "usage errors exit 2");
}
