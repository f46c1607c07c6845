//! The wire protocol between the host (daemon, agent client) and `lohar`,
//! the agent inside every sandbox. `../shared/PROTOCOL.md` is the contract;
//! this crate is its only implementation in the project.
//!
//! Layout:
//! - [`frame`]: frame types, limits, header rules, [`frame::encode`] and
//!   [`frame::try_parse`] — the single implementation of the byte rules.
//! - [`sync_io`]: blocking codec over `std::io::{Read, Write}`.
//! - [`async_io`] (feature `tokio`): async codec over tokio's I/O traits.
//! - [`frame_reader`] (feature `tokio`): a cancel-safe async frame reader,
//!   for tasks that race incoming frames against other work.
//! - [`messages`]: the JSON payloads with their exact field names, and the
//!   binary RESIZE/EXIT payload helpers.
//! - [`config`]: `config.json` on the sandbox's config drive.
//! - [`identify`]: the line that re-identifies a guest restored from
//!   another sandbox's snapshot (sent over its serial console).
//! - [`error_code`]: machine-readable error codes and the ERROR_CODE frame
//!   that carries them (protocol version 2; `docs/protocol.md`).
//! - [`ext`]: the messages of protocol version 4 (capabilities, mkdir,
//!   move, remove, extended stat and listing, signals, watches).
//! - [`kept`]: the messages of protocol version 5 (kept piped execs:
//!   list, attach, replay).
//! - [`text`]: quoting untrusted input in error messages (a short prefix,
//!   never the whole input).
//!
//! Versions: v1 is the frozen table of `../shared/PROTOCOL.md`, which v1
//! peers speak. [`PROTOCOL_VERSION`] 2, 3 and 4 add only frame types a v1
//! peer skips as unknown and optional JSON fields it ignores, so either
//! side interoperates with a v1 peer.
//!
//! Both codecs only move bytes; every rule (maximum length, zero length,
//! header layout) lives in [`frame`], so they cannot disagree. A bad length
//! field fails as soon as its four bytes arrive.

#[cfg(feature = "tokio")]
pub mod async_io;
pub mod config;
pub mod error_code;
pub mod ext;
pub mod frame;
#[cfg(feature = "tokio")]
pub mod frame_reader;
pub mod identify;
pub mod kept;
pub mod messages;
pub mod sync_io;
pub mod text;
pub mod token;

pub use error_code::ErrorCode;
pub use frame::{Frame, FrameError, FrameType, HEADER_LEN, MAX_FRAME_LEN, MAX_PAYLOAD_LEN};

/// The protocol version this crate speaks: 1 is PROTOCOL.md's frozen table,
/// 2 adds the ERROR_CODE frame, 3 the optional `user` fields of EXEC_REQ,
/// FILE_WRITE_REQ and `config.json`, 4 the frames of [`ext`] (CAPS, MKDIR,
/// MOVE, REMOVE, STAT2, LS2, SIGNAL, WATCH), 5 kept piped execs
/// ([`kept`]) and the empty STDIN frame as end of input, 6 reusable
/// control connections (the REUSE frame), 7 EXIT before the exec's sync
/// (`defer_sync`) and the SYNC_REQ frame (`docs/protocol.md`).
pub const PROTOCOL_VERSION: u32 = 7;

/// TCP/vsock port of the agent's control listener.
pub const CONTROL_PORT: u16 = 1024;
/// TCP/vsock port of the agent's forward (tunnel) listener.
pub const FORWARD_PORT: u16 = 1025;
