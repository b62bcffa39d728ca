//! Windows specifics.
//!
//! The only module of the agent allowed unsafe code (`platform/mod.rs` allows it on
//! its `mod` line): the Service Control Manager, process times and memory, and the
//! power status come from the Win32 API through `windows-sys`. Each call is
//! wrapped here in a safe function; every `unsafe` block says why it is sound.
//! Not yet exercised on a real Windows machine: CI type-checks this file.

use tandem_proto::v1::OsFamily;

pub(crate) const OS_FAMILY: OsFamily = OsFamily::Windows;
/// Windows has no load average.
pub(crate) const HAS_LOAD_AVERAGE: bool = false;

/// Process count, from `K32GetPerformanceInfo`.
pub(crate) fn process_count() -> Option<usize> {
    performance_info().map(|p| p.ProcessCount as usize)
}

/// System-wide counts and commit charge: one cheap call, no performance counters.
fn performance_info() -> Option<windows_sys::Win32::System::ProcessStatus::PERFORMANCE_INFORMATION>
{
    use windows_sys::Win32::System::ProcessStatus::{
        K32GetPerformanceInfo, PERFORMANCE_INFORMATION,
    };
    let mut p = PERFORMANCE_INFORMATION {
        cb: std::mem::size_of::<PERFORMANCE_INFORMATION>() as u32,
        ..PERFORMANCE_INFORMATION::default()
    };
    // SAFETY: `p` is a live, writable PERFORMANCE_INFORMATION whose size is `cb`.
    if unsafe { K32GetPerformanceInfo(&mut p, p.cb) } == 0 {
        return None;
    }
    Some(p)
}

/// No cheaper source than sysinfo's per-disk usage, which the caller falls back to.
pub(crate) fn disk_io() -> Option<Vec<super::DiskIo>> {
    None
}

/// What `K32GetPerformanceInfo` gives in one call: the commit charge and its limit
/// (Windows enforces it: at the limit allocations fail), the system cache and the
/// thread count. The rest (CPU split, paging, PSI, TCP) would need the performance
/// counters, which are not cheap single reads: not sent.
pub(crate) fn kernel() -> crate::platform::facts::kernel::Snapshot {
    use crate::platform::facts::kernel::{MemInfo, Snapshot};
    let Some(p) = performance_info() else {
        return Snapshot::default();
    };
    let pages = |n: usize| Some((n as u64).saturating_mul(p.PageSize as u64));
    Snapshot {
        mem: Some(MemInfo {
            cached: pages(p.SystemCache),
            committed: pages(p.CommitTotal),
            commit_limit: pages(p.CommitLimit),
            ..MemInfo::default()
        }),
        threads: Some(u64::from(p.ThreadCount)),
        ..Snapshot::default()
    }
}

/// No cheaper source than sysinfo, which the caller falls back to (no drop counts).
pub(crate) fn net_counters() -> Option<Vec<crate::platform::facts::network::NetCounters>> {
    None
}

/// Not measured here: `collect --bench` falls back to the process CPU time.
pub fn thread_cpu_ns() -> Option<u64> {
    None
}

/// The agent's own CPU time (`GetProcessTimes`, kernel + user) and working set
/// (`K32GetProcessMemoryInfo`).
pub fn self_usage() -> Option<crate::platform::facts::usage::SelfUsage> {
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
    Some(crate::platform::facts::usage::SelfUsage {
        cpu_ms: ms(kernel) + ms(user),
        rss_bytes: mem.WorkingSetSize as u64,
    })
}

/// The system battery from `GetSystemPowerStatus` (none on a desktop or server).
pub(crate) fn batteries() -> Vec<crate::platform::facts::battery::Battery> {
    use windows_sys::Win32::System::Power::{GetSystemPowerStatus, SYSTEM_POWER_STATUS};
    let mut st = SYSTEM_POWER_STATUS::default();
    // SAFETY: `st` is a live, writable SYSTEM_POWER_STATUS.
    if unsafe { GetSystemPowerStatus(&mut st) } == 0 {
        return Vec::new();
    }
    crate::platform::facts::battery::from_power_status(st.BatteryFlag, st.BatteryLifePercent)
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
pub(crate) fn service_states(
    names: &[String],
    _timeout: std::time::Duration,
) -> Option<
    Result<
        Vec<crate::platform::facts::services::ServiceState>,
        crate::platform::facts::services::ServiceError,
    >,
> {
    Some(scm_states(names))
}

fn scm_states(
    names: &[String],
) -> Result<
    Vec<crate::platform::facts::services::ServiceState>,
    crate::platform::facts::services::ServiceError,
> {
    use crate::platform::facts::services::{ServiceError, ServiceState};
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
pub(crate) fn sync_dir(_dir: &std::path::Path) -> std::io::Result<()> {
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
pub(crate) fn write_private_file(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
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

/// Whether a Windows Update search thread is still running (one that outlived
/// its deadline): a second one is not started beside it.
static SEARCH_RUNNING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Pending updates from the Windows Update Agent (`platform/wua.rs`, COM), the
/// last successful installation from its history, and the pending-reboot
/// registry keys (read with `reg query`). Blocking.
///
/// The COM search cannot be cancelled, so it runs on a thread of its own and the
/// check waits at most `timeout`; past that the report carries a timeout error and
/// the search thread is left to finish (no second search starts meanwhile).
///
/// **Not exercised on a real Windows machine**: CI type-checks and cross-builds it
/// only (Wine has no Windows Update Agent). The interpretation is tested on Linux
/// (`facts/patches/windows_update.rs`).
pub fn check_patches(timeout: std::time::Duration) -> crate::platform::facts::patches::Check {
    use crate::platform::facts::patches::{Reboot, windows_update};
    use crate::platform::tool::ReadError;
    use std::sync::atomic::Ordering;
    let searched = if SEARCH_RUNNING.swap(true, Ordering::SeqCst) {
        Err(ReadError::Malformed {
            what: "windows update search",
            detail: "the previous search is still running".into(),
        })
    } else {
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("wua-search".into())
            .spawn(move || {
                let r = super::wua::search();
                SEARCH_RUNNING.store(false, Ordering::SeqCst);
                let _ = tx.send(r);
            });
        match spawned {
            Err(err) => {
                SEARCH_RUNNING.store(false, Ordering::SeqCst);
                Err(ReadError::Malformed {
                    what: "windows update search",
                    detail: format!("cannot start the search thread: {err}"),
                })
            }
            Ok(_) => match rx.recv_timeout(timeout) {
                Ok(Ok(found)) => Ok(found),
                Ok(Err(err)) => Err(ReadError::Malformed {
                    what: "windows update search",
                    detail: err.to_string(),
                }),
                Err(_) => Err(ReadError::Tool(
                    crate::platform::tool::ToolError::TimedOut {
                        program: "windows update search".into(),
                        secs: timeout.as_secs(),
                    },
                )),
            },
        }
    };
    let (updates, last_install_unix_ms) = match searched {
        Ok((found, history)) => (
            Ok(windows_update::classify(found)),
            windows_update::last_successful_install_ms(&history),
        ),
        Err(err) => (Err(err), 0),
    };
    let key_exists = |key: &str| {
        crate::platform::tool::run("reg", &["query", key], timeout).is_ok_and(|o| o.code == Some(0))
    };
    let renames = crate::platform::tool::run(
        "reg",
        &[
            "query",
            r"HKLM\SYSTEM\CurrentControlSet\Control\Session Manager",
            "/v",
            "PendingFileRenameOperations",
        ],
        timeout,
    )
    .ok()
    .filter(|o| o.code == Some(0))
    .map(|o| o.stdout);
    let required = windows_update::reboot_required(
        key_exists(
            r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired",
        ),
        key_exists(
            r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending",
        ),
        renames.as_deref(),
    );
    crate::platform::facts::patches::Check {
        source: "windows_update",
        updates,
        reboot: Reboot {
            required,
            // The registry keeps no date; the last install is what asked for it.
            since_unix_ms: if required { last_install_unix_ms } else { 0 },
        },
        last_install_unix_ms,
    }
}

/// `reg query KEY [/s]`, bounded by `timeout`.
fn reg_query(
    key: &str,
    recurse: bool,
    timeout: std::time::Duration,
) -> Result<String, crate::platform::tool::ToolError> {
    let mut args = vec!["query", key];
    if recurse {
        args.push("/s");
    }
    Ok(crate::platform::tool::run("reg", &args, timeout)?
        .accept("reg", &[0])?
        .stdout)
}

/// Inventory facts from the registry, read with `reg query` (a tool on every
/// Windows; its output is parsed by pure functions tested on Linux): Windows'
/// name, display version and build, the BIOS's manufacturer and product, and the
/// installed programs under both Uninstall keys (64- and 32-bit). The hardware
/// serial is not in the registry (WMI's Win32_BIOS has it) and stays empty.
pub(crate) fn inventory_facts(
    timeout: std::time::Duration,
) -> crate::platform::facts::inventory::PlatformFacts {
    use crate::platform::facts::inventory as inv;
    let (os_name, os_version, os_build) = reg_query(
        r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion",
        false,
        timeout,
    )
    .map(|o| inv::parse_windows_version(&o))
    .unwrap_or_default();
    let hardware = reg_query(r"HKLM\HARDWARE\DESCRIPTION\System\BIOS", false, timeout)
        .ok()
        .and_then(|o| {
            crate::platform::facts::registry::parse_reg_query(&o)
                .into_iter()
                .next()
        })
        .map(|k| inv::Hardware {
            vendor: k.get("SystemManufacturer").unwrap_or("").trim().to_owned(),
            model: k.get("SystemProductName").unwrap_or("").trim().to_owned(),
            serial: String::new(),
        })
        .unwrap_or_default();
    let software = reg_query(
        r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall",
        true,
        timeout,
    )
    .map_err(crate::platform::tool::ReadError::from)
    .map(|o| {
        let mut list = inv::parse_uninstall_keys(&o);
        // 32-bit programs; absent on 32-bit Windows, which is not an error.
        if let Ok(o) = reg_query(
            r"HKLM\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall",
            true,
            timeout,
        ) {
            list.extend(inv::parse_uninstall_keys(&o));
        }
        list
    });
    inv::PlatformFacts {
        os_build,
        os_name,
        os_version,
        hardware,
        software_source: "windows_registry",
        software,
    }
}

/// Nothing to prepare before the start: the tree is held by a job object that
/// [`contain`] makes right after it.
pub(crate) fn isolate(_cmd: &mut std::process::Command) {}

/// Job objects of running external tools, by process id (as `isize`: a `HANDLE` is
/// a raw pointer, not `Send`). Each is closed by [`kill_tree`] or [`release`].
static JOBS: std::sync::Mutex<std::collections::BTreeMap<u32, isize>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn take_job(pid: u32) -> Option<windows_sys::Win32::Foundation::HANDLE> {
    JOBS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&pid)
        .map(|h| h as windows_sys::Win32::Foundation::HANDLE)
}

/// Puts a just-started tool into a job object of its own, so that every process it
/// starts is in the job too and [`kill_tree`] ends them all (a custom check's
/// `cmd /C` and what it starts, `start /B` included). A process the tool starts in
/// the instant between its start and this call is not held; if the job cannot be
/// made, `kill_tree` ends the child only, as before.
pub(crate) fn contain(child: &std::process::Child) {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Foundation::CloseHandle;
    use windows_sys::Win32::System::JobObjects::{AssignProcessToJobObject, CreateJobObjectW};
    // SAFETY: null attributes and a null name make an anonymous job with the default
    // security descriptor; the returned handle is checked before use.
    let job = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
    if job.is_null() {
        return;
    }
    // SAFETY: `job` was just created and is open; the process handle belongs to
    // `child`, which is borrowed for the whole call, so it is open too.
    let assigned = unsafe { AssignProcessToJobObject(job, child.as_raw_handle()) } != 0;
    if !assigned {
        // SAFETY: `job` is an open handle that nothing else holds.
        unsafe { CloseHandle(job) };
        return;
    }
    JOBS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(child.id(), job as isize);
}

/// Kills the child and everything in its job object ([`contain`]), then the child
/// itself in case it was not in one.
pub(crate) fn kill_tree(child: &mut std::process::Child) {
    use windows_sys::Win32::Foundation::CloseHandle;
    use windows_sys::Win32::System::JobObjects::TerminateJobObject;
    if let Some(job) = take_job(child.id()) {
        // SAFETY: `job` is an open job handle taken out of JOBS, so this is its only
        // user; it is closed once, here.
        unsafe {
            TerminateJobObject(job, 1);
            CloseHandle(job);
        }
    }
    let _ = child.kill();
}

/// Closes the job object of a tool that ended on its own (its processes keep
/// running if it left any: only a timeout kills the tree).
pub(crate) fn release(child: &std::process::Child) {
    use windows_sys::Win32::Foundation::CloseHandle;
    if let Some(job) = take_job(child.id()) {
        // SAFETY: `job` is an open job handle taken out of JOBS; closed once, here.
        unsafe { CloseHandle(job) };
    }
}

/// Failed units are a systemd notion: not applicable here.
pub(crate) fn failed_units(
    _timeout: std::time::Duration,
) -> Option<Result<Vec<String>, crate::platform::facts::services::ServiceError>> {
    None
}
