//! Parsers of what macOS tools say about posture. Pure functions, compiled on every
//! OS and tested on fixtures written from Apple's man pages and published output
//! (no Mac is reachable from the build host); `platform/macos.rs` runs the tools.

use super::{AUTO_UPDATES, Check, DISK_ENCRYPTION, FIREWALL};

/// `/usr/libexec/ApplicationFirewall/socketfilterfw --getglobalstate`:
/// `Firewall is enabled. (State = 1)` / `Firewall is disabled. (State = 0)`
/// (State 2 is "block all incoming", also on).
pub fn parse_socketfilterfw(text: &str) -> Check {
    let t = text.trim();
    let said = format!("socketfilterfw --getglobalstate: {}", super::excerpt(t, 80));
    if t.contains("enabled") || t.contains("State = 1") || t.contains("State = 2") {
        Check::pass(FIREWALL, said)
    } else if t.contains("disabled") || t.contains("State = 0") {
        Check::fail(FIREWALL, said)
    } else {
        Check::unknown(FIREWALL, format!("unexpected output: {said}"))
    }
}

/// `fdesetup status`: `FileVault is On.` / `FileVault is Off.` (while encrypting:
/// `Encryption in progress`, which is not yet a pass).
pub fn parse_fdesetup_status(text: &str) -> Check {
    let first = text.lines().next().unwrap_or("").trim();
    let said = format!("fdesetup status: {}", super::excerpt(text, 120));
    if first.starts_with("FileVault is On") && !text.contains("in progress") {
        Check::pass(DISK_ENCRYPTION, said)
    } else if first.starts_with("FileVault is Off") || text.contains("in progress") {
        Check::fail(DISK_ENCRYPTION, said)
    } else {
        Check::unknown(DISK_ENCRYPTION, format!("unexpected output: {said}"))
    }
}

/// `softwareupdate --schedule`: `Automatic check is on` / `off`.
pub fn parse_softwareupdate_schedule(text: &str) -> Check {
    let said = format!("softwareupdate --schedule: {}", super::excerpt(text, 80));
    let t = text.to_ascii_lowercase();
    if t.contains("automatic check is on") {
        Check::pass(AUTO_UPDATES, said)
    } else if t.contains("automatic check is off") {
        Check::fail(AUTO_UPDATES, said)
    } else {
        Check::unknown(AUTO_UPDATES, format!("unexpected output: {said}"))
    }
}

/// `dscl . -read /Groups/admin GroupMembership`: `GroupMembership: root alice`.
pub fn parse_dscl_group_membership(text: &str) -> Option<Vec<String>> {
    let rest = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("GroupMembership:"))?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::super::State;
    use super::*;

    #[test]
    /// Synthetic: inline strings from Apple's man pages (no Mac here).
    fn macos_outputs_synthetic_from_man_pages() {
        assert_eq!(
            parse_socketfilterfw("Firewall is enabled. (State = 1)\n").state,
            State::Pass
        );
        assert_eq!(
            parse_socketfilterfw("Firewall is disabled. (State = 0)\n").state,
            State::Fail
        );
        assert_eq!(parse_socketfilterfw("").state, State::Unknown);
        assert_eq!(
            parse_fdesetup_status("FileVault is On.\n").state,
            State::Pass
        );
        assert_eq!(
            parse_fdesetup_status("FileVault is Off.\n").state,
            State::Fail
        );
        assert_eq!(
            parse_fdesetup_status(
                "FileVault is On.\nEncryption in progress: Percent completed = 42.1\n"
            )
            .state,
            State::Fail
        );
        assert_eq!(
            parse_softwareupdate_schedule("Automatic check is on\n").state,
            State::Pass
        );
        assert_eq!(
            parse_softwareupdate_schedule("Automatic check is off\n").state,
            State::Fail
        );
        assert_eq!(
            parse_dscl_group_membership("GroupMembership: root alice\n"),
            Some(vec!["root".into(), "alice".into()])
        );
        assert_eq!(parse_dscl_group_membership("No such key"), None);
    }
}
