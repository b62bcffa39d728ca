//! What the platform knows of this device (OS build, hardware, installed software),
//! and the pure parsers from what a tool or file printed to these values, tested on
//! fixtures under `agent/tests/fixtures/inventory/`. the agent's `inventory` adds what
//! sysinfo knows on every OS and builds the wire's `Inventory`.

use std::path::Path;

use super::registry::parse_reg_query;
pub use crate::platform::tool::ReadError;

/// One installed program or package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Software {
    pub(crate) name: String,
    pub(crate) version: String,
    /// Empty where the source does not say (dpkg).
    pub(crate) publisher: String,
}

/// Hardware facts; empty where unreadable.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Hardware {
    pub(crate) vendor: String,
    pub(crate) model: String,
    pub(crate) serial: String,
}

/// What the platform module contributes.
#[derive(Debug)]
pub struct PlatformFacts {
    /// Build number where the OS has one beyond its version ("12.5" from
    /// /etc/debian_version, "22631.3447" on Windows); may be empty.
    pub(crate) os_build: String,
    /// Better OS name/version than sysinfo's where the platform knows one
    /// (Windows' ProductName and DisplayVersion); empty to keep sysinfo's.
    pub(crate) os_name: String,
    pub(crate) os_version: String,
    pub(crate) hardware: Hardware,
    /// Which source listed the software ("dpkg", "rpm", ...; "none").
    pub(crate) software_source: &'static str,
    pub(crate) software: Result<Vec<Software>, ReadError>,
}

/// `/etc/os-release`: (NAME, VERSION_ID), unquoted. Missing keys are empty.
pub fn parse_os_release(text: &str) -> (String, String) {
    let mut name = String::new();
    let mut version = String::new();
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').trim_matches('\'').to_owned();
        match k {
            "NAME" => name = v,
            "VERSION_ID" => version = v,
            _ => {}
        }
    }
    (name, version)
}

/// `dpkg-query -W -f '${db:Status-Abbrev}\t${binary:Package}\t${Version}\n'`:
/// installed packages (status letter `i`, e.g. "ii ", "hi "); removed ones whose
/// configuration remains ("rc ") are left out.
pub fn parse_dpkg_query(text: &str) -> Result<Vec<Software>, ReadError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut f = line.split('\t');
        let (Some(status), Some(name), Some(version)) = (f.next(), f.next(), f.next()) else {
            return Err(ReadError::parse("dpkg-query", i + 1, line));
        };
        if name.is_empty() || status.len() < 2 {
            return Err(ReadError::parse("dpkg-query", i + 1, line));
        }
        if status.as_bytes()[1] != b'i' {
            continue;
        }
        out.push(Software {
            name: name.to_owned(),
            version: version.to_owned(),
            publisher: String::new(),
        });
    }
    Ok(out)
}

/// `rpm -qa --queryformat '%{NAME}\t%{VERSION}-%{RELEASE}\t%{VENDOR}\n'`. The
/// `gpg-pubkey` pseudo-packages (imported signing keys) are left out; a vendor of
/// "(none)" is empty.
pub fn parse_rpm_qa(text: &str) -> Result<Vec<Software>, ReadError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut f = line.split('\t');
        let (Some(name), Some(version)) = (f.next(), f.next()) else {
            return Err(ReadError::parse("rpm -qa", i + 1, line));
        };
        if name.is_empty() {
            return Err(ReadError::parse("rpm -qa", i + 1, line));
        }
        if name == "gpg-pubkey" {
            continue;
        }
        let vendor = f.next().unwrap_or("");
        out.push(Software {
            name: name.to_owned(),
            version: version.to_owned(),
            publisher: if vendor == "(none)" {
                String::new()
            } else {
                vendor.to_owned()
            },
        });
    }
    Ok(out)
}

/// `pacman -Q`: `name version` per line.
pub fn parse_pacman_q(text: &str) -> Result<Vec<Software>, ReadError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut f = line.split_whitespace();
        let (Some(name), Some(version), None) = (f.next(), f.next(), f.next()) else {
            return Err(ReadError::parse("pacman -Q", i + 1, line));
        };
        out.push(Software {
            name: name.to_owned(),
            version: version.to_owned(),
            publisher: String::new(),
        });
    }
    Ok(out)
}

/// `system_profiler SPHardwareDataType -json`: (model, serial) of the Mac.
pub fn parse_system_profiler_hardware(text: &str) -> Result<(String, String), ReadError> {
    #[derive(serde::Deserialize)]
    struct Top {
        #[serde(rename = "SPHardwareDataType", default)]
        hw: Vec<Hw>,
    }
    #[derive(serde::Deserialize)]
    struct Hw {
        #[serde(default)]
        machine_model: String,
        #[serde(default)]
        machine_name: String,
        #[serde(default)]
        serial_number: String,
    }
    let top: Top = serde_json::from_str(text).map_err(|e| ReadError::Malformed {
        what: "system_profiler SPHardwareDataType",
        detail: e.to_string(),
    })?;
    Ok(top
        .hw
        .into_iter()
        .next()
        .map(|h| {
            let model = if h.machine_model.is_empty() {
                h.machine_name
            } else {
                h.machine_model
            };
            (model, h.serial_number)
        })
        .unwrap_or_default())
}

/// `system_profiler SPApplicationsDataType -json`: one entry per application,
/// `_name`, `version`, and as publisher the first `signed_by` authority (else
/// `obtained_from`).
pub fn parse_system_profiler_apps(text: &str) -> Result<Vec<Software>, ReadError> {
    #[derive(serde::Deserialize)]
    struct Top {
        #[serde(rename = "SPApplicationsDataType", default)]
        apps: Vec<App>,
    }
    #[derive(serde::Deserialize)]
    struct App {
        #[serde(rename = "_name")]
        name: String,
        #[serde(default)]
        version: Option<String>,
        #[serde(default)]
        signed_by: Vec<String>,
        #[serde(default)]
        obtained_from: Option<String>,
    }
    let top: Top = serde_json::from_str(text).map_err(|e| ReadError::Malformed {
        what: "system_profiler SPApplicationsDataType",
        detail: e.to_string(),
    })?;
    Ok(top
        .apps
        .into_iter()
        .filter(|a| !a.name.is_empty())
        .map(|a| Software {
            name: a.name,
            version: a.version.unwrap_or_default(),
            publisher: a
                .signed_by
                .into_iter()
                .next()
                .or(a.obtained_from)
                .unwrap_or_default(),
        })
        .collect())
}

/// Installed programs from `reg query HKLM\...\Uninstall /s` (and the same under
/// WOW6432Node): keys with a `DisplayName`, minus system components and updates
/// of other programs (`SystemComponent` = 1, a `ParentKeyName`), as the Windows
/// "Installed apps" list does.
pub fn parse_uninstall_keys(text: &str) -> Vec<Software> {
    parse_reg_query(text)
        .into_iter()
        .filter(|k| k.dword("SystemComponent") != Some(1) && k.get("ParentKeyName").is_none())
        .filter_map(|k| {
            let name = k.get("DisplayName")?.trim();
            if name.is_empty() {
                return None;
            }
            Some(Software {
                name: name.to_owned(),
                version: k.get("DisplayVersion").unwrap_or("").trim().to_owned(),
                publisher: k.get("Publisher").unwrap_or("").trim().to_owned(),
            })
        })
        .collect()
}

/// Windows' own name, version and build from `reg query "HKLM\SOFTWARE\Microsoft\
/// Windows NT\CurrentVersion"`: (ProductName, DisplayVersion, "CurrentBuild.UBR").
///
/// Windows 11 still says "Windows 10" in ProductName; a build of 22000 or more is
/// Windows 11, so the name is corrected from the build number.
pub fn parse_windows_version(text: &str) -> (String, String, String) {
    let keys = parse_reg_query(text);
    let Some(k) = keys.first() else {
        return Default::default();
    };
    let mut name = k.get("ProductName").unwrap_or("").trim().to_owned();
    let build = k.get("CurrentBuild").unwrap_or("").trim().to_owned();
    if build.parse::<u32>().is_ok_and(|b| b >= 22_000) && name.starts_with("Windows 10") {
        name = name.replacen("Windows 10", "Windows 11", 1);
    }
    let version = k
        .get("DisplayVersion")
        .or_else(|| k.get("ReleaseId"))
        .unwrap_or("")
        .trim()
        .to_owned();
    let full_build = match k.dword("UBR") {
        Some(ubr) if !build.is_empty() => format!("{build}.{ubr}"),
        _ => build,
    };
    (name, version, full_build)
}

/// Hardware from the DMI files of a Linux `/sys/class/dmi/id` directory (the
/// serial is readable by root only on most systems; then it stays empty).
pub fn dmi_hardware(dir: &Path) -> Hardware {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .map(|s| clean_dmi(&s))
            .unwrap_or_default()
    };
    Hardware {
        vendor: read("sys_vendor"),
        model: read("product_name"),
        serial: read("product_serial"),
    }
}

/// Firmware leaves placeholders in DMI fields; they mean "unknown".
fn clean_dmi(s: &str) -> String {
    let s = s.trim();
    const PLACEHOLDERS: [&str; 6] = [
        "to be filled by o.e.m.",
        "default string",
        "system serial number",
        "not specified",
        "none",
        "0",
    ];
    if PLACEHOLDERS.contains(&s.to_ascii_lowercase().as_str()) {
        String::new()
    } else {
        s.to_owned()
    }
}
