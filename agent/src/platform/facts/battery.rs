//! Batteries as the platform reads them: charge, charging or not, health (full
//! capacity against design capacity) and cycle count, where the OS tells them, and
//! the pure functions the platform hands its source to (Linux:
//! `/sys/class/power_supply/*/uevent`; Windows: `GetSystemPowerStatus`; macOS:
//! `pmset -g batt`). A machine without a battery has none.

/// What is known of one battery; `None` fields are left out of the sample.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Battery {
    /// `BAT0` on Linux, `InternalBattery-0` on macOS, `system` on Windows.
    pub(crate) name: String,
    pub(crate) percent: Option<f64>,
    pub(crate) charging: Option<bool>,
    /// Full-charge capacity as a percentage of design capacity.
    pub(crate) health_percent: Option<f64>,
    pub(crate) cycles: Option<u64>,
}

/// Parses a Linux power supply's `uevent` (`POWER_SUPPLY_KEY=value` lines, see the
/// kernel's ABI sysfs-class-power). `None` unless it is a system battery that is
/// present: mains adapters, USB supplies and device batteries (a wireless mouse,
/// `POWER_SUPPLY_SCOPE=Device`) are not this machine's battery.
pub fn parse_power_supply_uevent(name: &str, text: &str) -> Option<Battery> {
    let get = |key: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix("POWER_SUPPLY_")
                .and_then(|rest| rest.strip_prefix(key))
                .and_then(|rest| rest.strip_prefix('='))
                .map(str::trim)
        })
    };
    let num = |key: &str| get(key).and_then(|v| v.parse::<f64>().ok());
    if get("TYPE") != Some("Battery")
        || get("SCOPE") == Some("Device")
        || get("PRESENT") == Some("0")
    {
        return None;
    }
    // Energy (µWh) on most laptops, charge (µAh) on others.
    let (now, full, design) = if num("ENERGY_FULL").is_some() {
        (
            num("ENERGY_NOW"),
            num("ENERGY_FULL"),
            num("ENERGY_FULL_DESIGN"),
        )
    } else {
        (
            num("CHARGE_NOW"),
            num("CHARGE_FULL"),
            num("CHARGE_FULL_DESIGN"),
        )
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(100.0 * a / b),
        _ => None,
    };
    Some(Battery {
        name: name.to_owned(),
        percent: num("CAPACITY").or_else(|| ratio(now, full).map(|p| p.min(100.0))),
        charging: match get("STATUS") {
            Some("Charging") => Some(true),
            Some("Discharging" | "Not charging" | "Full") => Some(false),
            _ => None,
        },
        health_percent: ratio(full, design),
        // Many firmwares report 0 cycles when they do not count them.
        cycles: num("CYCLE_COUNT").filter(|c| *c > 0.0).map(|c| c as u64),
    })
}

/// Parses `pmset -g batt`: after a "Now drawing from" line, one line per battery,
/// ` -InternalBattery-0 (id=…)\t82%; discharging; 4:30 remaining present: true`.
/// pmset tells neither health nor cycles (system_profiler does, far too slowly).
pub fn parse_pmset_batt(text: &str) -> Vec<Battery> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line.strip_prefix('-')?;
            let (name, rest) = rest.split_once([' ', '\t'])?;
            if line.contains("present: false") {
                return None;
            }
            let fields: Vec<&str> = rest
                .split_once('\t')
                .map_or(rest, |(_, f)| f)
                .split(';')
                .map(str::trim)
                .collect();
            let percent = fields
                .first()
                .and_then(|p| p.strip_suffix('%'))
                .and_then(|p| p.trim().parse::<f64>().ok());
            let charging = match fields.get(1).copied() {
                Some("charging" | "finishing charge") => Some(true),
                Some("discharging" | "charged" | "AC attached") => Some(false),
                _ => None,
            };
            Some(Battery {
                name: name.to_owned(),
                percent,
                charging,
                health_percent: None,
                cycles: None,
            })
        })
        .collect()
}

/// Interprets `GetSystemPowerStatus`'s `SYSTEM_POWER_STATUS` fields: `BatteryFlag`
/// 128 means no system battery and 255 unknown; `BatteryLifePercent` 255 unknown;
/// flag bit 8 charging.
pub fn from_power_status(battery_flag: u8, life_percent: u8) -> Option<Battery> {
    if battery_flag == 128 || battery_flag == 255 {
        return None;
    }
    Some(Battery {
        name: "system".into(),
        percent: (life_percent <= 100).then_some(f64::from(life_percent)),
        charging: Some(battery_flag & 8 != 0),
        health_percent: None,
        cycles: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        crate::platform::test_fixture("battery", name)
    }

    #[test]
    fn linux_uevent_energy_and_charge_forms() {
        let b = parse_power_supply_uevent("BAT0", &fixture("uevent-BAT0.thinkpad.txt")).unwrap();
        assert_eq!(b.percent, Some(87.0));
        assert_eq!(b.charging, Some(false));
        assert_eq!(b.cycles, Some(412));
        let h = b.health_percent.unwrap();
        assert!(
            (h - 100.0 * 45_020_000.0 / 57_020_000.0).abs() < 1e-9,
            "{h}"
        );
        let b = parse_power_supply_uevent("BAT1", &fixture("uevent-BAT1.charge.txt")).unwrap();
        assert_eq!(b.charging, Some(true));
        assert_eq!(b.cycles, None);
        assert_eq!(b.percent, Some(50.0));
        assert_eq!(b.health_percent, Some(80.0));
        assert!(parse_power_supply_uevent("AC", &fixture("uevent-AC.txt")).is_none());
        assert!(parse_power_supply_uevent("hid", &fixture("uevent-mouse.txt")).is_none());
    }

    #[test]
    fn pmset_batt_forms() {
        let b = parse_pmset_batt(&fixture("pmset-g-batt.macos14.txt"));
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].name, "InternalBattery-0");
        assert_eq!(b[0].percent, Some(82.0));
        assert_eq!(b[0].charging, Some(false));
        let b = parse_pmset_batt(
            "Now drawing from 'AC Power'\n -InternalBattery-0 (id=1)\t45%; charging; 1:20 remaining present: true\n",
        );
        assert_eq!(b[0].charging, Some(true));
        assert!(parse_pmset_batt("Now drawing from 'AC Power'\n").is_empty());
    }

    #[test]
    fn windows_power_status() {
        assert!(from_power_status(128, 255).is_none());
        assert!(from_power_status(255, 255).is_none());
        let b = from_power_status(8 | 1, 97).unwrap();
        assert_eq!((b.percent, b.charging), (Some(97.0), Some(true)));
        assert_eq!(from_power_status(2, 255).unwrap().percent, None);
    }
}
