//! Output of client commands: JSON (one document on stdout, nothing else)
//! or human tables built from the API's JSON objects.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub use crate::output::table;

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

/// `v[key]` (unix seconds) as an age such as `5m ago`.
pub fn age_cell(v: &Value, key: &str) -> String {
    match v.get(key).and_then(Value::as_i64) {
        Some(ts) => age(ts, now()),
        None => cell(v, key),
    }
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
    fn cells() {
        let v = serde_json::json!({"a": "x", "b": null, "c": 3, "d": true, "e": ""});
        let got: Vec<String> = ["a", "b", "c", "d", "e", "z"]
            .iter()
            .map(|k| cell(&v, k))
            .collect();
        assert_eq!(got, ["x", "-", "3", "yes", "-", "-"]);
    }
}
