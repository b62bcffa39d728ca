//! macOS specifics.

use tandem_proto::v1::OsFamily;

pub(crate) const OS_FAMILY: OsFamily = OsFamily::Macos;
pub(crate) const HAS_LOAD_AVERAGE: bool = true;

/// Process count (not collected on macOS yet).
pub(crate) fn process_count() -> Option<usize> {
    None
}

/// No cheaper source than sysinfo's per-disk usage, which the caller falls back to.
pub(crate) fn disk_io() -> Option<Vec<super::DiskIo>> {
    None
}

/// Not read on macOS yet (no /proc; host_statistics would need unsafe FFI).
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

/// The agent's own CPU time and resident memory, through sysinfo (which asks the
/// kernel with `proc_pidinfo`): no unsafe code and no process spawned here.
pub fn self_usage() -> Option<crate::platform::facts::usage::SelfUsage> {
    use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};
    let pid = sysinfo::get_current_pid().ok()?;
    let mut sys = System::new().ok()?;
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        false,
        ProcessRefreshKind::nothing().with_cpu().with_memory(),
    );
    let p = sys.process(pid)?;
    Some(crate::platform::facts::usage::SelfUsage {
        cpu_ms: p.accumulated_cpu_time(),
        rss_bytes: p.memory(),
    })
}

/// Batteries from `pmset -g batt` (2 s deadline: it answers in milliseconds, and
/// this runs in the sample's path once a minute).
pub(crate) fn batteries() -> Vec<crate::platform::facts::battery::Battery> {
    crate::platform::tool::run("pmset", &["-g", "batt"], std::time::Duration::from_secs(2))
        .and_then(|o| o.accept("pmset", &[0]))
        .map(|o| crate::platform::facts::battery::parse_pmset_batt(&o.stdout))
        .unwrap_or_default()
}

/// Flushes a directory's entries (a rename) to disk.
pub(crate) fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Pending updates from `softwareupdate --list` (which asks Apple's servers, hence
/// the timeout). The reboot state is not read yet (always "not required").
pub fn check_patches(timeout: std::time::Duration) -> crate::platform::facts::patches::Check {
    use crate::platform::facts::patches::softwareupdate;
    use crate::platform::tool::ReadError;
    let updates = crate::platform::tool::run("softwareupdate", &["--list"], timeout)
        .and_then(|o| o.accept("softwareupdate", &[0]))
        .map_err(ReadError::from)
        .and_then(|o| softwareupdate::parse(&format!("{}\n{}", o.stdout, o.stderr)));
    // Written by softwareupdate after each successful install; absent on a Mac that
    // never installed one (`defaults` then exits 1: unknown, not an error).
    let last_install_unix_ms = match crate::platform::tool::run(
        "defaults",
        &[
            "read",
            "/Library/Preferences/com.apple.SoftwareUpdate",
            "LastSuccessfulDate",
        ],
        timeout,
    ) {
        Ok(o) if o.code == Some(0) => {
            match crate::platform::facts::patches::history::macos_last_successful(&o.stdout) {
                Ok(t) => t.unwrap_or(0),
                Err(error) => {
                    tracing::warn!(%error, "cannot tell when updates were last installed");
                    0
                }
            }
        }
        _ => 0,
    };
    crate::platform::facts::patches::Check {
        source: "softwareupdate",
        updates,
        reboot: crate::platform::facts::patches::Reboot::default(),
        last_install_unix_ms,
    }
}

/// Inventory facts from `sw_vers` and `system_profiler` (hardware, applications),
/// each bounded by `timeout`. Blocking. Not exercised on a real Mac by CI: only the
/// parsers are tested, on fixtures written from Apple's documented format.
pub(crate) fn inventory_facts(
    timeout: std::time::Duration,
) -> crate::platform::facts::inventory::PlatformFacts {
    use crate::platform::facts::inventory as inv;
    use crate::platform::tool::ReadError;
    let run = |program: &str, args: &[&str]| -> Result<String, ReadError> {
        Ok(crate::platform::tool::run(program, args, timeout)?
            .accept(program, &[0])?
            .stdout)
    };
    let os_build = run("sw_vers", &["-buildVersion"])
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let (model, serial) = run("system_profiler", &["SPHardwareDataType", "-json"])
        .and_then(|o| inv::parse_system_profiler_hardware(&o))
        .unwrap_or_default();
    let software = run("system_profiler", &["SPApplicationsDataType", "-json"])
        .and_then(|o| inv::parse_system_profiler_apps(&o));
    inv::PlatformFacts {
        os_build,
        os_name: String::new(),
        os_version: String::new(),
        hardware: inv::Hardware {
            vendor: "Apple".to_owned(),
            model,
            serial,
        },
        software_source: "system_profiler",
        software,
    }
}

/// Failed units are a systemd notion: not applicable here.
pub(crate) fn failed_units(
    _timeout: std::time::Duration,
) -> Option<Result<Vec<String>, crate::platform::facts::services::ServiceError>> {
    None
}

/// States of the configured launchd jobs (labels), from one `launchctl list` (run as
/// root, the agent sees the system domain). Blocking.
pub(crate) fn service_states(
    names: &[String],
    timeout: std::time::Duration,
) -> Option<
    Result<
        Vec<crate::platform::facts::services::ServiceState>,
        crate::platform::facts::services::ServiceError,
    >,
> {
    Some(
        crate::platform::tool::run("launchctl", &["list"], timeout)
            .and_then(|o| o.accept("launchctl", &[0]))
            .map_err(Into::into)
            .and_then(|o| crate::platform::facts::services::parse_launchctl_list(&o.stdout, names)),
    )
}
