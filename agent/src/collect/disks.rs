//! Usage of every real filesystem (pseudo filesystems skipped; bytes from sysinfo,
//! inodes from the platform on unix), and I/O rates and busy time of every disk.
//!
//! I/O counters come from the platform where it has a cheap source (Linux:
//! `/proc/diskstats`, one read for all disks, parsed by `platform::parse_diskstats`), else
//! from sysinfo's per-disk usage (Windows, macOS: bytes only, no operation counts).
//! Rates are computed here between two samples (see [`super::rates`]).

use std::time::Instant;

use super::Reading;
use super::rates::Rates;

pub(crate) use crate::platform::DiskIo;
#[cfg(test)]
use crate::platform::{Inodes, parse_diskstats};

/// The filesystem part plus I/O rates; keeps the previous I/O counters.
pub(super) struct DiskSampler {
    disks: sysinfo::Disks,
    io: Rates,
}

impl DiskSampler {
    pub(super) fn new(disks: sysinfo::Disks) -> Self {
        DiskSampler {
            disks,
            io: Rates::new(),
        }
    }

    pub(super) fn sample(&mut self, r: &mut Reading) {
        let platform_io = crate::platform::disk_io();
        // sysinfo's own I/O refresh is needed only where the platform has no source.
        let kind = sysinfo::DiskRefreshKind::nothing()
            .with_storage()
            .with_io_usage_if(platform_io.is_none());
        self.disks.refresh_specifics(true, kind);
        sample_fs(&self.disks, r);
        let io = platform_io.unwrap_or_else(|| {
            self.disks
                .iter()
                .filter(|d| !is_pseudo_fs(&d.file_system().to_string_lossy()))
                .map(|d| {
                    let u = d.usage();
                    DiskIo {
                        name: d.mount_point().to_string_lossy().into_owned(),
                        read_bytes: u.total_read_bytes,
                        written_bytes: u.total_written_bytes,
                        ops: None,
                        busy_ms: None,
                    }
                })
                .collect()
        });
        // Fixed positions, so that a missing counter shifts nothing; `io` says
        // which are present. `Rates::update` answers in the order it is given.
        let counters = io
            .iter()
            .map(|d| {
                let (rd, wr) = d.ops.unwrap_or_default();
                let busy = d.busy_ms.unwrap_or_default();
                (
                    d.name.clone(),
                    vec![d.read_bytes, d.written_bytes, rd, wr, busy],
                )
            })
            .collect();
        let rates = self.io.update(Instant::now(), counters);
        for (d, (name, rates)) in io.iter().zip(rates) {
            let [read, write, read_ops, write_ops, busy_ms] = rates[..] else {
                continue;
            };
            let has_ops = d.ops.is_some();
            let values = [
                ("disk.read.bytes_per_sec", read),
                ("disk.write.bytes_per_sec", write),
                ("disk.read.ops_per_sec", read_ops.filter(|_| has_ops)),
                ("disk.write.ops_per_sec", write_ops.filter(|_| has_ops)),
                // io_ticks are ms per s of wall time: ÷ 10 gives percent. Timer
                // granularity can overshoot 100 slightly.
                (
                    "disk.busy.percent",
                    busy_ms
                        .filter(|_| d.busy_ms.is_some())
                        .map(|ms| (ms / 10.0).min(100.0)),
                ),
            ];
            for (metric, value) in values {
                if let Some(value) = value {
                    r.push(metric, name.clone(), value);
                }
            }
        }
    }
}

/// `DiskRefreshKind::with_io_usage` only when `on`.
trait IoUsageIf {
    fn with_io_usage_if(self, on: bool) -> Self;
}

impl IoUsageIf for sysinfo::DiskRefreshKind {
    fn with_io_usage_if(self, on: bool) -> Self {
        if on { self.with_io_usage() } else { self }
    }
}

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

fn sample_fs(disks: &sysinfo::Disks, r: &mut Reading) {
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
        r.push("fs.used.bytes", mount.clone(), used as f64);
        r.push(
            "fs.used.percent",
            mount.clone(),
            100.0 * used as f64 / total as f64,
        );
        if let Some(i) = crate::platform::fs_inodes(d.mount_point()) {
            r.push("fs.inodes.total", mount.clone(), i.total as f64);
            r.push("fs.inodes.free", mount.clone(), i.free as f64);
            let used = i.total - i.free;
            r.push(
                "fs.inodes.used.percent",
                mount,
                100.0 * used as f64 / i.total as f64,
            );
        }
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

    #[test]
    fn diskstats_captured_on_a_vm() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/proc/diskstats.debian12-vm.txt"),
        )
        .unwrap();
        let d = parse_diskstats(&text);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].name, "vda");
        assert_eq!(d[0].read_bytes, 69_011_298 * 512);
        assert_eq!(d[0].written_bytes, 557_817_048 * 512);
        assert_eq!(d[0].ops, Some((2_328_406, 7_304_561)));
        assert_eq!(d[0].busy_ms, Some(1_383_720));
    }

    #[test]
    fn inodes_without_a_table_are_not_sent() {
        assert_eq!(Inodes::new(0, 0), None);
        assert_eq!(Inodes::new(10, 11), None);
        assert_eq!(Inodes::new(10, 4), Some(Inodes { total: 10, free: 4 }));
    }

    /// statvfs on the root filesystem answers (every unix has one; btrfs would
    /// answer None, which is what the collector then sends: nothing).
    #[test]
    fn root_inodes_are_plausible_where_there_are_any() {
        if let Some(i) = crate::platform::fs_inodes(std::path::Path::new("/")) {
            assert!(i.free <= i.total && i.total > 0, "{i:?}");
        }
    }

    #[test]
    fn partitions_and_virtual_devices_are_left_out() {
        let text = "\
   8       0 sda 10 0 20 0 30 0 40 0 0 0 0
   8       1 sda1 1 0 2 0 3 0 4 0 0 0 0
 259       0 nvme0n1 5 0 6 0 7 0 8 0 0 0 0
 259       1 nvme0n1p1 5 0 6 0 7 0 8 0 0 0 0
 179       0 mmcblk0 1 0 1 0 1 0 1 0 0 0 0
 179       1 mmcblk0p1 1 0 1 0 1 0 1 0 0 0 0
 253       0 dm-0 1 0 1 0 1 0 1 0 0 0 0
   7       0 loop0 1 0 1 0 1 0 1 0 0 0 0
  11       0 sr0 1 0 1 0 1 0 1 0 0 0 0
garbage
";
        let names: Vec<String> = parse_diskstats(text).into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["sda", "nvme0n1", "mmcblk0", "dm-0"]);
    }
}
