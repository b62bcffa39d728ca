//! The SQLite side of incidents (issue 17 item 1: moved from `notify::incident_row`,
//! `notify::incident` and the outbox's insert, statements unchanged):
//! [`IncidentRow`] as the CLI, the feed, mails and webhooks show it, the queries
//! that load it, its JSON form (the stored feed document) and the feed events
//! written from it; the incident side effects of an alert round ([`on_change`],
//! run inside `alert_sql::save`'s transaction); the workflow (ack with note,
//! snooze, resolve) and the webhook notices it queues.
//!
//! Invariants (from `notify::incident`):
//! - an incident opens and resolves in the alert engine's own transaction, with its
//!   feed event: a transition and what it causes are committed together or not at all;
//! - an instance has at most one incident that is not resolved;
//! - an incident opened while suppressed (maintenance, silence, inhibition) shows
//!   nowhere until the suppression ends while it still fires; its steps count
//!   from then (sent once). One that heals while suppressed was never notified.
//!
//! The functions keep their `&Connection` signatures: the console (its round of
//! issue 17 is next) runs them in its own transactions; everything else goes
//! through [`super::api::NotifyStore`] on a [`super::Db`].

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

use super::StoreError;
use super::api::{
    FeedEventRow, IncidentLogged as Logged, InstanceChange, NotifyStore, RecordEvent,
};
pub(crate) use super::api::{IncidentRow, Outcome};

/// Version of the JSON documents of the feed and the generic webhook.
pub(crate) const SCHEMA: &str = "tandem.notify/v1";

const SELECT: &str = "SELECT i.id, i.tenant, s.name, i.device_id, coalesce(d.hostname, ''), i.rule,
        i.dimension, i.severity, i.state, i.value, i.suppressed, i.opened_ms, i.acked_ms,
        i.acked_by, i.ack_note, i.snoozed_until_ms, i.resolved_ms, i.resolved_by, i.loop_no,
        i.loop_start_ms
    FROM incidents i LEFT JOIN devices d ON d.id = i.device_id LEFT JOIN sites s ON s.id = d.site_id";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<IncidentRow> {
    Ok(IncidentRow {
        id: r.get(0)?,
        tenant: r.get(1)?,
        site: r.get(2)?,
        device_id: r.get(3)?,
        hostname: r.get(4)?,
        rule: r.get(5)?,
        dimension: r.get(6)?,
        severity: r.get(7)?,
        state: r.get(8)?,
        value: r.get(9)?,
        suppressed: r.get(10)?,
        opened_ms: r.get(11)?,
        acked_ms: r.get(12)?,
        acked_by: r.get(13)?,
        ack_note: r.get(14)?,
        snoozed_until_ms: r.get(15)?,
        resolved_ms: r.get(16)?,
        resolved_by: r.get(17)?,
        loop_no: r.get(18)?,
        loop_start_ms: r.get(19)?,
    })
}

pub(crate) fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<IncidentRow>> {
    conn.prepare_cached(&format!("{SELECT} WHERE i.id = ?1"))?
        .query_row([id], row)
        .optional()
}

/// Incidents, newest first; `all` includes resolved ones.
pub(crate) fn list(
    conn: &Connection,
    tenant: Option<&str>,
    all: bool,
) -> rusqlite::Result<Vec<IncidentRow>> {
    let mut stmt = conn.prepare(&format!(
        "{SELECT} WHERE (?1 IS NULL OR i.tenant = ?1) AND (?2 OR i.state != 'resolved')
         ORDER BY i.id DESC LIMIT 1000"
    ))?;
    let rows = stmt.query_map(params![tenant, all], row)?;
    rows.collect()
}

/// Incidents the escalation looks at: not resolved, or resolved with resolved
/// notices still to expand; each with its `resolve_sent` flag.
pub(crate) fn pending_work(conn: &Connection) -> rusqlite::Result<Vec<(IncidentRow, bool)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT_RS} WHERE i.state != 'resolved' OR i.resolve_sent = 0"
    ))?;
    let rows = stmt.query_map([], row_rs)?;
    rows.collect()
}

/// One incident with its `resolve_sent` flag (the escalation's view).
pub(crate) fn get_with_resolve_sent(
    conn: &Connection,
    id: i64,
) -> rusqlite::Result<Option<(IncidentRow, bool)>> {
    conn.prepare_cached(&format!("{SELECT_RS} WHERE i.id = ?1"))?
        .query_row([id], row_rs)
        .optional()
}

const SELECT_RS: &str = "SELECT i.id, i.tenant, s.name, i.device_id, coalesce(d.hostname, ''), i.rule,
        i.dimension, i.severity, i.state, i.value, i.suppressed, i.opened_ms, i.acked_ms,
        i.acked_by, i.ack_note, i.snoozed_until_ms, i.resolved_ms, i.resolved_by, i.loop_no,
        i.loop_start_ms, i.resolve_sent
    FROM incidents i LEFT JOIN devices d ON d.id = i.device_id LEFT JOIN sites s ON s.id = d.site_id";

fn row_rs(r: &rusqlite::Row<'_>) -> rusqlite::Result<(IncidentRow, bool)> {
    Ok((row(r)?, r.get(20)?))
}

fn ms_to_rfc3339(ms: Option<i64>) -> serde_json::Value {
    match ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok()) {
        Some(t) => json!(t.to_string()),
        None => serde_json::Value::Null,
    }
}

/// The incident object of the versioned JSON schema (docs/NOTIFICATIONS.md).
pub(crate) fn incident_json(i: &IncidentRow) -> serde_json::Value {
    json!({
        "id": i.id,
        "tenant": i.tenant,
        "site": i.site,
        "device_id": i.device_id,
        "hostname": i.hostname,
        "rule": i.rule,
        "dimension": i.dimension,
        "severity": i.severity,
        "state": i.state,
        "value": i.value,
        "opened_at": ms_to_rfc3339(Some(i.opened_ms)),
        "acked_at": ms_to_rfc3339(i.acked_ms),
        "acked_by": i.acked_by,
        "ack_note": i.ack_note,
        "snoozed_until": ms_to_rfc3339(i.snoozed_until_ms),
        "resolved_at": ms_to_rfc3339(i.resolved_ms),
        "resolved_by": i.resolved_by,
        "duration_secs": i.resolved_ms.map(|r| (r - i.opened_ms) / 1000),
    })
}

/// Writes a feed event for the incident as it is now.
pub(crate) fn feed_event(
    conn: &Connection,
    incident: i64,
    kind: &str,
    at_ms: i64,
) -> rusqlite::Result<()> {
    let Some(i) = get(conn, incident)? else {
        return Ok(());
    };
    let body = json!({
        "schema": SCHEMA,
        "event": { "kind": kind, "at": ms_to_rfc3339(Some(at_ms)) },
        "incident": incident_json(&i),
    });
    conn.prepare_cached(
        "INSERT INTO feed_events (incident_id, tenant, severity, kind, at_ms, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![incident, i.tenant, i.severity, kind, at_ms, body.to_string()])?;
    Ok(())
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
    match st.as_ref().map(|(s, i)| (s.as_str(), *i)) {
        None => Ok(Outcome::NoSuchIncident),
        Some(("resolved", _)) => Ok(Outcome::Resolved),
        Some(("acked", _)) => Ok(Outcome::Already),
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
            workflow_notice(conn, id, "acked", now_ms)?;
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
            workflow_notice(conn, id, "snoozed", now_ms)?;
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

/// The idempotency key of a delivery: `<incident>:<transition>:<channel>:<recipient>`.
pub(crate) fn idem_key(incident: i64, transition: &str, channel: &str, recipient: &str) -> String {
    format!("{incident}:{transition}:{channel}:{recipient}")
}

/// Queues one delivery (once: `INSERT OR IGNORE` on its idempotency key).
pub(crate) fn insert_delivery(
    conn: &Connection,
    i: &IncidentRow,
    transition: &str,
    channel: &str,
    recipient: &str,
    now_ms: i64,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO notify_outbox (idem_key, incident_id, tenant, transition, channel,
            recipient, created_ms, status, next_attempt_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?7)",
    )?
    .execute(params![
        idem_key(i.id, transition, channel, recipient),
        i.id,
        i.tenant,
        transition,
        channel,
        recipient,
        now_ms
    ])
}

/// Workflow notices to webhooks (`acked`, `snoozed`, `reopened`): every webhook a
/// problem notice of this incident reached or is about to reach (sent or pending)
/// gets one, keyed `incident:<kind>.<loop>:webhook:<name>`. Called inside the
/// transaction that makes the change (ack, snooze, reopen). Mail recipients get no
/// such notice (the ack shows in the resolved mail).
pub(crate) fn workflow_notice(
    conn: &Connection,
    incident: i64,
    kind: &str,
    now_ms: i64,
) -> rusqlite::Result<usize> {
    let Some(i) = get(conn, incident)? else {
        return Ok(0);
    };
    let hooks: Vec<String> = {
        let mut s = conn.prepare_cached(
            "SELECT DISTINCT recipient FROM notify_outbox WHERE incident_id = ?1
                AND channel = 'webhook' AND transition LIKE 'step%' AND status IN ('sent', 'pending')",
        )?;
        s.query_map([incident], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    let transition = format!("{kind}.{}", i.loop_no);
    let mut n = 0;
    for h in hooks {
        n += insert_delivery(conn, &i, &transition, "webhook", &h, now_ms)?;
    }
    Ok(n)
}

/// The feed's newest event id (0 for none).
pub(crate) fn feed_head(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT coalesce(max(id), 0) FROM feed_events", [], |r| {
        r.get(0)
    })
}

/// Feed events after `after`, oldest first, at most `limit`.
pub(crate) fn feed_after(
    conn: &Connection,
    after: i64,
    limit: i64,
) -> rusqlite::Result<Vec<FeedEventRow>> {
    let mut s = conn.prepare_cached(
        "SELECT id, incident_id, tenant, severity = 'critical', kind, body FROM feed_events
          WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    s.query_map(params![after, limit], |r| {
        Ok(FeedEventRow {
            id: r.get(0)?,
            incident_id: r.get(1)?,
            tenant: r.get(2)?,
            critical: r.get(3)?,
            kind: r.get(4)?,
            body: r.get(5)?,
        })
    })?
    .collect()
}

/// The notify side on SQLite; on the bare connection too, for the console's and
/// the hub's pooled connections (as for `AlertStore`).
impl NotifyStore for Connection {
    fn incidents(&self, tenant: Option<&str>, all: bool) -> Result<Vec<IncidentRow>, StoreError> {
        Ok(list(self, tenant, all)?)
    }
    fn incident(&self, id: i64) -> Result<Option<IncidentRow>, StoreError> {
        Ok(get(self, id)?)
    }
    fn ack_incident(
        &mut self,
        id: i64,
        by: &str,
        note: Option<&str>,
        now_ms: i64,
    ) -> Result<Outcome, StoreError> {
        Ok(ack(self, id, by, note, now_ms)?)
    }
    fn snooze_incident(
        &mut self,
        id: i64,
        by: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<Outcome, StoreError> {
        Ok(snooze(self, id, by, until_ms, now_ms)?)
    }
    fn resolve_incident(&mut self, id: i64, by: &str, now_ms: i64) -> Result<Outcome, StoreError> {
        Ok(resolve(self, id, by, now_ms)?)
    }
    fn feed_head(&self) -> Result<i64, StoreError> {
        Ok(feed_head(self)?)
    }
    fn feed_after(&self, after: i64, limit: i64) -> Result<Vec<FeedEventRow>, StoreError> {
        Ok(feed_after(self, after, limit)?)
    }
    fn queue_delivery(
        &mut self,
        incident: &IncidentRow,
        transition: &str,
        channel: &str,
        recipient: &str,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        Ok(insert_delivery(
            self, incident, transition, channel, recipient, now_ms,
        )?)
    }
    fn pending_deliveries(&self) -> Result<Vec<super::api::OutboxRow>, StoreError> {
        Ok(super::outbox_sql::pending(self)?)
    }
    fn queue_test_delivery(
        &mut self,
        tenant: &str,
        channel: &str,
        recipient: &str,
        now_ms: i64,
    ) -> Result<super::api::OutboxRow, StoreError> {
        let key = idem_key(0, &format!("test-{now_ms}"), channel, recipient);
        self.execute(
            "INSERT INTO notify_outbox (idem_key, incident_id, tenant, transition, channel, recipient,
                created_ms, status, next_attempt_ms) VALUES (?1, 0, ?2, 'test', ?3, ?4, ?5, 'pending', ?5)",
            params![key, tenant, channel, recipient, now_ms],
        )?;
        Ok(super::api::OutboxRow {
            id: self.last_insert_rowid(),
            idem_key: key,
            incident_id: 0,
            tenant: tenant.to_owned(),
            transition: "test".into(),
            channel: channel.to_owned(),
            recipient: recipient.to_owned(),
            created_ms: now_ms,
            attempts: 0,
            next_attempt_ms: now_ms,
        })
    }
    fn record_deliveries(
        &mut self,
        attempts: &[super::api::DeliveryAttempt],
    ) -> Result<(), StoreError> {
        Ok(super::outbox_sql::record(self, attempts)?)
    }
    fn problem_message_id(
        &self,
        incident: i64,
        recipient: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(super::outbox_sql::problem_message_id(
            self, incident, recipient,
        )?)
    }
    fn delivery_log(
        &self,
        incident: Option<i64>,
    ) -> Result<Vec<super::api::DeliveryLogRow>, StoreError> {
        Ok(super::outbox_sql::log(self, incident)?)
    }
}
