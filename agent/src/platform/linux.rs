//! Linux specifics.

use tandem_proto::v1::OsFamily;

pub const OS_FAMILY: OsFamily = OsFamily::Linux;
pub const HAS_LOAD_AVERAGE: bool = true;

/// Number of processes: the numeric entries of /proc (cheaper than a sysinfo
/// process refresh, which reads every process's status).
pub fn process_count() -> Option<usize> {
    let dir = std::fs::read_dir("/proc").ok()?;
    Some(
        dir.filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            })
            .count(),
    )
}

/// Flushes a directory's entries (a rename) to disk.
pub fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
