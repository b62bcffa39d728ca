//! Seeding and inspection for the console's tests (`console/tests/`), so that
//! no SQL lives outside `store/` (issue 17 item 1). Each function is one thing a
//! test needs to put into the database or read back from it — rows no API makes
//! (a device as the store writer keeps it, a firing incident as the engine opens
//! it) and the rows a test checks an API wrote — on the SQLite backend.
//!
//! Test code only: every function panics on a database error.

use rusqlite::params;

use super::Db;

/// A device row, as enrollment and the store writer would have left it.
pub(crate) struct TestDevice<'a> {
    pub id: &'a str,
    /// The tenant's name.
    pub tenant: &'a str,
    pub hostname: &'a str,
    /// `""` is the column's default (not reported).
    pub os_family: &'a str,
    /// `""` is the column's default (not reported).
    pub os_version: &'a str,
    /// First and last seen.
    pub seen_ms: i64,
    /// The site's name; `None`: no site.
    pub site: Option<&'a str>,
    /// `Some`: revoked then.
    pub revoked_ms: Option<i64>,
}

/// Inserts a device.
pub(crate) fn add_device(db: &Db, d: &TestDevice<'_>) {
    db.connection()
        .execute(
            "INSERT INTO devices (id, tenant_id, hostname, os_family, os_version, first_seen_ms,
                last_seen_ms, site_id, revoked_ms)
             VALUES (?1, (SELECT id FROM tenants WHERE name = ?2), ?3, ?4, ?5, ?6, ?6,
                     (SELECT id FROM sites WHERE name = ?7), ?8)",
            params![
                d.id,
                d.tenant,
                d.hostname,
                d.os_family,
                d.os_version,
                d.seen_ms,
                d.site,
                d.revoked_ms
            ],
        )
        .unwrap();
}

/// Inserts a series of `device`; returns its id.
pub(crate) fn add_series(db: &Db, device: &str, name: &str, dimension: &str) -> i64 {
    let c = db.connection();
    c.execute(
        "INSERT INTO series (device_id, name, dimension) VALUES (?1, ?2, ?3)",
        [device, name, dimension],
    )
    .unwrap();
    c.last_insert_rowid()
}

/// Stores `samples` (time, one value per series of `series_ids`) of `device` as
/// the store writer keeps one batch: one head row.
pub(crate) fn add_head_batch(db: &Db, device: &str, series_ids: &[i64], samples: &[(i64, &[f64])]) {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        panic!("a head row holds at least one sample");
    };
    let n_values: usize = samples.iter().map(|(_, v)| v.len()).sum();
    db.connection()
        .execute(
            "INSERT INTO head (device_id, min_ts, max_ts, n_values, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                device,
                first.0,
                last.0,
                n_values as i64,
                super::chunk::encode_head(series_ids, samples)
            ],
        )
        .unwrap();
}

/// Inserts an apt patch report of `device` without error or install.
pub(crate) fn add_patch_report(
    db: &Db,
    device: &str,
    seq: i64,
    time_ms: i64,
    reboot_required: bool,
    reboot_since_ms: i64,
) {
    db.connection()
        .execute(
            "INSERT INTO patch_reports (device_id, seq, time_ms, source, error, reboot_required, reboot_since_ms, last_install_ms)
             VALUES (?1, ?2, ?3, 'apt', '', ?4, ?5, 0)",
            params![device, seq, time_ms, reboot_required as i64, reboot_since_ms],
        )
        .unwrap();
}

/// A pending update of a patch report.
pub(crate) struct TestPendingUpdate<'a> {
    pub device: &'a str,
    pub report_seq: i64,
    pub name: &'a str,
    pub current_version: &'a str,
    pub new_version: &'a str,
    pub classification: &'a str,
    pub advisory_id: &'a str,
    pub first_seen_ms: i64,
}

/// Inserts a pending update.
pub(crate) fn add_pending_update(db: &Db, u: &TestPendingUpdate<'_>) {
    db.connection()
        .execute(
            "INSERT INTO pending_updates (device_id, report_seq, name, current_version, new_version, classification, advisory_id, first_seen_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                u.device,
                u.report_seq,
                u.name,
                u.current_version,
                u.new_version,
                u.classification,
                u.advisory_id,
                u.first_seen_ms
            ],
        )
        .unwrap();
}

/// Inserts a software inventory entry of `device`.
pub(crate) fn add_software(db: &Db, device: &str, name: &str, version: &str, publisher: &str) {
    db.connection()
        .execute(
            "INSERT INTO inventory_software (device_id, name, version, publisher) VALUES (?1, ?2, ?3, ?4)",
            [device, name, version, publisher],
        )
        .unwrap();
}

/// Tags `device` (as created at time 0).
pub(crate) fn add_device_tag(db: &Db, device: &str, tag: &str) {
    db.connection()
        .execute(
            "INSERT INTO device_tags (device_id, tag, created_ms) VALUES (?1, ?2, 0)",
            [device, tag],
        )
        .unwrap();
}

/// Opens a critical incident of `rule` on `device` (value 97.5) as the alert
/// engine would: a firing instance, its history step, the incident and its
/// `opened` feed event. Returns the incident's id.
pub(crate) fn seed_incident(db: &Db, tenant: &str, device: &str, rule: &str, now_ms: i64) -> i64 {
    let c = db.connection();
    let t = now_ms;
    c.execute(
        "INSERT INTO alert_instances (rule, device_id, dimension, tenant, state, severity, since_ms,
            breach_start_ms, breach_samples, recover_start_ms, last_sample_ms, last_arrival_ms,
            last_value, stale, flapping, suppressed, changes, updated_ms)
         VALUES (?1, ?2, '', ?3, 'firing', 'critical', ?4, ?4, 3, 0, ?4, ?4, 97.5, 0, 0, 0, '[]', ?4)",
        params![rule, device, tenant, t],
    )
    .unwrap();
    let inst = c.last_insert_rowid();
    c.execute(
        "INSERT INTO alert_history (instance_id, at_ms, event, from_state, to_state, severity, value, suppressed)
         VALUES (?1, ?2, 'transition', 'pending', 'firing', 'critical', 97.5, 0)",
        params![inst, t],
    )
    .unwrap();
    c.execute(
        "INSERT INTO incidents (instance_id, tenant, rule, device_id, dimension, severity, value, state,
            opened_ms, suppressed, loop_start_ms) VALUES (?1, ?2, ?3, ?4, '', 'critical', 97.5, 'open', ?5, 0, ?5)",
        params![inst, tenant, rule, device, t],
    )
    .unwrap();
    let id = c.last_insert_rowid();
    super::incident_sql::feed_event(c, id, "opened", t).unwrap();
    id
}

/// Sets an incident's state and severity (`resolved`, `acked`...) directly.
pub(crate) fn set_incident_state(db: &Db, id: i64, state: &str, severity: &str) {
    db.connection()
        .execute(
            "UPDATE incidents SET state = ?2, severity = ?3 WHERE id = ?1",
            params![id, state, severity],
        )
        .unwrap();
}

/// An incident's `snoozed_until_ms`.
pub(crate) fn incident_snoozed_until(db: &Db, id: i64) -> i64 {
    db.connection()
        .query_row(
            "SELECT snoozed_until_ms FROM incidents WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap()
}

/// Inserts a maintenance window of a device (no site); returns its id.
pub(crate) fn add_device_window(
    db: &Db,
    tenant_id: i64,
    device: &str,
    starts_ms: i64,
    ends_ms: i64,
    note: &str,
    created_by: &str,
) -> i64 {
    let c = db.connection();
    c.execute(
        "INSERT INTO maintenance_windows (tenant_id, site, device_id, starts_ms, ends_ms, note, created_by, created_ms)
         VALUES (?1, NULL, ?2, ?3, ?4, ?5, ?6, ?3)",
        params![tenant_id, device, starts_ms, ends_ms, note, created_by],
    )
    .unwrap();
    c.last_insert_rowid()
}

/// Inserts an API token as `token create-api` makes it (no role, no tenant),
/// revoked at `revoked_ms` if given.
pub(crate) fn add_roleless_api_token(
    db: &Db,
    name: &str,
    sha256_hex: &str,
    created_ms: i64,
    revoked_ms: Option<i64>,
) {
    db.connection()
        .execute(
            "INSERT INTO api_tokens (name, sha256_hex, created_ms, revoked_ms) VALUES (?1, ?2, ?3, ?4)",
            params![name, sha256_hex, created_ms, revoked_ms],
        )
        .unwrap();
}

/// How many API tokens have this hash.
pub(crate) fn count_api_tokens_with_hash(db: &Db, sha256_hex: &str) -> i64 {
    db.connection()
        .query_row(
            "SELECT count(*) FROM api_tokens WHERE sha256_hex = ?1",
            [sha256_hex],
            |r| r.get(0),
        )
        .unwrap()
}

/// How many API tokens have `text` as their hash or their name (a token stored in
/// plain text would).
pub(crate) fn count_api_tokens_with_hash_or_name(db: &Db, text: &str) -> i64 {
    db.connection()
        .query_row(
            "SELECT count(*) FROM api_tokens WHERE sha256_hex = ?1 OR name = ?1",
            [text],
            |r| r.get(0),
        )
        .unwrap()
}

/// Ends every console session (as if each had expired at time 0).
pub(crate) fn expire_all_sessions(db: &Db) {
    db.connection()
        .execute("UPDATE sessions SET expires_ms = 0", [])
        .unwrap();
}

/// What an enrollment token is stored as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredEnrollToken {
    pub secret_sha256: Vec<u8>,
    /// The site's name.
    pub site: Option<String>,
    pub max_uses: i64,
}

/// The enrollment token `id` as stored.
pub(crate) fn enroll_token(db: &Db, id: &str) -> StoredEnrollToken {
    db.connection()
        .query_row(
            "SELECT k.secret_sha256, s.name, k.max_uses FROM enroll_tokens k LEFT JOIN sites s ON s.id = k.site_id WHERE k.id = ?1",
            [id],
            |r| {
                Ok(StoredEnrollToken {
                    secret_sha256: r.get(0)?,
                    site: r.get(1)?,
                    max_uses: r.get(2)?,
                })
            },
        )
        .unwrap()
}

/// How many audit log rows have this action.
pub(crate) fn count_audit(db: &Db, action: &str) -> i64 {
    db.connection()
        .query_row(
            "SELECT count(*) FROM audit_log WHERE action = ?1",
            [action],
            |r| r.get(0),
        )
        .unwrap()
}

/// How many audit log rows have one of `actions` and exactly this target.
pub(crate) fn count_audit_of_target(db: &Db, actions: &[&str], target: &str) -> i64 {
    let c = db.connection();
    let mut s = c
        .prepare("SELECT count(*) FROM audit_log WHERE action = ?1 AND target = ?2")
        .unwrap();
    actions
        .iter()
        .map(|a| s.query_row([a, &target], |r| r.get::<_, i64>(0)).unwrap())
        .sum()
}

/// How many audit log rows have this action and a target ending in `suffix`.
pub(crate) fn count_audit_of_target_ending(db: &Db, action: &str, suffix: &str) -> i64 {
    db.connection()
        .query_row(
            "SELECT count(*) FROM audit_log WHERE action = ?1 AND target LIKE ?2",
            [action, &format!("%{suffix}")],
            |r| r.get(0),
        )
        .unwrap()
}

/// The newest audit log row: (action, detail).
pub(crate) fn last_audit(db: &Db) -> (String, String) {
    db.connection()
        .query_row(
            "SELECT action, detail FROM audit_log ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

/// The audit log rows whose action starts with `prefix`, oldest first:
/// (action, detail).
pub(crate) fn audit_of_actions_starting(db: &Db, prefix: &str) -> Vec<(String, String)> {
    db.connection()
        .prepare("SELECT action, detail FROM audit_log WHERE action LIKE ?1 || '%' ORDER BY id")
        .unwrap()
        .query_map([prefix], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The audit log rows of `action`, oldest first: (actor, tenant name, detail).
pub(crate) fn audit_with_tenant(db: &Db, action: &str) -> Vec<(String, Option<String>, String)> {
    db.connection()
        .prepare(
            "SELECT a.actor, t.name, a.detail FROM audit_log a LEFT JOIN tenants t ON t.id = a.tenant_id
             WHERE a.action = ?1 ORDER BY a.id",
        )
        .unwrap()
        .query_map([action], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Every row of `tables`, one line each (`table:col|col|...`, values as SQLite
/// holds them), so that a test can tell whether anything changed.
pub(crate) fn table_rows(db: &Db, tables: &[&str]) -> String {
    let c = db.connection();
    let mut out = String::new();
    for t in tables {
        let mut s = c.prepare(&format!("SELECT * FROM {t}")).unwrap();
        let n = s.column_count();
        let rows = s
            .query_map([], |r| {
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap();
        for r in rows {
            out.push_str(t);
            out.push(':');
            out.push_str(&r.unwrap());
            out.push('\n');
        }
    }
    out
}
