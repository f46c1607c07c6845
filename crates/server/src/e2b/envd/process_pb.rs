//! The messages of envd's `process.Process` service (`process/process.proto`
//! as the E2B SDK's `process_pb.py` defines them), in proto3 JSON
//! ([`super::pbjson`]): lowerCamelCase names (the proto names accepted
//! too), oneofs as one of their fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::pbjson::{bytes_de, bytes_ser, u32_de};

/// `process.PTY.Size`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct PtySize {
    #[serde(default, deserialize_with = "u32_de")]
    pub cols: u32,
    #[serde(default, deserialize_with = "u32_de")]
    pub rows: u32,
}

/// `process.PTY`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Pty {
    #[serde(default)]
    pub size: Option<PtySize>,
}

/// `process.ProcessConfig`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessConfig {
    #[serde(default)]
    pub cmd: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub envs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

/// `process.ProcessSelector` (oneof `selector`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProcessSelector {
    Pid(#[serde(deserialize_with = "u32_de")] u32),
    Tag(String),
}

/// `process.StartRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StartRequest {
    #[serde(default)]
    pub process: ProcessConfig,
    #[serde(default)]
    pub pty: Option<Pty>,
    #[serde(default)]
    pub tag: Option<String>,
    /// Absent: true (envd's default for old SDKs).
    #[serde(default)]
    pub stdin: Option<bool>,
}

/// A request that names one process: `ConnectRequest`,
/// `CloseStdinRequest`.
#[derive(Debug, Clone, Deserialize)]
pub struct SelectRequest {
    pub process: ProcessSelector,
}

/// `process.ProcessInput` (oneof `input`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProcessInput {
    Stdin(#[serde(deserialize_with = "bytes_de")] Vec<u8>),
    Pty(#[serde(deserialize_with = "bytes_de")] Vec<u8>),
}

impl ProcessInput {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Stdin(b) | Self::Pty(b) => b,
        }
    }
}

/// `process.SendInputRequest`.
#[derive(Debug, Clone, Deserialize)]
pub struct SendInputRequest {
    pub process: ProcessSelector,
    pub input: ProcessInput,
}

/// `process.Signal`, by name or number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Unspecified,
    Term,
    Kill,
}

impl<'de> Deserialize<'de> for Signal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) if s == "SIGNAL_SIGTERM" => Ok(Self::Term),
            serde_json::Value::String(s) if s == "SIGNAL_SIGKILL" => Ok(Self::Kill),
            serde_json::Value::Number(n) if n.as_u64() == Some(15) => Ok(Self::Term),
            serde_json::Value::Number(n) if n.as_u64() == Some(9) => Ok(Self::Kill),
            _ => Ok(Self::Unspecified),
        }
    }
}

/// `process.StreamInputRequest.DataEvent`.
#[derive(Debug, Clone, Deserialize)]
pub struct InputData {
    pub input: ProcessInput,
}

/// `process.StreamInputRequest` (oneof `event`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StreamInputRequest {
    Start(SelectRequest),
    Data(InputData),
    Keepalive(Empty),
}

/// `process.SendSignalRequest`.
#[derive(Debug, Clone, Deserialize)]
pub struct SendSignalRequest {
    pub process: ProcessSelector,
    #[serde(default = "unspecified")]
    pub signal: Signal,
}

fn unspecified() -> Signal {
    Signal::Unspecified
}

/// `process.UpdateRequest`.
#[derive(Debug, Clone, Deserialize)]
pub struct UpdateRequest {
    pub process: ProcessSelector,
    #[serde(default)]
    pub pty: Option<Pty>,
}

/// An empty message (requests and replies without fields).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Empty {}

/// `process.ProcessInfo`.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessInfo {
    pub config: ProcessConfig,
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// `process.ListResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct ListResponse {
    pub processes: Vec<ProcessInfo>,
}

/// `process.ProcessEvent.EndEvent`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EndEvent {
    pub exit_code: i32,
    pub exited: bool,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `process.ProcessEvent.DataEvent` (oneof `output`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DataEvent {
    Stdout(#[serde(serialize_with = "bytes_ser")] Vec<u8>),
    Stderr(#[serde(serialize_with = "bytes_ser")] Vec<u8>),
    Pty(#[serde(serialize_with = "bytes_ser")] Vec<u8>),
}

/// `process.ProcessEvent.StartEvent`.
#[derive(Debug, Clone, Serialize)]
pub struct StartEvent {
    pub pid: u32,
}

/// `process.ProcessEvent` (oneof `event`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ProcessEvent {
    Start(StartEvent),
    Data(DataEvent),
    End(EndEvent),
    Keepalive(Empty),
}

/// `process.StartResponse` and `process.ConnectResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct EventResponse {
    pub event: ProcessEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_request_as_the_sdk_sends_it() {
        let r: StartRequest = serde_json::from_str(
            r#"{"process":{"cmd":"/bin/bash","args":["-l","-c","echo hi"],"envs":{"A":"1"}},"stdin":false}"#,
        )
        .expect("decode");
        assert_eq!(r.process.args, ["-l", "-c", "echo hi"]);
        assert_eq!(r.stdin, Some(false));
        let p: StartRequest = serde_json::from_str(
            r#"{"process":{"cmd":"/bin/bash"},"pty":{"size":{"cols":80,"rows":24}}}"#,
        )
        .expect("pty");
        let size = p.pty.and_then(|p| p.size).expect("size");
        assert_eq!((size.rows, size.cols), (24, 80));
    }

    #[test]
    fn stream_input_events() {
        let s: StreamInputRequest =
            serde_json::from_str(r#"{"start":{"process":{"pid":2}}}"#).expect("start");
        assert!(matches!(s, StreamInputRequest::Start(_)));
        let d: StreamInputRequest =
            serde_json::from_str(r#"{"data":{"input":{"stdin":"aGk="}}}"#).expect("data");
        assert!(matches!(d, StreamInputRequest::Data(x) if x.input.bytes() == b"hi"));
        let k: StreamInputRequest = serde_json::from_str(r#"{"keepalive":{}}"#).expect("ka");
        assert!(matches!(k, StreamInputRequest::Keepalive(_)));
    }

    #[test]
    fn oneofs_and_enums() {
        let s: SendSignalRequest =
            serde_json::from_str(r#"{"process":{"pid":3},"signal":"SIGNAL_SIGKILL"}"#)
                .expect("sig");
        assert!(matches!(s.process, ProcessSelector::Pid(3)));
        assert_eq!(s.signal, Signal::Kill);
        let i: SendInputRequest =
            serde_json::from_str(r#"{"process":{"tag":"t"},"input":{"pty":"aGk="}}"#).expect("in");
        assert_eq!(i.input.bytes(), b"hi");
        let ev = EventResponse {
            event: ProcessEvent::Data(DataEvent::Stdout(b"hi".to_vec())),
        };
        assert_eq!(
            serde_json::to_string(&ev).expect("encode"),
            r#"{"event":{"data":{"stdout":"aGk="}}}"#
        );
        let end = EventResponse {
            event: ProcessEvent::End(EndEvent {
                exit_code: 1,
                exited: true,
                status: "exit status 1".into(),
                error: None,
            }),
        };
        assert_eq!(
            serde_json::to_string(&end).expect("encode"),
            r#"{"event":{"end":{"exitCode":1,"exited":true,"status":"exit status 1"}}}"#
        );
    }
}
