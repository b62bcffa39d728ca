//! API tokens for the console's API: resolving a bearer token to a [`Principal`],
//! listing, creating (the token shown once) and revoking them. Split from `auth.rs`,
//! which keeps users, passwords, sessions and the login rate limit.

use rusqlite::{Connection, OptionalExtension, params};

use super::auth::{Principal, Role, Row5, audit};
use super::error::ApiError;

/// Resolves a bearer API token. Tokens without a role (`token create-api`) read
/// only the feed and `/metrics`, and are refused here.
pub(crate) fn token_principal(conn: &Connection, token: &str) -> Result<Principal, ApiError> {
    let row: Row5<String, Option<String>, Option<i64>, Option<String>, Option<i64>> = conn
        .query_row(
            "SELECT a.name, a.role, a.tenant_id, t.name, a.revoked_ms FROM api_tokens a
             LEFT JOIN tenants t ON t.id = a.tenant_id WHERE a.sha256_hex = ?1",
            [crate::notify::link::token_hash(token)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    match row {
        None => Err(ApiError::unauthenticated("API token: unknown")),
        Some((_, _, _, _, Some(_))) => Err(ApiError::unauthenticated("API token: revoked")),
        Some((name, None, ..)) => Err(ApiError::forbidden(format!(
            "API token {name:?} was made by `token create-api` for the feed and /metrics only; create one with a role in the console"
        ))),
        Some((name, Some(role), tenant_id, tenant, None)) => Ok(Principal {
            actor: format!("token:{name}"),
            role: Role::parse(&role).ok_or_else(|| ApiError::internal("unknown role"))?,
            tenant_id,
            tenant,
            csrf: None,
        }),
    }
}

/// An API token as listed (never the token).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct TokenRow {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) role: Option<Role>,
    pub(crate) tenant: Option<String>,
    pub(crate) created_ms: i64,
    pub(crate) created_by: Option<String>,
    pub(crate) revoked_ms: Option<i64>,
}

pub(crate) fn list_tokens(
    conn: &Connection,
    scope: Option<i64>,
) -> rusqlite::Result<Vec<TokenRow>> {
    let mut s = conn.prepare(
        "SELECT a.id, a.name, a.role, t.name, a.created_ms, a.created_by, a.revoked_ms
         FROM api_tokens a LEFT JOIN tenants t ON t.id = a.tenant_id
         WHERE (?1 IS NULL OR a.tenant_id = ?1) ORDER BY a.id",
    )?;
    let rows = s.query_map([scope], |r| {
        let role: Option<String> = r.get(2)?;
        Ok(TokenRow {
            id: r.get(0)?,
            name: r.get(1)?,
            role: role.as_deref().and_then(Role::parse),
            tenant: r.get(3)?,
            created_ms: r.get(4)?,
            created_by: r.get(5)?,
            revoked_ms: r.get(6)?,
        })
    })?;
    rows.collect()
}

/// Creates a token; returns (id, the token, shown once).
pub fn create_token(
    conn: &mut Connection,
    actor: &str,
    name: &str,
    role: Role,
    tenant_id: Option<i64>,
    now_ms: i64,
) -> Result<(i64, String), ApiError> {
    if name.trim().is_empty() || name.len() > 100 {
        return Err(ApiError::bad_request("name: 1 to 100 characters"));
    }
    if role.is_tenant() && tenant_id.is_none() {
        return Err(ApiError::bad_request(format!(
            "role {role}: needs a tenant"
        )));
    }
    let (token, hash) = crate::notify::link::new_api_token().map_err(ApiError::internal)?;
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO api_tokens (name, sha256_hex, created_ms, role, tenant_id, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![name, hash, now_ms, role.as_str(), tenant_id, actor],
    )?;
    let id = tx.last_insert_rowid();
    audit(
        &tx,
        actor,
        tenant_id,
        "token.create",
        &format!("token {id}"),
        serde_json::json!({ "name": name, "role": role.as_str() }),
        now_ms,
    )?;
    tx.commit()?;
    Ok((id, token))
}

pub(crate) fn revoke_token(
    conn: &mut Connection,
    actor: &str,
    id: i64,
    scope: Option<i64>,
    now_ms: i64,
) -> Result<(), ApiError> {
    let tx = conn.transaction()?;
    let tenant: Option<Option<i64>> = tx
        .query_row(
            "SELECT tenant_id FROM api_tokens WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
            params![id, scope],
            |r| r.get(0),
        )
        .optional()?;
    let Some(tenant) = tenant else {
        return Err(ApiError::not_found(format!("token {id}")));
    };
    tx.execute(
        "UPDATE api_tokens SET revoked_ms = coalesce(revoked_ms, ?2) WHERE id = ?1",
        params![id, now_ms],
    )?;
    audit(
        &tx,
        actor,
        tenant,
        "token.revoke",
        &format!("token {id}"),
        serde_json::json!({}),
        now_ms,
    )?;
    tx.commit()?;
    Ok(())
}
