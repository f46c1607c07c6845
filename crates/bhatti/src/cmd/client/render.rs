//! Output of client commands: JSON (one document on stdout, nothing else)
//! or human tables built from the API's JSON objects.

use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use serde_json::Value;

pub use crate::output::table;

/// `--wide` / `-o wide`: the richer table instead of v1's plain columns.
#[derive(Debug, Clone, Default, Args)]
pub struct Wide {
    /// Output format: `wide` adds columns to v1's plain ones
    #[arg(long, short = 'o', value_name = "FORMAT", value_parser = ["wide"])]
    pub output: Option<String>,
    /// More columns (the same as `-o wide`)
    #[arg(long)]
    pub wide: bool,
}

impl Wide {
    pub fn on(&self) -> bool {
        self.wide || self.output.is_some()
    }
}

/// Prints one JSON document on stdout.
pub fn json(v: &Value) {
    println!("{v}");
}

/// `v[key]` as a table cell: strings bare, missing/null as `-`.
pub fn cell(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) if s.is_empty() => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.to_owned(),
        Some(other) => other.to_string(),
    }
}

/// `v[key]` as v1 printed it (Go's `%v`): strings bare, missing/null
/// empty, booleans `true`/`false`, numbers as JSON writes them.
pub fn raw(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Rows of `items` in v1's fixed layout: each cell [`raw`], left-aligned
/// and padded to at least its column's width (Go's `%-20s`), cells
/// separated by one space; the header the same way.
pub fn fixed_lines(items: &Value, cols: &[(&str, &str, usize)]) -> Vec<String> {
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(cols)
            .map(|(c, (_, _, w))| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut out = vec![line(cols.iter().map(|(h, _, _)| (*h).to_owned()).collect())];
    for it in items.as_array().map(Vec::as_slice).unwrap_or_default() {
        out.push(line(cols.iter().map(|(_, k, _)| raw(it, k)).collect()));
    }
    out
}

/// Prints [`fixed_lines`].
pub fn fixed(items: &Value, cols: &[(&str, &str, usize)]) {
    for l in fixed_lines(items, cols) {
        println!("{l}");
    }
}

/// `v`'s `labels` as `k=v,k2=v2`; `None` when it has none.
pub fn labels(v: &Value) -> Option<String> {
    let labels = v.get("labels").and_then(Value::as_object)?;
    let text: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    (!text.is_empty()).then(|| text.join(","))
}

/// `v[key]` as an age such as `5m ago`: Unix seconds (sessions, file
/// entries) or an RFC 3339 string (sandboxes, secrets, volumes,
/// templates); anything else as a plain cell.
pub fn age_cell(v: &Value, key: &str) -> String {
    match v.get(key).and_then(unix_time) {
        Some(ts) => age(ts, now()),
        None => cell(v, key),
    }
}

/// A timestamp as Unix seconds: a JSON integer, or an RFC 3339 string.
pub fn unix_time(v: &Value) -> Option<i64> {
    if let Some(ts) = v.as_i64() {
        return Some(ts);
    }
    let t = humantime::parse_rfc3339_weak(v.as_str()?).ok()?;
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok()?,
        Err(e) => -i64::try_from(e.duration().as_secs()).ok()?,
    };
    Some(secs)
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A unix time relative to `now`: `just now`, `42s ago`, `5m ago`, `3h ago`, `2d ago`.
pub fn age(ts: i64, now: i64) -> String {
    let d = now.saturating_sub(ts);
    match d {
        i64::MIN..=0 => "just now".to_owned(),
        1..=59 => format!("{d}s ago"),
        60..=3599 => format!("{}m ago", d / 60),
        3600..=86_399 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86_400),
    }
}

/// Rows of `items` (a JSON array) with `cols` (header, key) as cells;
/// keys ending in `_at` are shown as ages.
pub fn rows(items: &Value, cols: &[(&str, &str)]) -> Vec<Vec<String>> {
    items
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|it| {
            cols.iter()
                .map(|(_, k)| {
                    if k.ends_with("_at") {
                        age_cell(it, k)
                    } else {
                        cell(it, k)
                    }
                })
                .collect()
        })
        .collect()
}

/// Prints `items` as a table of `cols`, or JSON.
pub fn list(json_out: bool, items: &Value, cols: &[(&str, &str)]) {
    if json_out {
        json(items);
        return;
    }
    let header: Vec<&str> = cols.iter().map(|(h, _)| *h).collect();
    table(&header, &rows(items, cols));
}

/// A spinner on stderr while a long operation runs — only when stderr is a
/// terminal and the output is not JSON; `None` otherwise (quiet when piped).
pub fn spinner(json_out: bool, msg: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if json_out || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_message(msg.to_owned());
    pb.enable_steady_tick(std::time::Duration::from_millis(100));
    Some(pb)
}

/// Prints `key: value` lines, keys aligned.
pub fn fields(pairs: &[(&str, String)]) {
    let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (k, v) in pairs {
        println!("{:<w$} {v}", format!("{k}:"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(age(100, 100), "just now");
        assert_eq!(age(58, 100), "42s ago");
        assert_eq!(age(0, 300), "5m ago");
        assert_eq!(age(0, 3 * 3600 + 5), "3h ago");
        assert_eq!(age(0, 2 * 86_400), "2d ago");
        assert_eq!(age(200, 100), "just now");
    }

    #[test]
    fn timestamps_unix_or_rfc3339() {
        let v = serde_json::json!({
            "n": 1_774_173_600, "s": "2026-03-22T10:00:00Z", "z": "2026-03-22T10:00:00.5Z",
            "bad": "yesterday", "null": null
        });
        assert_eq!(unix_time(&v["n"]), Some(1_774_173_600));
        assert_eq!(unix_time(&v["s"]), Some(1_774_173_600));
        assert_eq!(unix_time(&v["z"]), Some(1_774_173_600));
        assert_eq!(unix_time(&v["bad"]), None);
        assert!(age_cell(&v, "s").ends_with(" ago"), "{}", age_cell(&v, "s"));
        assert_eq!(age_cell(&v, "bad"), "yesterday");
        assert_eq!(age_cell(&v, "null"), "-");
    }

    #[test]
    fn v1_fixed_columns() {
        let items = serde_json::json!([
            {"id": "sb_1", "name": "dev", "status": "running", "ip": "10.0.0.2"},
            {"id": "sb_2", "name": "x", "status": "stopped", "ip": null, "running": true}
        ]);
        let cols = [
            ("ID", "id", 6),
            ("NAME", "name", 4),
            ("IP", "ip", 3),
            ("R", "running", 1),
        ];
        assert_eq!(
            fixed_lines(&items, &cols),
            [
                "ID     NAME IP  R",
                "sb_1   dev  10.0.0.2  ",
                "sb_2   x        true",
            ]
        );
    }

    #[test]
    fn cells() {
        let v = serde_json::json!({"a": "x", "b": null, "c": 3, "d": true, "e": ""});
        let got: Vec<String> = ["a", "b", "c", "d", "e", "z"]
            .iter()
            .map(|k| cell(&v, k))
            .collect();
        assert_eq!(got, ["x", "-", "3", "yes", "-", "-"]);
    }
}
