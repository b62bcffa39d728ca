//! Every alert instance of every rule, moved on by committed data and by a coarse
//! timer. Pure apart from the times passed in: no clock, no I/O, so `rules test` and
//! the unit tests drive it exactly as the engine thread does.
//!
//! - Committed metric batches move threshold, rate and forecast instances; patch
//!   reports move patch-age instances; [`Engine::tick`] moves time-based conditions
//!   (offline, patch age growing, `for`, `clear_for`, stale, flapping, maintenance).
//! - An instance exists only once it has breached; a healthy series costs one rule
//!   lookup and a comparison per sample.
//! - A device whose offline alert is active inhibits (suppresses) its other alerts;
//!   a site (or, for devices enrolled without one, a tenant) with `group_share` of
//!   its devices dark raises one group alert that suppresses those devices' offline
//!   alerts.
//! - Changed instances and their history records are handed out by
//!   [`Engine::take_changes`]; the caller commits them before anything else happens.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tandem_proto::v1::{MetricBatch, PatchReport};

use super::machine::{Event, Instance, Record, State};
use super::model::{Target, Verdict};
use super::rules::{Kind, Rule, RuleSet};
use super::silence::Silence;

mod inhibit;
mod offline;
mod reports;
mod signals;

pub(crate) use reports::PatchSummary;
use signals::Points;

/// Identity of an instance: rule × device × dimension. A group (tenant) alert has an
/// empty device and the dimension `tenant:<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Key {
    pub(crate) rule: String,
    pub(crate) device_id: String,
    pub(crate) dimension: String,
}

/// What the engine knows about a device.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Device {
    pub(crate) tenant: String,
    /// The site the device enrolled into, if any (fixed by its enrollment token).
    pub(crate) site: Option<String>,
    pub(crate) os_family: String,
    pub(crate) os_version: String,
    pub(crate) last_seen_ms: i64,
    pub(crate) patch: Option<PatchSummary>,
    /// When the device's newest certificate expires (ms since the epoch).
    pub(crate) cert_not_after_ms: Option<i64>,
    /// The operator's tags (`device tag`), sorted. Shared: evaluation clones it per
    /// batch.
    pub(crate) tags: Arc<Vec<String>>,
}

impl Device {
    /// The group a share of dark devices is counted in: the site, or the tenant for
    /// devices without one.
    pub(super) fn group(&self) -> String {
        match &self.site {
            Some(site) => format!("site:{}/{site}", self.tenant),
            None => format!("tenant:{}", self.tenant),
        }
    }

    /// The scope target of this device for `rule`.
    pub(super) fn target<'a>(&'a self, device_id: &'a str, rule: &'a str) -> Target<'a> {
        let mut t = Target::device(&self.tenant, device_id, &self.os_family, rule);
        t.site = self.site.as_deref();
        t.tags = &self.tags;
        t
    }
}

/// One instance that changed, with the history records to append.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub(crate) key: Key,
    pub(crate) tenant: String,
    pub(crate) instance: Instance,
    pub(crate) records: Vec<Record>,
}

struct Tracked {
    tenant: String,
    inst: Instance,
    /// `last_sample_ms` as last handed out for persistence (persisting every sample
    /// of a long-firing alert would cost a write per sample for nothing).
    persisted_sample_ms: i64,
}

/// All instances and what feeds them.
pub(crate) struct Engine {
    /// Shared so evaluation can hold a rule while feeding instances mutably.
    rules: Arc<Vec<Rule>>,
    set: RuleSet,
    by_name: HashMap<String, usize>,
    by_metric: Arc<HashMap<String, Vec<usize>>>,
    devices: HashMap<String, Device>,
    instances: HashMap<Key, Tracked>,
    /// Instances per device: a healthy sample of a device with none needs no key
    /// built and no map lookup (the hot path of evaluation).
    per_device: HashMap<String, usize>,
    points: HashMap<(usize, String, String), Points>,
    dirty: HashMap<Key, Vec<Record>>,
    /// Devices with an active offline alert: their other alerts are inhibited.
    offline: HashSet<String>,
    /// (offline rule, tenant) with an active group alert.
    dark_tenants: HashSet<(usize, String)>,
    /// Silences made with the CLI (active and upcoming), re-read by the service.
    silences: Vec<Silence>,
    /// Maintenance windows made at run time (the console API; issue 15), re-read by
    /// the service every tick; honoured like the rule files' `set.windows`.
    db_windows: Vec<crate::alerts::model::Window>,
    /// Revoked (or removed) devices: out of the fleet, so nothing of theirs alerts
    /// again, not even "offline" ([`Engine::retire_device`]).
    retired: HashSet<String>,
    /// Rule evaluations done (one per rule per value), for the benchmark.
    pub(crate) evaluations: u64,
    /// State transitions caused by samples and heartbeats (not by ticks), for the
    /// commit-to-transition latency.
    pub(crate) fed_transitions: u64,
}

impl Engine {
    pub(crate) fn new(set: RuleSet) -> Self {
        let rules: Vec<Rule> = set.rules.clone();
        let mut by_metric: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_name = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            by_name.insert(r.name.clone(), i);
            if let Some(m) = r.kind.source_metric() {
                by_metric.entry(m.to_owned()).or_default().push(i);
            }
        }
        Self {
            rules: Arc::new(rules),
            set,
            by_name,
            by_metric: Arc::new(by_metric),
            devices: HashMap::new(),
            instances: HashMap::new(),
            per_device: HashMap::new(),
            points: HashMap::new(),
            dirty: HashMap::new(),
            offline: HashSet::new(),
            dark_tenants: HashSet::new(),
            silences: Vec::new(),
            db_windows: Vec::new(),
            retired: HashSet::new(),
            evaluations: 0,
            fed_transitions: 0,
        }
    }

    /// The rule set the engine runs.
    pub(crate) fn rule_set(&self) -> &RuleSet {
        &self.set
    }

    /// Restores a device (at startup, from the store).
    pub(crate) fn restore_device(&mut self, id: String, device: Device) {
        self.devices.insert(id, device);
    }

    /// Restores a persisted instance. One of a rule no longer defined is retired
    /// (see [`Engine::replace_rules`]).
    pub(crate) fn restore_instance(
        &mut self,
        key: Key,
        tenant: String,
        inst: Instance,
        now_ms: i64,
    ) {
        let persisted_sample_ms = inst.last_sample_ms;
        *self.per_device.entry(key.device_id.clone()).or_default() += 1;
        let retire = !self.by_name.contains_key(&key.rule) || self.retired.contains(&key.device_id);
        self.instances.insert(
            key.clone(),
            Tracked {
                tenant,
                inst,
                persisted_sample_ms,
            },
        );
        if retire {
            self.retire(&key, now_ms);
        }
    }

    /// Runs a new rule set (a reload). Instances of rules that keep their name keep
    /// their state; those of rules that are gone are retired: an active one goes to
    /// OK with a history record, so it does not stay "firing" in the store forever.
    /// Rate and forecast windows start afresh.
    pub(crate) fn replace_rules(&mut self, set: RuleSet, now_ms: i64) {
        let fresh = Engine::new(set);
        self.rules = fresh.rules;
        self.set = fresh.set;
        self.by_name = fresh.by_name;
        self.by_metric = fresh.by_metric;
        self.points.clear();
        self.dark_tenants.clear();
        let gone: Vec<Key> = self
            .instances
            .keys()
            .filter(|k| !self.by_name.contains_key(&k.rule))
            .cloned()
            .collect();
        for k in gone {
            self.retire(&k, now_ms);
        }
    }

    /// Takes a revoked or removed device out of the fleet: every active instance of
    /// it is closed (to OK, with a history record, as a retired rule's are), it is
    /// forgotten as a device, so it cannot go "offline", and its later hellos,
    /// batches and reports are ignored. Returns false if it was retired already.
    pub(crate) fn retire_device(&mut self, id: &str, now_ms: i64) -> bool {
        if !self.retired.insert(id.to_owned()) {
            return false;
        }
        self.devices.remove(id);
        self.offline.remove(id);
        let keys: Vec<Key> = self
            .instances
            .keys()
            .filter(|k| k.device_id == id)
            .cloned()
            .collect();
        for k in keys {
            self.retire(&k, now_ms);
        }
        true
    }

    fn retire(&mut self, key: &Key, now_ms: i64) {
        let Some(t) = self.instances.get_mut(key) else {
            return;
        };
        let mut out = Vec::new();
        t.inst.close(now_ms, &mut out);
        if !out.is_empty() {
            self.dirty.entry(key.clone()).or_default().extend(out);
        }
    }

    /// After a (re)start: the collector's own downtime is not the devices' silence.
    /// Every device without an active offline alert is treated as seen at `now_ms`,
    /// so agents get their offline window to reconnect instead of all "going offline"
    /// at the first tick; devices already alerting keep their real last-seen time.
    /// Call after restoring devices and instances.
    pub(crate) fn start_grace(&mut self, now_ms: i64) {
        let alerting: HashSet<&str> = self
            .instances
            .iter()
            .filter(|(k, t)| {
                t.inst.state != State::Ok
                    && self
                        .by_name
                        .get(&k.rule)
                        .is_some_and(|&i| matches!(self.rules[i].kind, Kind::Offline { .. }))
            })
            .map(|(k, _)| k.device_id.as_str())
            .collect();
        for (id, d) in &mut self.devices {
            if !alerting.contains(id.as_str()) {
                d.last_seen_ms = d.last_seen_ms.max(now_ms);
            }
        }
        // Likewise for data: a pending breach survives the downtime (the downtime
        // does not count towards `for`), and nothing is stale until new silence.
        for t in self.instances.values_mut() {
            if t.inst.last_arrival_ms != i64::MIN {
                t.inst.last_arrival_ms = t.inst.last_arrival_ms.max(now_ms);
            }
        }
    }

    /// Puts changes whose saving failed back, to be saved with the next round (their
    /// instances' current state is saved then; the records are kept in order).
    pub(crate) fn requeue(&mut self, changes: Vec<Change>) {
        for c in changes {
            let later = self.dirty.remove(&c.key).unwrap_or_default();
            let mut records = c.records;
            records.extend(later);
            self.dirty.insert(c.key, records);
        }
    }

    /// Sets when a device's newest certificate expires (after enrollment or renewal).
    pub(crate) fn set_cert_expiry(&mut self, id: &str, not_after_ms: Option<i64>) {
        if let Some(d) = self.devices.get_mut(id) {
            d.cert_not_after_ms = not_after_ms;
        }
    }

    /// Sets every device's tags (devices not named have none). The next tick
    /// applies them to suppression; rule scopes see them from the next sample. An
    /// instance whose device no longer falls in its rule's scope is closed (to OK,
    /// with a history record), as when its rule is removed: no sample would ever
    /// move it again.
    pub(crate) fn set_tags(&mut self, mut tags: HashMap<String, Vec<String>>, now_ms: i64) {
        let mut changed = Vec::new();
        for (id, d) in &mut self.devices {
            let mut t = tags.remove(id).unwrap_or_default();
            t.sort();
            if *d.tags != t {
                d.tags = Arc::new(t);
                changed.push(id.clone());
            }
        }
        for id in changed {
            self.retire_out_of_scope(&id, now_ms);
        }
    }

    fn retire_out_of_scope(&mut self, device_id: &str, now_ms: i64) {
        if !self.per_device.contains_key(device_id) {
            return;
        }
        let Some(d) = self.devices.get(device_id) else {
            return;
        };
        let gone: Vec<Key> = self
            .instances
            .keys()
            .filter(|k| k.device_id == device_id)
            .filter(|k| {
                self.by_name
                    .get(&k.rule)
                    .is_some_and(|&i| !self.rules[i].scope.matches(&d.target(device_id, &k.rule)))
            })
            .cloned()
            .collect();
        for k in gone {
            self.retire(&k, now_ms);
        }
    }

    /// Replaces the silences (the next tick applies them).
    pub(crate) fn set_silences(&mut self, silences: Vec<Silence>) {
        self.silences = silences;
    }

    /// Replaces the maintenance windows made at run time (the next tick applies them).
    pub(crate) fn set_db_windows(&mut self, windows: Vec<crate::alerts::model::Window>) {
        self.db_windows = windows;
    }

    /// Sets the site a device belongs to (from its enrollment; `None` for none).
    pub(crate) fn set_site(&mut self, id: &str, site: Option<String>) {
        if let Some(d) = self.devices.get_mut(id) {
            d.site = site;
        }
    }

    /// A device said hello (or was refreshed).
    pub(crate) fn on_hello(
        &mut self,
        id: &str,
        tenant: &str,
        os_family: &str,
        os_version: &str,
        now_ms: i64,
    ) {
        if self.retired.contains(id) {
            return;
        }
        // Liveness is data arriving, not a handshake: a Hello refreshes last-seen
        // only for a device the engine did not know (its offline window starts
        // now). An agent that reconnects over and over and delivers nothing stays
        // offline (issue 16).
        let known = self.devices.contains_key(id);
        let d = self.devices.entry(id.to_owned()).or_default();
        d.tenant = tenant.to_owned();
        d.os_family = os_family.to_owned();
        d.os_version = os_version.to_owned();
        if !known {
            d.last_seen_ms = d.last_seen_ms.max(now_ms);
        }
    }

    /// A metric batch of `device` was committed at `now_ms`.
    pub(crate) fn on_batch(&mut self, device_id: &str, batch: &MetricBatch, now_ms: i64) {
        let Some(dev) = self.devices.get_mut(device_id) else {
            return;
        };
        dev.last_seen_ms = dev.last_seen_ms.max(now_ms);
        self.heartbeat(device_id, now_ms);
        let Some(dev) = self.devices.get(device_id) else {
            return;
        };
        let tenant = dev.tenant.clone();
        let os = dev.os_family.clone();
        let site = dev.site.clone();
        let tags = dev.tags.clone();
        let (rules, by_metric) = (self.rules.clone(), self.by_metric.clone());
        for (i, series) in batch.series.iter().enumerate() {
            let Some(rule_ids) = by_metric.get(&series.name) else {
                continue;
            };
            for &ri in rule_ids {
                let rule = &rules[ri];
                if rule
                    .dimension
                    .as_ref()
                    .is_some_and(|d| *d != series.dimension)
                {
                    continue;
                }
                if let Kind::ServiceDown { services } = &rule.kind
                    && !services.is_empty()
                    && !services.contains(&series.dimension)
                {
                    continue;
                }
                let mut target = Target::device(&tenant, device_id, &os, &rule.name);
                target.site = site.as_deref();
                target.tags = &tags;
                if !rule.scope.matches(&target) {
                    continue;
                }
                for sample in &batch.samples {
                    let Some(&v) = sample.values.get(i) else {
                        continue;
                    };
                    if v.is_nan() {
                        continue;
                    }
                    let at = sample.time_unix_ms;
                    let value = match &rule.kind {
                        Kind::Threshold { .. } | Kind::ServiceDown { .. } => Some(v),
                        Kind::Rate { per_secs, .. } => self
                            .points
                            .entry((ri, device_id.to_owned(), series.dimension.clone()))
                            .or_default()
                            .rate(at, v, *per_secs),
                        Kind::Forecast {
                            window_ms, target, ..
                        } => self
                            .points
                            .entry((ri, device_id.to_owned(), series.dimension.clone()))
                            .or_default()
                            .forecast(at, v, *window_ms, *target),
                        _ => None,
                    };
                    self.evaluations += 1;
                    if let Some(value) = value {
                        let verdict = match rule.kind {
                            // 1 = running, 0 = not; anything below a half is down.
                            Kind::ServiceDown { .. } if value < 0.5 => {
                                Verdict::Breach(rule.severity)
                            }
                            Kind::ServiceDown { .. } => Verdict::Recover,
                            _ => rule.verdict(value),
                        };
                        self.feed(
                            ri,
                            device_id,
                            &series.dimension,
                            &tenant,
                            at,
                            value,
                            verdict,
                            now_ms,
                        );
                    }
                }
            }
        }
    }

    /// A patch report of `device` was committed at `now_ms`.
    pub(crate) fn on_patch(&mut self, device_id: &str, report: &PatchReport, now_ms: i64) {
        let Some(dev) = self.devices.get_mut(device_id) else {
            return;
        };
        dev.last_seen_ms = dev.last_seen_ms.max(now_ms);
        if let Some(summary) = PatchSummary::of(report) {
            dev.patch = Some(summary);
        }
        self.heartbeat(device_id, now_ms);
        self.eval_patch(device_id, now_ms);
    }

    /// Moves every time-based condition on to `now_ms`.
    pub(crate) fn tick(&mut self, now_ms: i64) {
        // Instances that are quiet and were persisted: forget them (an OK instance
        // needs no memory once its flap window has passed).
        let rules = &self.rules;
        let by_name = &self.by_name;
        let dirty = &self.dirty;
        let per_device = &mut self.per_device;
        self.instances.retain(|k, t| {
            let window = by_name
                .get(&k.rule)
                .map_or(0, |&i| rules[i].params.flap_window_ms);
            let forget = t.inst.is_quiet()
                && !dirty.contains_key(k)
                && t.inst.changes.last().is_none_or(|c| now_ms - c >= window);
            if forget && let Some(n) = per_device.get_mut(&k.device_id) {
                *n = n.saturating_sub(1);
            }
            !forget
        });
        self.per_device.retain(|_, n| *n > 0);
        self.eval_offline(now_ms);
        let ids: Vec<String> = self
            .devices
            .iter()
            .filter(|(_, d)| d.patch.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.eval_patch(&id, now_ms);
        }
        let ids: Vec<String> = self
            .devices
            .iter()
            .filter(|(_, d)| d.cert_not_after_ms.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.eval_cert(&id, now_ms);
        }
        let keys: Vec<Key> = self.instances.keys().cloned().collect();
        for key in keys {
            let Some(&ri) = self.by_name.get(&key.rule) else {
                continue;
            };
            let suppressed = self.suppressed(ri, &key, now_ms);
            let params = self.rules[ri].params;
            let Some(t) = self.instances.get_mut(&key) else {
                continue;
            };
            let mut out = Vec::new();
            t.inst.tick(&params, now_ms, &mut out);
            t.inst.set_suppressed(suppressed, now_ms, &mut out);
            if !out.is_empty() {
                self.dirty.entry(key).or_default().extend(out);
            }
        }
    }

    /// The instances changed since the last call, with their new history records.
    pub(crate) fn take_changes(&mut self) -> Vec<Change> {
        let mut changes = Vec::with_capacity(self.dirty.len());
        for (key, records) in self.dirty.drain() {
            if let Some(t) = self.instances.get_mut(&key) {
                t.persisted_sample_ms = t.inst.last_sample_ms;
                changes.push(Change {
                    key,
                    tenant: t.tenant.clone(),
                    instance: t.inst.clone(),
                    records,
                });
            }
        }
        changes.sort_by(|a, b| a.key.cmp(&b.key));
        changes
    }

    /// Every instance currently tracked (for the tests).
    #[cfg(test)]
    pub(crate) fn instance(&self, key: &Key) -> Option<&Instance> {
        self.instances.get(key).map(|t| &t.inst)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn feed(
        &mut self,
        ri: usize,
        device_id: &str,
        dimension: &str,
        tenant: &str,
        at_ms: i64,
        value: f64,
        verdict: Verdict,
        now_ms: i64,
    ) {
        if !matches!(verdict, Verdict::Breach(_)) && !self.per_device.contains_key(device_id) {
            return;
        }
        let key = Key {
            rule: self.rules[ri].name.clone(),
            device_id: device_id.to_owned(),
            dimension: dimension.to_owned(),
        };
        let mut out = Vec::new();
        if !self.instances.contains_key(&key) {
            if !matches!(verdict, Verdict::Breach(_)) {
                return;
            }
            let inst = Instance {
                suppressed: self.suppressed(ri, &key, now_ms),
                ..Instance::default()
            };
            self.instances.insert(
                key.clone(),
                Tracked {
                    tenant: tenant.to_owned(),
                    inst,
                    persisted_sample_ms: i64::MIN,
                },
            );
            *self.per_device.entry(key.device_id.clone()).or_default() += 1;
        }
        let params = self.rules[ri].params;
        let Some(t) = self.instances.get_mut(&key) else {
            return;
        };
        let before = (t.inst.state, t.inst.breach_samples);
        t.inst
            .observe_at(&params, at_ms, now_ms, value, verdict, &mut out);
        self.fed_transitions += out
            .iter()
            .filter(|r| matches!(r.event, Event::Transition { .. }))
            .count() as u64;
        let moved = before != (t.inst.state, t.inst.breach_samples)
            || t.inst.last_sample_ms.saturating_sub(t.persisted_sample_ms)
                > params.nodata_after_ms / 2;
        if !out.is_empty() || moved {
            self.dirty.entry(key).or_default().extend(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::offline::is_server;
    use super::signals::NEVER_SECS;
    use super::*;
    use crate::alerts::model::Severity;
    use crate::alerts::rules::parse_file;
    use std::path::Path;
    use tandem_proto::v1::UpdateClassification;
    use tandem_proto::v1::{PendingUpdate, Sample, SeriesKey};

    const S: i64 = 1000;

    fn engine(src: &str) -> Engine {
        Engine::new(parse_file(Path::new("t.toml"), src).unwrap_or_else(|e| panic!("{e}")))
    }

    fn batch(name: &str, dim: &str, at: i64, v: f64) -> MetricBatch {
        MetricBatch {
            seq: 1,
            series: vec![SeriesKey {
                name: name.into(),
                dimension: dim.into(),
            }],
            samples: vec![Sample {
                time_unix_ms: at,
                values: vec![v],
            }],
        }
    }

    fn key(rule: &str, dev: &str, dim: &str) -> Key {
        Key {
            rule: rule.into(),
            device_id: dev.into(),
            dimension: dim.into(),
        }
    }

    fn state(e: &Engine, k: &Key) -> State {
        e.instance(k).map_or(State::Ok, |i| i.state)
    }

    const CPU: &str = "[[rule]]\nname = \"cpu\"\nkind = \"threshold\"\nmetric = \"cpu.usage.percent\"\nwarning = { above = 90 }\n";
    const OFFLINE: &str =
        "[[rule]]\nname = \"off\"\nkind = \"offline\"\nafter_secs = 60\nserver_after_secs = 20\n";

    #[test]
    fn a_retired_device_closes_its_alerts_and_never_goes_offline() {
        let mut e = engine(&format!(
            "{CPU}[[rule]]\nname = \"off\"\nkind = \"offline\"\nafter_secs = 60\n"
        ));
        e.on_hello("d1", "acme", "linux", "12", 0);
        e.on_batch("d1", &batch("cpu.usage.percent", "", 0, 99.0), 0);
        assert_eq!(state(&e, &key("cpu", "d1", "")), State::Firing);
        e.take_changes();
        assert!(e.retire_device("d1", 10 * S));
        assert!(!e.retire_device("d1", 11 * S), "once");
        assert_eq!(state(&e, &key("cpu", "d1", "")), State::Ok);
        assert!(!e.take_changes().is_empty(), "the closing is persisted");
        e.on_hello("d1", "acme", "linux", "12", 20 * S);
        e.on_batch("d1", &batch("cpu.usage.percent", "", 20 * S, 99.0), 20 * S);
        e.tick(3600 * S);
        assert_eq!(state(&e, &key("cpu", "d1", "")), State::Ok);
        assert!(
            e.instance(&key("off", "d1", ""))
                .is_none_or(|i| i.state == State::Ok)
        );
    }

    #[test]
    fn each_dimension_is_its_own_instance_and_healthy_series_cost_no_instance() {
        let mut e = engine(
            "[[rule]]\nname = \"disk\"\nkind = \"threshold\"\nmetric = \"fs.used.percent\"\nwarning = { above = 90 }\n",
        );
        e.on_hello("d1", "acme", "linux", "", 0);
        e.on_batch("d1", &batch("fs.used.percent", "/", 1000, 95.0), 1000);
        e.on_batch("d1", &batch("fs.used.percent", "/home", 1000, 10.0), 1000);
        assert_eq!(state(&e, &key("disk", "d1", "/")), State::Firing);
        assert!(e.instance(&key("disk", "d1", "/home")).is_none());
        let ch = e.take_changes();
        assert_eq!(ch.len(), 1);
        assert_eq!(ch[0].records.len(), 2, "ok→pending→firing");
        assert!(e.take_changes().is_empty(), "handed out once");
    }

    #[test]
    fn scope_limits_rules_to_tenants_and_os() {
        let mut e = engine(&format!(
            "{CPU}[rule.scope]\ntenants = [\"acme\"]\nos = [\"windows\"]\n"
        ));
        e.on_hello("lin", "acme", "linux", "", 0);
        e.on_hello("win", "acme", "windows", "", 0);
        e.on_hello("other", "globex", "windows", "", 0);
        for d in ["lin", "win", "other"] {
            e.on_batch(d, &batch("cpu.usage.percent", "", 1, 99.0), 1);
        }
        assert_eq!(state(&e, &key("cpu", "win", "")), State::Firing);
        assert!(e.instance(&key("cpu", "lin", "")).is_none());
        assert!(e.instance(&key("cpu", "other", "")).is_none());
    }

    /// A device whose agent reconnects every few seconds but delivers nothing goes
    /// offline all the same; data brings it back. Before issue 16 each Hello
    /// refreshed last-seen, so it never did.
    #[test]
    fn hellos_without_data_do_not_keep_a_device_online() {
        let mut e = engine(OFFLINE);
        e.on_hello("srv", "acme", "linux", "", 0);
        e.on_batch("srv", &batch("cpu", "", 0, 1.0), 0);
        for t in (5..=60).step_by(5) {
            e.on_hello("srv", "acme", "linux", "", t * S);
            e.tick(t * S);
        }
        assert_eq!(state(&e, &key("off", "srv", "")), State::Firing);
        e.on_batch("srv", &batch("cpu", "", 61 * S, 1.0), 61 * S);
        e.tick(62 * S);
        assert_ne!(state(&e, &key("off", "srv", "")), State::Firing);
    }

    #[test]
    fn offline_fires_once_per_device_and_inhibits_its_other_alerts() {
        let mut e = engine(&format!("{CPU}{OFFLINE}"));
        e.on_hello("srv", "acme", "linux", "", 0);
        e.on_hello("ws", "acme", "windows", "Windows 11", 0);
        e.on_batch("srv", &batch("cpu.usage.percent", "", 0, 99.0), 0);
        e.tick(20 * S);
        assert_eq!(
            state(&e, &key("off", "srv", "")),
            State::Ok,
            "20 s is not over the limit"
        );
        e.tick(21 * S);
        assert_eq!(
            state(&e, &key("off", "srv", "")),
            State::Firing,
            "server limit: 20 s"
        );
        assert_eq!(
            state(&e, &key("off", "ws", "")),
            State::Ok,
            "workstation limit: 60 s"
        );
        let cpu = e.instance(&key("cpu", "srv", "")).cloned().unwrap();
        assert_eq!(cpu.state, State::Firing);
        assert!(cpu.suppressed, "inhibited by the device's offline alert");
        e.tick(61 * S);
        assert_eq!(state(&e, &key("off", "ws", "")), State::Firing);
        // It comes back: offline resolves, inhibition lifts.
        e.on_batch("srv", &batch("cpu.usage.percent", "", 70 * S, 10.0), 70 * S);
        assert_eq!(state(&e, &key("off", "srv", "")), State::Ok);
        e.tick(71 * S);
        assert!(
            !e.instance(&key("cpu", "srv", ""))
                .is_some_and(|i| i.suppressed)
        );
    }

    #[test]
    fn a_tenant_going_dark_together_raises_one_group_alert() {
        let mut e = engine(&format!(
            "{OFFLINE}group_share = 0.5\ngroup_min_devices = 3\n"
        ));
        for d in ["a", "b", "c", "d"] {
            e.on_hello(d, "acme", "linux", "", 0);
        }
        e.on_hello("x", "globex", "linux", "", 0);
        e.on_batch("c", &batch("cpu.usage.percent", "", 30 * S, 1.0), 30 * S);
        e.on_batch("d", &batch("cpu.usage.percent", "", 30 * S, 1.0), 30 * S);
        e.on_batch("x", &batch("cpu.usage.percent", "", 30 * S, 1.0), 30 * S);
        e.tick(40 * S); // a and b are dark: 2 of 4 = 0.5
        let group = key("off", "", "tenant:acme");
        assert_eq!(state(&e, &group), State::Firing);
        assert!(e.instance(&key("off", "a", "")).unwrap().suppressed);
        assert!(!e.instance(&group).unwrap().suppressed);
        assert!(e.instance(&key("off", "", "tenant:globex")).is_none());
        // c and d report again later, a and b come back: the group clears.
        for d in ["a", "b", "c", "d"] {
            e.on_batch(d, &batch("cpu.usage.percent", "", 45 * S, 1.0), 45 * S);
        }
        e.tick(50 * S);
        assert_eq!(state(&e, &group), State::Ok);
    }

    #[test]
    fn a_site_going_dark_raises_one_site_alert_and_spares_the_other_sites() {
        let mut e = engine(&format!(
            "{OFFLINE}group_share = 0.5\ngroup_min_devices = 3\n"
        ));
        for (d, site) in [
            ("h1", "hq"),
            ("h2", "hq"),
            ("h3", "hq"),
            ("b1", "branch"),
            ("b2", "branch"),
            ("b3", "branch"),
        ] {
            e.on_hello(d, "acme", "linux", "", 0);
            e.set_site(d, Some(site.into()));
        }
        // The whole branch goes dark; one hq device too (1 of 3: below the share).
        for d in ["h1", "h2"] {
            e.on_batch(d, &batch("cpu.usage.percent", "", 30 * S, 1.0), 30 * S);
        }
        e.tick(40 * S);
        let branch = key("off", "", "site:acme/branch");
        assert_eq!(state(&e, &branch), State::Firing);
        assert!(
            e.instance(&key("off", "", "site:acme/hq")).is_none(),
            "hq is not dark as a site"
        );
        assert!(
            e.instance(&key("off", "", "tenant:acme")).is_none(),
            "sites group instead of the tenant"
        );
        assert!(
            e.instance(&key("off", "b1", "")).unwrap().suppressed,
            "covered by the site alert"
        );
        let h3 = e.instance(&key("off", "h3", "")).unwrap();
        assert_eq!(h3.state, State::Firing);
        assert!(
            !h3.suppressed,
            "a lone dark device at a healthy site is its own alert"
        );
    }

    #[test]
    fn rules_scoped_to_a_site_match_only_its_devices() {
        let mut e = engine(
            "[[rule]]\nname = \"cpu\"\nkind = \"threshold\"\nmetric = \"cpu.usage.percent\"\nwarning = { above = 90 }\nscope = { sites = [\"hq\"] }\n",
        );
        e.on_hello("h", "acme", "linux", "", 0);
        e.set_site("h", Some("hq".into()));
        e.on_hello("b", "acme", "linux", "", 0);
        e.set_site("b", Some("branch".into()));
        e.on_hello("n", "acme", "linux", "", 0);
        for d in ["h", "b", "n"] {
            e.on_batch(d, &batch("cpu.usage.percent", "", S, 99.0), S);
        }
        assert_eq!(state(&e, &key("cpu", "h", "")), State::Firing);
        assert!(e.instance(&key("cpu", "b", "")).is_none());
        assert!(
            e.instance(&key("cpu", "n", "")).is_none(),
            "no site, no match"
        );
    }

    #[test]
    fn an_expiring_certificate_warns_and_a_renewal_clears_it() {
        let mut e = engine(
            "[[rule]]\nname = \"cert\"\nkind = \"cert_expiry\"\nwarning = { below = 14 }\ncritical = { below = 3 }\n",
        );
        let day = 86_400 * S;
        e.on_hello("d", "acme", "linux", "", 0);
        e.set_cert_expiry("d", Some(30 * day));
        e.tick(S);
        assert!(e.instance(&key("cert", "d", "")).is_none(), "30 days left");
        e.tick(20 * day);
        assert_eq!(state(&e, &key("cert", "d", "")), State::Firing);
        // Renewed: a new certificate good for 30 more days.
        e.set_cert_expiry("d", Some(50 * day));
        e.tick(20 * day + S);
        assert_ne!(state(&e, &key("cert", "d", "")), State::Firing);
    }

    #[test]
    fn rate_of_change() {
        let mut e = engine(
            "[[rule]]\nname = \"errs\"\nkind = \"rate\"\nmetric = \"net.rx.errors\"\nper_secs = 60\nwarning = { above = 10 }\n",
        );
        e.on_hello("d", "t", "linux", "", 0);
        let k = key("errs", "d", "eth0");
        e.on_batch("d", &batch("net.rx.errors", "eth0", 0, 100.0), 0);
        e.on_batch("d", &batch("net.rx.errors", "eth0", 60 * S, 105.0), 60 * S);
        assert!(e.instance(&k).is_none(), "5/min");
        e.on_batch(
            "d",
            &batch("net.rx.errors", "eth0", 120 * S, 125.0),
            120 * S,
        );
        assert_eq!(state(&e, &k), State::Firing, "20/min");
        assert_eq!(e.instance(&k).unwrap().last_value, 20.0);
    }

    #[test]
    fn forecast_time_until_full() {
        let mut e = engine(
            "[[rule]]\nname = \"fill\"\nkind = \"forecast\"\nmetric = \"fs.used.percent\"\ntarget = 100\nwindow_secs = 3600\nwarning = { below = 86400 }\n",
        );
        e.on_hello("d", "t", "linux", "", 0);
        let k = key("fill", "d", "/");
        // Filling 1 % per 10 min from 50 %: 100 % in 500 min from the start.
        for i in 0..=30 {
            let t = i * 60 * S;
            e.on_batch(
                "d",
                &batch("fs.used.percent", "/", t, 50.0 + i as f64 / 10.0),
                t,
            );
        }
        let inst = e.instance(&k).unwrap();
        assert_eq!(inst.state, State::Firing);
        let want = (100.0 - 53.0) * 600.0;
        assert!(
            (inst.last_value - want).abs() < 1.0,
            "{} vs {want}",
            inst.last_value
        );
        // Flat, then shrinking: never full, recovers.
        for i in 31..=200 {
            let t = i * 60 * S;
            e.on_batch("d", &batch("fs.used.percent", "/", t, 40.0), t);
        }
        assert_eq!(state(&e, &k), State::Ok);
        assert_eq!(e.instance(&k).unwrap().last_value, NEVER_SECS);
    }

    #[test]
    fn forecast_toward_a_lower_target() {
        let mut p = Points::default();
        // Free bytes dropping 10 per second from 1000: zero in 100 s from the start.
        let mut last = None;
        for i in 0..=10 {
            last = p.forecast(i * S, 1000.0 - 10.0 * i as f64, 100 * S, 0.0);
        }
        assert!((last.unwrap() - 90.0).abs() < 1e-6, "{last:?}");
        let mut q = Points::default();
        for i in 0..=10 {
            last = q.forecast(i * S, 1000.0 + 10.0 * i as f64, 100 * S, 0.0);
        }
        assert_eq!(last, Some(NEVER_SECS));
    }

    fn report(security_first_seen: &[i64], reboot_since: Option<i64>, at: i64) -> PatchReport {
        PatchReport {
            seq: 1,
            time_unix_ms: at,
            source: "apt".into(),
            error: String::new(),
            reboot_required: reboot_since.is_some(),
            reboot_required_since_unix_ms: reboot_since.unwrap_or(0),
            last_install_unix_ms: 0,
            updates: security_first_seen
                .iter()
                .map(|&f| PendingUpdate {
                    name: "openssl".into(),
                    current_version: "1".into(),
                    new_version: "2".into(),
                    classification: UpdateClassification::Security as i32,
                    advisory_id: String::new(),
                    first_seen_unix_ms: f,
                })
                .collect(),
        }
    }

    #[test]
    fn patch_age_grows_with_the_clock_and_clears_with_a_new_report() {
        let mut e = engine(
            "[[rule]]\nname = \"sec\"\nkind = \"security_update_age\"\nwarning = { above = 14 }\ncritical = { above = 30 }\n\
             [[rule]]\nname = \"reboot\"\nkind = \"reboot_pending\"\nwarning = { above = 7 }\n",
        );
        const DAY: i64 = 86_400_000;
        e.on_hello("d", "t", "windows", "", 0);
        e.on_patch("d", &report(&[0, 5 * DAY], Some(DAY), DAY), DAY);
        e.tick(8 * DAY + 1);
        assert_eq!(
            state(&e, &key("reboot", "d", "")),
            State::Firing,
            "7 days and a bit"
        );
        assert!(e.instance(&key("sec", "d", "")).is_none());
        // first_seen 0 means "unknown": the report's time (day 1) is used.
        e.tick(15 * DAY);
        assert!(
            e.instance(&key("sec", "d", "")).is_none(),
            "14 days exactly"
        );
        e.tick(15 * DAY + 1);
        let sec = e.instance(&key("sec", "d", "")).unwrap();
        assert_eq!(
            (sec.state, sec.severity),
            (State::Firing, Some(Severity::Warning))
        );
        e.tick(31 * DAY + 1);
        assert_eq!(
            e.instance(&key("sec", "d", "")).unwrap().severity,
            Some(Severity::Critical)
        );
        // Updates installed, rebooted: a clean report clears both.
        e.on_patch("d", &report(&[], None, 32 * DAY), 32 * DAY);
        assert_eq!(state(&e, &key("sec", "d", "")), State::Ok);
        assert_eq!(state(&e, &key("reboot", "d", "")), State::Ok);
        // A failed check changes nothing.
        let mut failed = report(&[0], Some(0), 33 * DAY);
        failed.error = "apt locked".into();
        e.on_patch("d", &failed, 33 * DAY);
        e.tick(34 * DAY);
        assert_eq!(state(&e, &key("sec", "d", "")), State::Ok);
    }

    #[test]
    fn maintenance_suppresses_but_evaluation_goes_on() {
        let mut e = engine(&format!(
            "{CPU}for_secs = 60\n[[maintenance]]\nname = \"m\"\ntz = \"Europe/Berlin\"\nstart = \"1970-01-01T01:00:00\"\nend = \"1970-01-01T01:10:00\"\nscope = {{ rules = [\"cpu\"] }}\n"
        ));
        // Berlin was UTC+1 in 1970: the window is [0, 600 s) in Unix time.
        e.on_hello("d", "t", "linux", "", 0);
        let k = key("cpu", "d", "");
        for i in 0..=10 {
            e.on_batch(
                "d",
                &batch("cpu.usage.percent", "", i * 10 * S, 99.0),
                i * 10 * S,
            );
            e.tick(i * 10 * S);
        }
        let inst = e.instance(&k).unwrap();
        assert_eq!(inst.state, State::Firing, "evaluation goes on");
        assert!(inst.suppressed);
        e.tick(600 * S);
        assert!(!e.instance(&k).unwrap().suppressed);
        let recs: Vec<_> = e
            .take_changes()
            .into_iter()
            .flat_map(|c| c.records)
            .collect();
        let firing = recs
            .iter()
            .find(|r| {
                r.event
                    == Event::Transition {
                        from: State::Pending,
                        to: State::Firing,
                    }
            })
            .unwrap();
        assert!(
            firing.suppressed,
            "fired inside the window: not notified then"
        );
        assert_eq!(
            recs.last().map(|r| (r.event, r.suppressed)),
            Some((Event::Suppressed(false), false))
        );
    }

    #[test]
    fn a_weekly_window_suppresses_at_local_time_on_both_sides_of_a_dst_change() {
        // Sundays 01:00–04:00 Berlin. 2026-03-22 is CET (UTC+1), 2026-03-29 is the
        // spring-forward day: 01:00 CET to 04:00 CEST, i.e. 00:00Z to 02:00Z.
        let mut e = engine(&format!(
            "{CPU}[[maintenance]]\nname = \"sunday\"\ntz = \"Europe/Berlin\"\nweekdays = [\"sun\"]\nfrom = \"01:00\"\nto = \"04:00\"\n"
        ));
        let ms = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_millisecond();
        e.on_hello("d", "t", "linux", "", 0);
        let k = key("cpu", "d", "");
        let at = |e: &mut Engine, when: &str| {
            let t = ms(when);
            e.on_batch("d", &batch("cpu.usage.percent", "", t, 99.0), t);
            e.tick(t);
            e.instance(&k).unwrap().suppressed
        };
        assert!(at(&mut e, "2026-03-22T02:59:00Z"), "03:59 CET: inside");
        assert!(!at(&mut e, "2026-03-22T03:00:00Z"), "04:00 CET: after");
        assert!(
            !at(&mut e, "2026-03-28T23:59:00Z"),
            "Saturday 00:59 CET: before"
        );
        assert!(at(&mut e, "2026-03-29T00:00:00Z"), "01:00 CET: starts");
        assert!(at(&mut e, "2026-03-29T01:59:00Z"), "03:59 CEST: inside");
        assert!(
            !at(&mut e, "2026-03-29T02:00:00Z"),
            "04:00 CEST: ends an hour earlier in UTC"
        );
    }

    #[test]
    fn quiet_instances_are_forgotten_after_their_flap_window() {
        let mut e = engine(&format!("{CPU}flap_window_secs = 60\n"));
        e.on_hello("d", "t", "linux", "", 0);
        e.on_batch("d", &batch("cpu.usage.percent", "", 0, 99.0), 0);
        e.on_batch("d", &batch("cpu.usage.percent", "", 10 * S, 1.0), 10 * S);
        e.take_changes();
        e.tick(20 * S);
        assert!(
            e.instance(&key("cpu", "d", "")).is_some(),
            "within the flap window"
        );
        e.tick(80 * S);
        assert!(e.instance(&key("cpu", "d", "")).is_none());
        // Forgotten cleanly: healthy samples create nothing, a breach starts afresh.
        e.on_batch("d", &batch("cpu.usage.percent", "", 90 * S, 1.0), 90 * S);
        assert!(e.take_changes().is_empty());
        e.on_batch("d", &batch("cpu.usage.percent", "", 100 * S, 99.0), 100 * S);
        assert_eq!(state(&e, &key("cpu", "d", "")), State::Firing);
    }

    #[test]
    fn a_restart_gives_devices_their_offline_window_but_keeps_active_offline_alerts() {
        let mut e = engine(OFFLINE);
        e.on_hello("quiet", "acme", "linux", "", 0);
        e.on_hello("dark", "acme", "linux", "", 0);
        e.on_batch(
            "quiet",
            &batch("cpu.usage.percent", "", 20 * S, 1.0),
            20 * S,
        );
        e.tick(21 * S);
        assert_eq!(state(&e, &key("off", "dark", "")), State::Firing);
        assert!(e.instance(&key("off", "quiet", "")).is_none());
        // Restart an hour later, from what was saved.
        let changes = e.take_changes();
        let mut r = engine(OFFLINE);
        r.restore_device(
            "quiet".into(),
            Device {
                tenant: "acme".into(),
                os_family: "linux".into(),
                last_seen_ms: 21 * S,
                ..Device::default()
            },
        );
        r.restore_device(
            "dark".into(),
            Device {
                tenant: "acme".into(),
                os_family: "linux".into(),
                last_seen_ms: 0,
                ..Device::default()
            },
        );
        for c in changes {
            r.restore_instance(c.key, c.tenant, c.instance, 3600 * S);
        }
        let restart = 3600 * S;
        r.start_grace(restart);
        r.tick(restart + 5 * S);
        assert!(
            r.instance(&key("off", "quiet", "")).is_none(),
            "not offline because the collector was down"
        );
        assert_eq!(
            state(&r, &key("off", "dark", "")),
            State::Firing,
            "still offline, not resolved by the restart"
        );
        r.tick(restart + 21 * S);
        assert_eq!(
            state(&r, &key("off", "quiet", "")),
            State::Firing,
            "silent for its window after the restart"
        );
    }

    #[test]
    fn a_reload_keeps_instances_of_kept_rules_and_retires_the_others() {
        let mut e = engine(&format!(
            "{CPU}[[rule]]\nname = \"mem\"\nkind = \"threshold\"\nmetric = \"mem.used.percent\"\nwarning = {{ above = 90 }}\n"
        ));
        e.on_hello("d", "t", "linux", "", 0);
        e.on_batch("d", &batch("cpu.usage.percent", "", 0, 99.0), 0);
        e.on_batch("d", &batch("mem.used.percent", "", 0, 99.0), 0);
        e.take_changes();
        // "mem" removed, "cpu" kept with a stricter threshold.
        e.replace_rules(
            parse_file(Path::new("t.toml"), "[[rule]]\nname = \"cpu\"\nkind = \"threshold\"\nmetric = \"cpu.usage.percent\"\nwarning = { above = 99.5 }\n").unwrap(),
            10 * S,
        );
        let ch = e.take_changes();
        assert_eq!(ch.len(), 1);
        assert_eq!(
            (ch[0].key.rule.as_str(), ch[0].instance.state),
            ("mem", State::Ok)
        );
        assert_eq!(
            state(&e, &key("cpu", "d", "")),
            State::Firing,
            "kept its state"
        );
        e.on_batch("d", &batch("cpu.usage.percent", "", 20 * S, 99.0), 20 * S);
        assert_eq!(
            state(&e, &key("cpu", "d", "")),
            State::Ok,
            "recovered under the new threshold"
        );
        e.on_batch("d", &batch("mem.used.percent", "", 20 * S, 99.0), 20 * S);
        assert_eq!(
            state(&e, &key("mem", "d", "")),
            State::Ok,
            "no rule, no evaluation"
        );
    }

    #[test]
    fn requeued_changes_are_handed_out_again_in_order() {
        let mut e = engine(CPU);
        e.on_hello("d", "t", "linux", "", 0);
        e.on_batch("d", &batch("cpu.usage.percent", "", 0, 99.0), 0);
        let failed = e.take_changes();
        e.on_batch("d", &batch("cpu.usage.percent", "", 10 * S, 1.0), 10 * S);
        e.requeue(failed);
        let again = e.take_changes();
        assert_eq!(again.len(), 1);
        let to: Vec<State> = again[0]
            .records
            .iter()
            .filter_map(|r| match r.event {
                Event::Transition { to, .. } => Some(to),
                _ => None,
            })
            .collect();
        assert_eq!(
            to,
            [State::Pending, State::Firing, State::Recovering, State::Ok]
        );
        assert_eq!(again[0].instance.state, State::Ok);
    }

    #[test]
    fn rule_scopes_and_windows_match_device_tags_as_they_change() {
        let mut e = engine(&format!(
            "{CPU}scope = {{ tags = [\"server\"] }}\n[[maintenance]]\nname = \"m\"\nstart = \"1970-01-01T00:00\"\nend = \"1970-01-02T00:00\"\nscope = {{ tags = [\"lab\"] }}\n"
        ));
        e.on_hello("a", "acme", "linux", "", 0);
        e.on_hello("b", "acme", "linux", "", 0);
        e.on_batch("a", &batch("cpu.usage.percent", "", S, 99.0), S);
        assert!(e.instance(&key("cpu", "a", "")).is_none(), "untagged");
        e.set_tags(
            HashMap::from([
                ("a".to_string(), vec!["server".to_string()]),
                (
                    "b".to_string(),
                    vec!["server".to_string(), "lab".to_string()],
                ),
            ]),
            2 * S,
        );
        for d in ["a", "b"] {
            e.on_batch(d, &batch("cpu.usage.percent", "", 2 * S, 99.0), 2 * S);
        }
        e.tick(3 * S);
        assert_eq!(state(&e, &key("cpu", "a", "")), State::Firing);
        assert!(!e.instance(&key("cpu", "a", "")).unwrap().suppressed);
        assert!(
            e.instance(&key("cpu", "b", "")).unwrap().suppressed,
            "the lab window covers b by its tag"
        );
        // b loses its lab tag: the window no longer covers it at the next tick.
        e.set_tags(
            HashMap::from([
                ("a".to_string(), vec!["server".to_string()]),
                ("b".to_string(), vec!["server".to_string()]),
            ]),
            4 * S,
        );
        e.tick(4 * S);
        assert!(!e.instance(&key("cpu", "b", "")).unwrap().suppressed);
        // a loses its server tag: out of the rule's scope, its alert is closed (no
        // sample would move it again) and its hot samples create nothing new.
        e.take_changes();
        e.set_tags(HashMap::new(), 5 * S);
        let closed = e.take_changes();
        assert_eq!(closed.len(), 2, "a's and b's instances");
        assert!(closed.iter().all(|c| c.instance.state == State::Ok));
        e.on_batch("a", &batch("cpu.usage.percent", "", 6 * S, 99.0), 6 * S);
        assert_eq!(state(&e, &key("cpu", "a", "")), State::Ok);
        assert!(e.take_changes().is_empty());
    }

    #[test]
    fn a_silence_suppresses_what_it_matches_while_it_lasts_and_evaluation_goes_on() {
        use crate::alerts::model::Scope;
        let mut e = engine(&format!("{CPU}for_secs = 30\n"));
        e.on_hello("a", "acme", "linux", "", 0);
        e.on_hello("b", "acme", "linux", "", 0);
        e.set_silences(vec![Silence {
            id: 1,
            starts_ms: 10 * S,
            ends_ms: 100 * S,
            scope: Scope {
                devices: vec!["a".into()],
                rules: vec!["cpu".into()],
                ..Scope::default()
            },
            recurring: None,
        }]);
        for i in 0..=6 {
            for d in ["a", "b"] {
                e.on_batch(
                    d,
                    &batch("cpu.usage.percent", "", i * 10 * S, 99.0),
                    i * 10 * S,
                );
            }
            e.tick(i * 10 * S);
        }
        let a = e.instance(&key("cpu", "a", "")).unwrap();
        assert_eq!(a.state, State::Firing, "evaluation goes on");
        assert!(a.suppressed);
        assert!(!e.instance(&key("cpu", "b", "")).unwrap().suppressed);
        let recs: Vec<_> = e
            .take_changes()
            .into_iter()
            .filter(|c| c.key.device_id == "a")
            .flat_map(|c| c.records)
            .collect();
        assert!(
            recs.iter()
                .any(|r| r.state == State::Firing && r.suppressed),
            "fired while silenced: {recs:?}"
        );
        // Lifted early (the CLI's unsilence): unsuppressed at the next tick.
        e.set_silences(Vec::new());
        e.tick(70 * S);
        assert!(!e.instance(&key("cpu", "a", "")).unwrap().suppressed);
    }

    #[test]
    fn service_down_fires_per_service_after_for_and_recovers_when_it_runs_again() {
        let mut e = engine(
            "[[rule]]\nname = \"web\"\nkind = \"service_down\"\nservice = [\"nginx\", \"php-fpm\"]\nfor_secs = 60\n\
             [[rule]]\nname = \"any\"\nkind = \"service_down\"\nservice = \"*\"\nseverity = \"warning\"\n",
        );
        e.on_hello("d", "acme", "linux", "", 0);
        let up = |e: &mut Engine, at: i64, nginx: f64, php: f64, cron: f64| {
            let b = MetricBatch {
                seq: 1,
                series: ["nginx", "php-fpm", "cron"]
                    .iter()
                    .map(|n| SeriesKey {
                        name: "service.up".into(),
                        dimension: (*n).into(),
                    })
                    .collect(),
                samples: vec![Sample {
                    time_unix_ms: at,
                    values: vec![nginx, php, cron],
                }],
            };
            e.on_batch("d", &b, at);
            e.tick(at);
        };
        up(&mut e, 0, 1.0, 1.0, 1.0);
        assert!(e.take_changes().is_empty(), "all running: no instance");
        up(&mut e, 10 * S, 0.0, 1.0, 0.0);
        assert_eq!(state(&e, &key("web", "d", "nginx")), State::Pending);
        assert!(e.instance(&key("web", "d", "php-fpm")).is_none());
        assert!(
            e.instance(&key("web", "d", "cron")).is_none(),
            "cron is not one of web's services"
        );
        let any = e.instance(&key("any", "d", "cron")).unwrap();
        assert_eq!(
            (any.state, any.severity),
            (State::Firing, Some(Severity::Warning)),
            "no for_secs: fires at once, at the rule's severity"
        );
        up(&mut e, 69 * S, 0.0, 1.0, 1.0);
        assert_eq!(state(&e, &key("web", "d", "nginx")), State::Pending, "59 s");
        e.tick(70 * S);
        let web = e.instance(&key("web", "d", "nginx")).unwrap();
        assert_eq!(
            (web.state, web.severity, web.last_value),
            (State::Firing, Some(Severity::Critical), 0.0)
        );
        assert_eq!(
            state(&e, &key("any", "d", "cron")),
            State::Ok,
            "cron runs again"
        );
        up(&mut e, 80 * S, 1.0, 1.0, 1.0);
        assert_eq!(state(&e, &key("web", "d", "nginx")), State::Ok);
        assert_eq!(state(&e, &key("any", "d", "nginx")), State::Ok);
    }

    #[test]
    fn servers_and_workstations() {
        assert!(is_server("linux", "Debian 13"));
        assert!(is_server("windows", "Windows Server 2022"));
        assert!(!is_server("windows", "Windows 11 Pro"));
        assert!(!is_server("macos", "15.1"));
    }
}
