//! Enrollment tokens: listed, created (with the install address in the audit row)
//! and revoked within the caller's scope.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

use super::super::{AuditEntry, StoreError, admin};
use super::{audited, conflict, not_found, one};

pub(super) fn list_enroll_tokens(
    c: &Connection,
    scope: Option<i64>,
) -> Result<Vec<admin::TokenRow>, StoreError> {
    let rows = c
        .prepare(&format!(
            "{} WHERE (?1 IS NULL OR k.tenant_id = ?1) ORDER BY k.created_ms DESC, k.id LIMIT 1000",
            admin::TOKEN_SELECT
        ))?
        .query_map([scope], admin::token_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(super) fn create_enroll_token(
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

pub(super) fn revoke_enroll_token(
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
