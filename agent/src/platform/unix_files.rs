//! Private files on unix: mode 0600 from creation on, so the key is never readable
//! by others, not even for a moment.

use std::io::Write;
use std::path::Path;

/// Writes `contents` to `path` atomically (temp file, fsync, rename), readable and
/// writable by the owner only.
pub(crate) fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    // The umask cannot widen 0600, but an inherited ACL or odd umask could narrow
    // it oddly: set it explicitly.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(contents)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}
