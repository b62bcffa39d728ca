//! Role changes from the console (issue 15): an msp-admin changes any user's role
//! and tenant; a tenant admin changes only users of its own tenant, and only to
//! tenant roles of that tenant (never an MSP role, never another tenant). The user
//! is looked up within the caller's tenant in the SQL ([`auth::set_role`]), so
//! another tenant's user answers 404; the change is audited in the same transaction
//! and ends the user's sessions.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::ToSchema;

use super::api::{ApiResult, body, scope};
use super::auth::{self, Principal, Role};
use super::error::ErrorBody;
use super::{ConsoleState, now_ms, store};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRole {
    pub(crate) role: Role,
    /// Required for tenant roles (a tenant admin may leave it out: its own tenant);
    /// none for MSP roles.
    pub(crate) tenant: Option<String>,
}

/// Change a user's role (and tenant); ends its sessions.
#[utoipa::path(put, path = "/users/{username}/role", tag = "admin", params(("username" = String, Path)),
    request_body = NewRole,
    responses((status = 200, body = Vec<auth::UserRow>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn user_role(
    State(st): State<ConsoleState>,
    p: Principal,
    Path(user): Path<String>,
    b: Result<Json<NewRole>, JsonRejection>,
) -> ApiResult<Vec<auth::UserRow>> {
    p.require_admin()?;
    let b = body(b)?;
    let now = now_ms();
    let rows = store(&st, move |c| {
        let tid = match (&b.tenant, p.tenant_id) {
            (Some(t), _) => scope(c, &p, Some(t))?,
            (None, own @ Some(_)) if b.role.is_tenant() => own,
            (None, _) => None,
        };
        // A tenant admin: tenant roles of its own tenant only.
        p.may_grant(b.role, tid)?;
        auth::set_role(c, &p.actor, &user, b.role, tid, p.tenant_id, now)?;
        Ok(auth::list_users(c, p.tenant_id)?
            .into_iter()
            .filter(|u| u.username == user)
            .collect())
    })
    .await?;
    Ok(Json(rows))
}
