//! macOS specifics.

use tandem_proto::v1::OsFamily;

pub const OS_FAMILY: OsFamily = OsFamily::Macos;
pub const HAS_LOAD_AVERAGE: bool = true;

/// Process count (not collected on macOS yet).
pub fn process_count() -> Option<usize> {
    None
}

/// Flushes a directory's entries (a rename) to disk.
pub fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
