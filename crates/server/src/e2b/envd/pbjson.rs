//! The proto3 canonical JSON mapping, for the hand-written message types
//! of [`super::process_pb`] and [`super::fs_pb`]: `bytes` as base64
//! (standard on output; standard or URL-safe, padded or not, on input),
//! 32-bit integers as numbers (strings accepted), 64-bit integers as
//! strings (numbers accepted), timestamps as RFC 3339.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serializer};

/// Why a value did not decode.
#[derive(Debug, thiserror::Error)]
pub enum PbJsonError {
    #[error("invalid base64")]
    Base64,
    #[error("invalid integer {0:?}")]
    Integer(String),
}

/// A number or a string holding one.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    Num(serde_json::Number),
    Str(String),
}

fn number<'de, D: Deserializer<'de>, T: std::str::FromStr>(d: D) -> Result<T, D::Error> {
    let text = match NumOrStr::deserialize(d)? {
        NumOrStr::Num(n) => n.to_string(),
        NumOrStr::Str(s) => s,
    };
    text.trim()
        .parse()
        .map_err(|_| de::Error::custom(PbJsonError::Integer(text)))
}

/// `uint32` (number or string).
pub fn u32_de<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    number(d)
}

/// `int64` as the canonical string.
pub fn i64_ser<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

/// Decodes proto3 JSON `bytes`.
pub fn decode_b64(text: &str) -> Result<Vec<u8>, PbJsonError> {
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        if let Ok(v) = engine.decode(text) {
            return Ok(v);
        }
    }
    Err(PbJsonError::Base64)
}

/// `bytes` (base64 string).
pub fn bytes_de<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    decode_b64(&s).map_err(de::Error::custom)
}

/// `bytes` as standard padded base64.
pub fn bytes_ser<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&STANDARD.encode(v))
}

/// A `google.protobuf.Timestamp` from unix seconds.
pub fn timestamp(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0).unsigned_abs());
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct N {
        #[serde(deserialize_with = "u32_de")]
        n: u32,
    }

    #[test]
    fn integers_come_as_numbers_or_strings() {
        let a: N = serde_json::from_str(r#"{"n": 7}"#).expect("number");
        let b: N = serde_json::from_str(r#"{"n": "7"}"#).expect("string");
        assert_eq!((a.n, b.n), (7, 7));
        assert!(serde_json::from_str::<N>(r#"{"n": -1}"#).is_err());
    }

    #[test]
    fn bytes_accept_every_base64_flavour() {
        assert_eq!(decode_b64("aGk=").expect("padded"), b"hi");
        assert_eq!(decode_b64("aGk").expect("unpadded"), b"hi");
        assert_eq!(decode_b64("-_8").expect("url-safe"), [0xfb, 0xff]);
        assert!(decode_b64("***").is_err());
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
