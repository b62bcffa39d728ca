//! Inventory: what this device is — OS name, version and build, kernel, hardware
//! vendor, model and serial, CPU, memory, and the installed software.
//!
//! The layers, as for patches:
//! - the parsers (`platform/facts/inventory.rs`) are pure functions from what a tool or file printed to
//!   [`Software`] lists and facts, tested on fixtures under
//!   `agent/tests/fixtures/inventory/` (the dpkg and os-release ones are real
//!   captures; the others are labelled in `README.md` there);
//! - the platform facade (`crate::platform::inventory_facts`) reads what only the OS
//!   knows (hardware, build, software) with the tools bounded by a timeout;
//! - [`collect`] adds what sysinfo knows on every OS and returns an [`Inventory`];
//! - [`fingerprint`] hashes the inventory without its seq and time, and
//!   [`LastSent`] keeps the hash of the last spooled one in the state dir, so an
//!   unchanged inventory is not sent again, across restarts too.
//!
//! Invariant: software that cannot be listed is reported with `software_error`
//! set, never as an empty list that would read as "nothing installed".

use std::path::{Path, PathBuf};

use tandem_proto::v1;

/// Most programs one inventory carries: the collector's limit
/// (`collector/src/grpc/validate.rs`, `MAX_SOFTWARE_PER_INVENTORY`).
pub(crate) const MAX_SOFTWARE: usize = 50_000;

pub(crate) use crate::platform::facts::inventory::{Hardware, Software};

/// One inventory, ready to print or send.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inventory {
    pub(crate) time_unix_ms: i64,
    pub(crate) os_name: String,
    pub(crate) os_version: String,
    pub(crate) os_build: String,
    pub(crate) kernel: String,
    pub(crate) arch: String,
    pub(crate) hardware: Hardware,
    pub(crate) cpu_model: String,
    pub(crate) cpu_cores: u32,
    pub(crate) memory_bytes: u64,
    pub(crate) software_source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) software_error: Option<String>,
    /// Sorted, so the same software gives the same fingerprint.
    pub(crate) software: Vec<Software>,
}

/// Collects the inventory. Blocking (runs the platform's package tools, each
/// bounded by `timeout`).
pub fn collect(timeout: std::time::Duration, now_ms: i64) -> Inventory {
    let facts = crate::platform::inventory_facts(timeout);
    let (cpu_model, cpu_cores, memory_bytes) = match sysinfo::System::new() {
        Ok(mut sys) => {
            sys.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
            sys.refresh_memory();
            let model = sys
                .cpus()
                .first()
                .map(|c| c.brand().trim().to_owned())
                .unwrap_or_default();
            (
                model,
                u32::try_from(sys.cpus().len()).unwrap_or(u32::MAX),
                sys.total_memory(),
            )
        }
        Err(err) => {
            tracing::warn!(error = ?err, "cannot read CPU and memory for the inventory");
            (String::new(), 0, 0)
        }
    };
    let pick = |platform: String, sysinfo: Result<String, sysinfo::Error>| {
        if platform.is_empty() {
            sysinfo.unwrap_or_default()
        } else {
            platform
        }
    };
    let (software, software_error) = match facts.software {
        Ok(mut list) => {
            list.sort();
            list.dedup();
            if list.len() > MAX_SOFTWARE {
                tracing::warn!(
                    installed = list.len(),
                    sent = MAX_SOFTWARE,
                    "too many programs for one inventory; the rest left out"
                );
                list.truncate(MAX_SOFTWARE);
            }
            (list, None)
        }
        Err(err) => (Vec::new(), Some(err.to_string())),
    };
    Inventory {
        time_unix_ms: now_ms,
        os_name: pick(facts.os_name, sysinfo::System::name()),
        os_version: pick(facts.os_version, sysinfo::System::os_version()),
        os_build: facts.os_build,
        kernel: sysinfo::System::kernel_version().unwrap_or_default(),
        arch: sysinfo::System::cpu_arch(),
        hardware: facts.hardware,
        cpu_model,
        cpu_cores,
        memory_bytes,
        software_source: facts.software_source,
        software_error,
        software,
    }
}

impl Inventory {
    /// The inventory as the wire's frame with sequence number `seq`. Text is made
    /// acceptable to the collector (no control characters, bounded length).
    pub(crate) fn to_wire(&self, seq: u64) -> v1::Inventory {
        let t = crate::patches::wire_text;
        v1::Inventory {
            seq,
            time_unix_ms: self.time_unix_ms,
            os_name: t(&self.os_name),
            os_version: t(&self.os_version),
            os_build: t(&self.os_build),
            kernel: t(&self.kernel),
            arch: t(&self.arch),
            hw_vendor: t(&self.hardware.vendor),
            hw_model: t(&self.hardware.model),
            hw_serial: t(&self.hardware.serial),
            cpu_model: t(&self.cpu_model),
            cpu_cores: self.cpu_cores,
            memory_bytes: self.memory_bytes,
            software_source: self.software_source.to_owned(),
            software_error: self.software_error.as_deref().map(t).unwrap_or_default(),
            software: self
                .software
                .iter()
                .filter(|s| !s.name.trim().is_empty())
                .map(|s| v1::Software {
                    name: t(&s.name),
                    version: t(&s.version),
                    publisher: t(&s.publisher),
                })
                .collect(),
        }
    }
}

/// A hex SHA-256 of what the inventory says, leaving out its seq and time: equal
/// for two inventories that describe the same device state.
pub(crate) fn fingerprint(inv: &v1::Inventory) -> String {
    use prost::Message;
    let bare = v1::Inventory {
        seq: 0,
        time_unix_ms: 0,
        ..inv.clone()
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, &bare.encode_to_vec());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The fingerprint of the last inventory put into the spool and when, kept in the
/// state dir (one line: `<sha256 hex> <unix ms>`). Written after the frame is
/// spooled (the spool is durable), so an inventory is sent again only if it
/// changed, never reached the spool, or was spooled longer ago than the spool's age
/// bound: a frame the spool dropped over a bound (reported as a gap) is thereby
/// replaced within `spool_max_age_secs`, although nothing changed.
#[derive(Debug)]
pub(crate) struct LastSent {
    path: PathBuf,
}

impl LastSent {
    /// File name under the state dir.
    pub(crate) const FILE: &'static str = "inventory_sent.sha256";

    pub(crate) fn new(state_dir: &Path) -> Self {
        LastSent {
            path: state_dir.join(Self::FILE),
        }
    }

    /// The same record under another file name in the state dir (the posture
    /// report's, `crate::posture::report`).
    pub(crate) fn named(state_dir: &Path, file: &str) -> Self {
        LastSent {
            path: state_dir.join(file),
        }
    }

    /// The stored fingerprint and when it was spooled (`i64::MIN`, i.e. expired, if
    /// the file does not say); none if missing or unreadable (then the inventory
    /// is simply sent).
    pub(crate) fn get(&self) -> Option<(String, i64)> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let mut f = text.split_whitespace();
        let fp = f.next()?.to_owned();
        let at = f.next().and_then(|t| t.parse().ok()).unwrap_or(i64::MIN);
        Some((fp, at))
    }

    /// Whether an inventory with `fingerprint` needs no sending at `now_ms`: the
    /// same was spooled less than `max_age_ms` ago.
    pub(crate) fn is_current(&self, fingerprint: &str, now_ms: i64, max_age_ms: i64) -> bool {
        self.get()
            .is_some_and(|(fp, at)| fp == fingerprint && now_ms.saturating_sub(at) < max_age_ms)
    }

    /// Records `fingerprint`, spooled at `now_ms`, atomically (temp file, then
    /// rename).
    pub(crate) fn set(&self, fingerprint: &str, now_ms: i64) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, format!("{fingerprint} {now_ms}\n"))?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::facts::inventory::*;

    fn fixture(name: &str) -> String {
        crate::test_fixture("inventory", name)
    }

    #[test]
    fn dpkg_query_real_capture() {
        let list = parse_dpkg_query(&fixture("dpkg-query.debian12.txt")).unwrap();
        assert!(list.len() > 500, "{}", list.len());
        let adduser = list.iter().find(|s| s.name == "adduser").unwrap();
        assert_eq!(adduser.version, "3.134");
        // Multi-arch packages keep their architecture in the name.
        assert!(list.iter().any(|s| s.name.ends_with(":amd64")));
    }

    #[test]
    fn dpkg_query_skips_removed_and_refuses_garbage() {
        let text = "ii \tbash\t5.2.15-2+b7\nrc \told-thing\t1.0\nhi \theld\t2\n";
        let names: Vec<_> = parse_dpkg_query(text)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["bash", "held"]);
        let err = parse_dpkg_query("dpkg-query: error: something\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn os_release_real_capture() {
        assert_eq!(
            parse_os_release(&fixture("os-release.debian12.txt")),
            ("Debian GNU/Linux".to_owned(), "12".to_owned())
        );
    }

    #[test]
    fn rpm_qa_real_capture() {
        let list = parse_rpm_qa(&fixture("../captured/rpm-qa.txt")).unwrap();
        assert!(!list.is_empty());
        assert!(list.iter().all(|s| s.name != "gpg-pubkey"));
        assert!(list.iter().all(|s| !s.version.is_empty()));
    }

    #[test]
    fn rpm_qa_vendor_none_and_garbage() {
        let list = parse_rpm_qa("bash\t5.2.26-3.fc40\t(none)\ngpg-pubkey\ta-b\t(none)\n").unwrap();
        assert_eq!(
            list,
            [Software {
                name: "bash".into(),
                version: "5.2.26-3.fc40".into(),
                publisher: String::new()
            }]
        );
        assert!(parse_rpm_qa("error: rpmdb open failed\n").is_err());
    }

    #[test]
    fn system_profiler_apps() {
        let list =
            parse_system_profiler_apps(&fixture("system-profiler-apps.macos14.json")).unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].name, "Safari");
        assert_eq!(list[0].version, "17.4.1");
        assert_eq!(list[0].publisher, "Software Signing");
        assert_eq!(list[2].publisher, "identified_developer");
        assert!(parse_system_profiler_apps("not json").is_err());
    }

    #[test]
    fn pacman_q_and_mac_hardware() {
        let list = parse_pacman_q(&fixture("../captured/pacman-Q.txt")).unwrap();
        assert!(!list.is_empty());
        assert!(parse_pacman_q("error: could not open database\n").is_err());
        let (model, serial) = parse_system_profiler_hardware(
            r#"{"SPHardwareDataType":[{"_name":"hardware_overview","machine_model":"Mac14,2","machine_name":"MacBook Air","serial_number":"C02XXXXXXXXX"}]}"#,
        )
        .unwrap();
        assert_eq!(
            (model.as_str(), serial.as_str()),
            ("Mac14,2", "C02XXXXXXXXX")
        );
    }

    #[test]
    fn windows_uninstall_keys() {
        let list = parse_uninstall_keys(&fixture("reg-query-uninstall.win11.txt"));
        let names: Vec<_> = list.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "7-Zip 23.01 (x64)",
                "Mozilla Firefox (x64 en-US)",
                "Microsoft Edge"
            ],
            "system components, updates and keys without a name are left out"
        );
        assert_eq!(list[0].version, "23.01");
        assert_eq!(list[0].publisher, "Igor Pavlov");
    }

    #[test]
    fn windows_version_from_the_registry() {
        let (name, version, build) =
            parse_windows_version(&fixture("reg-query-currentversion.win11.txt"));
        assert_eq!(name, "Windows 11 Pro");
        assert_eq!(version, "23H2");
        assert_eq!(build, "22631.3447");
        assert_eq!(parse_windows_version(""), Default::default());
    }

    #[test]
    fn dmi_placeholders_are_unknown() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sys_vendor"), "LENOVO\n").unwrap();
        std::fs::write(dir.path().join("product_name"), "20XW0026GE\n").unwrap();
        std::fs::write(
            dir.path().join("product_serial"),
            "To Be Filled By O.E.M.\n",
        )
        .unwrap();
        let hw = dmi_hardware(dir.path());
        assert_eq!(hw.vendor, "LENOVO");
        assert_eq!(hw.model, "20XW0026GE");
        assert_eq!(hw.serial, "");
        assert_eq!(
            dmi_hardware(&dir.path().join("missing")),
            Hardware::default()
        );
    }

    fn sample() -> Inventory {
        Inventory {
            time_unix_ms: 1,
            os_name: "Debian GNU/Linux".into(),
            os_version: "12".into(),
            os_build: "12.11".into(),
            kernel: "6.1.0".into(),
            arch: "x86_64".into(),
            hardware: Hardware::default(),
            cpu_model: "cpu\tmodel".into(),
            cpu_cores: 2,
            memory_bytes: 1 << 30,
            software_source: "dpkg",
            software_error: None,
            software: vec![Software {
                name: "bash".into(),
                version: "5".into(),
                publisher: String::new(),
            }],
        }
    }

    #[test]
    fn fingerprint_ignores_seq_and_time_but_not_content() {
        let a = sample();
        let mut b = sample();
        b.time_unix_ms = 99;
        assert_eq!(fingerprint(&a.to_wire(1)), fingerprint(&b.to_wire(7)));
        b.software[0].version = "5.1".into();
        assert_ne!(fingerprint(&a.to_wire(1)), fingerprint(&b.to_wire(1)));
        // Control characters never reach the wire.
        assert_eq!(a.to_wire(1).cpu_model, "cpu model");
    }

    #[test]
    fn last_sent_survives_restarts_and_expires_with_the_spool_age() {
        let dir = tempfile::tempdir().unwrap();
        let l = LastSent::new(dir.path());
        assert_eq!(l.get(), None);
        assert!(!l.is_current("abc", 10, 1_000));
        l.set("abc", 10).unwrap();
        let l = LastSent::new(dir.path());
        assert_eq!(l.get(), Some(("abc".to_owned(), 10)));
        assert!(l.is_current("abc", 500, 1_000));
        assert!(!l.is_current("abd", 500, 1_000), "changed");
        assert!(
            !l.is_current("abc", 1_010, 1_000),
            "older than the spool bound"
        );
        // A file without a time (or damaged) means "send again".
        std::fs::write(dir.path().join(LastSent::FILE), "abc\n").unwrap();
        assert!(!l.is_current("abc", 500, 1_000));
    }
}
