//! Host-side client of the lohar guest agent
//!
//! Filled in by later work; see `../shared/DESIGN.md` (layers).
