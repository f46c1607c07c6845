//! QEMU's QMP messages as they arrive on the socket, and decoding a
//! command's `return` value into a reply type.

use serde::Deserialize;
use serde_json::Value;

use super::{QemuVersion, QmpError};

#[derive(Debug, Deserialize)]
pub(super) struct ErrorBody {
    pub(super) class: String,
    pub(super) desc: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Timestamp {
    pub(super) seconds: u64,
    pub(super) microseconds: u64,
}

/// Any message QEMU sends on the QMP socket.
#[derive(Debug, Deserialize)]
pub(super) struct Message {
    #[serde(rename = "QMP")]
    pub(super) greeting: Option<Greeting>,
    #[serde(rename = "return")]
    pub(super) ret: Option<Value>,
    pub(super) error: Option<ErrorBody>,
    pub(super) event: Option<String>,
    #[serde(default)]
    pub(super) data: Value,
    pub(super) timestamp: Option<Timestamp>,
    pub(super) id: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Greeting {
    pub(super) version: GreetingVersion,
}

#[derive(Debug, Deserialize)]
pub(super) struct GreetingVersion {
    pub(super) qemu: QemuVersion,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawStatus {
    pub(super) status: String,
    pub(super) running: bool,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawMigrate {
    #[serde(default)]
    pub(super) status: Option<String>,
    #[serde(rename = "total-time", default)]
    pub(super) total_time: Option<u64>,
    #[serde(default)]
    pub(super) ram: Option<RawRam>,
    #[serde(rename = "error-desc", default)]
    pub(super) error_desc: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawRam {
    pub(super) transferred: u64,
}

pub(super) fn stamp(ts: Option<Timestamp>) -> u64 {
    ts.map_or(0, |t| {
        t.seconds
            .saturating_mul(1_000_000)
            .saturating_add(t.microseconds)
    })
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(
    command: &str,
    v: Value,
) -> Result<T, QmpError> {
    serde_json::from_value(v).map_err(|e| QmpError::UnexpectedReply {
        command: command.to_owned(),
        reason: e.to_string(),
    })
}
