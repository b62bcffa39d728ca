//! The SQLite side of the alert engine: instance rows (everything the state machine
//! needs to resume), the history of every transition and flag change, the startup
//! load, and the reads and the ack behind `alerts list` / `alerts ack`.
//!
//! Invariant: [`save`] writes a round's instance rows and history in one transaction,
//! so the stored state and the stored history never disagree, and a transition is
//! durable before anything could act on it.

use rusqlite::{Connection, OptionalExtension, params};

use super::engine::{Change, Device, Key, PatchSummary};
use super::machine::{Event, Instance, State};
use super::model::Severity;

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("alert store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("alert instance {id} has an unreadable stored state: {what}")]
    Corrupt { id: i64, what: String },
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

/// Writes the changed instances and their records, in one transaction.
pub(crate) fn save(
    conn: &mut Connection,
    changes: &[Change],
    now_ms: i64,
) -> Result<(), PersistError> {
    if changes.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction()?;
    // Incident openings and resolutions this round (issue #12), logged once committed.
    let mut opened_or_resolved = Vec::new();
    {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO alert_instances (rule, device_id, dimension, tenant, state, severity,
                since_ms, breach_start_ms, breach_samples, recover_start_ms, last_sample_ms,
                last_value, stale, flapping, suppressed, changes, updated_ms, last_arrival_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
             ON CONFLICT (rule, device_id, dimension) DO UPDATE SET
                tenant = excluded.tenant, state = excluded.state, severity = excluded.severity,
                since_ms = excluded.since_ms, breach_start_ms = excluded.breach_start_ms,
                breach_samples = excluded.breach_samples, recover_start_ms = excluded.recover_start_ms,
                last_sample_ms = excluded.last_sample_ms, last_arrival_ms = excluded.last_arrival_ms,
                last_value = excluded.last_value,
                stale = excluded.stale, flapping = excluded.flapping, suppressed = excluded.suppressed,
                changes = excluded.changes, updated_ms = excluded.updated_ms,
                acked_ms = CASE WHEN excluded.state = 'ok' THEN NULL ELSE acked_ms END,
                acked_by = CASE WHEN excluded.state = 'ok' THEN NULL ELSE acked_by END
             RETURNING id",
        )?;
        let mut hist = tx.prepare_cached(
            "INSERT INTO alert_history (instance_id, at_ms, event, from_state, to_state, severity, value, suppressed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for c in changes {
            let i = &c.instance;
            let changes_json = serde_json::to_string(&i.changes).unwrap_or_else(|_| "[]".into());
            let id: i64 = upsert.query_row(
                params![
                    c.key.rule,
                    c.key.device_id,
                    c.key.dimension,
                    c.tenant,
                    i.state.as_str(),
                    i.severity.map(Severity::as_str),
                    i.since_ms,
                    i.breach_start_ms,
                    i.breach_samples,
                    i.recover_start_ms,
                    i.last_sample_ms,
                    finite(i.last_value),
                    flag(i.stale),
                    flag(i.flapping),
                    flag(i.suppressed),
                    changes_json,
                    now_ms,
                    i.last_arrival_ms
                ],
                |r| r.get(0),
            )?;
            for r in &c.records {
                let from = match r.event {
                    Event::Transition { from, .. } => Some(from.as_str()),
                    _ => None,
                };
                hist.execute(params![
                    id,
                    r.at_ms,
                    r.event.kind(),
                    from,
                    r.state.as_str(),
                    r.severity.map(Severity::as_str),
                    finite(r.value),
                    flag(r.suppressed)
                ])?;
            }
            // The incident and its feed event commit with the transition.
            crate::notify::incident::on_change(&tx, id, c, &mut opened_or_resolved)?;
        }
    }
    tx.commit()?;
    crate::notify::incident::log_committed(&opened_or_resolved);
    Ok(())
}

/// SQLite refuses NaN in a NOT NULL REAL column; infinities are clamped for readers.
fn finite(v: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(-1e300, 1e300)
    }
}

/// When each device's newest certificate expires, for the periodic refresh of the
/// certificate-expiry rules (renewals happen without a new hello).
pub(crate) fn load_cert_expiries(conn: &Connection) -> Result<Vec<(String, i64)>, PersistError> {
    let mut stmt =
        conn.prepare("SELECT device_id, max(not_after_ms) FROM certificates GROUP BY device_id")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every device as the engine needs it, with its latest successful patch report.
pub(crate) fn load_devices(conn: &Connection) -> Result<Vec<(String, Device)>, PersistError> {
    let mut stmt = conn.prepare(
        "SELECT d.id, t.name, d.os_family, d.os_version, d.last_seen_ms,
                p.seq, p.time_ms, p.reboot_required, p.reboot_since_ms, s.name,
                (SELECT max(not_after_ms) FROM certificates c WHERE c.device_id = d.id)
         FROM devices d JOIN tenants t ON t.id = d.tenant_id
         LEFT JOIN sites s ON s.id = d.site_id
         LEFT JOIN patch_reports p ON p.device_id = d.id AND p.seq =
            (SELECT max(seq) FROM patch_reports WHERE device_id = d.id AND error = '')",
    )?;
    let mut oldest = conn.prepare(
        "SELECT min(CASE WHEN first_seen_ms > 0 THEN first_seen_ms ELSE ?3 END) FROM pending_updates
         WHERE device_id = ?1 AND report_seq = ?2 AND classification = 'security'",
    )?;
    let rows: Vec<_> = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, Option<bool>>(7)?,
                r.get::<_, Option<i64>>(8)?,
                r.get::<_, Option<String>>(9)?,
                r.get::<_, Option<i64>>(10)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (
        id,
        tenant,
        os_family,
        os_version,
        last_seen_ms,
        seq,
        time_ms,
        reboot,
        since,
        site,
        cert,
    ) in rows
    {
        let patch = match (seq, time_ms) {
            (Some(seq), Some(time_ms)) => {
                let oldest_security_ms: Option<i64> =
                    oldest.query_row(params![id, seq, time_ms], |r| r.get(0))?;
                Some(PatchSummary {
                    oldest_security_ms,
                    reboot_since_ms: reboot
                        .unwrap_or(false)
                        .then(|| since.filter(|s| *s > 0).unwrap_or(time_ms)),
                })
            }
            _ => None,
        };
        out.push((
            id,
            Device {
                tenant,
                site,
                cert_not_after_ms: cert,
                os_family,
                os_version,
                last_seen_ms,
                patch,
                tags: Default::default(),
            },
        ));
    }
    Ok(out)
}

/// Devices revoked (or removed, which revokes): out of the fleet for alerting.
pub(crate) fn load_revoked_devices(conn: &Connection) -> Result<Vec<String>, PersistError> {
    let mut stmt = conn.prepare("SELECT id FROM devices WHERE revoked_ms IS NOT NULL")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every device's tags (`device tag`), for scopes; re-read on each engine tick so
/// the CLI's changes reach a running collector.
pub(crate) fn load_tags(
    conn: &Connection,
) -> Result<std::collections::HashMap<String, Vec<String>>, PersistError> {
    let mut stmt = conn.prepare_cached("SELECT device_id, tag FROM device_tags ORDER BY 1, 2")?;
    let mut out: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        out.entry(r.get(0)?).or_default().push(r.get(1)?);
    }
    Ok(out)
}

/// Every stored instance, to resume the state machines after a restart.
pub(crate) fn load_instances(
    conn: &Connection,
) -> Result<Vec<(Key, String, Instance)>, PersistError> {
    let mut stmt = conn.prepare(
        "SELECT id, rule, device_id, dimension, tenant, state, severity, since_ms, breach_start_ms,
                breach_samples, recover_start_ms, last_sample_ms, last_value, stale, flapping,
                suppressed, changes, last_arrival_ms
         FROM alert_instances",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let corrupt = |what: String| PersistError::Corrupt { id, what };
        let state: String = r.get(5)?;
        let state = State::parse(&state).ok_or_else(|| corrupt(format!("state {state:?}")))?;
        let severity: Option<String> = r.get(6)?;
        let severity = match severity {
            None => None,
            Some(s) => Some(Severity::parse(&s).ok_or_else(|| corrupt(format!("severity {s:?}")))?),
        };
        let changes: String = r.get(16)?;
        let changes: Vec<i64> =
            serde_json::from_str(&changes).map_err(|e| corrupt(format!("changes: {e}")))?;
        out.push((
            Key {
                rule: r.get(1)?,
                device_id: r.get(2)?,
                dimension: r.get(3)?,
            },
            r.get(4)?,
            Instance {
                state,
                severity,
                since_ms: r.get(7)?,
                breach_start_ms: r.get(8)?,
                breach_samples: r.get(9)?,
                recover_start_ms: r.get(10)?,
                last_sample_ms: r.get(11)?,
                last_arrival_ms: r.get(17)?,
                last_value: r.get(12)?,
                stale: r.get(13)?,
                flapping: r.get(14)?,
                suppressed: r.get(15)?,
                changes,
            },
        ));
    }
    Ok(out)
}

/// An alert as listed by the CLI.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct AlertRow {
    pub id: i64,
    pub rule: String,
    pub device_id: String,
    pub hostname: String,
    pub dimension: String,
    pub tenant: String,
    pub state: String,
    pub severity: Option<String>,
    pub since_ms: i64,
    pub last_value: f64,
    pub stale: bool,
    pub flapping: bool,
    pub suppressed: bool,
    pub acked_ms: Option<i64>,
    pub acked_by: Option<String>,
}

/// Filters for [`list`].
#[derive(Debug, Clone, Default)]
pub(crate) struct ListFilter<'a> {
    pub tenant: Option<&'a str>,
    pub state: Option<State>,
    pub device: Option<&'a str>,
    /// Include instances that are back to OK.
    pub all: bool,
    /// Only alerts of at least this severity.
    pub min_severity: Option<Severity>,
}

/// Alerts, most recent state change first.
pub(crate) fn list(conn: &Connection, f: &ListFilter<'_>) -> Result<Vec<AlertRow>, PersistError> {
    let mut stmt = conn.prepare(
        "SELECT a.id, a.rule, a.device_id, coalesce(d.hostname, ''), a.dimension, a.tenant, a.state,
                a.severity, a.since_ms, a.last_value, a.stale, a.flapping, a.suppressed,
                a.acked_ms, a.acked_by
         FROM alert_instances a LEFT JOIN devices d ON d.id = a.device_id
         WHERE (?1 IS NULL OR a.tenant = ?1) AND (?2 IS NULL OR a.state = ?2)
           AND (?3 IS NULL OR a.device_id = ?3) AND (?4 OR a.state != 'ok')
           AND (?5 IS NULL OR a.severity = 'critical' OR (?5 = 'warning' AND a.severity = 'warning'))
         ORDER BY a.since_ms DESC, a.id",
    )?;
    let rows = stmt.query_map(
        params![
            f.tenant,
            f.state.map(State::as_str),
            f.device,
            f.all,
            f.min_severity.map(Severity::as_str)
        ],
        |r| {
            Ok(AlertRow {
                id: r.get(0)?,
                rule: r.get(1)?,
                device_id: r.get(2)?,
                hostname: r.get(3)?,
                dimension: r.get(4)?,
                tenant: r.get(5)?,
                state: r.get(6)?,
                severity: r.get(7)?,
                since_ms: r.get(8)?,
                last_value: r.get(9)?,
                stale: r.get(10)?,
                flapping: r.get(11)?,
                suppressed: r.get(12)?,
                acked_ms: r.get(13)?,
                acked_by: r.get(14)?,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One history entry as listed by the CLI.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct HistoryRow {
    pub instance_id: i64,
    pub rule: String,
    pub tenant: String,
    pub device_id: String,
    pub dimension: String,
    pub at_ms: i64,
    pub event: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub severity: Option<String>,
    pub value: Option<f64>,
    pub suppressed: bool,
}

/// The history of one device's alerts (or of all, or of one tenant's), oldest first.
pub(crate) fn history(
    conn: &Connection,
    device: Option<&str>,
    tenant: Option<&str>,
) -> Result<Vec<HistoryRow>, PersistError> {
    let mut stmt = conn.prepare(
        "SELECT h.instance_id, a.rule, a.tenant, a.device_id, a.dimension, h.at_ms, h.event,
                h.from_state, h.to_state, h.severity, h.value, h.suppressed
         FROM alert_history h JOIN alert_instances a ON a.id = h.instance_id
         WHERE (?1 IS NULL OR a.device_id = ?1) AND (?2 IS NULL OR a.tenant = ?2)
         ORDER BY h.at_ms, h.id",
    )?;
    let rows = stmt.query_map(params![device, tenant], |r| {
        Ok(HistoryRow {
            instance_id: r.get(0)?,
            rule: r.get(1)?,
            tenant: r.get(2)?,
            device_id: r.get(3)?,
            dimension: r.get(4)?,
            at_ms: r.get(5)?,
            event: r.get(6)?,
            from_state: r.get(7)?,
            to_state: r.get(8)?,
            severity: r.get(9)?,
            value: r.get(10)?,
            suppressed: r.get(11)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What acknowledging found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckOutcome {
    Acked,
    AlreadyAcked,
    NotActive,
    NoSuchAlert,
}

/// Acknowledges an active alert (records who and when, and a history row).
pub(crate) fn ack(
    conn: &mut Connection,
    id: i64,
    by: &str,
    now_ms: i64,
) -> Result<AckOutcome, PersistError> {
    let tx = conn.transaction()?;
    let row: Option<(String, Option<i64>, Option<String>, bool)> = tx
        .query_row(
            "SELECT state, acked_ms, severity, suppressed FROM alert_instances WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let outcome = match row {
        None => AckOutcome::NoSuchAlert,
        Some((state, _, _, _)) if state == "ok" => AckOutcome::NotActive,
        Some((_, Some(_), _, _)) => AckOutcome::AlreadyAcked,
        Some((state, None, severity, suppressed)) => {
            tx.execute(
                "UPDATE alert_instances SET acked_ms = ?2, acked_by = ?3 WHERE id = ?1",
                params![id, now_ms, by],
            )?;
            crate::notify::incident::ack_instance(&tx, id, by, now_ms)?;
            tx.execute(
                "INSERT INTO alert_history (instance_id, at_ms, event, from_state, to_state, severity, value, suppressed)
                 VALUES (?1, ?2, 'ack', NULL, ?3, ?4, NULL, ?5)",
                params![id, now_ms, state, severity, suppressed],
            )?;
            AckOutcome::Acked
        }
    };
    tx.commit()?;
    Ok(outcome)
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
        let mut conn = crate::store::open(&dir.path().join("t.db")).unwrap();
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
        let mut conn = crate::store::open(&dir.path().join("t.db")).unwrap();
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

    #[test]
    fn devices_load_with_their_latest_good_patch_report() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        conn.execute_batch(
            "INSERT INTO tenants (id, name, created_ms) VALUES (1, 'acme', 0);
             INSERT INTO devices (id, tenant_id, os_family, os_version, first_seen_ms, last_seen_ms)
                VALUES ('d1', 1, 'windows', 'Windows 11', 0, 500), ('d2', 1, 'linux', '', 0, 600);
             INSERT INTO patch_reports VALUES ('d1', 1, 100, 'wu', '', 1, 0, 0);
             INSERT INTO patch_reports VALUES ('d1', 2, 200, 'wu', 'failed', 0, 0, 0);
             INSERT INTO pending_updates VALUES ('d1', 1, 'kb1', '', '', 'security', '', 50);
             INSERT INTO pending_updates VALUES ('d1', 1, 'kb2', '', '', 'security', '', 0);
             INSERT INTO pending_updates VALUES ('d1', 1, 'kb3', '', '', 'other', '', 10);",
        )
        .unwrap();
        let mut devs = load_devices(&conn).unwrap();
        devs.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(devs[0].1.tenant, "acme");
        assert_eq!(
            devs[0].1.patch,
            Some(PatchSummary {
                oldest_security_ms: Some(50),
                reboot_since_ms: Some(100)
            }),
            "the failed report 2 is skipped; reboot since unknown = report time"
        );
        assert_eq!(devs[1].1.patch, None);
        assert_eq!(devs[1].1.last_seen_ms, 600);
    }
}
