//! API tokens: the lookup that authenticates one (by its SHA-256 only), the list,
//! creation and revocation, each write audited.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

use super::super::console_admin::{ApiTokenRow, NewApiToken, TokenAuth};
use super::super::{AuditEntry, StoreError};
use super::{audited, not_found, one};

pub(super) fn token_auth(
    c: &Connection,
    sha256_hex: &str,
) -> Result<Option<TokenAuth>, StoreError> {
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

pub(super) fn list_api_tokens(
    c: &Connection,
    scope: Option<i64>,
) -> Result<Vec<ApiTokenRow>, StoreError> {
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

pub(super) fn add_api_token(
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

pub(super) fn revoke_api_token_in(
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
