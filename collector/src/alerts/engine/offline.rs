//! Offline and site-dark evaluation: how long each device has been silent against
//! its limit (servers and workstations may differ), and, with `group_share`, one
//! group alert for a site (or tenant) whose devices went dark together. Sets the
//! inhibition state the rest of the engine reads ([`Engine::suppressed`]).

use std::collections::HashMap;

use super::{Engine, Key};
use crate::alerts::machine::State;
use crate::alerts::model::Verdict;
use crate::alerts::rules::Kind;

/// Servers and workstations get different offline limits. Devices carry no role
/// yet, so it is inferred: Linux and Windows Server are servers, the rest
/// workstations.
pub(crate) fn is_server(os_family: &str, os_version: &str) -> bool {
    os_family == "linux" || (os_family == "windows" && os_version.contains("Server"))
}

/// The tenant a group alert's dimension (`tenant:<t>` or `site:<t>/<s>`) belongs to.
pub(super) fn group_tenant(dimension: &str) -> Option<&str> {
    dimension.strip_prefix("tenant:").or_else(|| {
        dimension
            .strip_prefix("site:")
            .and_then(|r| r.split('/').next())
    })
}

impl Engine {
    /// A device reported: its offline instances see age 0.
    pub(super) fn heartbeat(&mut self, device_id: &str, now_ms: i64) {
        if !self.per_device.contains_key(device_id) {
            return; // no instance at all, so no offline instance to resolve
        }
        let Some(tenant) = self.devices.get(device_id).map(|d| d.tenant.clone()) else {
            return;
        };
        for ri in 0..self.rules.len() {
            if matches!(self.rules[ri].kind, Kind::Offline { .. }) {
                let key = Key {
                    rule: self.rules[ri].name.clone(),
                    device_id: device_id.to_owned(),
                    dimension: String::new(),
                };
                if self.instances.contains_key(&key) {
                    self.feed(
                        ri,
                        device_id,
                        "",
                        &tenant,
                        now_ms,
                        0.0,
                        Verdict::Recover,
                        now_ms,
                    );
                }
            }
        }
    }

    pub(super) fn eval_offline(&mut self, now_ms: i64) {
        for ri in 0..self.rules.len() {
            let Kind::Offline {
                after_ms,
                server_after_ms,
                workstation_after_ms,
                group_share,
                group_min_devices,
            } = self.rules[ri].kind
            else {
                continue;
            };
            let severity = self.rules[ri].severity;
            // (tenant, group) -> (devices, dark devices)
            let mut per_group: HashMap<(String, String), (usize, usize)> = HashMap::new();
            let mut verdicts = Vec::new();
            for (id, d) in &self.devices {
                let target = d.target(id, &self.rules[ri].name);
                if !self.rules[ri].scope.matches(&target) {
                    continue;
                }
                let limit = if is_server(&d.os_family, &d.os_version) {
                    server_after_ms.unwrap_or(after_ms)
                } else {
                    workstation_after_ms.unwrap_or(after_ms)
                };
                let age = now_ms - d.last_seen_ms;
                let dark = age > limit;
                let e = per_group.entry((d.tenant.clone(), d.group())).or_default();
                e.0 += 1;
                e.1 += usize::from(dark);
                let verdict = if dark {
                    Verdict::Breach(severity)
                } else {
                    Verdict::Recover
                };
                verdicts.push((id.clone(), d.tenant.clone(), age as f64 / 1000.0, verdict));
            }
            if let Some(share) = group_share {
                for ((tenant, group), (total, dark)) in per_group {
                    let is_dark = total >= group_min_devices && dark as f64 >= share * total as f64;
                    if is_dark {
                        self.dark_tenants.insert((ri, group.clone()));
                    } else {
                        self.dark_tenants.remove(&(ri, group.clone()));
                    }
                    let verdict = if is_dark {
                        Verdict::Breach(severity)
                    } else {
                        Verdict::Recover
                    };
                    self.feed(
                        ri,
                        "",
                        &group,
                        &tenant,
                        now_ms,
                        dark as f64 / total as f64,
                        verdict,
                        now_ms,
                    );
                }
            }
            for (id, tenant, age_secs, verdict) in verdicts {
                self.feed(ri, &id, "", &tenant, now_ms, age_secs, verdict, now_ms);
            }
        }
        self.offline = self
            .instances
            .iter()
            .filter(|(k, t)| {
                !k.device_id.is_empty()
                    && matches!(t.inst.state, State::Firing | State::Recovering)
                    && self
                        .by_name
                        .get(&k.rule)
                        .is_some_and(|&i| matches!(self.rules[i].kind, Kind::Offline { .. }))
            })
            .map(|(k, _)| k.device_id.clone())
            .collect();
    }
}
