//! `tandem-collector`: authenticates agents by their certificates, stores what they
//! send in SQLite, and acknowledges only what is durably committed.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod cli;
pub mod config;
pub mod console; // issue 15
pub(crate) mod counters; // issue 15 (api): in-process figures for /metrics
pub(crate) mod stats; // the writer's, engine's and stream figures for /metrics
// The demo runs an agent in-process: only it links the agent crate (issue 11).
#[cfg(feature = "demo")]
pub mod demo;
pub(crate) mod fdlimit;
pub(crate) mod grpc;
pub mod http;
mod lograte;
pub mod notify;
pub mod pki;
pub(crate) mod private_fs;
pub(crate) mod reload;
pub(crate) mod revocation;
pub(crate) mod server;
pub mod store;
pub(crate) mod tags; // issue 11: the tag syntax, a leaf for store and alerts

pub use server::Collector;
