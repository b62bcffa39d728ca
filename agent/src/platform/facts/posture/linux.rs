//! Parsers of what Linux tools and files say about posture. Pure functions; the
//! platform module (`platform/linux.rs`) runs the tools and picks the sources.

/// What one firewall front end said: `Some(true)` filtering, `Some(false)` off,
/// `None` unreadable output.
pub type Verdict = Option<bool>;

/// `ufw status`: `Status: active` / `Status: inactive`.
pub fn parse_ufw_status(text: &str) -> Verdict {
    let line = text.lines().find(|l| l.trim().starts_with("Status:"))?;
    match line.trim().trim_start_matches("Status:").trim() {
        "active" => Some(true),
        "inactive" => Some(false),
        _ => None,
    }
}

/// `firewall-cmd --state`: `running` / `not running` (it prints the D-Bus error
/// when the daemon's bus is absent, which also means not running).
pub fn parse_firewalld_state(text: &str) -> Verdict {
    let t = text.trim();
    if t == "running" {
        Some(true)
    } else if t == "not running" || t.contains("DBUS_ERROR") {
        Some(false)
    } else {
        None
    }
}

/// `nft list ruleset`: filtering if a chain hooked on `input` has policy drop or
/// holds a `drop` or `reject` rule. An empty ruleset is no filtering.
pub fn parse_nft_ruleset(text: &str) -> Verdict {
    let mut in_input = false;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("chain ") {
            in_input = false;
        } else if l.starts_with("type filter hook input") {
            in_input = true;
            if l.contains("policy drop") {
                return Some(true);
            }
        } else if in_input && l.split_whitespace().any(|w| w == "drop" || w == "reject") {
            return Some(true);
        }
    }
    Some(false)
}

/// `iptables -S` (or `ip6tables -S`): filtering if the INPUT policy is DROP or an
/// INPUT rule drops or rejects. Output without a `-P INPUT` line is not iptables'.
pub fn parse_iptables_s(text: &str) -> Verdict {
    if !text.lines().any(|l| l.starts_with("-P INPUT ")) {
        return None;
    }
    Some(text.lines().any(|l| {
        l == "-P INPUT DROP"
            || (l.starts_with("-A INPUT ") && (l.ends_with("-j DROP") || l.contains("-j REJECT")))
    }))
}

/// Where the root filesystem lives in `lsblk -J -o NAME,TYPE,FSTYPE,MOUNTPOINTS`
/// output: `Ok(chain)` with the devices from the disk down to the one mounted at
/// `/` (e.g. `["nvme0n1", "nvme0n1p3", "nvme0n1p3_crypt", "vg0-root"]` with their
/// types), `Err` when `/` is not on a listed block device (a container's overlay).
pub fn lsblk_root_chain(json: &str) -> Result<Vec<(String, String)>, LsblkError> {
    #[derive(serde::Deserialize)]
    struct Top {
        blockdevices: Vec<Dev>,
    }
    #[derive(serde::Deserialize)]
    struct Dev {
        name: String,
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        mountpoints: Vec<Option<String>>,
        #[serde(default)]
        children: Vec<Dev>,
    }
    fn find(d: &Dev, path: &mut Vec<(String, String)>) -> bool {
        path.push((d.name.clone(), d.kind.clone()));
        if d.mountpoints.iter().any(|m| m.as_deref() == Some("/")) {
            return true;
        }
        for c in &d.children {
            if find(c, path) {
                return true;
            }
        }
        path.pop();
        false
    }
    let top: Top = serde_json::from_str(json).map_err(LsblkError::Json)?;
    let mut path = Vec::new();
    for d in &top.blockdevices {
        if find(d, &mut path) {
            return Ok(path);
        }
    }
    Err(LsblkError::NoRoot)
}

/// Why `lsblk` output does not say where `/` lives.
#[derive(Debug, thiserror::Error)]
pub enum LsblkError {
    #[error("lsblk -J output: {0}")]
    Json(#[source] serde_json::Error),
    #[error("no block device lsblk lists is mounted at / (a container or a network root)")]
    NoRoot,
}

/// Whether a chain from [`lsblk_root_chain`] passes through dm-crypt (LUKS or plain).
pub fn chain_encrypted(chain: &[(String, String)]) -> bool {
    chain.iter().any(|(_, kind)| kind == "crypt")
}

/// `apt-config dump`: the last values of `APT::Periodic::Update-Package-Lists` and
/// `APT::Periodic::Unattended-Upgrade` (later settings override earlier ones).
pub fn parse_apt_periodic(text: &str) -> (Option<String>, Option<String>) {
    let mut lists = None;
    let mut upgrade = None;
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once(' ') else {
            continue;
        };
        let value = value
            .trim()
            .trim_end_matches(';')
            .trim_matches('"')
            .to_owned();
        match key {
            "APT::Periodic::Update-Package-Lists" => lists = Some(value),
            "APT::Periodic::Unattended-Upgrade" => upgrade = Some(value),
            _ => {}
        }
    }
    (lists, upgrade)
}

/// An APT::Periodic value that turns the job on: a number of days above 0 (or a
/// duration such as "1d"; "always" also counts).
pub fn apt_periodic_on(value: Option<&str>) -> bool {
    match value {
        None => false,
        Some(v) => {
            let v = v.trim();
            v == "always"
                || v.trim_end_matches(|c: char| c.is_ascii_alphabetic())
                    .parse::<f64>()
                    .is_ok_and(|n| n > 0.0)
        }
    }
}

/// `/etc/dnf/automatic.conf`: `apply_updates` in `[commands]` (dnf-automatic's
/// default is `no`: download only).
pub fn parse_dnf_automatic_apply(text: &str) -> bool {
    let mut section = String::new();
    let mut apply = false;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            section = l.trim_matches(|c| c == '[' || c == ']').to_owned();
        } else if section == "commands"
            && let Some((k, v)) = l.split_once('=')
            && k.trim() == "apply_updates"
        {
            apply = matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "yes" | "true" | "1" | "on"
            );
        }
    }
    apply
}

/// Local administrators from `/etc/passwd` and `/etc/group`: accounts with uid 0,
/// and the members of the groups that grant sudo (`sudo` on Debian, `wheel` on
/// Fedora/Arch, `admin` on old Ubuntu). Sorted (name, how).
pub fn local_admins(passwd: &str, group: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 3 && f[2] == "0" && !f[0].is_empty() {
            out.push((f[0].to_owned(), "uid 0".to_owned()));
        }
    }
    for line in group.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && matches!(f[0], "sudo" | "wheel" | "admin") {
            for m in f[3].split(',').map(str::trim).filter(|m| !m.is_empty()) {
                out.push((m.to_owned(), format!("group {}", f[0])));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        crate::platform::test_fixture("posture", name)
    }

    #[test]
    fn firewall_front_ends_real_captures() {
        assert_eq!(
            parse_ufw_status(&fixture("ufw-status.inactive.debian12.txt")),
            Some(false)
        );
        assert_eq!(
            parse_ufw_status(&fixture("ufw-status.active.documented.txt")),
            Some(true)
        );
        assert_eq!(
            parse_firewalld_state(&fixture("firewall-cmd-state.notrunning.debian12.txt")),
            Some(false)
        );
        assert_eq!(parse_firewalld_state("running\n"), Some(true));
        assert_eq!(
            parse_nft_ruleset(&fixture("nft-list-ruleset.empty.debian12.txt")),
            Some(false)
        );
        assert_eq!(
            parse_nft_ruleset(&fixture("nft-list-ruleset.drop.debian12.txt")),
            Some(true)
        );
        assert_eq!(
            parse_iptables_s(&fixture("iptables-S.accept.debian12.txt")),
            Some(false)
        );
        assert_eq!(
            parse_iptables_s(&fixture("iptables-S.drop.debian12.txt")),
            Some(true)
        );
        assert_eq!(parse_iptables_s("iptables: Permission denied\n"), None);
        assert_eq!(parse_ufw_status("ERROR: You need to be root\n"), None);
        // A reject rule in an input chain without a drop policy is filtering too.
        let nft = "table inet f {\n\tchain output {\n\t\ttype filter hook output priority 0; policy drop;\n\t}\n\tchain in {\n\t\ttype filter hook input priority 0; policy accept;\n\t\ttcp dport 23 reject\n\t}\n}\n";
        assert_eq!(parse_nft_ruleset(nft), Some(true));
        let nft_out_only = "table inet f {\n\tchain output {\n\t\ttype filter hook output priority 0; policy drop;\n\t}\n}\n";
        assert_eq!(parse_nft_ruleset(nft_out_only), Some(false));
    }

    #[test]
    fn root_disk_encryption_real_plain_capture_and_documented_luks() {
        // Real: this build machine's root is a plain virtio disk.
        let chain = lsblk_root_chain(&fixture("lsblk.plain.debian12.json")).unwrap();
        assert_eq!(chain, [("vda".to_owned(), "disk".to_owned())]);
        assert!(!chain_encrypted(&chain));
        let chain = lsblk_root_chain(&fixture("lsblk.luks.documented.json")).unwrap();
        assert_eq!(chain.len(), 4);
        assert!(chain_encrypted(&chain));
        let e = lsblk_root_chain(r#"{"blockdevices":[{"name":"sda","type":"disk"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mounted at /"), "{e}");
        assert!(lsblk_root_chain("lsblk: not json").is_err());
    }

    #[test]
    fn unattended_upgrades_real_capture() {
        let (lists, upgrade) = parse_apt_periodic(&fixture("apt-config-dump.debian12.txt"));
        assert_eq!(lists.as_deref(), Some("1"));
        assert_eq!(upgrade.as_deref(), Some("1"));
        assert!(apt_periodic_on(upgrade.as_deref()));
        let (_, off) = parse_apt_periodic(
            "APT::Periodic::Unattended-Upgrade \"1\";\nAPT::Periodic::Unattended-Upgrade \"0\";\n",
        );
        assert!(!apt_periodic_on(off.as_deref()), "the last setting wins");
        assert!(!apt_periodic_on(None));
        assert!(apt_periodic_on(Some("1d")));
    }

    #[test]
    fn dnf_automatic_documented_config() {
        let conf = fixture("dnf-automatic.conf.documented.txt");
        assert!(!parse_dnf_automatic_apply(&conf), "the shipped default");
        assert!(parse_dnf_automatic_apply(
            "[commands]\napply_updates = yes\n[emitters]\napply_updates = no\n"
        ));
    }

    #[test]
    fn local_admins_from_synthetic_passwd_and_group() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/bash\n";
        let group = "root:x:0:\nsudo:x:27:alice,bob\nwheel:x:10:\nusers:x:100:carol\n";
        let admins = local_admins(passwd, group);
        assert_eq!(
            admins,
            [
                ("alice".into(), "group sudo".into()),
                ("bob".into(), "group sudo".into()),
                ("root".into(), "uid 0".into()),
                ("toor".into(), "uid 0".into()),
            ]
        );
    }
}
