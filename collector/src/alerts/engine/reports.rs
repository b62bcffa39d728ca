//! Rules judged from reports rather than samples: patch age and pending reboot
//! (from the device's latest patch report) and certificate expiry (from the
//! collector's record of issued certificates).

use tandem_proto::v1::{PatchReport, UpdateClassification};

use super::Engine;
use crate::alerts::model::Verdict;
use crate::alerts::rules::Kind;

/// The part of a device's latest patch report the patch-age rules need.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct PatchSummary {
    /// When the oldest still-pending security update was first seen.
    pub(crate) oldest_security_ms: Option<i64>,
    /// Since when a reboot has been required.
    pub(crate) reboot_since_ms: Option<i64>,
}

impl PatchSummary {
    /// Summarises a report; `None` for a failed check (it says nothing new).
    pub(crate) fn of(report: &PatchReport) -> Option<PatchSummary> {
        if !report.error.is_empty() {
            return None;
        }
        let oldest_security_ms = report
            .updates
            .iter()
            .filter(|u| u.classification == UpdateClassification::Security as i32)
            .map(|u| {
                if u.first_seen_unix_ms > 0 {
                    u.first_seen_unix_ms
                } else {
                    report.time_unix_ms
                }
            })
            .min();
        let since = report.reboot_required_since_unix_ms;
        let reboot_since_ms = report.reboot_required.then_some(if since > 0 {
            since
        } else {
            report.time_unix_ms
        });
        Some(PatchSummary {
            oldest_security_ms,
            reboot_since_ms,
        })
    }
}

impl Engine {
    pub(super) fn eval_patch(&mut self, device_id: &str, now_ms: i64) {
        let Some(d) = self.devices.get(device_id) else {
            return;
        };
        let Some(p) = d.patch else { return };
        let tenant = d.tenant.clone();
        let device = d.clone();
        for ri in 0..self.rules.len() {
            let since = match self.rules[ri].kind {
                Kind::SecurityUpdateAge => p.oldest_security_ms,
                Kind::RebootPending => p.reboot_since_ms,
                _ => continue,
            };
            let target = device.target(device_id, &self.rules[ri].name);
            if !self.rules[ri].scope.matches(&target) {
                continue;
            }
            let days = since.map_or(0.0, |s| (now_ms - s).max(0) as f64 / 86_400_000.0);
            let verdict = if since.is_some() {
                self.rules[ri].verdict(days)
            } else {
                Verdict::Recover
            };
            self.evaluations += 1;
            self.feed(ri, device_id, "", &tenant, now_ms, days, verdict, now_ms);
        }
    }

    /// Certificate-expiry rules: days until the device's newest certificate expires
    /// (negative once expired), judged like any value (`warning = { below = 14 }`).
    pub(super) fn eval_cert(&mut self, device_id: &str, now_ms: i64) {
        let Some(d) = self.devices.get(device_id) else {
            return;
        };
        let Some(not_after) = d.cert_not_after_ms else {
            return;
        };
        let device = d.clone();
        for ri in 0..self.rules.len() {
            if !matches!(self.rules[ri].kind, Kind::CertExpiry) {
                continue;
            }
            let target = device.target(device_id, &self.rules[ri].name);
            if !self.rules[ri].scope.matches(&target) {
                continue;
            }
            let days = (not_after - now_ms) as f64 / 86_400_000.0;
            let verdict = self.rules[ri].verdict(days);
            self.evaluations += 1;
            self.feed(
                ri,
                device_id,
                "",
                &device.tenant,
                now_ms,
                days,
                verdict,
                now_ms,
            );
        }
    }
}
