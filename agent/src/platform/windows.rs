//! Windows specifics.

use tandem_proto::v1::OsFamily;

pub const OS_FAMILY: OsFamily = OsFamily::Windows;
/// Windows has no load average.
pub const HAS_LOAD_AVERAGE: bool = false;

/// Process count (not collected on Windows yet; the process module comes with the
/// full health metrics).
pub fn process_count() -> Option<usize> {
    None
}

/// Flushes a directory's entries to disk: NTFS journals renames itself, and a
/// directory cannot be opened as a file here, so there is nothing to do.
pub fn sync_dir(_dir: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}
