//! What the platform reports about disks, as the platform's own value types (issue
//! 11: `collect::disks` uses these and the facade no longer reaches back into it):
//! I/O totals per device, inode counts, and the pure parser of Linux's
//! `/proc/diskstats` (compiled everywhere so its test runs on every host).

/// Running I/O totals of one block device.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskIo {
    pub(crate) name: String,
    pub(crate) read_bytes: u64,
    pub(crate) written_bytes: u64,
    /// Completed reads and writes; `None` where the source does not count them.
    pub(crate) ops: Option<(u64, u64)>,
    /// Milliseconds the device had I/O in flight (`io_ticks`); `None` where the
    /// source does not count it.
    pub(crate) busy_ms: Option<u64>,
}

/// Inode counts of one filesystem.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inodes {
    pub(crate) total: u64,
    pub(crate) free: u64,
}

impl Inodes {
    /// `None` for a filesystem without a fixed inode table (0 total: btrfs, many
    /// network filesystems) or with more free than total (a confused driver).
    pub fn new(total: u64, free: u64) -> Option<Self> {
        (total > 0 && free <= total).then_some(Inodes { total, free })
    }
}

/// Parses `/proc/diskstats` (Documentation/admin-guide/iostats.rst): `major minor
/// name reads merged sectors_read ms writes merged sectors_written ms in_flight
/// io_ticks …`, sectors of 512 bytes whatever the device's own sector size. Whole disks only: partitions
/// (`sda1`, `nvme0n1p2`, `mmcblk0p1` next to their disk) would count the same bytes
/// twice, and loop, ram, zram and floppy/optical devices are not disks an operator
/// watches. Lines that do not parse are skipped.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub fn parse_diskstats(text: &str) -> Vec<DiskIo> {
    let mut all = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let num = |i: usize| f[i].parse::<u64>().ok();
        let (Some(reads), Some(sr), Some(writes), Some(sw)) = (num(3), num(5), num(7), num(9))
        else {
            continue;
        };
        all.push(DiskIo {
            name: f[2].to_owned(),
            read_bytes: sr.saturating_mul(512),
            written_bytes: sw.saturating_mul(512),
            ops: Some((reads, writes)),
            busy_ms: f.get(12).and_then(|v| v.parse().ok()),
        });
    }
    let names: Vec<String> = all.iter().map(|d| d.name.clone()).collect();
    all.retain(|d| {
        let n = d.name.as_str();
        let virtual_dev = ["loop", "ram", "zram", "fd", "sr"]
            .iter()
            .any(|p| n.starts_with(p) && n[p.len()..].bytes().all(|b| b.is_ascii_digit()));
        !virtual_dev && !is_partition(n, &names)
    });
    all
}

/// `name` is a partition of another listed device: that device's name followed by
/// digits, or by `p` and digits (`nvme0n1p1`, `mmcblk0p1`).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn is_partition(name: &str, names: &[String]) -> bool {
    names.iter().any(|disk| {
        disk != name
            && name.strip_prefix(disk.as_str()).is_some_and(|rest| {
                let digits = rest.strip_prefix('p').unwrap_or(rest);
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
            })
    })
}
