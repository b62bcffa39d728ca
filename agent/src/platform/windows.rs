//! Windows specifics.
//!
//! The only module of the agent allowed unsafe code (`platform/mod.rs` allows it on
//! its `mod` line): the Service Control Manager, process times and memory, and the
//! power status come from the Win32 API through `windows-sys`. Each call is
//! wrapped here in a safe function; every `unsafe` block says why it is sound.
//! Not yet exercised on a real Windows machine: CI type-checks this file.

use tandem_proto::v1::OsFamily;

pub const OS_FAMILY: OsFamily = OsFamily::Windows;
/// Windows has no load average.
pub const HAS_LOAD_AVERAGE: bool = false;

/// Process count (not collected on Windows yet; the process module comes with the
/// full health metrics).
pub fn process_count() -> Option<usize> {
    None
}

/// No cheaper source than sysinfo's per-disk usage, which the caller falls back to.
pub fn disk_io() -> Option<Vec<crate::collect::disks::DiskIo>> {
    None
}

/// No cheaper source than sysinfo, which the caller falls back to (no drop counts).
pub fn net_counters() -> Option<Vec<crate::collect::network::NetCounters>> {
    None
}

/// The agent's own CPU time (`GetProcessTimes`, kernel + user) and working set
/// (`K32GetProcessMemoryInfo`).
pub fn self_usage() -> Option<crate::budget::SelfUsage> {
    use windows_sys::Win32::Foundation::FILETIME;
    use windows_sys::Win32::System::ProcessStatus::{
        K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS,
    };
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, GetProcessTimes};
    let (mut created, mut exited, mut kernel, mut user) = (
        FILETIME::default(),
        FILETIME::default(),
        FILETIME::default(),
        FILETIME::default(),
    );
    // SAFETY: GetCurrentProcess returns a pseudo-handle that needs no closing; the
    // four pointers are to live, writable FILETIMEs.
    let ok = unsafe {
        GetProcessTimes(
            GetCurrentProcess(),
            &mut created,
            &mut exited,
            &mut kernel,
            &mut user,
        )
    };
    if ok == 0 {
        return None;
    }
    // FILETIME counts 100 ns units.
    let ms =
        |f: FILETIME| ((u64::from(f.dwHighDateTime) << 32) | u64::from(f.dwLowDateTime)) / 10_000;
    let mut mem = PROCESS_MEMORY_COUNTERS {
        cb: std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32,
        ..PROCESS_MEMORY_COUNTERS::default()
    };
    // SAFETY: `mem` is a live PROCESS_MEMORY_COUNTERS whose size is passed as `cb`.
    let ok = unsafe { K32GetProcessMemoryInfo(GetCurrentProcess(), &mut mem, mem.cb) };
    if ok == 0 {
        return None;
    }
    Some(crate::budget::SelfUsage {
        cpu_ms: ms(kernel) + ms(user),
        rss_bytes: mem.WorkingSetSize as u64,
    })
}

/// The system battery from `GetSystemPowerStatus` (none on a desktop or server).
pub fn batteries() -> Vec<crate::collect::battery::Battery> {
    use windows_sys::Win32::System::Power::{GetSystemPowerStatus, SYSTEM_POWER_STATUS};
    let mut st = SYSTEM_POWER_STATUS::default();
    // SAFETY: `st` is a live, writable SYSTEM_POWER_STATUS.
    if unsafe { GetSystemPowerStatus(&mut st) } == 0 {
        return Vec::new();
    }
    crate::collect::battery::from_power_status(st.BatteryFlag, st.BatteryLifePercent)
        .into_iter()
        .collect()
}

/// A Service Control Manager handle, closed when dropped.
struct ScHandle(windows_sys::Win32::System::Services::SC_HANDLE);

impl Drop for ScHandle {
    fn drop(&mut self) {
        // SAFETY: the handle came from OpenSCManagerW/OpenServiceW, is not null, and
        // is closed exactly once, here.
        unsafe {
            windows_sys::Win32::System::Services::CloseServiceHandle(self.0);
        }
    }
}

/// States of the configured services (service key names such as `Spooler` or
/// `W3SVC`, not display names) from the Service Control Manager: running when
/// `QueryServiceStatusEx` says `SERVICE_RUNNING`; a name the SCM does not know is
/// missing. Fast local RPCs; the deadline is not needed. Blocking.
pub fn service_states(
    names: &[String],
    _timeout: std::time::Duration,
) -> Option<
    Result<Vec<crate::collect::services::ServiceState>, crate::collect::services::ServiceError>,
> {
    Some(scm_states(names))
}

fn scm_states(
    names: &[String],
) -> Result<Vec<crate::collect::services::ServiceState>, crate::collect::services::ServiceError> {
    use crate::collect::services::{ServiceError, ServiceState};
    use windows_sys::Win32::Foundation::{
        ERROR_INVALID_NAME, ERROR_SERVICE_DOES_NOT_EXIST, GetLastError,
    };
    use windows_sys::Win32::System::Services::{
        OpenSCManagerW, OpenServiceW, QueryServiceStatusEx, SC_MANAGER_CONNECT,
        SC_STATUS_PROCESS_INFO, SERVICE_QUERY_STATUS, SERVICE_RUNNING, SERVICE_STATUS_PROCESS,
    };
    let last_error = || {
        // SAFETY: reads the calling thread's last-error value; no pointers involved.
        unsafe { GetLastError() }
    };
    // SAFETY: null machine and database names select the local, active database.
    let scm = unsafe { OpenSCManagerW(std::ptr::null(), std::ptr::null(), SC_MANAGER_CONNECT) };
    if scm.is_null() {
        return Err(ServiceError::Scm(format!(
            "OpenSCManagerW: {}",
            std::io::Error::from_raw_os_error(last_error() as i32)
        )));
    }
    let scm = ScHandle(scm);
    names
        .iter()
        .map(|name| {
            let wide: Vec<u16> = name.encode_utf16().chain(std::iter::once(0)).collect();
            // SAFETY: `scm.0` is an open SCM handle; `wide` is NUL-terminated and
            // outlives the call.
            let h = unsafe { OpenServiceW(scm.0, wide.as_ptr(), SERVICE_QUERY_STATUS) };
            if h.is_null() {
                let err = last_error();
                if err == ERROR_SERVICE_DOES_NOT_EXIST || err == ERROR_INVALID_NAME {
                    return Ok(ServiceState::Missing);
                }
                return Err(ServiceError::Scm(format!(
                    "OpenServiceW({name}): {}",
                    std::io::Error::from_raw_os_error(err as i32)
                )));
            }
            let h = ScHandle(h);
            let mut status = SERVICE_STATUS_PROCESS::default();
            let mut needed = 0u32;
            // SAFETY: `h.0` is an open service handle with SERVICE_QUERY_STATUS; the
            // buffer is a live SERVICE_STATUS_PROCESS of exactly the size passed.
            let ok = unsafe {
                QueryServiceStatusEx(
                    h.0,
                    SC_STATUS_PROCESS_INFO,
                    (&mut status as *mut SERVICE_STATUS_PROCESS).cast::<u8>(),
                    std::mem::size_of::<SERVICE_STATUS_PROCESS>() as u32,
                    &mut needed,
                )
            };
            if ok == 0 {
                return Err(ServiceError::Scm(format!(
                    "QueryServiceStatusEx({name}): {}",
                    std::io::Error::from_raw_os_error(last_error() as i32)
                )));
            }
            Ok(if status.dwCurrentState == SERVICE_RUNNING {
                ServiceState::Running
            } else {
                ServiceState::NotRunning
            })
        })
        .collect()
}

/// Flushes a directory's entries to disk: NTFS journals renames itself, and a
/// directory cannot be opened as a file here, so there is nothing to do.
pub fn sync_dir(_dir: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}

/// Writes `contents` to `path` atomically, readable only by SYSTEM, Administrators
/// and the account running the agent.
///
/// The temp file is created empty, its ACL is replaced (inheritance removed) with
/// `icacls` before any secret is written, then it is filled and renamed over `path`
/// (a rename on one volume keeps the ACL). `icacls` ships with every supported
/// Windows; if it fails, nothing is written (fail closed).
///
/// Not yet exercised on a real Windows machine: CI only type-checks this file.
pub fn write_private_file(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    let mut grants = vec![
        "*S-1-5-18:F".to_owned(),     // SYSTEM
        "*S-1-5-32-544:F".to_owned(), // Administrators
    ];
    if let Ok(user) = std::env::var("USERNAME")
        && !user.is_empty()
    {
        grants.push(format!("{user}:F"));
    }
    let mut cmd = std::process::Command::new("icacls");
    cmd.arg(&tmp)
        .arg("/inheritance:r")
        .arg("/grant:r")
        .args(&grants);
    let out = cmd.output()?;
    if !out.status.success() {
        drop(f);
        let _ = std::fs::remove_file(&tmp);
        return Err(std::io::Error::other(format!(
            "icacls could not restrict {}: {}",
            tmp.display(),
            String::from_utf8_lossy(&out.stdout).trim()
        )));
    }
    f.write_all(contents)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Pending updates. **Stub**: the Windows Update Agent search
/// (`IUpdateSearcher.Search("IsInstalled=0 and IsHidden=0")` over COM) and the
/// pending-reboot registry keys are not implemented yet; the report says so in its
/// error instead of claiming nothing is pending. `patches::windows_update::parse`
/// is the parser the search's serialized results will go through.
pub fn check_patches(_timeout: std::time::Duration) -> crate::patches::Check {
    crate::patches::Check {
        source: "windows_update",
        updates: Err(crate::patches::PatchError::NotImplemented(
            "the windows update search (IUpdateSearcher) is not implemented in this agent yet",
        )),
        reboot: crate::patches::Reboot::default(),
    }
}

/// Nothing to prepare: `kill_tree` ends the child only (no process groups here).
pub fn isolate(_cmd: &mut std::process::Command) {}

/// Kills the child. Its own children are not reached (a job object would; not
/// done yet).
pub fn kill_tree(child: &mut std::process::Child) {
    let _ = child.kill();
}

/// Failed units are a systemd notion: not applicable here.
pub fn failed_units(
    _timeout: std::time::Duration,
) -> Option<Result<Vec<String>, crate::collect::services::ServiceError>> {
    None
}
