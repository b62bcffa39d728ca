//! The SQLite implementation of [`ConsoleAdmin`]: the console's statements moved as
//! they were from `console::{auth, tokens, users, maintenance, actions, enroll}` and
//! `alerts::silence::create_in` (issue 17 item 1), same statements, same tenant
//! scoping (the tenant id a bound parameter), same audit rows.
//!
//! Every write goes through [`audited`], the one shape they share: `BEGIN
//! IMMEDIATE`, the scope check and the write, the audit rows, commit — an error
//! anywhere rolls the whole of it back, so a refused write leaves no row and no
//! audit row.
//!
//! The statements are free functions on a connection (as in `console_query_sql`);
//! the trait is implemented on [`Db`] alone, so nothing outside `store/` reaches
//! them with a bare `rusqlite::Connection`.

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::json;

use super::api::{IncidentRow, MaintenanceRow, SilenceInsert, SilenceRefusal, SilenceRow};
use super::console_admin::{
    ApiTokenRow, AuditLogRow, ConsoleAdmin, LoginUser, NewApiToken, NewSession, NewUser, NewWindow,
    SessionLookup, SessionUser, TokenAuth, UserListRow,
};
use super::{AuditEntry, Db, StoreError, admin, alert_sql, audit_sql, incident_sql};

/// The audit rows of a write: (the tenant the change falls in, the entry).
type AuditRows = Vec<(Option<i64>, AuditEntry)>;

/// The console's write: runs `f` (scope check and write) in a `BEGIN IMMEDIATE`
/// transaction, appends the audit rows it returns, commits. An `Err` from `f`
/// rolls everything back.
fn audited<T>(
    conn: &mut Connection,
    now_ms: i64,
    f: impl FnOnce(&Transaction<'_>) -> Result<(T, AuditRows), StoreError>,
) -> Result<T, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (out, rows) = f(&tx)?;
    for (tenant, e) in &rows {
        audit_sql::append(&tx, *tenant, e, now_ms)?;
    }
    tx.commit()?;
    Ok(out)
}

fn one(tenant: Option<i64>, e: AuditEntry) -> AuditRows {
    vec![(tenant, e)]
}

fn not_found(what: String) -> StoreError {
    StoreError::NotFound { what }
}

fn conflict(what: String) -> StoreError {
    StoreError::Conflict { what }
}

/// The user's (id, stored role, tenant id), if it exists within `scope`.
fn user_in_scope(
    conn: &Connection,
    username: &str,
    scope: Option<i64>,
) -> Result<(i64, String, Option<i64>), StoreError> {
    conn.query_row(
        "SELECT id, role, tenant_id FROM users WHERE username = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
        params![username, scope],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()?
    .ok_or_else(|| not_found(format!("user {username:?}")))
}

fn msp_admins(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM users WHERE role = 'msp-admin'",
        [],
        |r| r.get(0),
    )?)
}

/// The scope clause of silences: a silence belongs to the tenant it names (one
/// naming no tenant is the MSP's, and only MSP roles see it).
const SILENCE_SCOPE: &str = "(?1 IS NULL OR tenant = (SELECT name FROM tenants WHERE id = ?1))";

fn tenant_id(c: &Connection, name: &str) -> Result<Option<i64>, StoreError> {
    Ok(
        c.query_row("SELECT id FROM tenants WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?,
    )
}

fn tenant_name(c: &Connection, id: i64) -> Result<Option<String>, StoreError> {
    Ok(
        c.query_row("SELECT name FROM tenants WHERE id = ?1", [id], |r| r.get(0))
            .optional()?,
    )
}

fn login_user(c: &Connection, username: &str) -> Result<Option<LoginUser>, StoreError> {
    Ok(c.query_row(
        "SELECT u.id, u.password_hash, u.role, u.tenant_id, t.name FROM users u
             LEFT JOIN tenants t ON t.id = u.tenant_id WHERE u.username = ?1",
        [username],
        |r| {
            Ok(LoginUser {
                id: r.get(0)?,
                password_hash: r.get(1)?,
                role: r.get(2)?,
                tenant_id: r.get(3)?,
                tenant: r.get(4)?,
            })
        },
    )
    .optional()?)
}

fn start_session(c: &mut Connection, s: &NewSession<'_>, now_ms: i64) -> Result<(), StoreError> {
    audited(c, now_ms, |tx| {
        tx.execute("DELETE FROM sessions WHERE expires_ms < ?1", [now_ms])?;
        tx.execute(
            "INSERT INTO sessions (id_sha256, user_id, csrf, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![s.id_sha256, s.user_id, s.csrf, now_ms, s.expires_ms],
        )?;
        let e = AuditEntry::new(s.username, "session.login", s.username, json!({}));
        Ok(((), one(s.tenant_id, e)))
    })
}

fn end_session(c: &mut Connection, id_sha256: &str, now_ms: i64) -> Result<bool, StoreError> {
    audited(c, now_ms, |tx| {
        let who: Option<(String, Option<i64>)> = tx
            .query_row(
                "SELECT u.username, u.tenant_id FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_sha256 = ?1",
                [id_sha256],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((user, tenant)) = who else {
            return Ok((false, Vec::new()));
        };
        tx.execute("DELETE FROM sessions WHERE id_sha256 = ?1", [id_sha256])?;
        let e = AuditEntry::new(user.clone(), "session.logout", user, json!({}));
        Ok((true, one(tenant, e)))
    })
}

fn session(c: &Connection, id_sha256: &str, now_ms: i64) -> Result<SessionLookup, StoreError> {
    let row = c
        .query_row(
            "SELECT u.username, u.role, u.tenant_id, t.name, s.csrf, s.expires_ms
             FROM sessions s JOIN users u ON u.id = s.user_id
             LEFT JOIN tenants t ON t.id = u.tenant_id WHERE s.id_sha256 = ?1",
            [id_sha256],
            |r| {
                Ok((
                    SessionUser {
                        username: r.get(0)?,
                        role: r.get(1)?,
                        tenant_id: r.get(2)?,
                        tenant: r.get(3)?,
                        csrf: r.get(4)?,
                    },
                    r.get::<_, i64>(5)?,
                ))
            },
        )
        .optional()?;
    Ok(match row {
        None => SessionLookup::Unknown,
        Some((_, expires)) if expires <= now_ms => SessionLookup::Expired,
        Some((u, _)) => SessionLookup::Active(u),
    })
}

fn list_users(c: &Connection, scope: Option<i64>) -> Result<Vec<UserListRow>, StoreError> {
    let mut s = c.prepare(
        "SELECT u.username, u.role, t.name, u.created_ms FROM users u
         LEFT JOIN tenants t ON t.id = u.tenant_id
         WHERE (?1 IS NULL OR u.tenant_id = ?1) ORDER BY u.username",
    )?;
    let rows = s.query_map([scope], |r| {
        Ok(UserListRow {
            username: r.get(0)?,
            role: r.get(1)?,
            tenant: r.get(2)?,
            created_ms: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn add_user(
    c: &mut Connection,
    u: &NewUser<'_>,
    actor: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    audited(c, now_ms, |tx| {
        let exists = tx
            .query_row(
                "SELECT 1 FROM users WHERE username = ?1",
                [u.username],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if exists {
            return Err(conflict(format!("user {:?} exists already", u.username)));
        }
        tx.execute(
            "INSERT INTO users (username, password_hash, role, tenant_id, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![u.username, u.password_hash, u.role, u.tenant_id, now_ms],
        )?;
        let e = AuditEntry::new(actor, "user.add", u.username, json!({ "role": u.role }));
        Ok(((), one(u.tenant_id, e)))
    })
}

fn set_password(
    c: &mut Connection,
    username: &str,
    password_hash: &str,
    scope: Option<i64>,
    actor: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    audited(c, now_ms, |tx| {
        let (id, _, tenant) = user_in_scope(tx, username, scope)?;
        tx.execute(
            "UPDATE users SET password_hash = ?2, updated_ms = ?3 WHERE id = ?1",
            params![id, password_hash, now_ms],
        )?;
        tx.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
        let e = AuditEntry::new(actor, "user.passwd", username, json!({}));
        Ok(((), one(tenant, e)))
    })
}

fn remove_user(
    c: &mut Connection,
    username: &str,
    scope: Option<i64>,
    actor: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    audited(c, now_ms, |tx| {
        let (id, role, tenant) = user_in_scope(tx, username, scope)?;
        if role == "msp-admin" && msp_admins(tx)? <= 1 {
            return Err(conflict(format!(
                "user {username:?} is the last msp-admin; add another first"
            )));
        }
        tx.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
        tx.execute("DELETE FROM users WHERE id = ?1", [id])?;
        let e = AuditEntry::new(actor, "user.remove", username, json!({}));
        Ok(((), one(tenant, e)))
    })
}

fn set_role(
    c: &mut Connection,
    username: &str,
    role: &str,
    tenant_id: Option<i64>,
    scope: Option<i64>,
    actor: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    audited(c, now_ms, |tx| {
        let (id, old_role, old_tenant) = user_in_scope(tx, username, scope)?;
        if old_role == role && old_tenant == tenant_id {
            return Err(conflict(format!(
                "user {username:?} has role {role} there already"
            )));
        }
        if old_role == "msp-admin" && role != "msp-admin" && msp_admins(tx)? <= 1 {
            return Err(conflict(format!(
                "user {username:?} is the last msp-admin; make another one first"
            )));
        }
        tx.execute(
            "UPDATE users SET role = ?2, tenant_id = ?3, updated_ms = ?4 WHERE id = ?1",
            params![id, role, tenant_id, now_ms],
        )?;
        tx.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
        let name_of = |t: Option<i64>| -> Result<Option<String>, StoreError> {
            match t {
                Some(t) => Ok(tx
                    .query_row("SELECT name FROM tenants WHERE id = ?1", [t], |r| r.get(0))
                    .optional()?),
                None => Ok(None),
            }
        };
        let (old_name, new_name) = (name_of(old_tenant)?, name_of(tenant_id)?);
        let moved = old_tenant != tenant_id;
        let mut rows = one(
            tenant_id,
            AuditEntry::new(
                actor,
                "user.role",
                username,
                json!({
                    "from": old_role, "to": role, "tenant": new_name,
                    "moved_in": moved && tenant_id.is_some(),
                }),
            ),
        );
        if moved && old_tenant.is_some() {
            rows.push((
                old_tenant,
                AuditEntry::new(
                    actor,
                    "user.role",
                    username,
                    json!({ "from": old_role, "tenant": old_name, "moved_out": true }),
                ),
            ));
        }
        Ok(((), rows))
    })
}

fn token_auth(c: &Connection, sha256_hex: &str) -> Result<Option<TokenAuth>, StoreError> {
    Ok(c.query_row(
        "SELECT a.name, a.role, a.tenant_id, t.name, a.revoked_ms FROM api_tokens a
             LEFT JOIN tenants t ON t.id = a.tenant_id WHERE a.sha256_hex = ?1",
        [sha256_hex],
        |r| {
            Ok(TokenAuth {
                name: r.get(0)?,
                role: r.get(1)?,
                tenant_id: r.get(2)?,
                tenant: r.get(3)?,
                revoked_ms: r.get(4)?,
            })
        },
    )
    .optional()?)
}

fn list_api_tokens(c: &Connection, scope: Option<i64>) -> Result<Vec<ApiTokenRow>, StoreError> {
    let mut s = c.prepare(
        "SELECT a.id, a.name, a.role, t.name, a.created_ms, a.created_by, a.revoked_ms
         FROM api_tokens a LEFT JOIN tenants t ON t.id = a.tenant_id
         WHERE (?1 IS NULL OR a.tenant_id = ?1) ORDER BY a.id",
    )?;
    let rows = s.query_map([scope], |r| {
        Ok(ApiTokenRow {
            id: r.get(0)?,
            name: r.get(1)?,
            role: r.get(2)?,
            tenant: r.get(3)?,
            created_ms: r.get(4)?,
            created_by: r.get(5)?,
            revoked_ms: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn add_api_token(
    c: &mut Connection,
    t: &NewApiToken<'_>,
    actor: &str,
    now_ms: i64,
) -> Result<i64, StoreError> {
    audited(c, now_ms, |tx| {
        tx.execute(
            "INSERT INTO api_tokens (name, sha256_hex, created_ms, role, tenant_id, created_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![t.name, t.sha256_hex, now_ms, t.role, t.tenant_id, actor],
        )?;
        let id = tx.last_insert_rowid();
        let e = AuditEntry::new(
            actor,
            "token.create",
            format!("token {id}"),
            json!({ "name": t.name, "role": t.role }),
        );
        Ok((id, one(t.tenant_id, e)))
    })
}

fn revoke_api_token_in(
    c: &mut Connection,
    id: i64,
    scope: Option<i64>,
    actor: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    audited(c, now_ms, |tx| {
        let tenant: Option<i64> = tx
            .query_row(
                "SELECT tenant_id FROM api_tokens WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                params![id, scope],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| not_found(format!("token {id}")))?;
        tx.execute(
            "UPDATE api_tokens SET revoked_ms = coalesce(revoked_ms, ?2) WHERE id = ?1",
            params![id, now_ms],
        )?;
        let e = AuditEntry::new(actor, "token.revoke", format!("token {id}"), json!({}));
        Ok(((), one(tenant, e)))
    })
}

fn audit_page(
    c: &Connection,
    scope: Option<i64>,
    page: i64,
    per_page: i64,
) -> Result<(Vec<AuditLogRow>, i64), StoreError> {
    let total: i64 = c.query_row(
        "SELECT count(*) FROM audit_log WHERE (?1 IS NULL OR tenant_id = ?1)",
        [scope],
        |r| r.get(0),
    )?;
    let items = c
        .prepare(
            "SELECT a.id, a.at_ms, a.actor, t.name, a.action, a.target, a.detail FROM audit_log a
             LEFT JOIN tenants t ON t.id = a.tenant_id WHERE (?1 IS NULL OR a.tenant_id = ?1)
             ORDER BY a.id DESC LIMIT ?2 OFFSET ?3",
        )?
        .query_map(params![scope, per_page, (page - 1) * per_page], |r| {
            let detail: String = r.get(6)?;
            Ok(AuditLogRow {
                id: r.get(0)?,
                at_ms: r.get(1)?,
                actor: r.get(2)?,
                tenant: r.get(3)?,
                action: r.get(4)?,
                target: r.get(5)?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((items, total))
}

fn list_windows(
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

fn create_window(
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

fn delete_window(
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

fn snooze_in_scope(
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

fn list_silences_in(
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

fn silence_tenant(
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

fn create_silence_audited(
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

fn expire_silence(
    c: &mut Connection,
    id: i64,
    scope: Option<i64>,
    actor: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    use super::api::RemoveOutcome;
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

fn list_enroll_tokens(
    c: &Connection,
    scope: Option<i64>,
) -> Result<Vec<admin::TokenRow>, StoreError> {
    let rows = c
        .prepare(
            "SELECT k.id, t.name, s.name, k.replace_device_id, k.created_ms, k.expires_ms, k.uses,
                    k.max_uses, k.revoked_ms
             FROM enroll_tokens k JOIN tenants t ON t.id = k.tenant_id
             LEFT JOIN sites s ON s.id = k.site_id
             WHERE (?1 IS NULL OR k.tenant_id = ?1) ORDER BY k.created_ms DESC, k.id LIMIT 1000",
        )?
        .query_map([scope], |r| {
            Ok(admin::TokenRow {
                id: r.get(0)?,
                tenant: r.get(1)?,
                site: r.get(2)?,
                replace_device_id: r.get(3)?,
                created_ms: r.get(4)?,
                expires_ms: r.get(5)?,
                uses: r.get(6)?,
                max_uses: r.get(7)?,
                revoked_ms: r.get(8)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

fn create_enroll_token(
    c: &mut Connection,
    t: &admin::NewToken,
    tenant_id: i64,
    address: &str,
    actor: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    audited(c, now_ms, |tx| {
        admin::insert_token(tx, t, now_ms).map_err(|e| match e {
            admin::AdminError::Store(e) => e,
            e => not_found(e.to_string()),
        })?;
        let e = AuditEntry::new(
            actor,
            "enroll_token.create",
            format!("enrollment token {}", t.id_hex),
            json!({ "site": t.site, "expires_ms": t.expires_ms, "uses": t.max_uses, "address": address }),
        );
        Ok(((), one(Some(tenant_id), e)))
    })
}

fn revoke_enroll_token(
    c: &mut Connection,
    id: &str,
    scope: Option<i64>,
    actor: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    audited(c, now_ms, |tx| {
        let found: Option<(i64, Option<i64>)> = tx
            .query_row(
                "SELECT tenant_id, revoked_ms FROM enroll_tokens WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
                params![id, scope],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let tid = match found {
            None => return Err(not_found(format!("enrollment token {id:?}"))),
            Some((_, Some(_))) => {
                return Err(conflict(format!("enrollment token {id}: already revoked")));
            }
            Some((t, None)) => t,
        };
        tx.execute(
            "UPDATE enroll_tokens SET revoked_ms = ?2 WHERE id = ?1 AND tenant_id = ?3 AND revoked_ms IS NULL",
            params![id, now_ms, tid],
        )?;
        let e = AuditEntry::new(
            actor,
            "enroll_token.revoke",
            format!("enrollment token {id}"),
            json!({}),
        );
        Ok(((), one(Some(tid), e)))
    })
}

impl ConsoleAdmin for Db {
    fn tenant_id(&self, name: &str) -> Result<Option<i64>, StoreError> {
        tenant_id(self.conn(), name)
    }
    fn tenant_name(&self, id: i64) -> Result<Option<String>, StoreError> {
        tenant_name(self.conn(), id)
    }
    fn login_user(&self, username: &str) -> Result<Option<LoginUser>, StoreError> {
        login_user(self.conn(), username)
    }
    fn start_session(&mut self, s: &NewSession<'_>, now_ms: i64) -> Result<(), StoreError> {
        start_session(self.conn_mut(), s, now_ms)
    }
    fn end_session(&mut self, id_sha256: &str, now_ms: i64) -> Result<bool, StoreError> {
        end_session(self.conn_mut(), id_sha256, now_ms)
    }
    fn session(&self, id_sha256: &str, now_ms: i64) -> Result<SessionLookup, StoreError> {
        session(self.conn(), id_sha256, now_ms)
    }
    fn list_users(&self, scope: Option<i64>) -> Result<Vec<UserListRow>, StoreError> {
        list_users(self.conn(), scope)
    }
    fn add_user(&mut self, u: &NewUser<'_>, actor: &str, now_ms: i64) -> Result<(), StoreError> {
        add_user(self.conn_mut(), u, actor, now_ms)
    }
    fn set_password(
        &mut self,
        username: &str,
        password_hash: &str,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        set_password(
            self.conn_mut(),
            username,
            password_hash,
            scope,
            actor,
            now_ms,
        )
    }
    fn remove_user(
        &mut self,
        username: &str,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        remove_user(self.conn_mut(), username, scope, actor, now_ms)
    }
    fn set_role(
        &mut self,
        username: &str,
        role: &str,
        tenant_id: Option<i64>,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        set_role(
            self.conn_mut(),
            username,
            role,
            tenant_id,
            scope,
            actor,
            now_ms,
        )
    }
    fn token_auth(&self, sha256_hex: &str) -> Result<Option<TokenAuth>, StoreError> {
        token_auth(self.conn(), sha256_hex)
    }
    fn list_api_tokens(&self, scope: Option<i64>) -> Result<Vec<ApiTokenRow>, StoreError> {
        list_api_tokens(self.conn(), scope)
    }
    fn add_api_token(
        &mut self,
        t: &NewApiToken<'_>,
        actor: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        add_api_token(self.conn_mut(), t, actor, now_ms)
    }
    fn revoke_api_token_in(
        &mut self,
        id: i64,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        revoke_api_token_in(self.conn_mut(), id, scope, actor, now_ms)
    }
    fn audit_page(
        &self,
        scope: Option<i64>,
        page: i64,
        per_page: i64,
    ) -> Result<(Vec<AuditLogRow>, i64), StoreError> {
        audit_page(self.conn(), scope, page, per_page)
    }
    fn list_windows(
        &self,
        scope: Option<i64>,
        all: bool,
        now_ms: i64,
    ) -> Result<Vec<MaintenanceRow>, StoreError> {
        list_windows(self.conn(), scope, all, now_ms)
    }
    fn create_window(
        &mut self,
        w: &NewWindow<'_>,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<MaintenanceRow, StoreError> {
        create_window(self.conn_mut(), w, scope, actor, now_ms)
    }
    fn delete_window(
        &mut self,
        id: i64,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<MaintenanceRow, StoreError> {
        delete_window(self.conn_mut(), id, scope, actor, now_ms)
    }
    fn snooze_in_scope(
        &mut self,
        id: i64,
        scope: Option<i64>,
        until_ms: i64,
        note: Option<&str>,
        actor: &str,
        now_ms: i64,
    ) -> Result<IncidentRow, StoreError> {
        snooze_in_scope(self.conn_mut(), id, scope, until_ms, note, actor, now_ms)
    }
    fn list_silences_in(
        &self,
        scope: Option<i64>,
        all: bool,
        now_ms: i64,
    ) -> Result<Vec<SilenceRow>, StoreError> {
        list_silences_in(self.conn(), scope, all, now_ms)
    }
    fn silence_tenant(
        &self,
        scope: Option<i64>,
        device: Option<&str>,
    ) -> Result<(Option<i64>, Option<String>), StoreError> {
        silence_tenant(self.conn(), scope, device)
    }
    fn create_silence_audited(
        &mut self,
        s: &SilenceInsert,
        tenant_id: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<Result<SilenceRow, SilenceRefusal>, StoreError> {
        create_silence_audited(self.conn_mut(), s, tenant_id, actor, now_ms)
    }
    fn expire_silence(
        &mut self,
        id: i64,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        expire_silence(self.conn_mut(), id, scope, actor, now_ms)
    }
    fn list_enroll_tokens(&self, scope: Option<i64>) -> Result<Vec<admin::TokenRow>, StoreError> {
        list_enroll_tokens(self.conn(), scope)
    }
    fn create_enroll_token(
        &mut self,
        t: &admin::NewToken,
        tenant_id: i64,
        address: &str,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        create_enroll_token(self.conn_mut(), t, tenant_id, address, actor, now_ms)
    }
    fn revoke_enroll_token(
        &mut self,
        id: &str,
        scope: Option<i64>,
        actor: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        revoke_enroll_token(self.conn_mut(), id, scope, actor, now_ms)
    }
}
