//! The read side of incidents: [`IncidentRow`] as the CLI, the feed, mails and
//! webhooks show it, the queries that load it, its JSON form and the feed events
//! written from it. A leaf of `notify`, so both the incident workflow
//! ([`super::incident`]) and the outbox ([`super::outbox`]) use it without using
//! each other through it.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

/// Version of the JSON documents of the feed and the generic webhook.
pub(crate) const SCHEMA: &str = "tandem.notify/v1";

/// One incident as the CLI, the feed, mails and webhooks show it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct IncidentRow {
    pub id: i64,
    pub tenant: String,
    pub site: Option<String>,
    pub device_id: String,
    pub hostname: String,
    pub rule: String,
    pub dimension: String,
    pub severity: String,
    pub state: String,
    pub value: f64,
    pub suppressed: bool,
    pub opened_ms: i64,
    pub acked_ms: Option<i64>,
    pub acked_by: Option<String>,
    pub ack_note: Option<String>,
    pub snoozed_until_ms: Option<i64>,
    pub resolved_ms: Option<i64>,
    pub resolved_by: Option<String>,
    pub loop_no: i64,
    pub loop_start_ms: i64,
}

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
