//! Parsers of what Windows tools say about posture. Pure functions, compiled on
//! every OS (tested here on fixtures written from Microsoft's documentation and
//! published sample output: no Windows machine is reachable from the build host);
//! `platform/windows.rs` runs the tools.

use super::{ANTIVIRUS, AUTO_UPDATES, Check, DISK_ENCRYPTION, FIREWALL, SCREEN_LOCK};

/// `netsh advfirewall show allprofiles state`: each profile's `State ON|OFF`. Passes
/// only if every profile listed is ON.
pub fn parse_netsh_allprofiles(text: &str) -> Check {
    let mut profiles: Vec<(String, bool)> = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let l = line.trim();
        if let Some(p) = l
            .strip_suffix(" Settings:")
            .or_else(|| l.strip_suffix(" Settings: "))
        {
            current = Some(p.trim().to_owned());
        } else if let Some(v) = l.strip_prefix("State")
            && let Some(p) = current.take()
        {
            profiles.push((p, v.trim().eq_ignore_ascii_case("ON")));
        }
    }
    if profiles.is_empty() {
        return Check::unknown(
            FIREWALL,
            format!(
                "netsh advfirewall printed no profile state: {}",
                super::excerpt(text, 120)
            ),
        );
    }
    let said: Vec<String> = profiles
        .iter()
        .map(|(p, on)| format!("{p} {}", if *on { "ON" } else { "OFF" }))
        .collect();
    Check::verdict(
        FIREWALL,
        profiles.iter().all(|(_, on)| *on),
        format!("netsh advfirewall: {}", said.join(", ")),
    )
}

/// `manage-bde -status C:`: `Protection Status: Protection On` passes; `Protection
/// Off` (decrypted, or suspended) fails.
pub fn parse_manage_bde(text: &str, volume: &str) -> Check {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim_start_matches(':').trim().to_owned())
    };
    match field("Protection Status") {
        Some(p) => {
            let conv = field("Conversion Status").unwrap_or_default();
            Check::verdict(
                DISK_ENCRYPTION,
                p.eq_ignore_ascii_case("Protection On"),
                format!("manage-bde -status {volume}: {p}; {conv}"),
            )
        }
        None => Check::unknown(
            DISK_ENCRYPTION,
            format!(
                "manage-bde -status {volume} printed no protection status (needs an administrator): {}",
                super::excerpt(text, 120)
            ),
        ),
    }
}

/// `Get-MpComputerStatus | Select-Object AMServiceEnabled, AntivirusEnabled,
/// RealTimeProtectionEnabled, AntivirusSignatureAge | ConvertTo-Json`: Defender
/// passes when enabled with real-time protection and signatures younger than
/// `max_signature_age_days`. The signature age is sent as `av.signature.age.days`.
pub fn parse_defender_status(json: &str, max_signature_age_days: u32) -> Check {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Mp {
        #[serde(rename = "AMServiceEnabled")]
        am_service_enabled: Option<bool>,
        antivirus_enabled: Option<bool>,
        real_time_protection_enabled: Option<bool>,
        antivirus_signature_age: Option<i64>,
    }
    let mp: Mp = match serde_json::from_str(json.trim().trim_start_matches('\u{feff}')) {
        Ok(m) => m,
        Err(e) => {
            return Check::unknown(
                ANTIVIRUS,
                format!("Get-MpComputerStatus output is not the expected JSON: {e}"),
            );
        }
    };
    let (Some(av), Some(rt)) = (mp.antivirus_enabled, mp.real_time_protection_enabled) else {
        return Check::unknown(
            ANTIVIRUS,
            "Get-MpComputerStatus did not say whether Defender and real-time protection are on",
        );
    };
    let service = mp.am_service_enabled.unwrap_or(av);
    let age = mp.antivirus_signature_age;
    let fresh = age.is_some_and(|a| (0..=i64::from(max_signature_age_days)).contains(&a));
    let evidence = format!(
        "Get-MpComputerStatus: AMServiceEnabled {service}, AntivirusEnabled {av}, RealTimeProtectionEnabled {rt}, AntivirusSignatureAge {} days (limit {max_signature_age_days})",
        age.map_or("unknown".into(), |a| a.to_string())
    );
    let c = Check::verdict(ANTIVIRUS, service && av && rt && fresh, evidence);
    match age {
        Some(a) if a >= 0 => c.with_value("av.signature.age.days", a as f64),
        _ => c,
    }
}

/// `Get-CimInstance -Namespace root/SecurityCenter2 -ClassName AntivirusProduct |
/// Select-Object displayName, productState | ConvertTo-Json` (client editions of
/// Windows only): every registered product with its `productState`. The state's
/// second byte says enabled (0x10 on, 0x00/0x01 off or snoozed), the third whether
/// signatures are up to date (0x00) or out of date (0x10). Passes if some product is
/// on and current. Returns `None` when no product is registered.
pub fn parse_security_center(json: &str) -> Option<Check> {
    #[derive(serde::Deserialize)]
    struct Product {
        #[serde(rename = "displayName")]
        display_name: String,
        #[serde(rename = "productState")]
        product_state: u32,
    }
    let t = json.trim().trim_start_matches('\u{feff}');
    if t.is_empty() {
        return None;
    }
    // One product is an object, several an array.
    let products: Vec<Product> = serde_json::from_str::<Vec<Product>>(t)
        .or_else(|_| serde_json::from_str::<Product>(t).map(|p| vec![p]))
        .ok()?;
    if products.is_empty() {
        return None;
    }
    let judged: Vec<(String, bool, bool)> = products
        .iter()
        .map(|p| {
            let on = (p.product_state >> 8) & 0xF0 == 0x10;
            let current = p.product_state & 0xF0 == 0x00;
            (p.display_name.clone(), on, current)
        })
        .collect();
    let said: Vec<String> = judged
        .iter()
        .map(|(n, on, cur)| {
            format!(
                "{n}: {}, signatures {}",
                if *on { "on" } else { "off" },
                if *cur { "up to date" } else { "out of date" }
            )
        })
        .collect();
    Some(Check::verdict(
        ANTIVIRUS,
        judged.iter().any(|(_, on, cur)| *on && *cur),
        format!("Security Center: {}", said.join("; ")),
    ))
}

/// Automatic updates from `reg query HKLM\SOFTWARE\Policies\Microsoft\Windows\
/// WindowsUpdate\AU` output (`found` false when the key does not exist, i.e. no
/// policy: Windows' default, automatic download and install). `NoAutoUpdate` = 1
/// fails; `AUOptions` 2 (notify only) fails; 3, 4 and 5 (download, install on a
/// schedule, local admin chooses) pass, 5 with that said in the evidence.
pub fn parse_wu_policy(text: &str, found: bool) -> Check {
    const KEY: &str = r"HKLM\SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate\AU";
    if !found {
        return Check::pass(
            AUTO_UPDATES,
            format!("{KEY} absent: no policy, Windows installs updates automatically"),
        );
    }
    let keys = crate::platform::facts::registry::parse_reg_query(text);
    let Some(k) = keys.first() else {
        return Check::pass(
            AUTO_UPDATES,
            format!("{KEY} empty: no policy, Windows installs updates automatically"),
        );
    };
    if k.dword("NoAutoUpdate") == Some(1) {
        return Check::fail(AUTO_UPDATES, format!("{KEY}: NoAutoUpdate = 1"));
    }
    match k.dword("AUOptions") {
        Some(2) => Check::fail(
            AUTO_UPDATES,
            format!("{KEY}: AUOptions = 2 (notify before download)"),
        ),
        Some(o @ (3 | 4)) => Check::pass(AUTO_UPDATES, format!("{KEY}: AUOptions = {o}")),
        Some(5) => Check::pass(
            AUTO_UPDATES,
            format!("{KEY}: AUOptions = 5 (local administrators choose the setting)"),
        ),
        Some(o) => Check::unknown(
            AUTO_UPDATES,
            format!("{KEY}: AUOptions = {o} is not a documented value"),
        ),
        None => Check::pass(
            AUTO_UPDATES,
            format!("{KEY}: no NoAutoUpdate or AUOptions: Windows' default"),
        ),
    }
}

/// `net localgroup Administrators`: the members, between the dashed line and
/// `The command completed successfully.`
pub fn parse_net_localgroup(text: &str) -> Option<Vec<String>> {
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r'));
    lines.find(|l| l.starts_with("-----"))?;
    let mut out = Vec::new();
    for l in lines {
        let l = l.trim();
        if l.starts_with("The command completed") {
            return Some(out);
        }
        if !l.is_empty() {
            out.push(l.to_owned());
        }
    }
    Some(out)
}

/// The machine inactivity limit (`InactivityTimeoutSecs` under
/// `HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System`): locks the
/// session after that many idle seconds. Passes at 1..=`max_secs`; fails when unset
/// or 0 as policy (a user's own screen saver setting is in their hive, which the
/// agent, running as a service, does not judge).
pub fn parse_inactivity_timeout(text: &str, found: bool, max_secs: u64) -> Check {
    const KEY: &str = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System";
    let value = if found {
        crate::platform::facts::registry::parse_reg_query(text)
            .first()
            .and_then(|k| k.dword("InactivityTimeoutSecs"))
    } else {
        None
    };
    match value {
        Some(v) if v > 0 && v <= max_secs => Check::pass(
            SCREEN_LOCK,
            format!("{KEY}: InactivityTimeoutSecs = {v} (limit {max_secs})"),
        ),
        Some(v) => Check::fail(
            SCREEN_LOCK,
            format!("{KEY}: InactivityTimeoutSecs = {v} (limit {max_secs})"),
        ),
        None => Check::fail(
            SCREEN_LOCK,
            format!("{KEY}: InactivityTimeoutSecs not set: no machine lock policy"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::State;
    use super::*;

    fn fixture(name: &str) -> String {
        crate::platform::test_fixture("posture", name)
    }

    // Every `*.win11`/`*.ws2022` fixture is written from Microsoft's documentation, not
    // captured (no Windows machine here): the test names say "documented". The
    // `*.wine8` ones are real output of Wine 8's own reg.exe, net.exe and netsh.exe
    // (see agent/tests/fixtures/README.md).
    #[test]
    fn netsh_profiles_documented_sample() {
        let c = parse_netsh_allprofiles(&fixture("netsh-advfirewall-allprofiles.win11.txt"));
        assert_eq!(c.state, State::Fail, "{c:?}");
        assert!(
            c.evidence
                .contains("Domain Profile ON, Private Profile ON, Public Profile OFF"),
            "{c:?}"
        );
        let on = fixture("netsh-advfirewall-allprofiles.win11.txt").replace("OFF", "ON");
        assert_eq!(parse_netsh_allprofiles(&on).state, State::Pass);
        assert_eq!(
            parse_netsh_allprofiles("The requested operation requires elevation.").state,
            State::Unknown
        );
    }

    #[test]
    fn bitlocker_documented_sample() {
        let c = parse_manage_bde(&fixture("manage-bde-status.win11.txt"), "C:");
        assert_eq!(c.state, State::Pass, "{c:?}");
        assert!(c.evidence.contains("Fully Encrypted"), "{c:?}");
        let off = fixture("manage-bde-status.win11.txt").replace("Protection On", "Protection Off");
        assert_eq!(parse_manage_bde(&off, "C:").state, State::Fail);
        let denied = "BitLocker Drive Encryption: Configuration Tool version 10.0.22621\nERROR: An attempt to access a required resource was denied.\n";
        assert_eq!(parse_manage_bde(denied, "C:").state, State::Unknown);
    }

    #[test]
    fn defender_and_security_center_documented_samples() {
        let c = parse_defender_status(&fixture("get-mpcomputerstatus.win11.json"), 7);
        assert_eq!(c.state, State::Pass, "{c:?}");
        assert_eq!(c.values, [("av.signature.age.days", 0.0)]);
        let old = parse_defender_status(
            r#"{"AMServiceEnabled":true,"AntivirusEnabled":true,"RealTimeProtectionEnabled":true,"AntivirusSignatureAge":12}"#,
            7,
        );
        assert_eq!(old.state, State::Fail);
        let rt_off = parse_defender_status(
            r#"{"AMServiceEnabled":true,"AntivirusEnabled":true,"RealTimeProtectionEnabled":false,"AntivirusSignatureAge":0}"#,
            7,
        );
        assert_eq!(rt_off.state, State::Fail);
        assert_eq!(parse_defender_status("garbage", 7).state, State::Unknown);
        assert_eq!(parse_defender_status("{}", 7).state, State::Unknown);

        let sc =
            parse_security_center(&fixture("securitycenter2-antivirusproduct.win11.json")).unwrap();
        // Defender snoozed (0x060100: off) but a third-party product on and current.
        assert_eq!(sc.state, State::Pass, "{sc:?}");
        assert!(sc.evidence.contains("Windows Defender: off"), "{sc:?}");
        let one =
            parse_security_center(r#"{"displayName":"Windows Defender","productState":266256}"#)
                .unwrap();
        // 0x041010: on, signatures out of date.
        assert_eq!(one.state, State::Fail, "{one:?}");
        assert!(parse_security_center("").is_none());
    }

    #[test]
    fn update_policy_admins_and_lock_documented_samples() {
        assert_eq!(parse_wu_policy("", false).state, State::Pass);
        let c = parse_wu_policy(&fixture("reg-query-wu-au.win11.txt"), true);
        assert_eq!(c.state, State::Fail, "{c:?}");
        assert!(c.evidence.contains("NoAutoUpdate = 1"));
        let c = parse_wu_policy(
            "HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate\\AU\n    AUOptions    REG_DWORD    0x4\n",
            true,
        );
        assert_eq!(c.state, State::Pass);
        let members =
            parse_net_localgroup(&fixture("net-localgroup-administrators.win11.txt")).unwrap();
        assert_eq!(
            members,
            ["Administrator", "CONTOSO\\Domain Admins", "it-admin"]
        );
        assert_eq!(parse_net_localgroup("System error 5 has occurred."), None);
        assert_eq!(parse_inactivity_timeout("", false, 900).state, State::Fail);
        let lock = "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System\n    InactivityTimeoutSecs    REG_DWORD    0x384\n";
        assert_eq!(parse_inactivity_timeout(lock, true, 900).state, State::Pass);
        assert_eq!(parse_inactivity_timeout(lock, true, 600).state, State::Fail);
    }

    /// Real captures of Wine 8's tools (a fresh prefix): what the agent reads when it
    /// runs under Wine. reg.exe's real layout (CRLF, a blank first line) parses; the
    /// usage text of Wine's net.exe and the empty output of its netsh stub are
    /// unknown, never pass.
    #[test]
    fn wine8_real_captures_read_or_unknown() {
        let c =
            parse_inactivity_timeout(&fixture("reg-query-policies-system.wine8.txt"), true, 900);
        assert_eq!(c.state, State::Fail, "{c:?}");
        assert!(
            c.evidence.contains("InactivityTimeoutSecs not set"),
            "{c:?}"
        );
        let keys = crate::platform::facts::registry::parse_reg_query(&fixture(
            "reg-query-policies-system.wine8.txt",
        ));
        assert_eq!(keys.first().and_then(|k| k.dword("EnableLUA")), Some(0));
        assert_eq!(
            parse_net_localgroup(&fixture("net-localgroup-administrators.wine8.txt")),
            None
        );
        let fw = parse_netsh_allprofiles(&fixture("netsh-advfirewall-allprofiles.wine8.txt"));
        assert_eq!(fw.state, State::Unknown, "{fw:?}");
    }
}
