//! The daemon as a library: everything `bhatti serve` runs, and the
//! operator commands that work on the data directory directly.
//!
//! - [`app`]: the axum application (layers, auth, the router built from
//!   [`routes::table`], one module per resource);
//! - [`service`]: the service layer every face calls (sandboxes, create,
//!   volumes, validation), with its own typed errors;
//! - [`thermal`]: the manager that cools idle sandboxes;
//! - [`mirror`]: the store's copy of the engine's sandbox state;
//! - [`events`]: live sandbox events (`GET /events`); [`metrics`]:
//!   Prometheus metrics (`GET /metrics`) and resource readings;
//! - [`hostports`]: host TCP ports forwarded to listening guest ports
//!   (v1's `host_port`), and their scanner;
//! - [`recovery`]: reconciling the store with the engine on start;
//! - [`daemon`]: start-up checks, serving, graceful shutdown;
//! - [`listen`]: the accept loop and connection hygiene (header timeout,
//!   cap on connections without a request);
//! - [`openapi`]: the API document generated from the route table;
//! - [`ui`]: the web UI's embedded files, at `/ui/`;
//! - foundations: [`config`], [`keys`], [`users`], [`secrets`],
//!   [`ratelimit`], [`activity`], [`error`] (the one status mapping).

pub mod activity;
pub mod app;
pub mod config;
pub mod daemon;
pub mod datadir;
pub mod e2b;
pub mod error;
pub mod events;
pub mod extract;
pub mod history;
pub mod hostports;
pub mod keys;
pub mod listen;
pub mod metrics;
pub mod mirror;
pub mod model;
pub mod openapi;
pub mod ratelimit;
pub mod recovery;
pub mod routes;
pub mod secrets;
pub mod service;
pub mod state;
pub mod thermal;
pub mod ui;
pub mod users;
