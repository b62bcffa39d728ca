//! The alert routes of `/api/v1`: incidents listed and shown, acknowledged and
//! un-acknowledged (snooze and silences are in `actions.rs`). Split from `api.rs`, as
//! `devices.rs` and `users.rs` were; the same rules hold (principal first, its tenant as
//! the scope of every query).

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::api::{ApiResult, Page, body, paging, query, scope};
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::{ConsoleState, now_ms, store};
use crate::notify::incident;
use crate::store::AuditEntry;
use crate::store::console_query::{AckResult, ConsoleQuery, IncidentFilter, PageAt, UnackResult};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertsQuery {
    pub(crate) tenant: Option<String>,
    /// `active` (default: open, acked, snoozed), `open`, `acked`, `snoozed`, `resolved`, `all`.
    pub(crate) state: Option<String>,
    /// `warning` or `critical`.
    pub(crate) severity: Option<String>,
    pub(crate) device: Option<String>,
    /// Site name (of the incident's device).
    pub(crate) site: Option<String>,
    pub(crate) page: Option<u32>,
    pub(crate) per_page: Option<u32>,
}

/// Incidents (alerts as the workflow sees them), newest first.
#[utoipa::path(get, path = "/alerts", tag = "alerts", params(AlertsQuery),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody)))]
pub(super) async fn alerts(
    State(st): State<ConsoleState>,
    p: Principal,
    q: Result<Query<AlertsQuery>, QueryRejection>,
) -> ApiResult<Page<Value>> {
    let q = query(q)?;
    let (page, per) = paging(q.page, q.per_page)?;
    let state = q.state.clone().unwrap_or_else(|| "active".into());
    if !["active", "open", "acked", "snoozed", "resolved", "all"].contains(&state.as_str()) {
        return Err(ApiError::bad_request(format!(
            "query state {state:?}: use active, open, acked, snoozed, resolved or all"
        )));
    }
    if let Some(s) = q
        .severity
        .as_deref()
        .filter(|s| !["warning", "critical"].contains(s))
    {
        return Err(ApiError::bad_request(format!(
            "query severity {s:?}: use warning or critical"
        )));
    }
    let out = store(&st, move |d| {
        let scope = scope(d, &p, q.tenant.as_deref())?;
        let filter = IncidentFilter {
            scope,
            state: &state,
            severity: q.severity.as_deref(),
            device: q.device.as_deref(),
            site: q.site.as_deref(),
        };
        let got = d.incidents(
            &filter,
            PageAt {
                page,
                per_page: per,
            },
        )?;
        Ok(Page {
            items: got.items.iter().map(incident::incident_json).collect(),
            page,
            per_page: per,
            total: got.total,
        })
    })
    .await?;
    Ok(Json(out))
}

/// One incident with its history (workflow events and the alert's transitions).
#[utoipa::path(get, path = "/alerts/{incident_id}", tag = "alerts",
    params(("incident_id" = i64, Path)), responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub(super) async fn alert(
    State(st): State<ConsoleState>,
    p: Principal,
    Path(id): Path<i64>,
) -> ApiResult<Value> {
    let out = store(&st, move |d| {
        let got = d
            .incident_detail(id, p.tenant_id)?
            .ok_or_else(|| ApiError::not_found(format!("alert {id}")))?;
        let events: Vec<Value> = got
            .events
            .iter()
            .map(|e| json!({ "kind": e.kind, "at_ms": e.at_ms }))
            .collect();
        let history: Vec<Value> = got
            .history
            .iter()
            .map(|h| {
                json!({
                    "at_ms": h.at_ms, "event": h.event,
                    "from": h.from_state, "to": h.to_state,
                    "severity": h.severity, "value": h.value,
                })
            })
            .collect();
        Ok(json!({ "incident": incident::incident_json(&got.incident), "events": events, "history": history }))
    })
    .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoteBody {
    /// Shown to both sides (at most 500 characters).
    #[serde(default)]
    pub(crate) note: Option<String>,
}

pub(super) fn note_of(b: NoteBody) -> Result<Option<String>, ApiError> {
    match b.note {
        Some(n) if n.chars().count() > 500 => Err(ApiError::bad_request(format!(
            "note: {} characters; at most 500",
            n.chars().count()
        ))),
        Some(n) if n.trim().is_empty() => Ok(None),
        n => Ok(n),
    }
}

/// Acknowledge an incident (stops escalation), with an optional note.
#[utoipa::path(post, path = "/alerts/{incident_id}/ack", tag = "alerts", params(("incident_id" = i64, Path)),
    request_body = NoteBody, responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn alert_ack(
    State(st): State<ConsoleState>,
    p: Principal,
    Path(id): Path<i64>,
    b: Result<Json<NoteBody>, JsonRejection>,
) -> ApiResult<Value> {
    p.require_ack()?;
    let note = note_of(body(b)?)?;
    let now = now_ms();
    let out = store(&st, move |d| {
        let audit = AuditEntry::new(
            p.actor.as_str(),
            "alert.ack",
            format!("alert {id}"),
            json!({ "note": note }),
        );
        match d.ack_incident(id, p.tenant_id, note.as_deref(), &audit, now)? {
            AckResult::Done(i) => Ok(incident::incident_json(&i)),
            AckResult::Already => Err(ApiError::conflict(format!(
                "alert {id}: already acknowledged"
            ))),
            AckResult::Resolved => Err(ApiError::conflict(format!("alert {id}: already resolved"))),
            AckResult::NotFound => Err(ApiError::not_found(format!("alert {id}"))),
        }
    })
    .await?;
    Ok(Json(out))
}

/// Take back an acknowledgement: the incident is open again and escalation starts over.
#[utoipa::path(post, path = "/alerts/{incident_id}/unack", tag = "alerts", params(("incident_id" = i64, Path)),
    request_body = NoteBody, responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn alert_unack(
    State(st): State<ConsoleState>,
    p: Principal,
    Path(id): Path<i64>,
    b: Result<Json<NoteBody>, JsonRejection>,
) -> ApiResult<Value> {
    p.require_ack()?;
    let note = note_of(body(b)?)?;
    let now = now_ms();
    let out = store(&st, move |d| {
        let audit = AuditEntry::new(
            p.actor.as_str(),
            "alert.unack",
            format!("alert {id}"),
            json!({ "note": note }),
        );
        match d.unack_incident(id, p.tenant_id, &audit, now)? {
            UnackResult::Done(i) => Ok(incident::incident_json(&i)),
            UnackResult::NotAcked { state } => Err(ApiError::conflict(format!(
                "alert {id}: is {state}, not acknowledged"
            ))),
            UnackResult::NotFound => Err(ApiError::not_found(format!("alert {id}"))),
        }
    })
    .await?;
    Ok(Json(out))
}
