//! Alert actions beyond ack: snooze an incident until a time, and silences (create
//! with matchers, list, expire). The semantics are the workflow's and the engine's
//! ([`crate::notify::incident::snooze_in`], [`crate::alerts::silence`]); this module
//! adds the tenant scope (in the SQL), the audit row (in the same transaction) and
//! the validation of what a browser sends.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::alerts::{incident_in_scope, incident_tenant_id};
use super::api::{ApiResult, body, query, scope};
use super::auth::{self, Principal};
use super::error::{ApiError, ErrorBody};
use super::{ConsoleState, db, now_ms};
use crate::alerts::silence::{self, NewSilence, RemoveOutcome, SilenceError, SilenceRow};
use crate::notify::incident;

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
    let out = db(&st, move |c| {
        incident_in_scope(c, id, p.tenant_id)?;
        let tx = c.transaction()?;
        match incident::snooze_in(&tx, id, &p.actor, note.as_deref(), until, now)? {
            incident::Outcome::Done | incident::Outcome::Already => {}
            incident::Outcome::Resolved => {
                return Err(ApiError::conflict(format!("alert {id}: already resolved")));
            }
            incident::Outcome::NoSuchIncident => {
                return Err(ApiError::not_found(format!("alert {id}")));
            }
        }
        let tenant = incident_tenant_id(&tx, id)?;
        auth::audit(
            &tx,
            &p.actor,
            tenant,
            "alert.snooze",
            &format!("alert {id}"),
            json!({ "until_ms": until, "note": note }),
            now,
        )?;
        tx.commit()?;
        let i = incident::get(c, id)?.ok_or_else(|| ApiError::not_found(format!("alert {id}")))?;
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

/// The scope clause: a silence belongs to the tenant it names (one naming no tenant
/// is the MSP's, and only MSP roles see it).
const SILENCE_SCOPE: &str = "(?1 IS NULL OR tenant = (SELECT name FROM tenants WHERE id = ?1))";

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
    let out = db(&st, move |c| {
        let scope = scope(c, &p, q.tenant.as_deref())?;
        let rows = c
            .prepare(&format!(
                "{} WHERE {SILENCE_SCOPE}
                   AND (?2 OR (removed_ms IS NULL AND ends_ms > ?3)) ORDER BY ends_ms, id LIMIT 1000",
                silence::SELECT
            ))?
            .query_map(params![scope, q.all.unwrap_or(false), now], silence::row)?
            .collect::<Result<Vec<_>, _>>()?;
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
    let out = db(&st, move |c| {
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut tid = scope(&tx, &p, tenant.as_deref())?;
        if tid.is_none() {
            // An MSP silence of a device is its tenant's too (so that tenant sees it).
            if let Some(d) = &device {
                tid = tx
                    .query_row("SELECT tenant_id FROM devices WHERE id = ?1", [d], |r| {
                        r.get(0)
                    })
                    .optional()?;
            }
        }
        let tenant_name: Option<String> = match tid {
            Some(id) => {
                Some(tx.query_row("SELECT name FROM tenants WHERE id = ?1", [id], |r| r.get(0))?)
            }
            None => None,
        };
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
        let id = silence::create_in(&tx, &s, now).map_err(silence_error)?;
        auth::audit(
            &tx,
            &p.actor,
            tid,
            "silence.create",
            &format!("silence {id}"),
            json!({ "ends_ms": ends, "tenant": s.tenant, "site": s.site, "tag": s.tag,
                    "device": s.device, "rule": s.rule, "comment": s.comment }),
            now,
        )?;
        let row = tx.query_row(
            &format!("{} WHERE id = ?1", silence::SELECT),
            [id],
            silence::row,
        )?;
        tx.commit()?;
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
    db(&st, move |c| {
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let tenant: Option<Option<i64>> = tx
            .query_row(
                &format!(
                    "SELECT (SELECT id FROM tenants t WHERE t.name = s.tenant) FROM silences s
                     WHERE s.id = ?2 AND {}",
                    SILENCE_SCOPE.replace("tenant =", "s.tenant =")
                ),
                params![p.tenant_id, id],
                |r| r.get(0),
            )
            .optional()?;
        let Some(tenant) = tenant else {
            return Err(ApiError::not_found(format!("silence {id}")));
        };
        match silence::remove(&tx, id, &p.actor, now)? {
            RemoveOutcome::Removed => {}
            RemoveOutcome::AlreadyRemoved => {
                return Err(ApiError::conflict(format!("silence {id}: already expired")));
            }
            RemoveOutcome::AlreadyEnded => {
                return Err(ApiError::conflict(format!("silence {id}: already ended")));
            }
            RemoveOutcome::NoSuchSilence => {
                return Err(ApiError::not_found(format!("silence {id}")));
            }
        }
        auth::audit(
            &tx,
            &p.actor,
            tenant,
            "silence.expire",
            &format!("silence {id}"),
            json!({}),
            now,
        )?;
        tx.commit()?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
