//! Usage of every real filesystem (pseudo filesystems skipped).

use super::Reading;

/// Filesystems that hold no user data: skipped.
pub(crate) fn is_pseudo_fs(fs_type: &str) -> bool {
    matches!(
        fs_type,
        "tmpfs"
            | "devtmpfs"
            | "devfs"
            | "proc"
            | "sysfs"
            | "cgroup"
            | "cgroup2"
            | "overlay"
            | "squashfs"
            | "autofs"
            | "debugfs"
            | "tracefs"
            | "securityfs"
            | "pstore"
            | "bpf"
            | "mqueue"
            | "hugetlbfs"
            | "configfs"
            | "fusectl"
            | "nsfs"
            | "ramfs"
            | "efivarfs"
            | "binfmt_misc"
            | "rpc_pipefs"
            | "nullfs"
            | "map"
            | "fuse.portal"
    )
}

pub(super) fn sample(disks: &mut sysinfo::Disks, r: &mut Reading) {
    disks.refresh(true);
    for d in disks.iter() {
        let fs = d.file_system().to_string_lossy();
        let total = d.total_space();
        if is_pseudo_fs(&fs) || total == 0 {
            continue;
        }
        let mount = d.mount_point().to_string_lossy().into_owned();
        let free = d.available_space();
        let used = total.saturating_sub(free);
        r.push("fs.total.bytes", mount.clone(), total as f64);
        r.push("fs.free.bytes", mount.clone(), free as f64);
        r.push("fs.used.percent", mount, 100.0 * used as f64 / total as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_filesystems_are_skipped_real_ones_kept() {
        for fs in ["tmpfs", "overlay", "proc", "squashfs"] {
            assert!(is_pseudo_fs(fs), "{fs}");
        }
        for fs in ["ext4", "xfs", "btrfs", "NTFS", "apfs", "zfs", "vfat"] {
            assert!(!is_pseudo_fs(fs), "{fs}");
        }
    }
}
