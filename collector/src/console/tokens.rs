//! API tokens for the console's API: resolving a bearer token to a [`Principal`],
//! listing, creating (the token shown once) and revoking them. Split from `auth.rs`,
//! which keeps users, passwords, sessions and the login rate limit. Stored through
//! the store's [`ConsoleAdmin`] (only the token's SHA-256; the store audits each
//! change in its transaction).

use super::auth::{Principal, Role};
use super::error::ApiError;
use crate::store::console_admin::{ConsoleAdmin, NewApiToken};

/// Resolves a bearer API token. Tokens without a role (`token create-api`) read
/// only the feed and `/metrics`, and are refused here.
pub(crate) fn token_principal(s: &impl ConsoleAdmin, token: &str) -> Result<Principal, ApiError> {
    match s.token_auth(&crate::notify::link::token_hash(token))? {
        None => Err(ApiError::unauthenticated("API token: unknown")),
        Some(t) if t.revoked_ms.is_some() => Err(ApiError::unauthenticated("API token: revoked")),
        Some(t) => match t.role {
            None => Err(ApiError::forbidden(format!(
                "API token {:?} was made by `token create-api` for the feed and /metrics only; create one with a role in the console",
                t.name
            ))),
            Some(role) => Ok(Principal {
                actor: format!("token:{}", t.name),
                role: Role::parse(&role).ok_or_else(|| ApiError::internal("unknown role"))?,
                tenant_id: t.tenant_id,
                tenant: t.tenant,
                csrf: None,
            }),
        },
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
    s: &impl ConsoleAdmin,
    scope: Option<i64>,
) -> Result<Vec<TokenRow>, ApiError> {
    Ok(s.list_api_tokens(scope)?
        .into_iter()
        .map(|t| TokenRow {
            id: t.id,
            name: t.name,
            role: t.role.as_deref().and_then(Role::parse),
            tenant: t.tenant,
            created_ms: t.created_ms,
            created_by: t.created_by,
            revoked_ms: t.revoked_ms,
        })
        .collect())
}

/// Creates a token; returns (id, the token, shown once).
// `pub` for consolebench (the tests crate), which calls it on the connection it
// opened; the bound is the store's crate-private trait, which that connection
// implements (TRANSITIONAL, see `store::console_admin_sql`).
#[allow(private_bounds)]
pub fn create_token(
    s: &mut impl ConsoleAdmin,
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
    let t = NewApiToken {
        name,
        sha256_hex: &hash,
        role: role.as_str(),
        tenant_id,
    };
    let id = s.add_api_token(&t, actor, now_ms)?;
    Ok((id, token))
}

pub(crate) fn revoke_token(
    s: &mut impl ConsoleAdmin,
    actor: &str,
    id: i64,
    scope: Option<i64>,
    now_ms: i64,
) -> Result<(), ApiError> {
    Ok(s.revoke_api_token_in(id, scope, actor, now_ms)?)
}
