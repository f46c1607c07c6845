//! Deserializers for the spellings v1 clients send: `""` and `0` for
//! "the default", and a CPU count with a fraction (v1 parsed a float).

use serde::{Deserialize, Deserializer, de::Error as _};

/// A string field where `""` (or `null`) means absent.
pub fn blank_is_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// A count where `0` (or `null`) means absent.
pub fn zero_is_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Ok(Option::<u32>::deserialize(d)?.filter(|n| *n != 0))
}

/// A query flag: `1`, `true`, `yes` or `on` (any case) is set; `0`,
/// `false`, `no`, `off` or empty is not; anything else is an error.
pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let s = String::deserialize(d)?;
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(D::Error::custom(format!(
            "{:?} is not a flag (1 or 0, true or false)",
            bhatti_proto::text::cut(&s, 20)
        ))),
    }
}

/// A CPU count: a JSON number, a fraction rounded up (never below 1),
/// `0` or `null` for the default.
pub fn cpus<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let Some(n) = Option::<f64>::deserialize(d)? else {
        return Ok(None);
    };
    if !n.is_finite() || n < 0.0 || n > f64::from(u32::MAX) {
        return Err(D::Error::custom(format!(
            "cpus: {n} is not a CPU count (a number from 0, the default, up)"
        )));
    }
    if n == 0.0 {
        return Ok(None);
    }
    // In range and finite (checked above), so the cast is exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(Some((n.ceil() as u32).max(1)))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "super::cpus")]
        cpus: Option<u32>,
        #[serde(default, deserialize_with = "super::zero_is_none")]
        memory_mb: Option<u32>,
        #[serde(default, deserialize_with = "super::blank_is_none")]
        name: Option<String>,
    }

    fn body(json: &str) -> Result<Body, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn fractional_cpus_round_up_and_zero_is_the_default() {
        let cpus = |v: &str| body(&format!(r#"{{"cpus":{v}}}"#)).map(|b| b.cpus);
        assert_eq!(cpus("1.5").ok(), Some(Some(2)));
        assert_eq!(cpus("0.25").ok(), Some(Some(1)));
        assert_eq!(cpus("2").ok(), Some(Some(2)));
        assert_eq!(cpus("0").ok(), Some(None));
        assert_eq!(cpus("null").ok(), Some(None));
        assert!(cpus("-1").is_err());
        assert!(cpus("1e300").is_err());
        assert!(cpus("\"2\"").is_err());
        assert_eq!(body("{}").ok().map(|b| b.cpus), Some(None));
    }

    #[test]
    fn blank_name_and_zero_memory_are_the_default() {
        let b = body(r#"{"name":"","memory_mb":0}"#).expect("parses");
        assert_eq!((b.name, b.memory_mb), (None, None));
        let b = body(r#"{"name":"dev","memory_mb":256}"#).expect("parses");
        assert_eq!((b.name.as_deref(), b.memory_mb), (Some("dev"), Some(256)));
    }
}
