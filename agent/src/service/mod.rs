//! The agent as an OS service: what it is ([`spec`]: pure, tested everywhere), and
//! `tandem-agent service …` behind it — the Windows Service Control Manager code
//! (`windows.rs`, whose dispatcher runs [`crate::run`]) or, elsewhere, a refusal
//! (`unsupported.rs`; systemd and launchd run the agent there).
//!
//! Outside `platform` because the service entry must call the agent's `run`, and the
//! platform facade is a leaf that uses nothing above it. `#[cfg]` only on the `mod`
//! lines, the same signatures behind them.

pub mod spec;

// `define_windows_service!` expands to the SCM entry point (FFI glue with unsafe code):
// allowed on this line only, as before the move out of `platform`.
#[cfg(windows)]
#[allow(unsafe_code)]
mod windows;
#[cfg(windows)]
pub use windows::*;

#[cfg(not(windows))]
mod unsupported;
#[cfg(not(windows))]
pub use unsupported::*;
