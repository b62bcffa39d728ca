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

/// Writes `contents` to `path` atomically (temp file, rename).
///
/// **Gap (named plainly):** on Windows this does not yet restrict the file's ACL to
/// SYSTEM and Administrators; the key file inherits the ACL of its folder. Install
/// the agent's config folder under a directory only SYSTEM/Administrators can read
/// (as the MSI will) until this sets an explicit DACL.
pub fn write_private_file(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}
