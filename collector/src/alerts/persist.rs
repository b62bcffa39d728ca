//! The alert engine's side of the store: converts between the engine's types
//! (`Change`, `Instance`, `Device`) and the store's rows, and calls the alert side
//! of the store interface ([`AlertStore`]) — instance rows, the history of every
//! transition and flag change, the startup load, and the reads and the ack behind
//! `alerts list` / `alerts ack`. No SQL here: it is in `store::alert_sql` (issue 17).
//!
//! Invariant: [`save`] hands a round's instance rows and history to one
//! [`AlertStore::save_round`], which commits them in one transaction, so the stored
//! state and the stored history never disagree, and a transition is durable before
//! anything could act on it.

use super::engine::{Change, Device, Key, PatchSummary};
use super::machine::{Event, Instance, State};
use super::model::Severity;
use crate::store::StoreError;
pub(crate) use crate::store::api::{AckOutcome, AlertRow, HistoryRow};
use crate::store::api::{
    AlertFilter, AlertStore, InstanceChange, InstanceRow, RecordEvent, RecordRow,
};

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("alert store")]
    Store(#[from] StoreError),
    #[error("alert instance {key} has an unreadable stored state: {what}")]
    Corrupt { key: String, what: String },
}

fn row_of(c: &Change) -> InstanceChange {
    let i = &c.instance;
    InstanceChange {
        instance: InstanceRow {
            rule: c.key.rule.clone(),
            device_id: c.key.device_id.clone(),
            dimension: c.key.dimension.clone(),
            tenant: c.tenant.clone(),
            state: i.state.as_str().into(),
            severity: i.severity.map(|s| s.as_str().into()),
            since_ms: i.since_ms,
            breach_start_ms: i.breach_start_ms,
            breach_samples: i.breach_samples,
            recover_start_ms: i.recover_start_ms,
            last_sample_ms: i.last_sample_ms,
            last_arrival_ms: i.last_arrival_ms,
            last_value: i.last_value,
            stale: i.stale,
            flapping: i.flapping,
            suppressed: i.suppressed,
            changes: i.changes.clone(),
        },
        records: c
            .records
            .iter()
            .map(|r| RecordRow {
                at_ms: r.at_ms,
                event: match r.event {
                    Event::Transition { from, to } => RecordEvent::Transition {
                        from: from.as_str(),
                        to: to.as_str(),
                    },
                    Event::Severity { to, .. } => RecordEvent::Severity { to: to.as_str() },
                    Event::Suppressed(on) => RecordEvent::Suppressed(on),
                    e @ (Event::Stale(_) | Event::Flapping(_)) => RecordEvent::Flag(e.kind()),
                },
                state: r.state.as_str(),
                severity: r.severity.map(Severity::as_str),
                value: r.value,
                suppressed: r.suppressed,
            })
            .collect(),
    }
}

/// Writes the changed instances and their records, in one transaction; logs the
/// incidents it opened or resolved once committed.
pub(crate) fn save(
    store: &mut impl AlertStore,
    changes: &[Change],
    now_ms: i64,
) -> Result<(), PersistError> {
    if changes.is_empty() {
        return Ok(());
    }
    let rows: Vec<InstanceChange> = changes.iter().map(row_of).collect();
    let logged = store.save_round(&rows, now_ms)?;
    crate::notify::incident::log_committed(&logged);
    Ok(())
}

/// When each device's newest certificate expires, for the periodic refresh of the
/// certificate-expiry rules (renewals happen without a new hello).
pub(crate) fn load_cert_expiries(
    store: &impl AlertStore,
) -> Result<Vec<(String, i64)>, PersistError> {
    Ok(store.load_cert_expiries()?)
}

/// Every device as the engine needs it, with its latest successful patch report.
pub(crate) fn load_devices(store: &impl AlertStore) -> Result<Vec<(String, Device)>, PersistError> {
    Ok(store
        .load_devices()?
        .into_iter()
        .map(|d| {
            (
                d.id,
                Device {
                    tenant: d.tenant,
                    site: d.site,
                    cert_not_after_ms: d.cert_not_after_ms,
                    os_family: d.os_family,
                    os_version: d.os_version,
                    last_seen_ms: d.last_seen_ms,
                    patch: d.patch.map(|p| PatchSummary {
                        oldest_security_ms: p.oldest_security_ms,
                        reboot_since_ms: p.reboot_since_ms,
                    }),
                    tags: Default::default(),
                },
            )
        })
        .collect())
}

/// Devices revoked (or removed, which revokes): out of the fleet for alerting.
pub(crate) fn load_revoked_devices(store: &impl AlertStore) -> Result<Vec<String>, PersistError> {
    Ok(store.load_revoked_devices()?)
}

/// Every device's tags (`device tag`), for scopes; re-read on each engine tick so
/// the CLI's changes reach a running collector.
pub(crate) fn load_tags(
    store: &impl AlertStore,
) -> Result<std::collections::HashMap<String, Vec<String>>, PersistError> {
    Ok(store.load_tags()?)
}

/// Every stored instance, to resume the state machines after a restart.
pub(crate) fn load_instances(
    store: &impl AlertStore,
) -> Result<Vec<(Key, String, Instance)>, PersistError> {
    let mut out = Vec::new();
    for r in store.load_instances()? {
        let corrupt = |what: String| PersistError::Corrupt {
            key: format!("{}/{}/{:?}", r.rule, r.device_id, r.dimension),
            what,
        };
        let state =
            State::parse(&r.state).ok_or_else(|| corrupt(format!("state {:?}", r.state)))?;
        let severity = match &r.severity {
            None => None,
            Some(s) => Some(Severity::parse(s).ok_or_else(|| corrupt(format!("severity {s:?}")))?),
        };
        out.push((
            Key {
                rule: r.rule,
                device_id: r.device_id,
                dimension: r.dimension,
            },
            r.tenant,
            Instance {
                state,
                severity,
                since_ms: r.since_ms,
                breach_start_ms: r.breach_start_ms,
                breach_samples: r.breach_samples,
                recover_start_ms: r.recover_start_ms,
                last_sample_ms: r.last_sample_ms,
                last_arrival_ms: r.last_arrival_ms,
                last_value: r.last_value,
                stale: r.stale,
                flapping: r.flapping,
                suppressed: r.suppressed,
                changes: r.changes,
            },
        ));
    }
    Ok(out)
}

/// Filters for [`list`].
#[derive(Debug, Clone, Default)]
pub(crate) struct ListFilter<'a> {
    pub(crate) tenant: Option<&'a str>,
    pub(crate) state: Option<State>,
    pub(crate) device: Option<&'a str>,
    /// Include instances that are back to OK.
    pub(crate) all: bool,
    /// Only alerts of at least this severity.
    pub(crate) min_severity: Option<Severity>,
}

/// Alerts, most recent state change first.
pub(crate) fn list(
    store: &impl AlertStore,
    f: &ListFilter<'_>,
) -> Result<Vec<AlertRow>, PersistError> {
    Ok(store.list_alerts(&AlertFilter {
        tenant: f.tenant,
        state: f.state.map(State::as_str),
        device: f.device,
        all: f.all,
        min_severity: f.min_severity.map(Severity::as_str),
    })?)
}

/// The history of one device's alerts (or of all, or of one tenant's), oldest first.
pub(crate) fn history(
    store: &impl AlertStore,
    device: Option<&str>,
    tenant: Option<&str>,
) -> Result<Vec<HistoryRow>, PersistError> {
    Ok(store.alert_history(device, tenant)?)
}

/// Acknowledges an active alert (records who and when, and a history row).
pub(crate) fn ack(
    store: &mut impl AlertStore,
    id: i64,
    by: &str,
    now_ms: i64,
) -> Result<AckOutcome, PersistError> {
    Ok(store.ack_alert(id, by, now_ms)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::machine::Record;

    fn change(state: State, records: Vec<Record>) -> Change {
        Change {
            key: Key {
                rule: "cpu".into(),
                device_id: "d1".into(),
                dimension: String::new(),
            },
            tenant: "acme".into(),
            instance: Instance {
                state,
                severity: (state != State::Ok).then_some(Severity::Warning),
                since_ms: 5,
                breach_start_ms: 1,
                breach_samples: 3,
                recover_start_ms: 0,
                last_sample_ms: 5,
                last_arrival_ms: 6,
                last_value: f64::INFINITY,
                stale: false,
                flapping: true,
                suppressed: false,
                changes: vec![1, 5],
            },
            records,
        }
    }

    fn rec(at_ms: i64, from: State, to: State) -> Record {
        Record {
            at_ms,
            event: Event::Transition { from, to },
            state: to,
            severity: Some(Severity::Warning),
            value: 95.0,
            suppressed: false,
        }
    }

    #[test]
    fn instances_round_trip_and_history_accumulates_and_ack_clears_on_ok() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::Db::open(&dir.path().join("t.db")).unwrap();
        let firing = change(
            State::Firing,
            vec![
                rec(1, State::Ok, State::Pending),
                rec(5, State::Pending, State::Firing),
            ],
        );
        save(&mut conn, std::slice::from_ref(&firing), 10).unwrap();
        let loaded = load_instances(&conn).unwrap();
        assert_eq!(loaded.len(), 1);
        let mut want = firing.instance.clone();
        want.last_value = 1e300;
        assert_eq!(loaded[0].2, want);
        assert_eq!(loaded[0].0, firing.key);

        let rows = list(
            &conn,
            &ListFilter {
                state: Some(State::Firing),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(rows.len(), 1);
        let id = rows[0].id;
        let at_least = |min| {
            list(
                &conn,
                &ListFilter {
                    min_severity: Some(min),
                    ..Default::default()
                },
            )
            .unwrap()
            .len()
        };
        assert_eq!(
            at_least(Severity::Warning),
            1,
            "a warning is at least a warning"
        );
        assert_eq!(at_least(Severity::Critical), 0, "a warning is not critical");
        assert_eq!(history(&conn, None, Some("acme")).unwrap().len(), 2);
        assert!(history(&conn, None, Some("other")).unwrap().is_empty());
        assert_eq!(ack(&mut conn, id, "alice", 20).unwrap(), AckOutcome::Acked);
        assert_eq!(
            ack(&mut conn, id, "bob", 21).unwrap(),
            AckOutcome::AlreadyAcked
        );
        assert_eq!(
            ack(&mut conn, 999, "bob", 21).unwrap(),
            AckOutcome::NoSuchAlert
        );
        // The engine saves the still-firing instance again: the ack stays.
        save(&mut conn, &[change(State::Firing, vec![])], 30).unwrap();
        let rows = list(&conn, &ListFilter::default()).unwrap();
        assert_eq!(rows[0].acked_by.as_deref(), Some("alice"));
        // Back to OK: the ack belongs to the episode that ended.
        save(
            &mut conn,
            &[change(
                State::Ok,
                vec![rec(40, State::Recovering, State::Ok)],
            )],
            40,
        )
        .unwrap();
        assert!(
            list(&conn, &ListFilter::default()).unwrap().is_empty(),
            "ok is not listed"
        );
        let all = list(
            &conn,
            &ListFilter {
                all: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(all[0].acked_ms, None);
        assert_eq!(
            ack(&mut conn, id, "bob", 50).unwrap(),
            AckOutcome::NotActive
        );
        let h = history(&conn, Some("d1"), None).unwrap();
        let events: Vec<_> = h
            .iter()
            .map(|r| (r.at_ms, r.event.as_str(), r.to_state.as_str()))
            .collect();
        assert_eq!(
            events,
            vec![
                (1, "transition", "pending"),
                (5, "transition", "firing"),
                (20, "ack", "firing"),
                (40, "transition", "ok")
            ]
        );
        assert!(history(&conn, Some("other"), None).unwrap().is_empty());
    }

    #[test]
    fn a_restart_mid_for_resumes_the_timer_from_the_database() {
        use crate::alerts::engine::Engine;
        use crate::alerts::rules::parse_file;
        use tandem_proto::v1::{MetricBatch, Sample, SeriesKey};
        let rules = "[[rule]]\nname = \"cpu\"\nkind = \"threshold\"\nmetric = \"cpu.usage.percent\"\nwarning = { above = 90 }\nfor_secs = 300\nmin_samples = 2\n";
        let set = parse_file(std::path::Path::new("r.toml"), rules).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::Db::open(&dir.path().join("t.db")).unwrap();
        let batch = |t: i64| MetricBatch {
            seq: 1,
            series: vec![SeriesKey {
                name: "cpu.usage.percent".into(),
                dimension: String::new(),
            }],
            samples: vec![Sample {
                time_unix_ms: t,
                values: vec![99.0],
            }],
        };
        let mut e = Engine::new(set.clone());
        e.on_hello("d1", "acme", "linux", "", 0);
        for t in [0, 60_000, 120_000] {
            e.on_batch("d1", &batch(t), t);
        }
        save(&mut conn, &e.take_changes(), 120_000).unwrap();
        drop(e);

        // A new engine from what the database holds: 3 of 5 minutes already held.
        let mut e = Engine::new(set);
        e.restore_device(
            "d1".into(),
            Device {
                tenant: "acme".into(),
                os_family: "linux".into(),
                last_seen_ms: 120_000,
                ..Device::default()
            },
        );
        for (k, tenant, inst) in load_instances(&conn).unwrap() {
            e.restore_instance(k, tenant, inst, 240_000);
        }
        let key = Key {
            rule: "cpu".into(),
            device_id: "d1".into(),
            dimension: String::new(),
        };
        e.on_batch("d1", &batch(240_000), 240_000);
        e.tick(299_999);
        assert_eq!(e.instance(&key).map(|i| i.state), Some(State::Pending));
        e.tick(300_000);
        assert_eq!(
            e.instance(&key).map(|i| i.state),
            Some(State::Firing),
            "fires 300 s after the first breach, across the restart"
        );
        save(&mut conn, &e.take_changes(), 300_000).unwrap();
        let h = history(&conn, Some("d1"), None).unwrap();
        let got: Vec<_> = h.iter().map(|r| (r.at_ms, r.to_state.as_str())).collect();
        assert_eq!(got, vec![(0, "pending"), (300_000, "firing")]);
    }
    // `devices_load_with_their_latest_good_patch_report` moved with its SQL to
    // `store::conformance` (it needs rows only a fixture writes).
}
