//! What a patch source reports: pending updates, whether a reboot waits, when updates
//! were last installed; and the pure parsers (`apt`, `dnf`, `zypper`, `pacman`,
//! `softwareupdate`, `windows_update`, `history`) from what each tool printed to these
//! values, tested on fixtures under `agent/tests/fixtures/patches/`.
//!
//! The platform's `check_patches` fills a [`Check`]; the agent's `patches` ages it and
//! turns it into the wire's `PatchReport`.

pub mod apt;
pub mod dnf;
pub mod history;
pub mod pacman;
pub mod softwareupdate;
pub mod windows_update;
pub mod zypper;

/// Whether an update fixes a security problem, as far as its source says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Security,
    Other,
    /// The source does not classify (pacman, `dnf check-update` alone).
    Unknown,
}

/// One pending update as a source reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pending {
    pub(crate) name: String,
    /// Empty where the source does not say (dnf check-update, Windows Update).
    pub(crate) current_version: String,
    pub(crate) new_version: String,
    pub(crate) class: Class,
    /// KB number or advisory id, empty when unknown.
    pub(crate) advisory_id: String,
}

/// Why a source could not be read (shared with the inventory).
pub use crate::platform::tool::ReadError;

/// What one patch check found.
#[derive(Debug)]
pub struct Check {
    /// Which source answered or was tried ("apt", "dnf", "windows_update", ...).
    pub(crate) source: &'static str,
    pub(crate) updates: Result<Vec<Pending>, ReadError>,
    pub(crate) reboot: Reboot,
    /// The newest successful update installation, ms since the epoch; 0 where the
    /// source does not say (only Windows Update's history is read today).
    pub(crate) last_install_unix_ms: i64,
}

/// Whether the OS waits for a reboot, and since when if it says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reboot {
    pub(crate) required: bool,
    /// ms since the epoch; 0 when unknown.
    pub(crate) since_unix_ms: i64,
}
