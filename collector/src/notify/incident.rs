//! Incidents (machine B of shared/ALERTING.md): one per firing episode of an alert
//! instance, `open → acked → resolved`, `snoozed(until)` as a timed ack; who acted,
//! when and their note; and the feed events every change writes.
//!
//! Invariants:
//! - an incident opens and resolves in the alert engine's own transaction
//!   ([`on_change`], called from `alerts::persist::save`), with its feed event: a
//!   transition and what it causes are committed together or not at all;
//! - an instance has at most one incident that is not resolved;
//! - an incident opened while suppressed (maintenance, silence, inhibition) shows
//!   nowhere until the suppression ends while it still fires; its steps count
//!   from then (sent once). One that heals while suppressed was never notified.

use rusqlite::{Connection, OptionalExtension, params};

use super::escalation::IncidentState;
// The read side lives in `incident_row` (a leaf the outbox also uses); re-exported
// here because callers think of it as part of the incident.
pub(crate) use super::incident_row::{IncidentRow, SCHEMA, feed_event, get, incident_json, list};
// The round's rows as the store hands them (issue 17): this runs inside
// `store::alert_sql::save`'s transaction, until the notify side's SQL moves there.
use crate::store::api::{IncidentLogged as Logged, InstanceChange, RecordEvent};

/// Logs what [`on_change`] recorded (after the transaction committed): one info
/// line per incident opening and resolution.
pub(crate) fn log_committed(events: &[Logged]) {
    for e in events {
        if e.opened {
            tracing::info!(incident = e.incident, tenant = %e.tenant, rule = %e.rule, device = %e.device_id, severity = %e.severity, "incident opened");
        } else {
            tracing::info!(incident = e.incident, tenant = %e.tenant, rule = %e.rule, device = %e.device_id, lasted_secs = e.lasted_ms / 1000, "incident resolved");
        }
    }
}

fn active(conn: &Connection, instance_id: i64) -> rusqlite::Result<Option<(i64, bool, i64)>> {
    conn.prepare_cached(
        "SELECT id, suppressed, opened_ms FROM incidents WHERE instance_id = ?1 AND state != 'resolved'",
    )?
    .query_row([instance_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
    .optional()
}

/// Applies one instance's records to its incident, inside the engine's transaction.
pub(crate) fn on_change(
    conn: &Connection,
    instance_id: i64,
    c: &InstanceChange,
    logged: &mut Vec<Logged>,
) -> rusqlite::Result<()> {
    let i = &c.instance;
    for r in &c.records {
        match r.event {
            RecordEvent::Transition { from, to: "firing" } if from != "recovering" => {
                if active(conn, instance_id)?.is_some() {
                    continue;
                }
                let sev = r.severity.unwrap_or("warning");
                conn.prepare_cached(
                    "INSERT INTO incidents (instance_id, tenant, rule, device_id, dimension, severity,
                        value, state, opened_ms, suppressed, loop_start_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'open', ?8, ?9, ?8)",
                )?
                .execute(params![
                    instance_id,
                    i.tenant,
                    i.rule,
                    i.device_id,
                    i.dimension,
                    sev,
                    finite(r.value),
                    r.at_ms,
                    r.suppressed
                ])?;
                let id = conn.last_insert_rowid();
                if !r.suppressed {
                    feed_event(conn, id, "opened", r.at_ms)?;
                    logged.push(Logged {
                        incident: id,
                        opened: true,
                        tenant: i.tenant.clone(),
                        rule: i.rule.clone(),
                        device_id: i.device_id.clone(),
                        severity: sev.into(),
                        lasted_ms: 0,
                    });
                }
            }
            RecordEvent::Transition { to: "ok", .. } => {
                let Some((id, suppressed, opened)) = active(conn, instance_id)? else {
                    continue;
                };
                conn.execute(
                    "UPDATE incidents SET state = 'resolved', resolved_ms = ?2, value = ?3 WHERE id = ?1",
                    params![id, r.at_ms, finite(r.value)],
                )?;
                // Never shown while suppressed: its healing is not news either.
                if !suppressed {
                    feed_event(conn, id, "resolved", r.at_ms)?;
                    logged.push(Logged {
                        incident: id,
                        opened: false,
                        tenant: i.tenant.clone(),
                        rule: i.rule.clone(),
                        device_id: i.device_id.clone(),
                        severity: String::new(),
                        lasted_ms: r.at_ms - opened,
                    });
                }
            }
            RecordEvent::Severity { to } => {
                conn.execute(
                    "UPDATE incidents SET severity = ?2 WHERE instance_id = ?1 AND state != 'resolved'
                        AND (severity = 'warning' AND ?2 = 'critical')",
                    params![instance_id, to],
                )?;
            }
            RecordEvent::Suppressed(true) => {
                conn.execute(
                    "UPDATE incidents SET suppressed = 1 WHERE instance_id = ?1 AND state != 'resolved'",
                    [instance_id],
                )?;
            }
            RecordEvent::Suppressed(false) => {
                let Some((id, true, _)) = active(conn, instance_id)? else {
                    continue;
                };
                // The window ended with the alert still firing: it is news now, and
                // its steps count from here.
                conn.execute(
                    "UPDATE incidents SET suppressed = 0, loop_start_ms = ?2 WHERE id = ?1",
                    params![id, r.at_ms],
                )?;
                let first = !conn
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM feed_events WHERE incident_id = ?1 AND kind = 'opened')",
                        [id],
                        |r| r.get::<_, bool>(0),
                    )?;
                if first {
                    feed_event(conn, id, "opened", r.at_ms)?;
                    logged.push(Logged {
                        incident: id,
                        opened: true,
                        tenant: i.tenant.clone(),
                        rule: i.rule.clone(),
                        device_id: i.device_id.clone(),
                        severity: r.severity.unwrap_or("warning").into(),
                        lasted_ms: 0,
                    });
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn finite(v: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(-1e300, 1e300)
    }
}

/// What a workflow command found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Done,
    /// Already in that state (acked twice, resolved twice).
    Already,
    Resolved,
    NoSuchIncident,
}

/// Acknowledges an incident: escalation and repeats stop. Also marks the alert
/// instance acked, as `alerts ack` does.
pub(crate) fn ack(
    conn: &mut Connection,
    id: i64,
    by: &str,
    note: Option<&str>,
    now_ms: i64,
) -> rusqlite::Result<Outcome> {
    let tx = conn.transaction()?;
    let out = ack_in(&tx, id, by, note, now_ms)?;
    tx.commit()?;
    Ok(out)
}

pub(crate) fn ack_in(
    conn: &Connection,
    id: i64,
    by: &str,
    note: Option<&str>,
    now_ms: i64,
) -> rusqlite::Result<Outcome> {
    let st: Option<(String, i64)> = conn
        .query_row(
            "SELECT state, instance_id FROM incidents WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match st.as_ref().map(|(s, i)| (IncidentState::parse(s), *i)) {
        None => Ok(Outcome::NoSuchIncident),
        Some((Some(IncidentState::Resolved), _)) => Ok(Outcome::Resolved),
        Some((Some(IncidentState::Acked), _)) => Ok(Outcome::Already),
        Some((_, instance)) => {
            conn.execute(
                "UPDATE incidents SET state = 'acked', acked_ms = ?2, acked_by = ?3, ack_note = ?4,
                    snoozed_until_ms = NULL WHERE id = ?1",
                params![id, now_ms, by, note],
            )?;
            conn.execute(
                "UPDATE alert_instances SET acked_ms = ?2, acked_by = ?3 WHERE id = ?1 AND acked_ms IS NULL",
                params![instance, now_ms, by],
            )?;
            feed_event(conn, id, "acked", now_ms)?;
            super::outbox::workflow_notice(conn, id, "acked", now_ms)?;
            tracing::info!(incident = id, by, "incident acknowledged");
            Ok(Outcome::Done)
        }
    }
}

/// `alerts ack` on an instance acknowledges its incident too (inside its transaction).
pub(crate) fn ack_instance(
    conn: &Connection,
    instance_id: i64,
    by: &str,
    now_ms: i64,
) -> rusqlite::Result<()> {
    let id: Option<i64> = conn
        .query_row(
            "SELECT id FROM incidents WHERE instance_id = ?1 AND state IN ('open', 'snoozed')",
            [instance_id],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = id {
        ack_in(conn, id, by, None, now_ms)?;
    }
    Ok(())
}

/// Snoozes an incident until `until_ms` (a timed ack: it reopens then).
pub(crate) fn snooze(
    conn: &mut Connection,
    id: i64,
    by: &str,
    until_ms: i64,
    now_ms: i64,
) -> rusqlite::Result<Outcome> {
    let tx = conn.transaction()?;
    let out = snooze_in(&tx, id, by, None, until_ms, now_ms)?;
    tx.commit()?;
    Ok(out)
}

/// [`snooze`] inside the caller's transaction, with an optional note (kept as the
/// ack note; the console's snooze button sends one).
pub(crate) fn snooze_in(
    conn: &Connection,
    id: i64,
    by: &str,
    note: Option<&str>,
    until_ms: i64,
    now_ms: i64,
) -> rusqlite::Result<Outcome> {
    let st: Option<String> = conn
        .query_row("SELECT state FROM incidents WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(match st.as_deref() {
        None => Outcome::NoSuchIncident,
        Some("resolved") => Outcome::Resolved,
        Some(_) => {
            conn.execute(
                "UPDATE incidents SET state = 'snoozed', snoozed_until_ms = ?2, acked_by = ?3, acked_ms = ?4,
                    ack_note = coalesce(?5, ack_note) WHERE id = ?1",
                params![id, until_ms, by, now_ms, note],
            )?;
            feed_event(conn, id, "snoozed", now_ms)?;
            super::outbox::workflow_notice(conn, id, "snoozed", now_ms)?;
            Outcome::Done
        }
    })
}

/// Resolves an incident by hand (the alert may still fire; its next episode opens
/// a new incident only after it recovers).
pub(crate) fn resolve(
    conn: &mut Connection,
    id: i64,
    by: &str,
    now_ms: i64,
) -> rusqlite::Result<Outcome> {
    let tx = conn.transaction()?;
    let st: Option<String> = tx
        .query_row("SELECT state FROM incidents WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    let out = match st.as_deref() {
        None => Outcome::NoSuchIncident,
        Some("resolved") => Outcome::Already,
        Some(_) => {
            tx.execute(
                "UPDATE incidents SET state = 'resolved', resolved_ms = ?2, resolved_by = ?3 WHERE id = ?1",
                params![id, now_ms, by],
            )?;
            feed_event(&tx, id, "resolved", now_ms)?;
            tracing::info!(incident = id, by, "incident resolved");
            Outcome::Done
        }
    };
    tx.commit()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::engine::{Change, Key};
    use crate::alerts::machine::{Event, Instance, Record, State};
    use crate::alerts::model::Severity;

    fn change(records: Vec<Record>) -> Change {
        Change {
            key: Key {
                rule: "cpu".into(),
                device_id: "d1".into(),
                dimension: String::new(),
            },
            tenant: "acme".into(),
            instance: Instance {
                state: records.last().map_or(State::Ok, |r| r.state),
                severity: Some(Severity::Warning),
                since_ms: 0,
                breach_start_ms: 0,
                breach_samples: 0,
                recover_start_ms: 0,
                last_sample_ms: 0,
                last_arrival_ms: 0,
                last_value: 0.0,
                stale: false,
                flapping: false,
                suppressed: false,
                changes: vec![],
            },
            records,
        }
    }

    fn rec(at_ms: i64, event: Event, state: State, suppressed: bool) -> Record {
        Record {
            at_ms,
            event,
            state,
            severity: Some(Severity::Warning),
            value: 95.0,
            suppressed,
        }
    }

    fn fire(at: i64, suppressed: bool) -> Record {
        rec(
            at,
            Event::Transition {
                from: State::Pending,
                to: State::Firing,
            },
            State::Firing,
            suppressed,
        )
    }

    fn ok(at: i64) -> Record {
        rec(
            at,
            Event::Transition {
                from: State::Recovering,
                to: State::Ok,
            },
            State::Ok,
            false,
        )
    }

    fn kinds(conn: &Connection) -> Vec<(i64, String)> {
        let mut s = conn
            .prepare("SELECT incident_id, kind FROM feed_events ORDER BY id")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_transition_opens_and_resolves_its_incident_in_the_engine_transaction() {
        let dir = tempfile::tempdir().unwrap();
        // The engine's round through the store interface; the workflow (still on a
        // connection: the notify side moves next) on a second connection.
        let mut db = crate::store::Db::open(&dir.path().join("t.db")).unwrap();
        let mut conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        crate::alerts::persist::save(&mut db, &[change(vec![fire(1000, false)])], 1000).unwrap();
        let open = list(&conn, None, false).unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].state, "open");
        // Firing again (a flap back from recovering) opens nothing new.
        crate::alerts::persist::save(&mut db, &[change(vec![fire(1500, false)])], 1500).unwrap();
        assert_eq!(list(&conn, None, true).unwrap().len(), 1);
        let id = open[0].id;
        assert_eq!(
            ack(&mut conn, id, "alice", Some("on it"), 2000).unwrap(),
            Outcome::Done
        );
        assert_eq!(
            ack(&mut conn, id, "bob", None, 2100).unwrap(),
            Outcome::Already
        );
        let i = get(&conn, id).unwrap().unwrap();
        assert_eq!(
            (i.acked_by.as_deref(), i.ack_note.as_deref(), i.acked_ms),
            (Some("alice"), Some("on it"), Some(2000))
        );
        crate::alerts::persist::save(&mut db, &[change(vec![ok(5000)])], 5000).unwrap();
        let i = get(&conn, id).unwrap().unwrap();
        assert_eq!((i.state.as_str(), i.resolved_ms), ("resolved", Some(5000)));
        assert_eq!(
            kinds(&conn),
            vec![
                (id, "opened".into()),
                (id, "acked".into()),
                (id, "resolved".into())
            ]
        );
        assert_eq!(
            ack(&mut conn, id, "bob", None, 6000).unwrap(),
            Outcome::Resolved
        );
    }

    #[test]
    fn suppressed_incidents_stay_off_the_feed_until_the_window_ends() {
        let dir = tempfile::tempdir().unwrap();
        // The engine's round through the store interface; the workflow (still on a
        // connection: the notify side moves next) on a second connection.
        let mut db = crate::store::Db::open(&dir.path().join("t.db")).unwrap();
        let conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        // Born and healed inside a window: never shown.
        crate::alerts::persist::save(&mut db, &[change(vec![fire(1000, true)])], 1000).unwrap();
        crate::alerts::persist::save(&mut db, &[change(vec![ok(2000)])], 2000).unwrap();
        assert!(kinds(&conn).is_empty());
        // Still firing when the window ends: shown once, steps count from the end.
        crate::alerts::persist::save(&mut db, &[change(vec![fire(3000, true)])], 3000).unwrap();
        let unsup = rec(9000, Event::Suppressed(false), State::Firing, false);
        crate::alerts::persist::save(&mut db, &[change(vec![unsup])], 9000).unwrap();
        let i = &list(&conn, None, false).unwrap()[0];
        assert_eq!((i.suppressed, i.loop_start_ms), (false, 9000));
        assert_eq!(kinds(&conn), vec![(i.id, "opened".into())]);
    }
}
