//! Batteries: charge, charging or not, health (full capacity against design
//! capacity) and cycle count, where the OS tells them.
//!
//! The platform reads its source and parses it into [`Battery`] values
//! (`platform/facts/battery.rs`); this module turns them into metrics. A machine
//! without a battery sends nothing.

use super::Reading;

pub(crate) use crate::platform::facts::battery::Battery;

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
