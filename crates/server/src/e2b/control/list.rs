//! Listing filters and pages (`GET /v2/sandboxes`, `GET /sandboxes`):
//! - `metadata`: one query value holding `k=v&k2=v2`, each key and value
//!   percent-encoded once more (what the SDK sends: `urlencode` of
//!   `quote`d pairs); every pair must match a label;
//! - `state`: `running`, `paused` or both, comma-separated (absent: both);
//! - `startedAfter`: RFC 3339 (with `Z` or an offset);
//! - `template`: a `templateID` or alias;
//! - `order`: `asc` or `desc` by start time (default `desc`, newest first);
//! - `limit` (1-100, default 100) and `nextToken`: pages; the response's
//!   `x-next-token` header is the token of the next page, absent on the
//!   last.
//!
//! A token is `<startedAt unix>.<sandboxID>` of the last sandbox of the
//! page: the next page starts after it whatever was created or removed
//! meanwhile.

use bhatti_store::sandboxes::Sandbox;

use super::error::{ControlError, ControlResult};
use super::model::{self, Listed};

/// Largest page (E2B's too).
pub const MAX_LIMIT: usize = 100;

/// A listing request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub metadata: Vec<(String, String)>,
    pub running: bool,
    pub paused: bool,
    pub started_after: Option<i64>,
    pub template: Option<String>,
    pub ascending: bool,
    pub limit: usize,
    /// `(startedAt, sandboxID)` the page starts after.
    pub after: Option<(i64, String)>,
}

/// `query` (decoded pairs) as a filter.
pub fn parse(query: &[(String, String)]) -> ControlResult<Filter> {
    let mut f = Filter {
        running: true,
        paused: true,
        limit: MAX_LIMIT,
        ..Filter::default()
    };
    let bad = |what: &str, v: &str| {
        ControlError::BadRequest(format!(
            "invalid {what} {}",
            crate::service::validate::excerpt(v)
        ))
    };
    for (k, v) in query {
        match k.as_str() {
            "metadata" => f
                .metadata
                .extend(metadata(v).ok_or_else(|| bad("metadata", v))?),
            "state" => {
                (f.running, f.paused) = (false, false);
                for s in v.split(',').map(str::trim) {
                    match s {
                        "running" => f.running = true,
                        "paused" => f.paused = true,
                        _ => return Err(bad("state", s)),
                    }
                }
            }
            "startedAfter" => f.started_after = Some(rfc3339(v).ok_or_else(|| bad(k, v))?),
            "template" => f.template = Some(v.clone()),
            "order" => {
                f.ascending = match v.as_str() {
                    "asc" => true,
                    "desc" => false,
                    _ => return Err(bad("order", v)),
                }
            }
            "limit" => {
                f.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| bad("limit (1-100)", v))?;
            }
            "nextToken" => {
                let (at, id) = v.split_once('.').ok_or_else(|| bad(k, v))?;
                f.after = Some((at.parse().map_err(|_| bad(k, v))?, id.to_owned()));
            }
            _ => {}
        }
    }
    Ok(f)
}

/// Whether a sandbox row passes the filter's row tests (all but
/// `template`, which needs its view).
pub fn keeps(f: &Filter, sb: &Sandbox) -> bool {
    let state_ok = if model::state(sb) == "running" {
        f.running
    } else {
        f.paused
    };
    state_ok
        && f.started_after.is_none_or(|t| sb.created_at >= t)
        && f.metadata
            .iter()
            .all(|(k, v)| sb.labels.get(k).is_some_and(|have| have == v))
}

/// Whether a view passes the `template` test.
pub fn keeps_view(f: &Filter, v: &Listed) -> bool {
    f.template
        .as_deref()
        .is_none_or(|t| v.template_id == t || v.alias.as_deref() == Some(t))
}

/// One page of `rows` (already filtered) and the next page's token.
pub fn page(f: &Filter, mut rows: Vec<Sandbox>) -> (Vec<Sandbox>, Option<String>) {
    let key = |s: &Sandbox| (s.created_at, s.id.clone());
    rows.sort_by_key(key);
    if !f.ascending {
        rows.reverse();
    }
    if let Some(after) = &f.after {
        rows.retain(|s| {
            if f.ascending {
                key(s) > *after
            } else {
                key(s) < *after
            }
        });
    }
    let more = rows.len() > f.limit;
    rows.truncate(f.limit);
    let next = more
        .then(|| rows.last().map(|s| format!("{}.{}", s.created_at, s.id)))
        .flatten();
    (rows, next)
}

/// The pairs of a `metadata` value (see the module docs).
fn metadata(v: &str) -> Option<Vec<(String, String)>> {
    v.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, val) = pair.split_once('=').unwrap_or((pair, ""));
            let k = unescape(&unescape(k)?)?;
            let val = unescape(&unescape(val)?)?;
            (!k.is_empty()).then_some((k, val))
        })
        .collect()
}

/// `s` percent-decoded (`+` is a space), if it is valid UTF-8.
fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Unix seconds of an RFC 3339 time with `Z`, an offset or neither
/// (UTC), fractional seconds allowed.
pub fn rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    let (local, offset) = match s.strip_suffix('Z').or_else(|| s.strip_suffix('z')) {
        Some(l) => (l, 0),
        None => match s.get(s.len().saturating_sub(6)..) {
            Some(tail) if tail.len() == 6 && (tail.starts_with('+') || tail.starts_with('-')) => {
                let (h, m) = tail[1..].split_once(':')?;
                let secs = h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60;
                let sign = if tail.starts_with('-') { -1 } else { 1 };
                (&s[..s.len() - 6], sign * secs)
            }
            _ => (s, 0),
        },
    };
    let at = humantime::parse_rfc3339_weak(local).ok()?;
    let unix = i64::try_from(at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs()).ok()?;
    Some(unix - offset)
}

#[cfg(test)]
mod tests {
    use bhatti_store::sandboxes::{OnExpire, Status, Thermal};

    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn metadata_is_decoded_twice_as_the_sdk_encodes_it() {
        // urlencode({quote("a b"): quote("x/y&z")}) in the SDK.
        let f = parse(&q(&[("metadata", "a%2520b=x%252Fy%2526z&k=v")])).expect("parse");
        assert_eq!(
            f.metadata,
            vec![("a b".into(), "x/y&z".into()), ("k".into(), "v".into())]
        );
        assert!(parse(&q(&[("metadata", "k=%zz")])).is_err());
    }

    #[test]
    fn states_limits_orders_and_tokens() {
        let f = parse(&q(&[])).expect("empty");
        assert!(f.running && f.paused && !f.ascending && f.limit == MAX_LIMIT);
        let f = parse(&q(&[("state", "paused"), ("limit", "2"), ("order", "asc")])).expect("p");
        assert!(!f.running && f.paused && f.ascending && f.limit == 2);
        for bad in [
            ("state", "gone"),
            ("limit", "0"),
            ("limit", "101"),
            ("order", "up"),
        ] {
            assert!(parse(&q(&[bad])).is_err(), "{bad:?}");
        }
        let f = parse(&q(&[("nextToken", "17.sb-a")])).expect("token");
        assert_eq!(f.after, Some((17, "sb-a".into())));
        assert!(parse(&q(&[("nextToken", "x")])).is_err());
    }

    fn row(id: &str, created_at: i64, status: Status) -> Sandbox {
        Sandbox {
            id: id.into(),
            user_id: "u-1".into(),
            name: id.into(),
            status,
            thermal: Thermal::Hot,
            status_reason: None,
            ip: None,
            cpus: 1,
            memory_mb: 512,
            keep_hot: false,
            template_id: None,
            image: "busybox".into(),
            spec: serde_json::Value::Null,
            created_at,
            stopped_at: None,
            destroyed_at: None,
            labels: [("k".to_owned(), id.to_owned())].into(),
            expires_at: None,
            on_expire: OnExpire::Destroy,
        }
    }

    #[test]
    fn pages_follow_tokens_in_either_order() {
        let rows = vec![
            row("sb-b", 10, Status::Running),
            row("sb-a", 10, Status::Stopped),
            row("sb-c", 20, Status::Running),
        ];
        for (order, want) in [
            ("asc", ["sb-a", "sb-b", "sb-c"]),
            ("desc", ["sb-c", "sb-b", "sb-a"]),
        ] {
            let mut f = parse(&q(&[("order", order), ("limit", "2")])).expect("parse");
            let (page1, next) = page(&f, rows.clone());
            let ids: Vec<&str> = page1.iter().map(|s| s.id.as_str()).collect();
            assert_eq!(ids, want[..2], "{order}");
            let next = next.expect("a second page");
            f = parse(&q(&[
                ("order", order),
                ("limit", "2"),
                ("nextToken", &next),
            ]))
            .expect("p");
            let (page2, last) = page(&f, rows.clone());
            let ids: Vec<&str> = page2.iter().map(|s| s.id.as_str()).collect();
            assert_eq!((ids, last), (vec![want[2]], None), "{order}");
        }
    }

    #[test]
    fn rows_filter_by_state_time_and_labels() {
        let f = parse(&q(&[("state", "paused")])).expect("parse");
        assert!(!keeps(&f, &row("sb-a", 10, Status::Running)));
        assert!(keeps(&f, &row("sb-a", 10, Status::Stopped)));
        let f = parse(&q(&[("startedAfter", "1970-01-01T00:00:15Z")])).expect("parse");
        assert!(!keeps(&f, &row("sb-a", 10, Status::Running)));
        assert!(keeps(&f, &row("sb-a", 20, Status::Running)));
        let f = parse(&q(&[("metadata", "k=sb-a")])).expect("parse");
        assert!(keeps(&f, &row("sb-a", 10, Status::Running)));
        assert!(!keeps(&f, &row("sb-b", 10, Status::Running)));
    }

    #[test]
    fn times_with_offsets() {
        assert_eq!(rfc3339("1970-01-01T00:01:00Z"), Some(60));
        assert_eq!(rfc3339("1970-01-01T01:01:00.123456+01:00"), Some(60));
        assert_eq!(rfc3339("1970-01-01T00:00:00-00:01"), Some(60));
        assert_eq!(rfc3339("1970-01-01T00:01:00"), Some(60));
        assert_eq!(rfc3339("yesterday"), None);
    }
}
