//! Any other OS: the portable parts only.

use tandem_proto::v1::OsFamily;

pub(crate) const OS_FAMILY: OsFamily = OsFamily::Other;
pub(crate) const HAS_LOAD_AVERAGE: bool = false;

pub(crate) fn process_count() -> Option<usize> {
    None
}

/// No cheaper source than sysinfo's per-disk usage, which the caller falls back to.
pub(crate) fn disk_io() -> Option<Vec<super::DiskIo>> {
    None
}

/// No known source here.
pub(crate) fn kernel() -> crate::platform::facts::kernel::Snapshot {
    crate::platform::facts::kernel::Snapshot::default()
}

/// No cheaper source than sysinfo, which the caller falls back to (no drop counts).
pub(crate) fn net_counters() -> Option<Vec<crate::platform::facts::network::NetCounters>> {
    None
}

/// Not measured here: `collect --bench` falls back to the process CPU time.
pub fn thread_cpu_ns() -> Option<u64> {
    None
}

/// Not measured here: the budget is then not enforced (no `agent.*` metrics).
pub fn self_usage() -> Option<crate::platform::facts::usage::SelfUsage> {
    None
}

/// No battery source known here.
pub(crate) fn batteries() -> Vec<crate::platform::facts::battery::Battery> {
    Vec::new()
}

/// Flushes a directory's entries to disk: NTFS journals renames itself, and a
/// directory cannot be opened as a file here, so there is nothing to do.
pub(crate) fn sync_dir(_dir: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}

/// Writes `contents` to `path` atomically (temp file, rename). No permission
/// restriction is applied on platforms Tandem does not know.
pub(crate) fn write_private_file(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

/// No package manager is known on this platform; the report says so.
pub fn check_patches(_timeout: std::time::Duration) -> crate::platform::facts::patches::Check {
    crate::platform::facts::patches::Check {
        source: "none",
        updates: Err(crate::platform::facts::patches::ReadError::NotImplemented(
            "patch status is not supported on this operating system",
        )),
        reboot: crate::platform::facts::patches::Reboot::default(),
        last_install_unix_ms: 0,
    }
}

/// Nothing to prepare: `kill_tree` ends the child only (no process groups here).
pub(crate) fn isolate(_cmd: &mut std::process::Command) {}

/// Nothing to hold the tree with here: `kill_tree` ends the child only.
pub(crate) fn contain(_child: &std::process::Child) {}

/// Nothing to release here.
pub(crate) fn release(_child: &std::process::Child) {}

/// Kills the child.
pub(crate) fn kill_tree(child: &mut std::process::Child) {
    let _ = child.kill();
}

/// No software source is known on this platform; the inventory says so.
pub(crate) fn inventory_facts(
    _timeout: std::time::Duration,
) -> crate::platform::facts::inventory::PlatformFacts {
    crate::platform::facts::inventory::PlatformFacts {
        os_build: String::new(),
        os_name: String::new(),
        os_version: String::new(),
        hardware: crate::platform::facts::inventory::Hardware::default(),
        software_source: "none",
        software: Err(crate::platform::tool::ReadError::NoSource {
            looked_for: "nothing: this operating system is not supported",
        }),
    }
}

/// Failed units are a systemd notion: not applicable here.
pub(crate) fn failed_units(
    _timeout: std::time::Duration,
) -> Option<Result<Vec<String>, crate::platform::facts::services::ServiceError>> {
    None
}

/// No service manager is known here: configured services are not reported.
pub(crate) fn service_states(
    _names: &[String],
    _timeout: std::time::Duration,
) -> Option<
    Result<
        Vec<crate::platform::facts::services::ServiceState>,
        crate::platform::facts::services::ServiceError,
    >,
> {
    None
}

/// No posture sources on this platform: every check unknown, saying so.
pub(crate) fn posture(
    _timeout: std::time::Duration,
) -> Vec<crate::platform::facts::posture::Check> {
    use crate::platform::facts::posture::*;
    [
        FIREWALL,
        DISK_ENCRYPTION,
        ANTIVIRUS,
        AUTO_UPDATES,
        LOCAL_ADMINS,
        SSH_ROOT_LOGIN,
        SSH_PASSWORD_AUTH,
        SCREEN_LOCK,
    ]
    .into_iter()
    .map(|c| Check::unknown(c, "posture is not read on this operating system"))
    .collect()
}

/// The shell for custom checks that ask for one.
pub(crate) const SHELL: (&str, &str) = ("/bin/sh", "-c");

/// Not read on this platform.
pub(crate) fn children_cpu_ms() -> Option<u64> {
    None
}

/// No native backup records on this platform.
pub(crate) fn native_backup(
    kind: &str,
    _timeout: std::time::Duration,
) -> Result<(i64, String), crate::platform::facts::backup::BackupReadError> {
    Err(crate::platform::facts::backup::BackupReadError::NotRead(
        kind.to_owned(),
    ))
}
