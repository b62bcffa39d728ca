//! The SQLite side of [`ConsoleQuery`] and [`ScopeLookup`] (issue 17 item 1): the
//! statements moved from `console::{api, devices, device, alerts, metrics}` and
//! `http::feed` as they were, the tenant id a bound parameter of each.

use rusqlite::{Connection, OptionalExtension, params};

use super::compact::StorageConfig;
use super::console_query::{
    AckResult, ConsoleDevice, ConsoleQuery, DeviceFilter, FeedPageRow, FleetCounts, FleetWindow,
    HistoryStep, IncidentDetail, IncidentEvent, IncidentFilter, IncidentRow, PageAt, Paged,
    PendingUpdate, RolelessToken, ScopeLookup, ScrapeFigures, SiteCounts, TenantCounts,
    UnackResult,
};
use super::posture::{DevicePosture, TenantSummary};
use super::query::{DeviceRow, InventoryRow, MetricQuery, PatchStatus, SoftwareRow, SqliteMetrics};
use super::stats::StorageStats;
use super::{AuditEntry, Db, StoreError, audit_sql, incident_sql};

/// A LIKE pattern (with `ESCAPE '\'`) matching `s` anywhere.
fn contains_pattern(s: &str) -> String {
    format!(
        "%{}%",
        s.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    )
}

// ---------------------------------------------------------------- scope

fn tenant_id(c: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    c.query_row("SELECT id FROM tenants WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .optional()
}

fn incident_in_scope(c: &Connection, id: i64, scope: Option<i64>) -> rusqlite::Result<bool> {
    Ok(c.query_row(
        "SELECT 1 FROM incidents i WHERE i.id = ?1
           AND (?2 IS NULL OR i.tenant = (SELECT name FROM tenants WHERE id = ?2))",
        params![id, scope],
        |_| Ok(()),
    )
    .optional()?
    .is_some())
}

fn incident_tenant_id(c: &Connection, id: i64) -> rusqlite::Result<Option<i64>> {
    c.query_row(
        "SELECT t.id FROM incidents i JOIN tenants t ON t.name = i.tenant WHERE i.id = ?1",
        [id],
        |r| r.get(0),
    )
    .optional()
}

impl ScopeLookup for Db {
    fn tenant_id(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(tenant_id(self.conn(), name)?)
    }
}

// ---------------------------------------------------------------- tenants, fleet, sites

fn tenants(c: &Connection, scope: Option<i64>) -> rusqlite::Result<Vec<TenantCounts>> {
    let mut s = c.prepare(
        "SELECT t.name, (SELECT count(*) FROM devices d WHERE d.tenant_id = t.id AND d.revoked_ms IS NULL),
                (SELECT count(*) FROM sites s WHERE s.tenant_id = t.id)
         FROM tenants t WHERE (?1 IS NULL OR t.id = ?1) ORDER BY t.name",
    )?;
    let rows = s.query_map([scope], |r| {
        Ok(TenantCounts {
            name: r.get(0)?,
            devices: r.get(1)?,
            sites: r.get(2)?,
        })
    })?;
    rows.collect()
}

fn fleet(
    c: &Connection,
    scope: Option<i64>,
    at: &FleetWindow,
) -> rusqlite::Result<Vec<FleetCounts>> {
    // One pass over the devices grouped by tenant (not eight subqueries per
    // tenant): the fleet page must stay fast at 10,000 devices.
    let mut s = c.prepare_cached(
        "WITH live AS (
             SELECT id, tenant_id, last_seen_ms FROM devices
              WHERE revoked_ms IS NULL AND (?1 IS NULL OR tenant_id = ?1)),
         devs AS (
             SELECT tenant_id, count(*) AS n, sum(last_seen_ms >= ?2) AS online,
                    sum(last_seen_ms < ?3) AS stale
               FROM live GROUP BY tenant_id),
         pat AS (
             SELECT l.tenant_id, sum(r.reboot_required != 0) AS reboot,
                    sum(EXISTS (SELECT 1 FROM pending_updates u
                                 WHERE u.device_id = l.id AND u.report_seq = r.seq
                                   AND u.classification = 'security')) AS sec,
                    sum(EXISTS (SELECT 1 FROM pending_updates u
                                 WHERE u.device_id = l.id AND u.report_seq = r.seq
                                   AND u.classification = 'security'
                                   AND u.first_seen_ms < ?4)) AS overdue
               FROM live l JOIN patch_reports r ON r.device_id = l.id
                AND r.seq = (SELECT max(seq) FROM patch_reports WHERE device_id = l.id)
              GROUP BY l.tenant_id),
         inc AS (
             SELECT tenant, sum(severity = 'warning') AS w, sum(severity = 'critical') AS c
               FROM incidents WHERE state IN ('open', 'acked', 'snoozed') GROUP BY tenant)
         SELECT t.name, coalesce(devs.n, 0), coalesce(devs.online, 0),
                coalesce(devs.stale, 0), coalesce(inc.w, 0), coalesce(inc.c, 0),
                coalesce(pat.reboot, 0), coalesce(pat.sec, 0), coalesce(pat.overdue, 0)
           FROM tenants t
           LEFT JOIN devs ON devs.tenant_id = t.id
           LEFT JOIN pat ON pat.tenant_id = t.id
           LEFT JOIN inc ON inc.tenant = t.name
          WHERE (?1 IS NULL OR t.id = ?1) ORDER BY t.name",
    )?;
    let rows = s.query_map(
        params![
            scope,
            at.online_since_ms,
            at.stale_before_ms,
            at.overdue_before_ms
        ],
        |r| {
            Ok(FleetCounts {
                tenant: r.get(0)?,
                devices: r.get(1)?,
                online: r.get(2)?,
                stale: r.get(3)?,
                alerts_warning: r.get(4)?,
                alerts_critical: r.get(5)?,
                reboot_pending: r.get(6)?,
                security_pending: r.get(7)?,
                security_overdue: r.get(8)?,
            })
        },
    )?;
    rows.collect()
}

fn sites(c: &Connection, scope: Option<i64>) -> rusqlite::Result<Vec<SiteCounts>> {
    let mut s = c.prepare(
        "SELECT t.name, s.name, (SELECT count(*) FROM devices d WHERE d.site_id = s.id)
         FROM sites s JOIN tenants t ON t.id = s.tenant_id
         WHERE (?1 IS NULL OR s.tenant_id = ?1) ORDER BY t.name, s.name",
    )?;
    let rows = s.query_map([scope], |r| {
        Ok(SiteCounts {
            tenant: r.get(0)?,
            name: r.get(1)?,
            devices: r.get(2)?,
        })
    })?;
    rows.collect()
}

// ---------------------------------------------------------------- devices

const DEVICE_SELECT: &str = "SELECT d.id, t.name, s.name, d.hostname, d.os_family, d.os_version,
        d.agent_version, d.first_seen_ms, d.last_seen_ms,
        (SELECT count(*) FROM incidents i WHERE i.device_id = d.id AND i.state != 'resolved')
    FROM devices d JOIN tenants t ON t.id = d.tenant_id LEFT JOIN sites s ON s.id = d.site_id";

fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConsoleDevice> {
    Ok(ConsoleDevice {
        id: r.get(0)?,
        tenant: r.get(1)?,
        site: r.get(2)?,
        hostname: r.get(3)?,
        os_family: r.get(4)?,
        os_version: r.get(5)?,
        agent_version: r.get(6)?,
        first_seen_ms: r.get(7)?,
        last_seen_ms: r.get(8)?,
        open_alerts: r.get(9)?,
    })
}

fn devices(
    c: &Connection,
    f: &DeviceFilter<'_>,
    at: PageAt,
) -> rusqlite::Result<Paged<ConsoleDevice>> {
    let host = f.hostname.map(contains_pattern);
    let filter = "WHERE d.revoked_ms IS NULL AND (?1 IS NULL OR d.tenant_id = ?1)
          AND (?2 IS NULL OR s.name = ?2)
          AND (?3 IS NULL OR (d.last_seen_ms >= ?4) = ?3)
          AND (?5 IS NULL OR d.os_family = ?5)
          AND (?6 IS NULL OR d.hostname LIKE ?6 ESCAPE '\\')
          AND (?7 IS NULL OR EXISTS (SELECT 1 FROM device_tags dt
                                      WHERE dt.device_id = d.id AND dt.tag = ?7))";
    let args = params![
        f.scope,
        f.site,
        f.online,
        f.online_since_ms,
        f.os_family,
        host,
        f.tag
    ];
    let total: i64 = c.query_row(
        &format!("SELECT count(*) FROM devices d LEFT JOIN sites s ON s.id = d.site_id {filter}"),
        args,
        |r| r.get(0),
    )?;
    // The page's ids first, then its rows: the open-alert count is computed for
    // the page only, not for every device before the sort.
    let mut s = c.prepare(&format!(
        "{DEVICE_SELECT} WHERE d.id IN (
             SELECT d.id FROM devices d LEFT JOIN sites s ON s.id = d.site_id {filter}
              ORDER BY d.last_seen_ms DESC, d.id LIMIT {} OFFSET {})
         ORDER BY d.last_seen_ms DESC, d.id",
        at.per_page,
        at.offset()
    ))?;
    let items = s
        .query_map(args, device_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Paged { items, total })
}

fn device(c: &Connection, id: &str, scope: Option<i64>) -> rusqlite::Result<Option<ConsoleDevice>> {
    c.query_row(
        &format!("{DEVICE_SELECT} WHERE d.id = ?1 AND (?2 IS NULL OR d.tenant_id = ?2)"),
        params![id, scope],
        device_row,
    )
    .optional()
}

fn pending_updates(c: &Connection, device_id: &str) -> rusqlite::Result<Vec<PendingUpdate>> {
    c.prepare(
        "SELECT u.name, u.current_version, u.new_version, u.classification, u.advisory_id, u.first_seen_ms
         FROM pending_updates u
         WHERE u.device_id = ?1
           AND u.report_seq = (SELECT max(seq) FROM patch_reports WHERE device_id = ?1)
         ORDER BY u.classification != 'security', u.first_seen_ms, u.name LIMIT 5000",
    )?
    .query_map([device_id], |r| {
        Ok(PendingUpdate {
            name: r.get(0)?,
            current_version: r.get(1)?,
            new_version: r.get(2)?,
            classification: r.get(3)?,
            advisory_id: r.get(4)?,
            first_seen_ms: r.get(5)?,
        })
    })?
    .collect()
}

fn software_page(
    c: &Connection,
    device_id: &str,
    search: Option<&str>,
    at: PageAt,
) -> rusqlite::Result<Paged<SoftwareRow>> {
    let like = search.map(contains_pattern);
    let filter = "WHERE device_id = ?1 AND (?2 IS NULL OR name LIKE ?2 ESCAPE '\\' OR publisher LIKE ?2 ESCAPE '\\')";
    let total: i64 = c.query_row(
        &format!("SELECT count(*) FROM inventory_software {filter}"),
        params![device_id, like],
        |r| r.get(0),
    )?;
    let items = c
        .prepare(&format!(
            "SELECT name, version, publisher FROM inventory_software {filter}
             ORDER BY name COLLATE NOCASE, version LIMIT {} OFFSET {}",
            at.per_page,
            at.offset()
        ))?
        .query_map(params![device_id, like], |r| {
            Ok(SoftwareRow {
                name: r.get(0)?,
                version: r.get(1)?,
                publisher: r.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Paged { items, total })
}

// ---------------------------------------------------------------- incidents

fn incidents(
    c: &Connection,
    f: &IncidentFilter<'_>,
    at: PageAt,
) -> rusqlite::Result<Paged<IncidentRow>> {
    let filter = "WHERE (?1 IS NULL OR i.tenant = (SELECT name FROM tenants WHERE id = ?1))
          AND (?2 = 'all' OR (?2 = 'active' AND i.state != 'resolved') OR i.state = ?2)
          AND (?3 IS NULL OR i.severity = ?3) AND (?4 IS NULL OR i.device_id = ?4)
          AND (?5 IS NULL OR i.device_id IN (SELECT d.id FROM devices d JOIN sites s ON s.id = d.site_id
                                             WHERE s.name = ?5 AND (?1 IS NULL OR d.tenant_id = ?1)))";
    let args = params![f.scope, f.state, f.severity, f.device, f.site];
    let total: i64 = c.query_row(
        &format!("SELECT count(*) FROM incidents i {filter}"),
        args,
        |r| r.get(0),
    )?;
    let ids = c
        .prepare(&format!(
            "SELECT i.id FROM incidents i {filter} ORDER BY i.id DESC LIMIT {} OFFSET {}",
            at.per_page,
            at.offset()
        ))?
        .query_map(args, |r| r.get::<_, i64>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut items = Vec::new();
    for id in ids {
        if let Some(i) = incident_sql::get(c, id)? {
            items.push(i);
        }
    }
    Ok(Paged { items, total })
}

fn incident_detail(
    c: &Connection,
    id: i64,
    scope: Option<i64>,
) -> rusqlite::Result<Option<IncidentDetail>> {
    if !incident_in_scope(c, id, scope)? {
        return Ok(None);
    }
    let Some(incident) = incident_sql::get(c, id)? else {
        return Ok(None);
    };
    let events = c
        .prepare("SELECT kind, at_ms FROM feed_events WHERE incident_id = ?1 ORDER BY id")?
        .query_map([id], |r| {
            Ok(IncidentEvent {
                kind: r.get(0)?,
                at_ms: r.get(1)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let history = c
        .prepare(
            "SELECT h.at_ms, h.event, h.from_state, h.to_state, h.severity, h.value FROM alert_history h
             JOIN incidents i ON i.instance_id = h.instance_id WHERE i.id = ?1 ORDER BY h.at_ms, h.id LIMIT 1000",
        )?
        .query_map([id], |r| {
            Ok(HistoryStep {
                at_ms: r.get(0)?,
                event: r.get(1)?,
                from_state: r.get(2)?,
                to_state: r.get(3)?,
                severity: r.get(4)?,
                value: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(IncidentDetail {
        incident,
        events,
        history,
    }))
}

/// The scope check, then [`incident_sql::ack_in`] and the audit row in one
/// transaction; the incident read back after the commit.
fn ack_incident(
    c: &mut Connection,
    id: i64,
    scope: Option<i64>,
    note: Option<&str>,
    audit: &AuditEntry,
    now_ms: i64,
) -> rusqlite::Result<AckResult> {
    if !incident_in_scope(c, id, scope)? {
        return Ok(AckResult::NotFound);
    }
    let tx = c.transaction()?;
    match incident_sql::ack_in(&tx, id, &audit.actor, note, now_ms)? {
        incident_sql::Outcome::Done => {}
        // Dropping `tx` rolls back (nothing was written).
        incident_sql::Outcome::Already => return Ok(AckResult::Already),
        incident_sql::Outcome::Resolved => return Ok(AckResult::Resolved),
        incident_sql::Outcome::NoSuchIncident => return Ok(AckResult::NotFound),
    }
    let tenant = incident_tenant_id(&tx, id)?;
    audit_sql::append(&tx, tenant, audit, now_ms)?;
    tx.commit()?;
    Ok(match incident_sql::get(c, id)? {
        Some(i) => AckResult::Done(Box::new(i)),
        None => AckResult::NotFound,
    })
}

fn unack_incident(
    c: &mut Connection,
    id: i64,
    scope: Option<i64>,
    audit: &AuditEntry,
    now_ms: i64,
) -> rusqlite::Result<UnackResult> {
    if !incident_in_scope(c, id, scope)? {
        return Ok(UnackResult::NotFound);
    }
    let tx = c.transaction()?;
    let found: Option<(String, i64)> = tx
        .query_row(
            "SELECT state, instance_id FROM incidents WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((state, instance)) = found else {
        return Ok(UnackResult::NotFound);
    };
    if !["acked", "snoozed"].contains(&state.as_str()) {
        return Ok(UnackResult::NotAcked { state });
    }
    tx.execute(
        "UPDATE incidents SET state = 'open', loop_no = loop_no + 1, loop_start_ms = ?2, snoozed_until_ms = NULL,
            acked_ms = NULL, acked_by = NULL, ack_note = NULL WHERE id = ?1",
        params![id, now_ms],
    )?;
    tx.execute(
        "UPDATE alert_instances SET acked_ms = NULL, acked_by = NULL WHERE id = ?1",
        [instance],
    )?;
    incident_sql::feed_event(&tx, id, "reopened", now_ms)?;
    let tenant = incident_tenant_id(&tx, id)?;
    audit_sql::append(&tx, tenant, audit, now_ms)?;
    tx.commit()?;
    Ok(match incident_sql::get(c, id)? {
        Some(i) => UnackResult::Done(Box::new(i)),
        None => UnackResult::NotFound,
    })
}

// ---------------------------------------------------------------- /metrics, feed

fn scrape_figures(
    c: &Connection,
    online_since_ms: i64,
    now_ms: i64,
) -> rusqlite::Result<ScrapeFigures> {
    let pairs = |sql: &str| -> rusqlite::Result<Vec<(String, i64)>> {
        let mut s = c.prepare(sql)?;
        let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    };
    let (online, offline) = c.query_row(
        "SELECT coalesce(sum(last_seen_ms >= ?1), 0), coalesce(sum(last_seen_ms < ?1), 0)
         FROM devices WHERE revoked_ms IS NULL",
        [online_since_ms],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(ScrapeFigures {
        devices_online: online,
        devices_offline: offline,
        incidents_open: pairs(
            "SELECT severity, count(*) FROM incidents WHERE state != 'resolved' GROUP BY severity ORDER BY severity",
        )?,
        outbox: pairs(
            "SELECT status, count(*) FROM notify_outbox GROUP BY status ORDER BY status",
        )?,
        notify_attempts: pairs(
            "SELECT result, count(*) FROM notify_log GROUP BY result ORDER BY result",
        )?,
        sessions: c.query_row(
            "SELECT count(*) FROM sessions WHERE expires_ms > ?1",
            [now_ms],
            |r| r.get(0),
        )?,
        feed_events: c.query_row("SELECT coalesce(max(id), 0) FROM feed_events", [], |r| {
            r.get(0)
        })?,
    })
}

fn roleless_token(c: &Connection, sha256_hex: &str) -> rusqlite::Result<Option<RolelessToken>> {
    let revoked: Option<Option<i64>> = c
        .query_row(
            "SELECT revoked_ms FROM api_tokens WHERE sha256_hex = ?1 AND role IS NULL AND tenant_id IS NULL",
            [sha256_hex],
            |r| r.get(0),
        )
        .optional()?;
    Ok(revoked.map(|r| match r {
        None => RolelessToken::Valid,
        Some(_) => RolelessToken::Revoked,
    }))
}

fn feed_page(
    c: &Connection,
    after: i64,
    tenant: Option<&str>,
    critical_only: bool,
    limit: i64,
) -> rusqlite::Result<Vec<FeedPageRow>> {
    let mut s = c.prepare_cached(
        "SELECT id, kind, body FROM feed_events WHERE id > ?1
           AND (?2 IS NULL OR tenant = ?2) AND (NOT ?3 OR severity = 'critical')
         ORDER BY id LIMIT ?4",
    )?;
    let rows = s.query_map(params![after, tenant, critical_only, limit], |r| {
        Ok(FeedPageRow {
            id: r.get(0)?,
            kind: r.get(1)?,
            body: r.get(2)?,
        })
    })?;
    rows.collect()
}

fn tenant_name(c: &Connection, id: i64) -> rusqlite::Result<Option<String>> {
    c.query_row("SELECT name FROM tenants WHERE id = ?1", [id], |r| r.get(0))
        .optional()
}

impl ConsoleQuery for Db {
    fn tenant_name(&self, id: i64) -> Result<Option<String>, StoreError> {
        Ok(tenant_name(self.conn(), id)?)
    }
    fn tenants(&self, scope: Option<i64>) -> Result<Vec<TenantCounts>, StoreError> {
        Ok(tenants(self.conn(), scope)?)
    }
    fn fleet(&self, scope: Option<i64>, at: &FleetWindow) -> Result<Vec<FleetCounts>, StoreError> {
        Ok(fleet(self.conn(), scope, at)?)
    }
    fn sites(&self, scope: Option<i64>) -> Result<Vec<SiteCounts>, StoreError> {
        Ok(sites(self.conn(), scope)?)
    }
    fn devices(
        &self,
        f: &DeviceFilter<'_>,
        at: PageAt,
    ) -> Result<Paged<ConsoleDevice>, StoreError> {
        Ok(devices(self.conn(), f, at)?)
    }
    fn device(&self, id: &str, scope: Option<i64>) -> Result<Option<ConsoleDevice>, StoreError> {
        Ok(device(self.conn(), id, scope)?)
    }
    fn patch_status(&self, device_id: &str) -> Result<Option<PatchStatus>, StoreError> {
        Ok(super::query::patch_status(self.conn(), device_id)?)
    }
    fn inventory(&self, device_id: &str) -> Result<Option<InventoryRow>, StoreError> {
        Ok(super::query::inventory(self.conn(), device_id)?)
    }
    fn pending_updates(&self, device_id: &str) -> Result<Vec<PendingUpdate>, StoreError> {
        Ok(pending_updates(self.conn(), device_id)?)
    }
    fn software_page(
        &self,
        device_id: &str,
        search: Option<&str>,
        at: PageAt,
    ) -> Result<Paged<SoftwareRow>, StoreError> {
        Ok(software_page(self.conn(), device_id, search, at)?)
    }
    fn metric_query(&self, retention: StorageConfig) -> impl MetricQuery + '_ {
        SqliteMetrics::new(self.conn(), retention)
    }
    fn incidents(
        &self,
        f: &IncidentFilter<'_>,
        at: PageAt,
    ) -> Result<Paged<IncidentRow>, StoreError> {
        Ok(incidents(self.conn(), f, at)?)
    }
    fn incident_detail(
        &self,
        id: i64,
        scope: Option<i64>,
    ) -> Result<Option<IncidentDetail>, StoreError> {
        Ok(incident_detail(self.conn(), id, scope)?)
    }
    fn ack_incident(
        &mut self,
        id: i64,
        scope: Option<i64>,
        note: Option<&str>,
        audit: &AuditEntry,
        now_ms: i64,
    ) -> Result<AckResult, StoreError> {
        Ok(ack_incident(
            self.conn_mut(),
            id,
            scope,
            note,
            audit,
            now_ms,
        )?)
    }
    fn unack_incident(
        &mut self,
        id: i64,
        scope: Option<i64>,
        audit: &AuditEntry,
        now_ms: i64,
    ) -> Result<UnackResult, StoreError> {
        Ok(unack_incident(self.conn_mut(), id, scope, audit, now_ms)?)
    }
    fn scrape_figures(
        &self,
        online_since_ms: i64,
        now_ms: i64,
    ) -> Result<ScrapeFigures, StoreError> {
        Ok(scrape_figures(self.conn(), online_since_ms, now_ms)?)
    }
    fn roleless_token(&self, sha256_hex: &str) -> Result<Option<RolelessToken>, StoreError> {
        Ok(roleless_token(self.conn(), sha256_hex)?)
    }
    fn feed_page(
        &self,
        after: i64,
        tenant: Option<&str>,
        critical_only: bool,
        limit: i64,
    ) -> Result<Vec<FeedPageRow>, StoreError> {
        Ok(feed_page(self.conn(), after, tenant, critical_only, limit)?)
    }
    fn all_devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        Ok(super::query::devices(self.conn())?)
    }
    fn software(&self, device_id: &str) -> Result<Vec<SoftwareRow>, StoreError> {
        Ok(super::query::software(self.conn(), device_id)?)
    }
    fn device_posture(
        &self,
        device_id: &str,
        now_ms: i64,
    ) -> Result<Option<DevicePosture>, StoreError> {
        Ok(super::posture::device_posture(
            self.conn(),
            device_id,
            now_ms,
        )?)
    }
    fn tenant_posture(
        &self,
        tenant: Option<&str>,
        now_ms: i64,
    ) -> Result<Vec<TenantSummary>, StoreError> {
        Ok(super::posture::tenant_summaries(
            self.conn(),
            tenant,
            now_ms,
        )?)
    }
    fn storage_stats(&self) -> Result<StorageStats, StoreError> {
        super::stats::stats(self.conn())
    }
}
