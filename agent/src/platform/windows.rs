//! Windows specifics.

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
