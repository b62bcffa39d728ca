//! `tandem-collector`: authenticates agents by their certificates, stores what they
//! send in SQLite, and acknowledges only what is durably committed.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod cli;
pub mod config;
pub mod demo;
pub mod fswatch;
pub mod grpc;
pub mod pki;
pub mod reload;
pub mod revocation;
pub mod server;
pub mod store;

pub use config::Config;
pub use server::Collector;
