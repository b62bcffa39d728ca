//! Batteries: charge, charging or not, health (full capacity against design
//! capacity) and cycle count, where the OS tells them.
//!
//! The platform reads its source and parses it into [`Battery`] values
//! (`platform/facts/battery.rs`); this module turns them into metrics. A machine
//! without a battery sends nothing.

use super::Reading;

pub use crate::platform::facts::battery::{
    Battery, from_power_status, parse_pmset_batt, parse_power_supply_uevent,
};

impl Battery {
    pub(super) fn push(&self, r: &mut Reading) {
        if let Some(p) = self.percent {
            r.push("battery.charge.percent", self.name.clone(), p);
        }
        if let Some(c) = self.charging {
            r.push(
                "battery.charging",
                self.name.clone(),
                f64::from(u8::from(c)),
            );
        }
        if let Some(h) = self.health_percent {
            r.push("battery.health.percent", self.name.clone(), h);
        }
        if let Some(c) = self.cycles {
            r.push("battery.cycles", self.name.clone(), c as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        crate::test_fixture("battery", name)
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
