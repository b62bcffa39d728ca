//! The SQLite implementation of the alert side ([`super::api::AlertStore`]):
//! the statements moved as they were from `alerts::{persist, silence,
//! maintenance, service}` (issue 17 item 1), same transactions, same invariants:
//! a round's instance rows, history and incident side effects commit in one
//! transaction, so the stored state and history never disagree and a transition
//! is durable before anything could act on it.
//!
//! The functions take a `&Connection` so that [`super::Db`] (and, until the
//! console holds a `Db`, the console's own transactions) run them. The incident
//! side effects of a round are still the notify module's statements
//! (`notify::incident::on_change`, `ack_instance`), run inside this transaction;
//! they move here with the notify side.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::StoreError;
use super::api::{
    AckOutcome, AlertDeviceRow, AlertFilter, AlertRow, HistoryRow, IncidentLogged, InstanceChange,
    InstanceRow, MaintenanceRow, PatchRow, RecordEvent, RemoveOutcome, SilenceInsert,
    SilenceRefusal, SilenceRow,
};

fn flag(b: bool) -> i64 {
    i64::from(b)
}

/// SQLite refuses NaN in a NOT NULL REAL column; infinities are clamped for readers.
pub(crate) fn finite(v: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(-1e300, 1e300)
    }
}

/// Writes the changed instances and their records, in one transaction.
pub(crate) fn save(
    conn: &mut Connection,
    changes: &[InstanceChange],
    now_ms: i64,
) -> Result<Vec<IncidentLogged>, StoreError> {
    // Incident openings and resolutions this round (issue #12), logged once committed.
    let mut opened_or_resolved = Vec::new();
    if changes.is_empty() {
        return Ok(opened_or_resolved);
    }
    let tx = conn.transaction()?;
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
                    i.rule,
                    i.device_id,
                    i.dimension,
                    i.tenant,
                    i.state,
                    i.severity,
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
                    RecordEvent::Transition { from, .. } => Some(from),
                    _ => None,
                };
                hist.execute(params![
                    id,
                    r.at_ms,
                    r.event.kind(),
                    from,
                    r.state,
                    r.severity,
                    finite(r.value),
                    flag(r.suppressed)
                ])?;
            }
            // The incident and its feed event commit with the transition.
            super::incident_sql::on_change(&tx, id, c, &mut opened_or_resolved)?;
        }
    }
    tx.commit()?;
    Ok(opened_or_resolved)
}

/// When each device's newest certificate expires.
pub(crate) fn load_cert_expiries(conn: &Connection) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT device_id, max(not_after_ms) FROM certificates GROUP BY device_id")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every device as the engine needs it, with its latest successful patch report.
pub(crate) fn load_devices(conn: &Connection) -> Result<Vec<AlertDeviceRow>, StoreError> {
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
                Some(PatchRow {
                    oldest_security_ms,
                    reboot_since_ms: reboot
                        .unwrap_or(false)
                        .then(|| since.filter(|s| *s > 0).unwrap_or(time_ms)),
                })
            }
            _ => None,
        };
        out.push(AlertDeviceRow {
            id,
            tenant,
            site,
            cert_not_after_ms: cert,
            os_family,
            os_version,
            last_seen_ms,
            patch,
        });
    }
    Ok(out)
}

/// Devices revoked (or removed, which revokes).
pub(crate) fn load_revoked_devices(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT id FROM devices WHERE revoked_ms IS NOT NULL")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every device's tags (`device tag`).
pub(crate) fn load_tags(conn: &Connection) -> Result<HashMap<String, Vec<String>>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT device_id, tag FROM device_tags ORDER BY 1, 2")?;
    let mut out: HashMap<String, Vec<String>> = Default::default();
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        out.entry(r.get(0)?).or_default().push(r.get(1)?);
    }
    Ok(out)
}

/// Every stored instance. A `changes` column that does not read is refused as
/// `Invalid`, naming the instance (only possible by editing the file by hand).
pub(crate) fn load_instances(conn: &Connection) -> Result<Vec<InstanceRow>, StoreError> {
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
        let changes: String = r.get(16)?;
        let changes: Vec<i64> =
            serde_json::from_str(&changes).map_err(|e| StoreError::Invalid {
                what: format!("stored state of alert instance {id}: changes: {e}"),
            })?;
        out.push(InstanceRow {
            rule: r.get(1)?,
            device_id: r.get(2)?,
            dimension: r.get(3)?,
            tenant: r.get(4)?,
            state: r.get(5)?,
            severity: r.get(6)?,
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
        });
    }
    Ok(out)
}

/// The site a device enrolled into.
pub(crate) fn site_of(conn: &Connection, device_id: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT s.name FROM devices d JOIN sites s ON s.id = d.site_id WHERE d.id = ?1",
            [device_id],
            |r| r.get(0),
        )
        .optional()?)
}

/// When the device's newest certificate expires.
pub(crate) fn cert_expiry_of(
    conn: &Connection,
    device_id: &str,
) -> Result<Option<i64>, StoreError> {
    Ok(conn.query_row(
        "SELECT max(not_after_ms) FROM certificates WHERE device_id = ?1",
        [device_id],
        |r| r.get(0),
    )?)
}

/// Alerts, most recent state change first.
pub(crate) fn list(conn: &Connection, f: &AlertFilter<'_>) -> Result<Vec<AlertRow>, StoreError> {
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
        params![f.tenant, f.state, f.device, f.all, f.min_severity],
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

/// The history of one device's alerts (or of all, or of one tenant's), oldest first.
pub(crate) fn history(
    conn: &Connection,
    device: Option<&str>,
    tenant: Option<&str>,
) -> Result<Vec<HistoryRow>, StoreError> {
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

/// Acknowledges an active alert (records who and when, and a history row).
pub(crate) fn ack(
    conn: &mut Connection,
    id: i64,
    by: &str,
    now_ms: i64,
) -> Result<AckOutcome, StoreError> {
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
            super::incident_sql::ack_instance(&tx, id, by, now_ms)?;
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

// ------------------------------------------------------------------ silences

/// Stores a checked silence in one `BEGIN IMMEDIATE` transaction.
pub(crate) fn create_silence(
    conn: &mut Connection,
    s: &SilenceInsert,
    now_ms: i64,
) -> Result<Result<i64, SilenceRefusal>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let id = insert_silence(&tx, s, now_ms)?;
    if id.is_ok() {
        tx.commit()?;
    }
    Ok(id)
}

/// [`create_silence`] inside the caller's transaction (the console audits in the
/// same one): checks the tenant, site and device named, then inserts.
pub(crate) fn insert_silence(
    tx: &Connection,
    s: &SilenceInsert,
    now_ms: i64,
) -> Result<Result<i64, SilenceRefusal>, StoreError> {
    if let Some(t) = &s.tenant {
        let found: Option<i64> = tx
            .query_row("SELECT id FROM tenants WHERE name = ?1", [t], |r| r.get(0))
            .optional()?;
        if found.is_none() {
            return Ok(Err(SilenceRefusal::NoTenant(t.clone())));
        }
    }
    if let Some(site) = &s.site {
        let n: i64 = tx.query_row(
            "SELECT count(*) FROM sites s JOIN tenants t ON t.id = s.tenant_id
             WHERE s.name = ?1 AND (?2 IS NULL OR t.name = ?2)",
            params![site, s.tenant],
            |r| r.get(0),
        )?;
        if n == 0 {
            let in_tenant = s
                .tenant
                .as_ref()
                .map(|t| format!(" in tenant {t:?}"))
                .unwrap_or_default();
            return Ok(Err(SilenceRefusal::NoSite(site.clone(), in_tenant)));
        }
    }
    if let Some(d) = &s.device {
        let tenant: Option<String> = tx
            .query_row(
                "SELECT t.name FROM devices d JOIN tenants t ON t.id = d.tenant_id WHERE d.id = ?1",
                [d],
                |r| r.get(0),
            )
            .optional()?;
        match (tenant, &s.tenant) {
            (None, _) => return Ok(Err(SilenceRefusal::NoDevice(d.clone()))),
            (Some(actual), Some(wanted)) if actual != *wanted => {
                return Ok(Err(SilenceRefusal::WrongTenant {
                    device: d.clone(),
                    actual,
                    wanted: wanted.clone(),
                }));
            }
            _ => {}
        }
    }
    tx.execute(
        "INSERT INTO silences (starts_ms, ends_ms, tenant, site, tag, device_id, rule, comment,
                               created_by, created_ms, rrule, tz, duration_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            s.starts_ms,
            s.ends_ms,
            s.tenant,
            s.site,
            s.tag,
            s.device,
            s.rule,
            s.comment.trim(),
            s.by,
            now_ms,
            s.rrule,
            s.tz,
            s.duration_ms
        ],
    )?;
    Ok(Ok(tx.last_insert_rowid()))
}

/// Every column of a silence, in the order [`silence_row`] reads them (the CLI's
/// list and the console's read the same rows).
pub(crate) const SILENCE_SELECT: &str =
    "SELECT id, starts_ms, ends_ms, tenant, site, tag, device_id, rule,
    comment, created_by, created_ms, removed_ms, removed_by, rrule, tz, duration_ms FROM silences";

/// A row of [`SILENCE_SELECT`].
pub(crate) fn silence_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SilenceRow> {
    Ok(SilenceRow {
        id: r.get(0)?,
        starts_ms: r.get(1)?,
        ends_ms: r.get(2)?,
        tenant: r.get(3)?,
        site: r.get(4)?,
        tag: r.get(5)?,
        device_id: r.get(6)?,
        rule: r.get(7)?,
        comment: r.get(8)?,
        created_by: r.get(9)?,
        created_ms: r.get(10)?,
        removed_ms: r.get(11)?,
        removed_by: r.get(12)?,
        rrule: r.get(13)?,
        tz: r.get(14)?,
        duration_ms: r.get(15)?,
    })
}

/// Silences not removed and not ended at `now_ms` (with `all`: every one ever made),
/// soonest end first.
pub(crate) fn silences(
    conn: &Connection,
    now_ms: i64,
    all: bool,
) -> Result<Vec<SilenceRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SILENCE_SELECT} WHERE ?2 OR (removed_ms IS NULL AND ends_ms > ?1) ORDER BY ends_ms, id"
    ))?;
    let rows = stmt.query_map(params![now_ms, all], silence_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Lifts a silence (keeps the row, records who and when).
pub(crate) fn remove_silence(
    conn: &Connection,
    id: i64,
    by: &str,
    now_ms: i64,
) -> rusqlite::Result<RemoveOutcome> {
    let row: Option<(i64, Option<i64>)> = conn
        .query_row(
            "SELECT ends_ms, removed_ms FROM silences WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(match row {
        None => RemoveOutcome::NoSuchSilence,
        Some((_, Some(_))) => RemoveOutcome::AlreadyRemoved,
        Some((ends, None)) if ends <= now_ms => RemoveOutcome::AlreadyEnded,
        Some(_) => {
            conn.execute(
                "UPDATE silences SET removed_ms = ?2, removed_by = ?3
                 WHERE id = ?1 AND removed_ms IS NULL",
                params![id, now_ms, by],
            )?;
            RemoveOutcome::Removed
        }
    })
}

// ------------------------------------------------------------- maintenance

/// The columns [`maintenance_row`] reads; add a `WHERE` on `w.` / `t.`.
pub(crate) const MAINTENANCE_SELECT: &str =
    "SELECT w.id, t.name, w.site, w.device_id, w.starts_ms, w.ends_ms, w.note,
        w.created_by, w.created_ms
    FROM maintenance_windows w JOIN tenants t ON t.id = w.tenant_id";

/// A row of [`MAINTENANCE_SELECT`].
pub(crate) fn maintenance_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MaintenanceRow> {
    Ok(MaintenanceRow {
        id: r.get(0)?,
        tenant: r.get(1)?,
        site: r.get(2)?,
        device_id: r.get(3)?,
        starts_ms: r.get(4)?,
        ends_ms: r.get(5)?,
        note: r.get(6)?,
        created_by: r.get(7)?,
        created_ms: r.get(8)?,
    })
}

/// The windows made at run time that have not ended at `now_ms`.
pub(crate) fn maintenance_windows(
    conn: &Connection,
    now_ms: i64,
) -> Result<Vec<MaintenanceRow>, StoreError> {
    let mut s = conn.prepare_cached(&format!(
        "{MAINTENANCE_SELECT} WHERE w.ends_ms > ?1 ORDER BY w.id"
    ))?;
    let rows = s.query_map([now_ms], maintenance_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}
