//! End-to-end tests: the real `tandem-collector` and `tandem-agent` binaries on
//! loopback, certificates from the collector's PKI, real SQLite files.
//!
//! One test binary (as ripgrep does): failures print the collector's log.

mod agent;
mod alerts;
mod boot;
// issue 15: the console in headless Chromium (process groups: unix only).
#[cfg(unix)]
mod console;
mod crash;
mod delivery;
mod enroll;
mod hardening;
mod ingest;
mod loss;
// issue 15 (api): the HTTP listener: HTTPS, caps, feed login, /metrics
mod listener;
mod msi;
mod ops;
// dpkg, rpm and unix file modes: Linux hosts only.
mod notify;
#[cfg(unix)]
mod packages;
mod patches;
mod posture;
mod refusals;
// store brief (issue 17)
mod storage;

/// Tests that install packages on this host (`dpkg -i`) and tests that expect its
/// package list to stay the same take turns: an install in between changes the
/// inventory an agent sends (seen in CI: "the unchanged inventory" was not).
pub static HOST_PACKAGES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Installs the ring crypto provider once per test process (see shared/TOOLCHAIN.md).
pub fn crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
