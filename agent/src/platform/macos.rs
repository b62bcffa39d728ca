//! macOS specifics.

use tandem_proto::v1::OsFamily;

pub const OS_FAMILY: OsFamily = OsFamily::Macos;
pub const HAS_LOAD_AVERAGE: bool = true;

/// Process count (not collected on macOS yet).
pub fn process_count() -> Option<usize> {
    None
}

/// No cheaper source than sysinfo's per-disk usage, which the caller falls back to.
pub fn disk_io() -> Option<Vec<crate::collect::disks::DiskIo>> {
    None
}

/// No cheaper source than sysinfo, which the caller falls back to (no drop counts).
pub fn net_counters() -> Option<Vec<crate::collect::network::NetCounters>> {
    None
}

/// Flushes a directory's entries (a rename) to disk.
pub fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Pending updates from `softwareupdate --list` (which asks Apple's servers, hence
/// the timeout). The reboot state is not read yet (always "not required").
pub fn check_patches(timeout: std::time::Duration) -> crate::patches::Check {
    use crate::patches::{PatchError, softwareupdate};
    let updates = crate::tool::run("softwareupdate", &["--list"], timeout)
        .and_then(|o| o.accept("softwareupdate", &[0]))
        .map_err(PatchError::from)
        .and_then(|o| softwareupdate::parse(&format!("{}\n{}", o.stdout, o.stderr)));
    crate::patches::Check {
        source: "softwareupdate",
        updates,
        reboot: crate::patches::Reboot::default(),
    }
}

/// Failed units are a systemd notion: not applicable here.
pub fn failed_units(
    _timeout: std::time::Duration,
) -> Option<Result<Vec<String>, crate::collect::services::ServiceError>> {
    None
}
