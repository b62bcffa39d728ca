//! Maintenance windows made at run time (issue 15): create, list, delete. Stored in
//! `maintenance_windows` ([`crate::alerts::maintenance::DbWindow`]), read by the
//! alert engine every tick beside the `[[maintenance]]` of the rule files and
//! honoured the same way (notifications of what they cover pause; evaluation goes on).
//!
//! Invariants:
//! - every window belongs to one tenant: a tenant user's always to its own, an MSP
//!   window of a device to the device's tenant; site and device only narrow it, and
//!   must be that tenant's;
//! - the tenant is in the SQL of the list and the delete (another tenant's window
//!   answers 404);
//! - create and delete append their audit row in the same transaction (the store's
//!   [`ConsoleAdmin`] does both).

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api::{ApiResult, body, query};
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::{ConsoleState, now_ms, store};
use crate::alerts::maintenance::DbWindow;
use crate::store::console_admin::{ConsoleAdmin, NewWindow as StoreWindow};

/// Longest window made here (longer ones belong in the rule files).
const MAX_LENGTH_MS: i64 = 31 * 86_400_000;
/// Furthest ahead a window may start.
const MAX_AHEAD_MS: i64 = 366 * 86_400_000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct WindowsQuery {
    pub(crate) tenant: Option<String>,
    /// Also windows that have ended (default: current and upcoming only).
    pub(crate) all: Option<bool>,
}

/// A window, with its state at the time of the answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WindowOut {
    #[serde(flatten)]
    pub(crate) window: DbWindow,
    /// `active`, `upcoming` or `ended`.
    pub(crate) status: String,
}

fn out(w: DbWindow, now: i64) -> WindowOut {
    let status = if w.ends_ms <= now {
        "ended"
    } else if w.starts_ms <= now {
        "active"
    } else {
        "upcoming"
    };
    WindowOut {
        window: w,
        status: status.to_owned(),
    }
}

/// Maintenance windows made at run time (current and upcoming; `all=true` for every
/// one), soonest start first. The rule files' windows are in `GET /rules`.
#[utoipa::path(get, path = "/maintenance", tag = "alerts", params(WindowsQuery),
    responses((status = 200, body = Vec<WindowOut>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn list(
    State(st): State<ConsoleState>,
    p: Principal,
    q: Result<Query<WindowsQuery>, QueryRejection>,
) -> ApiResult<Vec<WindowOut>> {
    let q = query(q)?;
    let now = now_ms();
    let rows = store(&st, move |d| {
        let scope = p.scope_in(d, q.tenant.as_deref())?;
        let rows = d.list_windows(scope, q.all.unwrap_or(false), now)?;
        Ok(rows.into_iter().map(|w| out(w, now)).collect())
    })
    .await?;
    Ok(Json(rows))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewWindow {
    /// The tenant it covers (a tenant user: its own, may be left out; an MSP user:
    /// required unless `device` is given, whose tenant it then is).
    pub(crate) tenant: Option<String>,
    /// Only this site of the tenant.
    pub(crate) site: Option<String>,
    /// Only this device (of the tenant).
    pub(crate) device: Option<String>,
    /// When it starts (RFC 3339); default: now.
    pub(crate) start: Option<String>,
    /// When it ends (RFC 3339), or
    pub(crate) end: Option<String>,
    /// how many minutes after the start (one of the two; at most 31 days long).
    pub(crate) minutes: Option<u32>,
    /// Why (required, at most 500 characters).
    pub(crate) note: String,
}

fn text_of(what: &str, v: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    match v {
        Some(n) if n.chars().count() > max => Err(ApiError::bad_request(format!(
            "{what}: {} characters; at most {max}",
            n.chars().count()
        ))),
        Some(n) if n.trim().is_empty() => Ok(None),
        n => Ok(n.map(|n| n.trim().to_owned())),
    }
}

fn instant_of(what: &str, v: &str) -> Result<i64, ApiError> {
    v.trim()
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| {
            ApiError::bad_request(format!(
                "{what} {v:?}: not an RFC 3339 time such as 2026-12-02T22:00:00Z ({e})"
            ))
        })
}

/// (start, end) of a new window, checked against `now`.
pub(crate) fn span_of(
    start: Option<&str>,
    end: Option<&str>,
    minutes: Option<u32>,
    now: i64,
) -> Result<(i64, i64), ApiError> {
    let start = match start.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => instant_of("start", s)?,
        None => now,
    };
    let end = match (end.map(str::trim).filter(|s| !s.is_empty()), minutes) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "end and minutes: give one of them, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "end or minutes: one is required (when it ends)",
            ));
        }
        (Some(e), None) => instant_of("end", e)?,
        (None, Some(0)) => return Err(ApiError::bad_request("minutes: at least 1")),
        (None, Some(m)) => start.saturating_add(i64::from(m) * 60_000),
    };
    if end <= start {
        return Err(ApiError::bad_request("end: not after start"));
    }
    if end <= now {
        return Err(ApiError::bad_request("end: in the past; give a later time"));
    }
    if end - start > MAX_LENGTH_MS {
        return Err(ApiError::bad_request(
            "end: at most 31 days after start (put longer windows in the rule files)",
        ));
    }
    if start - now > MAX_AHEAD_MS {
        return Err(ApiError::bad_request("start: at most a year ahead"));
    }
    Ok((start, end))
}

/// Create a maintenance window: notifications of what it covers pause from its
/// start to its end (the engine picks it up within a tick).
#[utoipa::path(post, path = "/maintenance", tag = "alerts", request_body = NewWindow,
    responses((status = 201, body = WindowOut), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn create(
    State(st): State<ConsoleState>,
    p: Principal,
    b: Result<Json<NewWindow>, JsonRejection>,
) -> Result<(StatusCode, Json<WindowOut>), ApiError> {
    p.require_ack()?;
    let b = body(b)?;
    let now = now_ms();
    let (starts, ends) = span_of(b.start.as_deref(), b.end.as_deref(), b.minutes, now)?;
    let note = text_of("note", Some(b.note), 500)?
        .ok_or_else(|| ApiError::bad_request("note: say why"))?;
    let tenant = text_of("tenant", b.tenant, 200)?;
    let site = text_of("site", b.site, 200)?;
    let device = text_of("device", b.device, 200)?;
    let w = store(&st, move |d| {
        let named = p.scope_in(d, tenant.as_deref())?;
        let w = StoreWindow {
            site: site.as_deref(),
            device: device.as_deref(),
            starts_ms: starts,
            ends_ms: ends,
            note: &note,
        };
        Ok(d.create_window(&w, named, &p.actor, now)?)
    })
    .await?;
    tracing::info!(window = w.id, tenant = %w.tenant, by = %w.created_by, "maintenance window created");
    Ok((StatusCode::CREATED, Json(out(w, now))))
}

/// Delete a maintenance window (the audit log keeps what it was); suppression by
/// it ends within a tick.
#[utoipa::path(delete, path = "/maintenance/{window_id}", tag = "alerts", params(("window_id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn delete(
    State(st): State<ConsoleState>,
    p: Principal,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    p.require_ack()?;
    let now = now_ms();
    let actor = p.actor.clone();
    store(&st, move |d| {
        d.delete_window(id, p.tenant_id, &p.actor, now)?;
        Ok(())
    })
    .await?;
    tracing::info!(window = id, by = %actor, "maintenance window deleted");
    Ok(StatusCode::NO_CONTENT)
}
