//! Tenants by name and id, logins, sessions and users (add, password, remove,
//! role): the user's scope checked in the same transaction as the change, and the
//! last `msp-admin` never removed or demoted.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

use super::super::console_admin::{
    LoginUser, NewSession, NewUser, SessionLookup, SessionUser, UserListRow,
};
use super::super::{AuditEntry, StoreError};
use super::{audited, conflict, not_found, one};

/// The user's (id, stored role, tenant id), if it exists within `scope`.
pub(super) fn user_in_scope(
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

pub(super) fn msp_admins(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM users WHERE role = 'msp-admin'",
        [],
        |r| r.get(0),
    )?)
}

pub(super) fn tenant_id(c: &Connection, name: &str) -> Result<Option<i64>, StoreError> {
    Ok(
        c.query_row("SELECT id FROM tenants WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?,
    )
}

pub(super) fn tenant_name(c: &Connection, id: i64) -> Result<Option<String>, StoreError> {
    Ok(
        c.query_row("SELECT name FROM tenants WHERE id = ?1", [id], |r| r.get(0))
            .optional()?,
    )
}

pub(super) fn login_user(c: &Connection, username: &str) -> Result<Option<LoginUser>, StoreError> {
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

pub(super) fn start_session(
    c: &mut Connection,
    s: &NewSession<'_>,
    now_ms: i64,
) -> Result<(), StoreError> {
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

pub(super) fn end_session(
    c: &mut Connection,
    id_sha256: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
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

pub(super) fn session(
    c: &Connection,
    id_sha256: &str,
    now_ms: i64,
) -> Result<SessionLookup, StoreError> {
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

pub(super) fn list_users(
    c: &Connection,
    scope: Option<i64>,
) -> Result<Vec<UserListRow>, StoreError> {
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

pub(super) fn add_user(
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

pub(super) fn set_password(
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

pub(super) fn remove_user(
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

pub(super) fn set_role(
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
