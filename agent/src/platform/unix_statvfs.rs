//! Inode counts of a mounted filesystem on unix, from `statvfs(2)` through rustix
//! (no unsafe code here). sysinfo gives the byte counts but not the inodes.

/// Total and free inodes of the filesystem mounted at `mount`; `None` when it cannot
/// be asked (unmounted meanwhile, no permission) or has no fixed inode table (btrfs
/// and some network filesystems report 0 total: not sent rather than sent as 0).
pub(crate) fn fs_inodes(mount: &std::path::Path) -> Option<super::Inodes> {
    // rustix widens the fields to u64 on every unix (macOS's are u32).
    let st = rustix::fs::statvfs(mount).ok()?;
    super::Inodes::new(st.f_files, st.f_ffree)
}
