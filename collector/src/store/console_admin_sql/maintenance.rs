//! Maintenance windows, snooze and silences: created, lifted and listed within the
//! caller's scope, each write audited.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::json;

use super::super::api::{IncidentRow, MaintenanceRow, SilenceInsert, SilenceRefusal, SilenceRow};
use super::super::console_admin::NewWindow;
use super::super::{AuditEntry, StoreError, alert_sql, audit_sql, incident_sql};
use super::{audited, conflict, not_found, one};

/// The scope clause of silences: a silence belongs to the tenant it names (one
/// naming no tenant is the MSP's, and only MSP roles see it).
pub(super) const SILENCE_SCOPE: &str =
    "(?1 IS NULL OR tenant = (SELECT name FROM tenants WHERE id = ?1))";

pub(super) fn list_windows(
    c: &Connection,
    scope: Option<i64>,
    all: bool,
    now_ms: i64,
) -> Result<Vec<MaintenanceRow>, StoreError> {
    let rows = c
        .prepare(&format!(
            "{} WHERE (?1 IS NULL OR w.tenant_id = ?1) AND (?2 OR w.ends_ms > ?3)
             ORDER BY w.starts_ms, w.id LIMIT 1000",
            alert_sql::MAINTENANCE_SELECT
        ))?
        .query_map(params![scope, all, now_ms], alert_sql::maintenance_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(super) fn create_window(
    c: &mut Connection,
    w: &NewWindow<'_>,
    scope: Option<i64>,
    actor: &str,
    now_ms: i64,
) -> Result<MaintenanceRow, StoreError> {
    audited(c, now_ms, |tx| {
        // The device, within the caller's scope (another tenant's does not exist).
        let device_tenant: Option<i64> = match w.device {
            Some(d) => Some(
                tx.query_row(
                    "SELECT tenant_id FROM devices WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                    params![d, scope],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| not_found(format!("device {d:?}")))?,
            ),
            None => None,
        };
        let tid = scope.or(device_tenant).ok_or_else(|| StoreError::Invalid {
            what: "tenant: required (or a device, whose tenant it then is)".into(),
        })?;
        if let Some(s) = w.site {
            tx.query_row(
                "SELECT 1 FROM sites WHERE tenant_id = ?1 AND name = ?2",
                params![tid, s],
                |_| Ok(()),
            )
            .optional()?
            .ok_or_else(|| not_found(format!("site {s:?}")))?;
        }
        tx.execute(
            "INSERT INTO maintenance_windows (tenant_id, site, device_id, starts_ms, ends_ms, note, created_by, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![tid, w.site, w.device, w.starts_ms, w.ends_ms, w.note, actor, now_ms],
        )?;
        let id = tx.last_insert_rowid();
        let row = tx.query_row(
            &format!("{} WHERE w.id = ?1", alert_sql::MAINTENANCE_SELECT),
            [id],
            alert_sql::maintenance_row,
        )?;
        let e = AuditEntry::new(
            actor,
            "maintenance.create",
            format!("maintenance window {id}"),
            json!({ "tenant": row.tenant, "site": row.site, "device": row.device_id,
                    "starts_ms": w.starts_ms, "ends_ms": w.ends_ms, "note": row.note }),
        );
        Ok((row, one(Some(tid), e)))
    })
}

pub(super) fn delete_window(
    c: &mut Connection,
    id: i64,
    scope: Option<i64>,
    actor: &str,
    now_ms: i64,
) -> Result<MaintenanceRow, StoreError> {
    audited(c, now_ms, |tx| {
        let w = tx
            .query_row(
                &format!(
                    "{} WHERE w.id = ?1 AND (?2 IS NULL OR w.tenant_id = ?2)",
                    alert_sql::MAINTENANCE_SELECT
                ),
                params![id, scope],
                alert_sql::maintenance_row,
            )
            .optional()?
            .ok_or_else(|| not_found(format!("maintenance window {id}")))?;
        let tid: i64 = tx.query_row(
            "SELECT tenant_id FROM maintenance_windows WHERE id = ?1",
            [id],
            |r| r.get(0),
        )?;
        tx.execute(
            "DELETE FROM maintenance_windows WHERE id = ?1 AND tenant_id = ?2",
            params![id, tid],
        )?;
        let e = AuditEntry::new(
            actor,
            "maintenance.delete",
            format!("maintenance window {id}"),
            json!({ "tenant": w.tenant, "site": w.site, "device": w.device_id,
                    "starts_ms": w.starts_ms, "ends_ms": w.ends_ms, "note": w.note }),
        );
        Ok((w, one(Some(tid), e)))
    })
}

pub(super) fn snooze_in_scope(
    c: &mut Connection,
    id: i64,
    scope: Option<i64>,
    until_ms: i64,
    note: Option<&str>,
    actor: &str,
    now_ms: i64,
) -> Result<IncidentRow, StoreError> {
    let alert = || not_found(format!("alert {id}"));
    audited(c, now_ms, |tx| {
        tx.query_row(
            "SELECT 1 FROM incidents i WHERE i.id = ?1
               AND (?2 IS NULL OR i.tenant = (SELECT name FROM tenants WHERE id = ?2))",
            params![id, scope],
            |_| Ok(()),
        )
        .optional()?
        .ok_or_else(alert)?;
        match incident_sql::snooze_in(tx, id, actor, note, until_ms, now_ms)? {
            incident_sql::Outcome::Done | incident_sql::Outcome::Already => {}
            incident_sql::Outcome::Resolved => {
                return Err(conflict(format!("alert {id}: already resolved")));
            }
            incident_sql::Outcome::NoSuchIncident => return Err(alert()),
        }
        let tenant: Option<i64> = tx
            .query_row(
                "SELECT t.id FROM incidents i JOIN tenants t ON t.name = i.tenant WHERE i.id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        let e = AuditEntry::new(
            actor,
            "alert.snooze",
            format!("alert {id}"),
            json!({ "until_ms": until_ms, "note": note }),
        );
        Ok(((), one(tenant, e)))
    })?;
    incident_sql::get(c, id)?.ok_or_else(alert)
}

pub(super) fn list_silences_in(
    c: &Connection,
    scope: Option<i64>,
    all: bool,
    now_ms: i64,
) -> Result<Vec<SilenceRow>, StoreError> {
    let rows = c
        .prepare(&format!(
            "{} WHERE {SILENCE_SCOPE}
               AND (?2 OR (removed_ms IS NULL AND ends_ms > ?3)) ORDER BY ends_ms, id LIMIT 1000",
            alert_sql::SILENCE_SELECT
        ))?
        .query_map(params![scope, all, now_ms], alert_sql::silence_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(super) fn silence_tenant(
    c: &Connection,
    scope: Option<i64>,
    device: Option<&str>,
) -> Result<(Option<i64>, Option<String>), StoreError> {
    let mut tid = scope;
    if tid.is_none() {
        // An MSP silence of a device is its tenant's too (so that tenant sees it).
        if let Some(d) = device {
            tid = c
                .query_row("SELECT tenant_id FROM devices WHERE id = ?1", [d], |r| {
                    r.get(0)
                })
                .optional()?;
        }
    }
    let name: Option<String> = match tid {
        Some(id) => {
            Some(c.query_row("SELECT name FROM tenants WHERE id = ?1", [id], |r| r.get(0))?)
        }
        None => None,
    };
    Ok((tid, name))
}

pub(super) fn create_silence_audited(
    c: &mut Connection,
    s: &SilenceInsert,
    tenant_id: Option<i64>,
    actor: &str,
    now_ms: i64,
) -> Result<Result<SilenceRow, SilenceRefusal>, StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let id = match alert_sql::insert_silence(&tx, s, now_ms)? {
        Ok(id) => id,
        // Dropping the transaction rolls it back: nothing was written.
        Err(refusal) => return Ok(Err(refusal)),
    };
    let e = AuditEntry::new(
        actor,
        "silence.create",
        format!("silence {id}"),
        json!({ "ends_ms": s.ends_ms, "tenant": s.tenant, "site": s.site, "tag": s.tag,
                "device": s.device, "rule": s.rule, "comment": s.comment }),
    );
    audit_sql::append(&tx, tenant_id, &e, now_ms)?;
    let row = tx.query_row(
        &format!("{} WHERE id = ?1", alert_sql::SILENCE_SELECT),
        [id],
        alert_sql::silence_row,
    )?;
    tx.commit()?;
    Ok(Ok(row))
}

pub(super) fn expire_silence(
    c: &mut Connection,
    id: i64,
    scope: Option<i64>,
    actor: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    use super::super::api::RemoveOutcome;
    audited(c, now_ms, |tx| {
        let tenant: Option<i64> = tx
            .query_row(
                &format!(
                    "SELECT (SELECT id FROM tenants t WHERE t.name = s.tenant) FROM silences s
                     WHERE s.id = ?2 AND {}",
                    SILENCE_SCOPE.replace("tenant =", "s.tenant =")
                ),
                params![scope, id],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| not_found(format!("silence {id}")))?;
        match alert_sql::remove_silence(tx, id, actor, now_ms)? {
            RemoveOutcome::Removed => {}
            RemoveOutcome::AlreadyRemoved => {
                return Err(conflict(format!("silence {id}: already expired")));
            }
            RemoveOutcome::AlreadyEnded => {
                return Err(conflict(format!("silence {id}: already ended")));
            }
            RemoveOutcome::NoSuchSilence => return Err(not_found(format!("silence {id}"))),
        }
        let e = AuditEntry::new(actor, "silence.expire", format!("silence {id}"), json!({}));
        Ok(((), one(tenant, e)))
    })
}
