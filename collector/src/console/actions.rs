//! Alert actions beyond ack: snooze an incident until a time, and silences (create
//! with matchers, list, expire). The semantics are the workflow's and the engine's
//! (`notify::incident`, [`crate::alerts::silence`]); the store's
//! [`ConsoleAdmin`] adds the tenant scope (in the SQL) and the audit row (in the same
//! transaction); this module validates what a browser sends.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::api::{ApiResult, body, query};
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::{ConsoleState, now_ms, store};
use crate::alerts::silence::{self, NewSilence, SilenceError, SilenceRow};
use crate::notify::incident;
use crate::store::console_admin::ConsoleAdmin;

/// Longest snooze or console-made silence.
const MAX_AHEAD_MS: i64 = 31 * 86_400_000;

/// When something ends: `until` (RFC 3339) or `minutes` from now, exactly one.
fn end_of(until: Option<&str>, minutes: Option<u32>, now: i64) -> Result<i64, ApiError> {
    let end = match (until, minutes) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "until and minutes: give one of them, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "until or minutes: one is required (when it ends)",
            ));
        }
        (Some(u), None) => u
            .trim()
            .parse::<jiff::Timestamp>()
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "until {u:?}: not an RFC 3339 time such as 2026-12-02T18:00:00Z ({e})"
                ))
            })?
            .as_millisecond(),
        (None, Some(0)) => return Err(ApiError::bad_request("minutes: at least 1")),
        (None, Some(m)) => now + i64::from(m) * 60_000,
    };
    if end <= now {
        return Err(ApiError::bad_request(
            "until: in the past; give a later time",
        ));
    }
    if end - now > MAX_AHEAD_MS {
        return Err(ApiError::bad_request("until: at most 31 days ahead"));
    }
    Ok(end)
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

// ---------------------------------------------------------------- snooze

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnoozeBody {
    /// Snooze until this instant (RFC 3339), or
    pub(crate) until: Option<String>,
    /// for this many minutes (one of the two; at most 31 days).
    pub(crate) minutes: Option<u32>,
    /// Why (at most 500 characters); kept as the incident's note.
    pub(crate) note: Option<String>,
}

/// Snooze an incident until a time (a timed ack: it reopens then and escalation starts over).
#[utoipa::path(post, path = "/alerts/{incident_id}/snooze", tag = "alerts", params(("incident_id" = i64, Path)),
    request_body = SnoozeBody, responses((status = 200, body = Object), (status = 400, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn alert_snooze(
    State(st): State<ConsoleState>,
    p: Principal,
    Path(id): Path<i64>,
    b: Result<Json<SnoozeBody>, JsonRejection>,
) -> ApiResult<Value> {
    p.require_ack()?;
    let b = body(b)?;
    let now = now_ms();
    let until = end_of(b.until.as_deref(), b.minutes, now)?;
    let note = text_of("note", b.note, 500)?;
    let out = store(&st, move |d| {
        let i = d.snooze_in_scope(id, p.tenant_id, until, note.as_deref(), &p.actor, now)?;
        Ok(incident::incident_json(&i))
    })
    .await?;
    Ok(Json(out))
}

// ---------------------------------------------------------------- silences

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct SilencesQuery {
    pub(crate) tenant: Option<String>,
    /// Also ended and expired ones (default: active and upcoming only).
    pub(crate) all: Option<bool>,
}

/// A silence, with its state at the time of the answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SilenceOut {
    pub(crate) id: i64,
    /// `active`, `recurring`, `upcoming`, `ended` or `removed`.
    pub(crate) status: String,
    /// As `tenant=acme device=d1`.
    pub(crate) matchers: String,
    pub(crate) starts_ms: i64,
    pub(crate) ends_ms: i64,
    pub(crate) tenant: Option<String>,
    pub(crate) site: Option<String>,
    pub(crate) tag: Option<String>,
    pub(crate) device_id: Option<String>,
    pub(crate) rule: Option<String>,
    pub(crate) comment: String,
    pub(crate) created_by: String,
    pub(crate) created_ms: i64,
    pub(crate) removed_ms: Option<i64>,
    pub(crate) removed_by: Option<String>,
    pub(crate) rrule: Option<String>,
}

fn silence_out(s: SilenceRow, now: i64) -> SilenceOut {
    SilenceOut {
        status: s.status(now).to_owned(),
        matchers: s.matchers(),
        id: s.id,
        starts_ms: s.starts_ms,
        ends_ms: s.ends_ms,
        tenant: s.tenant,
        site: s.site,
        tag: s.tag,
        device_id: s.device_id,
        rule: s.rule,
        comment: s.comment,
        created_by: s.created_by,
        created_ms: s.created_ms,
        removed_ms: s.removed_ms,
        removed_by: s.removed_by,
        rrule: s.rrule,
    }
}

/// Silences (active and upcoming; `all=true` for every one ever made), soonest end first.
#[utoipa::path(get, path = "/silences", tag = "alerts", params(SilencesQuery),
    responses((status = 200, body = Vec<SilenceOut>), (status = 400, body = ErrorBody)))]
pub(super) async fn silences(
    State(st): State<ConsoleState>,
    p: Principal,
    q: Result<Query<SilencesQuery>, QueryRejection>,
) -> ApiResult<Vec<SilenceOut>> {
    let q = query(q)?;
    let now = now_ms();
    let out = store(&st, move |d| {
        let scope = p.scope_in(d, q.tenant.as_deref())?;
        let rows = d.list_silences_in(scope, q.all.unwrap_or(false), now)?;
        Ok(rows.into_iter().map(|s| silence_out(s, now)).collect())
    })
    .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewSilenceBody {
    /// Matchers: each one given must match; at least one. A tenant user's silences
    /// are always within its tenant.
    pub(crate) tenant: Option<String>,
    pub(crate) site: Option<String>,
    pub(crate) tag: Option<String>,
    pub(crate) device: Option<String>,
    pub(crate) rule: Option<String>,
    /// Ends at this instant (RFC 3339), or
    pub(crate) until: Option<String>,
    /// after this many minutes (one of the two; at most 31 days). It starts now.
    pub(crate) minutes: Option<u32>,
    /// Why (required, at most 500 characters).
    pub(crate) comment: String,
}

fn silence_error(e: SilenceError) -> ApiError {
    match e {
        SilenceError::Store(e) => ApiError::internal(e),
        SilenceError::NoTenant(t) => ApiError::not_found(format!("tenant {t:?}")),
        SilenceError::NoDevice(d) => ApiError::not_found(format!("device {d:?}")),
        SilenceError::NoSite(s, _) => ApiError::not_found(format!("site {s:?}")),
        // The CLI's wording names flags; say the field instead.
        SilenceError::NoMatcher => ApiError::bad_request(
            "tenant, site, tag, device, rule: give at least one (silencing everything is refused)",
        ),
        SilenceError::NoComment => ApiError::bad_request("comment: say why"),
        SilenceError::WrongTenant { device, .. } => {
            ApiError::not_found(format!("device {device:?}"))
        }
        e => ApiError::bad_request(e.to_string()),
    }
}

/// Create a silence: notifications matching it pause until it ends (evaluation goes on).
#[utoipa::path(post, path = "/silences", tag = "alerts", request_body = NewSilenceBody,
    responses((status = 201, body = SilenceOut), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn silence_create(
    State(st): State<ConsoleState>,
    p: Principal,
    b: Result<Json<NewSilenceBody>, JsonRejection>,
) -> Result<(StatusCode, Json<SilenceOut>), ApiError> {
    p.require_ack()?;
    let b = body(b)?;
    let now = now_ms();
    let ends = end_of(b.until.as_deref(), b.minutes, now)?;
    let comment = text_of("comment", Some(b.comment), 500)?
        .ok_or_else(|| ApiError::bad_request("comment: say why"))?;
    let (site, tag, device, rule) = (
        text_of("site", b.site, 200)?,
        text_of("tag", b.tag, 200)?,
        text_of("device", b.device, 200)?,
        text_of("rule", b.rule, 200)?,
    );
    let tenant = text_of("tenant", b.tenant, 200)?;
    let out = store(&st, move |d| {
        let named = p.scope_in(d, tenant.as_deref())?;
        // An MSP silence of a device is its tenant's too (so that tenant sees it).
        let (tid, tenant_name) = d.silence_tenant(named, device.as_deref())?;
        let s = NewSilence {
            starts_ms: now,
            ends_ms: ends,
            tenant: tenant_name,
            site,
            tag,
            device,
            rule,
            comment,
            by: p.actor.clone(),
            recurrence: None,
        };
        let row = silence::create_audited(d, &s, tid, &p.actor, now).map_err(silence_error)?;
        Ok(silence_out(row, now))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Expire a silence now (it stays on record with who lifted it).
#[utoipa::path(delete, path = "/silences/{silence_id}", tag = "alerts", params(("silence_id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn silence_expire(
    State(st): State<ConsoleState>,
    p: Principal,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    p.require_ack()?;
    let now = now_ms();
    store(&st, move |d| {
        d.expire_silence(id, p.tenant_id, &p.actor, now)?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
