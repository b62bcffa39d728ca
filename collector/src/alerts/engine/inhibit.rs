//! Whether an instance's notifications pause: a maintenance window (of the rule
//! files or made at run time) or a silence
//! covers it, or it is inhibited by its device's offline alert, or (a per-device
//! offline alert) by the group alert of its dark site or tenant. Evaluation goes on
//! either way; only the `suppressed` flag follows this.

use super::offline::group_tenant;
use super::{Engine, Key};
use crate::alerts::model::Target;
use crate::alerts::rules::Kind;

impl Engine {
    /// Whether an instance's notifications pause now: maintenance, or inhibited by
    /// its device's offline alert, or (per-device offline) by its tenant's group alert.
    pub(super) fn suppressed(&self, ri: usize, key: &Key, now_ms: i64) -> bool {
        let rule = &self.rules[ri];
        let dev = self.devices.get(&key.device_id);
        let tenant = dev
            .map(|d| d.tenant.as_str())
            .or_else(|| group_tenant(&key.dimension))
            .unwrap_or("");
        let target = match dev {
            Some(d) => d.target(&key.device_id, &rule.name),
            None => Target::device(tenant, &key.device_id, "", &rule.name),
        };
        if self
            .set
            .windows
            .iter()
            .chain(&self.db_windows)
            .any(|w| w.scope.matches(&target) && w.active_at(now_ms))
            || self.silences.iter().any(|s| s.covers(&target, now_ms))
        {
            return true;
        }
        if matches!(rule.kind, Kind::Offline { .. }) {
            // A device in a dark group is covered by the group alert.
            !key.device_id.is_empty()
                && dev.is_some_and(|d| self.dark_tenants.contains(&(ri, d.group())))
        } else {
            self.offline.contains(&key.device_id)
        }
    }
}
