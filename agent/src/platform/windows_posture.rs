//! Windows: posture sources (netsh, manage-bde, Defender and Security Center via
//! PowerShell, the Windows Update policy and lock policy via `reg`, `net localgroup`,
//! OpenSSH's sshd_config), `wbadmin` for backups, `cmd /C` for custom checks. What
//! the tools print is parsed in `facts::posture::{windows, sshd}`, tested on Linux.

use std::path::Path;
use std::time::Duration;

use crate::platform::facts::backup::BackupReadError;
use crate::platform::facts::posture::{self, Check, sshd, windows as w};

/// The shell for custom checks that ask for one (`shell = true`).
pub(crate) const SHELL: (&str, &str) = ("cmd", "/C");

/// Defender's signatures older than this fail the antivirus check.
const MAX_SIGNATURE_AGE_DAYS: u32 = 7;
/// A machine lock policy longer than this (15 min, CIS) fails the screen-lock check.
const MAX_LOCK_SECS: u64 = 900;

fn powershell(script: &str, timeout: Duration) -> Result<String, crate::platform::tool::ToolError> {
    Ok(crate::platform::tool::run(
        "powershell",
        &["-NoProfile", "-NonInteractive", "-Command", script],
        timeout,
    )?
    .accept("powershell", &[0])?
    .stdout)
}

/// `reg query KEY`: (text, found); a missing key exits 1.
fn reg(key: &str, timeout: Duration) -> Result<(String, bool), crate::platform::tool::ToolError> {
    let o = crate::platform::tool::run("reg", &["query", key], timeout)?;
    match o.code {
        Some(0) => Ok((o.stdout, true)),
        Some(1) => Ok((String::new(), false)),
        _ => {
            Err(o
                .accept("reg", &[0])
                .err()
                .unwrap_or(crate::platform::tool::ToolError::TimedOut {
                    program: "reg".into(),
                    secs: 0,
                }))
        }
    }
}

/// Every posture check of a Windows machine. Blocking.
pub(crate) fn posture(timeout: Duration) -> Vec<Check> {
    let firewall = match crate::platform::tool::run(
        "netsh",
        &["advfirewall", "show", "allprofiles", "state"],
        timeout,
    ) {
        Ok(o) => w::parse_netsh_allprofiles(&o.stdout),
        Err(e) => Check::unknown(posture::FIREWALL, e.to_string()),
    };
    let drive = std::env::var("SystemDrive").unwrap_or_else(|_| "C:".into());
    let bitlocker = match crate::platform::tool::run("manage-bde", &["-status", &drive], timeout) {
        Ok(o) => w::parse_manage_bde(&format!("{}{}", o.stdout, o.stderr), &drive),
        Err(e) => Check::unknown(posture::DISK_ENCRYPTION, e.to_string()),
    };
    let antivirus = antivirus(timeout);
    let updates = match reg(
        r"HKLM\SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate\AU",
        timeout,
    ) {
        Ok((text, found)) => w::parse_wu_policy(&text, found),
        Err(e) => Check::unknown(posture::AUTO_UPDATES, e.to_string()),
    };
    let admins = match crate::platform::tool::run("net", &["localgroup", "Administrators"], timeout)
        .and_then(|o| o.accept("net", &[0]))
    {
        Ok(o) => match w::parse_net_localgroup(&o.stdout) {
            Some(list) => posture::admins_check(
                list.into_iter()
                    .map(|n| (n, "Administrators".to_owned()))
                    .collect(),
                "net localgroup Administrators",
            ),
            None => Check::unknown(
                posture::LOCAL_ADMINS,
                "net localgroup printed no member list",
            ),
        },
        Err(e) => Check::unknown(posture::LOCAL_ADMINS, e.to_string()),
    };
    let lock = match reg(
        r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System",
        timeout,
    ) {
        Ok((text, found)) => w::parse_inactivity_timeout(&text, found, MAX_LOCK_SECS),
        Err(e) => Check::unknown(posture::SCREEN_LOCK, e.to_string()),
    };
    let mut out = vec![firewall, bitlocker, antivirus, updates, admins, lock];
    let data = std::env::var("ProgramData").unwrap_or_else(|_| r"C:\ProgramData".into());
    let config = Path::new(&data).join("ssh").join("sshd_config");
    let sshd_exe = Path::new(&std::env::var("SystemRoot").unwrap_or_else(|_| r"C:\Windows".into()))
        .join(r"System32\OpenSSH\sshd.exe");
    if !sshd_exe.exists() {
        out.extend(sshd::not_installed(
            "OpenSSH server not installed (no System32\\OpenSSH\\sshd.exe)",
        ));
    } else {
        match std::fs::read_to_string(&config) {
            Ok(text) => {
                let base = Path::new(&data).join("ssh");
                out.extend(sshd::checks(
                    &sshd::parse_config(&text, &mut |p| sshd::read_glob(&base, p)),
                    &config.display().to_string(),
                ))
            }
            Err(e) => out.extend(sshd::unreadable(&format!("{}: {e}", config.display()))),
        }
    }
    out
}

/// Security Center first (client editions; it knows third-party products), then
/// Defender's own status (servers have no Security Center).
fn antivirus(timeout: Duration) -> Check {
    let sc = powershell(
        "Get-CimInstance -Namespace root/SecurityCenter2 -ClassName AntivirusProduct | Select-Object displayName, productState | ConvertTo-Json",
        timeout,
    );
    let defender = powershell(
        "Get-MpComputerStatus | Select-Object AMServiceEnabled, AntivirusEnabled, RealTimeProtectionEnabled, AntivirusSignatureAge | ConvertTo-Json",
        timeout,
    );
    let d = match &defender {
        Ok(json) => w::parse_defender_status(json, MAX_SIGNATURE_AGE_DAYS),
        Err(e) => Check::unknown(posture::ANTIVIRUS, e.to_string()),
    };
    let sc = match sc {
        Ok(json) => w::parse_security_center(&json).ok_or_else(|| {
            format!(
                "no AntivirusProduct in its output ({:?})",
                posture::excerpt(&json, 80)
            )
        }),
        Err(e) => Err(e.to_string()),
    };
    match (sc, d) {
        (Ok(mut s), d) if d.state != posture::State::Unknown => {
            // Security Center's verdict, with Defender's signature age as a value.
            s.values = d.values;
            s
        }
        (Ok(s), _) => s,
        (Err(_), d) if d.state != posture::State::Unknown => d,
        // Never a guess: both sources said nothing usable, and each one's reason is kept.
        (Err(sc_why), d) => Check::unknown(
            posture::ANTIVIRUS,
            format!(
                "neither Security Center nor Defender answered: Security Center: {sc_why}; Defender: {}",
                d.reason
            ),
        ),
    }
}

/// CPU time of reaped children: not read on Windows yet (custom checks are then
/// not counted against the budget; see docs/METRICS.md).
pub(crate) fn children_cpu_ms() -> Option<u64> {
    None
}

/// `wbadmin get versions`: the newest backup's time. Local time, as wbadmin prints
/// it, converted with the machine's current UTC offset.
pub(crate) fn native_backup(
    kind: &str,
    timeout: Duration,
) -> Result<(i64, String), BackupReadError> {
    if kind != "wbadmin" {
        return Err(BackupReadError::OtherOs {
            kind: kind.to_owned(),
            only: "macOS",
        });
    }
    let o = crate::platform::tool::run("wbadmin", &["get", "versions"], timeout)
        .and_then(|o| o.accept("wbadmin", &[0]))?;
    // wbadmin prints local time; PowerShell knows the zone's offset now.
    let offset_secs = powershell(
        "[int][TimeZoneInfo]::Local.GetUtcOffset([DateTime]::Now).TotalSeconds",
        timeout,
    )
    .ok()
    .and_then(|s| s.trim().parse::<i64>().ok())
    .unwrap_or(0);
    Ok(crate::platform::facts::backup::parse_wbadmin_versions(
        &o.stdout,
        offset_secs,
    )?)
}
