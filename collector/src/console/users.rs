//! The user, API token and audit log routes, on the store's [`ConsoleAdmin`].

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::api::{ApiResult, Page, body, paging, query};
use super::auth::{self, Principal, Role};
use super::error::{ApiError, ErrorBody};
use super::tokens;
use super::{ConsoleState, now_ms, store};
use crate::store::console_admin::ConsoleAdmin;

/// Users (a tenant admin sees its tenant's).
#[utoipa::path(get, path = "/users", tag = "admin", responses((status = 200, body = Vec<auth::UserRow>), (status = 403, body = ErrorBody)))]
pub(super) async fn users(
    State(st): State<ConsoleState>,
    p: Principal,
) -> ApiResult<Vec<auth::UserRow>> {
    p.require_admin()?;
    Ok(Json(
        store(&st, move |d| auth::list_users(d, p.tenant_id)).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUser {
    pub(crate) username: String,
    pub(crate) password: String,
    pub(crate) role: Role,
    /// Required for tenant roles.
    pub(crate) tenant: Option<String>,
}

/// Add a user.
#[utoipa::path(post, path = "/users", tag = "admin", request_body = NewUser,
    responses((status = 201, body = auth::UserRow), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn user_add(
    State(st): State<ConsoleState>,
    p: Principal,
    b: Result<Json<NewUser>, JsonRejection>,
) -> Result<(StatusCode, Json<Vec<auth::UserRow>>), ApiError> {
    p.require_admin()?;
    let b = body(b)?;
    auth::check_username(&b.username)?;
    let tenant_name = b.tenant.clone();
    let tid = store(&st, move |d| match &tenant_name {
        Some(t) => p.scope_in(d, Some(t)).map(|s| (s, p)),
        None => Ok((None, p)),
    })
    .await?;
    let (tid, p) = tid;
    p.may_grant(b.role, tid)?;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&b.password))
        .await
        .map_err(ApiError::internal)??;
    let now = now_ms();
    let (user, role) = (b.username, b.role);
    let rows = store(&st, move |d| {
        auth::add_user(d, &p.actor, &user, &hash, role, tid, now)?;
        Ok(auth::list_users(d, tid)?
            .into_iter()
            .filter(|u| u.username == user)
            .collect())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(rows)))
}

/// Remove a user.
#[utoipa::path(delete, path = "/users/{username}", tag = "admin", params(("username" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn user_remove(
    State(st): State<ConsoleState>,
    p: Principal,
    Path(user): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require_admin()?;
    let now = now_ms();
    store(&st, move |d| {
        auth::remove_user(d, &p.actor, &user, p.tenant_id, now)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewPassword {
    pub(crate) password: String,
}

/// Set a user's password (ends its sessions).
#[utoipa::path(put, path = "/users/{username}/password", tag = "admin", params(("username" = String, Path)),
    request_body = NewPassword, responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn user_passwd(
    State(st): State<ConsoleState>,
    p: Principal,
    Path(user): Path<String>,
    b: Result<Json<NewPassword>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let b = body(b)?;
    if user != p.actor || p.csrf.is_none() {
        p.require_admin()?;
    }
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&b.password))
        .await
        .map_err(ApiError::internal)??;
    let now = now_ms();
    let own = user == p.actor;
    store(&st, move |d| {
        auth::set_password(
            d,
            &p.actor,
            &user,
            &hash,
            if own { None } else { p.tenant_id },
            now,
        )
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// API tokens (never the tokens themselves).
#[utoipa::path(get, path = "/tokens", tag = "admin", responses((status = 200, body = Vec<tokens::TokenRow>), (status = 403, body = ErrorBody)))]
pub(super) async fn tokens(
    State(st): State<ConsoleState>,
    p: Principal,
) -> ApiResult<Vec<tokens::TokenRow>> {
    p.require_admin()?;
    Ok(Json(
        store(&st, move |d| tokens::list_tokens(d, p.tenant_id)).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    pub(crate) name: String,
    pub(crate) role: Role,
    /// Bind the token to this tenant (required for tenant roles).
    pub(crate) tenant: Option<String>,
}

/// The new token, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedToken {
    pub(crate) id: i64,
    pub(crate) token: String,
}

/// Create an API token (shown once, stored hashed).
#[utoipa::path(post, path = "/tokens", tag = "admin", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn token_create(
    State(st): State<ConsoleState>,
    p: Principal,
    b: Result<Json<NewToken>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    p.require_admin()?;
    let b = body(b)?;
    let now = now_ms();
    let (id, token) = store(&st, move |d| {
        let tid = match &b.tenant {
            Some(t) => p.scope_in(d, Some(t))?,
            None => None,
        };
        p.may_grant(b.role, tid)?;
        tokens::create_token(d, &p.actor, &b.name, b.role, tid, now)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { id, token })))
}

/// Revoke an API token.
#[utoipa::path(delete, path = "/tokens/{token_id}", tag = "admin", params(("token_id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn token_revoke(
    State(st): State<ConsoleState>,
    p: Principal,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    p.require_admin()?;
    let now = now_ms();
    store(&st, move |d| {
        tokens::revoke_token(d, &p.actor, id, p.tenant_id, now)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    pub(crate) page: Option<u32>,
    pub(crate) per_page: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditRow {
    pub(crate) id: i64,
    pub(crate) at_ms: i64,
    pub(crate) actor: String,
    pub(crate) tenant: Option<String>,
    pub(crate) action: String,
    pub(crate) target: String,
    pub(crate) detail: Value,
}

/// The audit log, newest first (a tenant admin sees its tenant's rows).
#[utoipa::path(get, path = "/audit", tag = "admin", params(AuditQuery),
    responses((status = 200, body = Page<AuditRow>), (status = 403, body = ErrorBody)))]
pub(super) async fn audit(
    State(st): State<ConsoleState>,
    p: Principal,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Page<AuditRow>> {
    p.require_admin()?;
    let q = query(q)?;
    let (page, per) = paging(q.page, q.per_page)?;
    let out = store(&st, move |d| {
        let (rows, total) = d.audit_page(p.tenant_id, page, per)?;
        let items = rows
            .into_iter()
            .map(|a| AuditRow {
                id: a.id,
                at_ms: a.at_ms,
                actor: a.actor,
                tenant: a.tenant,
                action: a.action,
                target: a.target,
                detail: a.detail,
            })
            .collect();
        Ok(Page {
            items,
            page,
            per_page: per,
            total,
        })
    })
    .await?;
    Ok(Json(out))
}
