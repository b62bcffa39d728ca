//! Linux: posture sources (firewall front ends, lsblk, APT/dnf-automatic, passwd
//! and group, sshd), the shell for custom checks, the CPU time of reaped children.
//! Tools run through `crate::platform::tool::run` (deadline, process-group kill); what they
//! print is parsed in `facts::posture::{linux, sshd}`.

use std::path::Path;
use std::time::Duration;

use crate::platform::facts::backup::BackupReadError;
use crate::platform::facts::posture::{self, Check, linux as p, sshd};

/// The shell for custom checks that ask for one (`shell = true`).
pub(crate) const SHELL: (&str, &str) = ("/bin/sh", "-c");

fn installed(paths: &[&str]) -> Option<String> {
    paths
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| (*p).to_owned())
}

/// Every posture check of a Linux machine. Blocking.
pub(crate) fn posture(timeout: Duration) -> Vec<Check> {
    let mut out = vec![
        firewall(timeout),
        disk_encryption(timeout),
        Check::unknown(
            posture::ANTIVIRUS,
            "Linux has no OS-reported antivirus state (Windows Security Center and macOS XProtect have one)",
        ),
        auto_updates(timeout),
        local_admins(),
        Check::unknown(
            posture::SCREEN_LOCK,
            "screen lock settings are per desktop user (GNOME/KDE dconf); the agent runs as a system service",
        ),
    ];
    out.extend(ssh(timeout));
    out
}

fn firewall(timeout: Duration) -> Check {
    type Parser = fn(&str) -> p::Verdict;
    let sources: [(&str, &[&str], &[&str], Parser); 4] = [
        (
            "ufw status",
            &["/usr/sbin/ufw"],
            &["status"],
            p::parse_ufw_status,
        ),
        (
            "firewall-cmd --state",
            &["/usr/bin/firewall-cmd"],
            &["--state"],
            p::parse_firewalld_state,
        ),
        (
            "nft list ruleset",
            &["/usr/sbin/nft", "/sbin/nft"],
            &["list", "ruleset"],
            p::parse_nft_ruleset,
        ),
        (
            "iptables -S",
            &["/usr/sbin/iptables", "/sbin/iptables"],
            &["-S"],
            p::parse_iptables_s,
        ),
    ];
    let mut off = Vec::new();
    let mut unreadable = Vec::new();
    for (what, paths, args, parse) in sources {
        let Some(prog) = installed(paths) else {
            continue;
        };
        // firewall-cmd exits 252 when not running (36 without D-Bus); its words
        // still say so.
        match crate::platform::tool::run(&prog, args, timeout) {
            Ok(o) => {
                let text = format!("{}{}", o.stdout, o.stderr);
                match parse(&text) {
                    Some(true) => {
                        return Check::pass(
                            posture::FIREWALL,
                            format!("{what}: {}", posture::excerpt(&text, 160)),
                        );
                    }
                    Some(false) => off.push(format!("{what}: {}", posture::excerpt(&text, 80))),
                    None => unreadable.push(format!("{what}: {}", posture::excerpt(&text, 80))),
                }
            }
            Err(e) => unreadable.push(format!("{what}: {e}")),
        }
    }
    if !off.is_empty() {
        let mut ev = off.join("; ");
        if !unreadable.is_empty() {
            ev.push_str(&format!(" (unreadable: {})", unreadable.join("; ")));
        }
        return Check::fail(posture::FIREWALL, format!("no input filtering: {ev}"));
    }
    if unreadable.is_empty() {
        Check::unknown(
            posture::FIREWALL,
            "none of ufw, firewalld, nft or iptables is installed",
        )
    } else {
        Check::unknown(posture::FIREWALL, unreadable.join("; "))
    }
}

fn disk_encryption(timeout: Duration) -> Check {
    let run = crate::platform::tool::run(
        "lsblk",
        &["-J", "-o", "NAME,TYPE,FSTYPE,MOUNTPOINTS"],
        timeout,
    )
    .and_then(|o| o.accept("lsblk", &[0]));
    match run {
        Err(e) => Check::unknown(posture::DISK_ENCRYPTION, e.to_string()),
        Ok(o) => match p::lsblk_root_chain(&o.stdout) {
            Err(why) => Check::unknown(posture::DISK_ENCRYPTION, why.to_string()),
            Ok(chain) => {
                let path: Vec<String> = chain.iter().map(|(n, t)| format!("{n} ({t})")).collect();
                Check::verdict(
                    posture::DISK_ENCRYPTION,
                    p::chain_encrypted(&chain),
                    format!("lsblk: / is on {}", path.join(" > ")),
                )
            }
        },
    }
}

fn auto_updates(timeout: Duration) -> Check {
    if Path::new("/usr/bin/apt-config").exists() {
        let dump = match crate::platform::tool::run("apt-config", &["dump"], timeout)
            .and_then(|o| o.accept("apt-config", &[0]))
        {
            Ok(o) => o.stdout,
            Err(e) => return Check::unknown(posture::AUTO_UPDATES, e.to_string()),
        };
        let (lists, upgrade) = p::parse_apt_periodic(&dump);
        let has_uu = Path::new("/usr/bin/unattended-upgrade").exists();
        let ev = format!(
            "apt-config dump: APT::Periodic::Update-Package-Lists {:?}, APT::Periodic::Unattended-Upgrade {:?}; unattended-upgrades {}",
            lists.as_deref().unwrap_or("unset"),
            upgrade.as_deref().unwrap_or("unset"),
            if has_uu { "installed" } else { "not installed" }
        );
        return Check::verdict(
            posture::AUTO_UPDATES,
            has_uu
                && p::apt_periodic_on(lists.as_deref())
                && p::apt_periodic_on(upgrade.as_deref()),
            ev,
        );
    }
    if Path::new("/usr/bin/dnf").exists() {
        // dnf-automatic-install.timer installs whatever automatic.conf says;
        // dnf-automatic.timer installs only with apply_updates = yes.
        let enabled = |unit: &str| {
            crate::platform::tool::run("systemctl", &["is-enabled", unit], timeout)
                .is_ok_and(|o| o.stdout.trim() == "enabled")
        };
        let conf = std::fs::read_to_string("/etc/dnf/automatic.conf").unwrap_or_default();
        let apply = p::parse_dnf_automatic_apply(&conf);
        let install_timer = enabled("dnf-automatic-install.timer");
        let timer = enabled("dnf-automatic.timer");
        return Check::verdict(
            posture::AUTO_UPDATES,
            install_timer || (timer && apply),
            format!(
                "systemctl is-enabled: dnf-automatic-install.timer {install_timer}, dnf-automatic.timer {timer}; /etc/dnf/automatic.conf apply_updates {apply}"
            ),
        );
    }
    Check::unknown(
        posture::AUTO_UPDATES,
        "neither APT (unattended-upgrades) nor dnf (dnf-automatic) is installed; other distributions are not read yet",
    )
}

fn local_admins() -> Check {
    let (Ok(passwd), Ok(group)) = (
        std::fs::read_to_string("/etc/passwd"),
        std::fs::read_to_string("/etc/group"),
    ) else {
        return Check::unknown(
            posture::LOCAL_ADMINS,
            "cannot read /etc/passwd or /etc/group",
        );
    };
    posture::admins_check(
        p::local_admins(&passwd, &group),
        "/etc/passwd and /etc/group",
    )
}

fn ssh(timeout: Duration) -> Vec<Check> {
    let Some(sshd_bin) = installed(&["/usr/sbin/sshd", "/usr/bin/sshd"]) else {
        return sshd::not_installed("no SSH server installed (no /usr/sbin/sshd)");
    };
    if let Ok(o) = crate::platform::tool::run(&sshd_bin, &["-T"], timeout)
        && o.code == Some(0)
    {
        return sshd::checks(&sshd::parse_sshd_t(&o.stdout), "sshd -T");
    }
    // sshd -T needs root, host keys and /run/sshd; the file is the fallback.
    let path = "/etc/ssh/sshd_config";
    match std::fs::read_to_string(path) {
        Ok(text) => sshd::checks(
            &sshd::parse_config(&text, &mut |pat| {
                sshd::read_glob(Path::new("/etc/ssh"), pat)
            }),
            path,
        ),
        Err(e) => sshd::unreadable(&format!("sshd -T failed and {path} is unreadable: {e}")),
    }
}

/// CPU time of the agent's reaped children (`cutime + cstime` of /proc/self/stat),
/// in ms: custom checks are counted against the budget with it.
pub(crate) fn children_cpu_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    crate::platform::facts::usage::parse_proc_stat_children_cpu_ms(&stat)
}

/// Native backup records: none on Linux (use a `path` or `command` source).
pub(crate) fn native_backup(
    kind: &str,
    _timeout: Duration,
) -> Result<(i64, String), BackupReadError> {
    Err(BackupReadError::OtherOs {
        kind: kind.to_owned(),
        only: "Windows or macOS",
    })
}
