//! HTTP/WebSocket API, auth, quotas, thermal manager, proxy, recovery
//!
//! Filled in by later work; see `../shared/DESIGN.md` (layers).
