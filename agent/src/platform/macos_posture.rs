//! macOS: posture sources (the application firewall, FileVault, softwareupdate's
//! schedule, the admin group, sshd_config), Time Machine for backups, `/bin/sh -c`
//! for custom checks. Parsers in `facts::posture::{macos, sshd}`.

use std::path::Path;
use std::time::Duration;

use crate::platform::facts::backup::BackupReadError;
use crate::platform::facts::posture::{self, Check, macos as m, sshd};

/// The shell for custom checks that ask for one (`shell = true`).
pub(crate) const SHELL: (&str, &str) = ("/bin/sh", "-c");

fn out(
    program: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<String, crate::platform::tool::ToolError> {
    let o = crate::platform::tool::run(program, args, timeout)?.accept(program, &[0])?;
    Ok(format!("{}{}", o.stdout, o.stderr))
}

/// Every posture check of a Mac. Blocking.
pub(crate) fn posture(timeout: Duration) -> Vec<Check> {
    let firewall = match out(
        "/usr/libexec/ApplicationFirewall/socketfilterfw",
        &["--getglobalstate"],
        timeout,
    ) {
        Ok(t) => m::parse_socketfilterfw(&t),
        Err(e) => Check::unknown(posture::FIREWALL, e.to_string()),
    };
    let filevault = match out("fdesetup", &["status"], timeout) {
        Ok(t) => m::parse_fdesetup_status(&t),
        Err(e) => Check::unknown(posture::DISK_ENCRYPTION, e.to_string()),
    };
    let updates = match out("softwareupdate", &["--schedule"], timeout) {
        Ok(t) => m::parse_softwareupdate_schedule(&t),
        Err(e) => Check::unknown(posture::AUTO_UPDATES, e.to_string()),
    };
    let admins = match out(
        "dscl",
        &[".", "-read", "/Groups/admin", "GroupMembership"],
        timeout,
    ) {
        Ok(t) => match m::parse_dscl_group_membership(&t) {
            Some(list) => posture::admins_check(
                list.into_iter()
                    .map(|n| (n, "group admin".to_owned()))
                    .collect(),
                "dscl /Groups/admin",
            ),
            None => Check::unknown(posture::LOCAL_ADMINS, "dscl printed no GroupMembership"),
        },
        Err(e) => Check::unknown(posture::LOCAL_ADMINS, e.to_string()),
    };
    let mut v = vec![
        firewall,
        filevault,
        Check::unknown(
            posture::ANTIVIRUS,
            "XProtect's state is not reported by a documented tool; third-party products are not read yet",
        ),
        updates,
        admins,
        Check::unknown(
            posture::SCREEN_LOCK,
            "the screen lock is a per-user setting; the agent runs as a launch daemon",
        ),
    ];
    let config = Path::new("/etc/ssh/sshd_config");
    // Remote Login off: launchd has no ssh job loaded; the config alone says nothing.
    let remote_login =
        crate::platform::tool::run("launchctl", &["print", "system/com.openssh.sshd"], timeout)
            .is_ok_and(|o| o.code == Some(0));
    if !remote_login {
        v.extend(sshd::not_installed(
            "Remote Login (com.openssh.sshd) is not loaded",
        ));
    } else {
        match std::fs::read_to_string(config) {
            Ok(text) => v.extend(sshd::checks(
                &sshd::parse_config(&text, &mut |p| sshd::read_glob(Path::new("/etc/ssh"), p)),
                "/etc/ssh/sshd_config",
            )),
            Err(e) => v.extend(sshd::unreadable(&format!("/etc/ssh/sshd_config: {e}"))),
        }
    }
    v
}

/// CPU time of reaped children: not read on macOS yet.
pub(crate) fn children_cpu_ms() -> Option<u64> {
    None
}

/// `tmutil latestbackup`: the newest Time Machine snapshot's time, from its name
/// (`2024-01-15-020000`, local time).
pub(crate) fn native_backup(
    kind: &str,
    timeout: Duration,
) -> Result<(i64, String), BackupReadError> {
    if kind != "time_machine" {
        return Err(BackupReadError::OtherOs {
            kind: kind.to_owned(),
            only: "Windows",
        });
    }
    let o = crate::platform::tool::run("tmutil", &["latestbackup"], timeout)
        .and_then(|o| o.accept("tmutil", &[0]))?;
    Ok(crate::platform::facts::backup::parse_tmutil_latest(
        &o.stdout,
        crate::platform::facts::backup::local_offset_secs(),
    )?)
}
