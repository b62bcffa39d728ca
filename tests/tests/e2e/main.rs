//! End-to-end tests: the real `tandem-collector` and `tandem-agent` binaries on
//! loopback, certificates from the collector's PKI, real SQLite files.
//!
//! One test binary (as ripgrep does): failures print the collector's log.

mod agent;
mod alerts;
mod crash;
mod delivery;
mod enroll;
mod ingest;
mod patches;
mod refusals;

/// Installs the ring crypto provider once per test process (see shared/TOOLCHAIN.md).
pub fn crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
