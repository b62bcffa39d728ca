//! The alert engine (machine A of shared/ALERTING.md): rule files, the per-instance
//! condition state machine, maintenance windows, evaluation on ingest plus a coarse
//! timer, and the persistence of every instance and transition in SQLite.
//!
//! Layers, from pure to wired:
//! - [`model`]: the shared vocabulary (Severity, Scope, Params, Verdict, Window), a leaf;
//! - [`rules`]: rule files → checked [`rules::RuleSet`] (errors with file:line:col);
//! - [`machine`]: one instance's state machine, pure, clock injected;
//! - [`maintenance`]: windows in named IANA zones, pure; [`rrule`]: their
//!   recurrence rules (an RFC 5545 subset);
//! - [`engine`]: every instance of every rule, fed committed data and ticks, pure
//!   apart from the time passed in;
//! - [`persist`]: the SQLite side (instances, history, ack);
//! - [`silence`]: silences made from the CLI, stored in SQLite;
//! - [`service`]: the engine thread fed from the store writer's commit hook.

pub(crate) mod engine;
pub mod latency;
pub(crate) mod machine;
pub(crate) mod maintenance;
pub(crate) mod model;
pub(crate) mod persist;
pub(crate) mod published;
pub(crate) mod rrule;
pub mod rules;
pub(crate) mod ruletest;
pub mod service;
pub(crate) mod silence;

/// The default rule pack (deploy/rules), built in so `demo` runs with it anywhere.
#[cfg(feature = "demo")]
pub(crate) const DEFAULT_PACK: &[(&str, &str)] = &[
    (
        "system.toml",
        include_str!("../../../deploy/rules/system.toml"),
    ),
    (
        "disks.toml",
        include_str!("../../../deploy/rules/disks.toml"),
    ),
    (
        "fleet.toml",
        include_str!("../../../deploy/rules/fleet.toml"),
    ),
    (
        "posture.toml",
        include_str!("../../../deploy/rules/posture.toml"),
    ),
];

/// Writes the default pack into `dir` (files that exist are left as they are).
#[cfg(feature = "demo")]
pub(crate) fn write_default_pack(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in DEFAULT_PACK {
        let path = dir.join(name);
        if !path.exists() {
            std::fs::write(path, text)?;
        }
    }
    Ok(())
}
