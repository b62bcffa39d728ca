//! The alert routes of `/api/v1`: incidents listed and shown, acknowledged and
//! un-acknowledged (snooze and silences are in `actions.rs`). Split from `api.rs`, as
//! `devices.rs` and `users.rs` were; the same rules hold (principal first, its tenant as
//! the scope of every query).

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::api::{ApiResult, Page, body, paging, query, scope};
use super::auth::{self, Principal};
use super::error::{ApiError, ErrorBody};
use super::{ConsoleState, db, now_ms};
use crate::notify::incident;

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
    let out = db(&st, move |c| {
        let scope = scope(c, &p, q.tenant.as_deref())?;
        let filter = "WHERE (?1 IS NULL OR i.tenant = (SELECT name FROM tenants WHERE id = ?1))
              AND (?2 = 'all' OR (?2 = 'active' AND i.state != 'resolved') OR i.state = ?2)
              AND (?3 IS NULL OR i.severity = ?3) AND (?4 IS NULL OR i.device_id = ?4)
              AND (?5 IS NULL OR i.device_id IN (SELECT d.id FROM devices d JOIN sites s ON s.id = d.site_id
                                                 WHERE s.name = ?5 AND (?1 IS NULL OR d.tenant_id = ?1)))";
        let args = params![scope, state, q.severity, q.device, q.site];
        let total: i64 = c.query_row(
            &format!("SELECT count(*) FROM incidents i {filter}"),
            args,
            |r| r.get(0),
        )?;
        let ids = c
            .prepare(&format!(
                "SELECT i.id FROM incidents i {filter} ORDER BY i.id DESC LIMIT {per} OFFSET {}",
                (page - 1) * per
            ))?
            .query_map(args, |r| r.get::<_, i64>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut items = Vec::new();
        for id in ids {
            if let Some(i) = incident::get(c, id)? {
                items.push(incident::incident_json(&i));
            }
        }
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

/// The incident's id, if it is within scope.
pub(super) fn incident_in_scope(
    c: &Connection,
    id: i64,
    scope: Option<i64>,
) -> Result<(), ApiError> {
    c.query_row(
        "SELECT 1 FROM incidents i WHERE i.id = ?1
           AND (?2 IS NULL OR i.tenant = (SELECT name FROM tenants WHERE id = ?2))",
        params![id, scope],
        |_| Ok(()),
    )
    .optional()?
    .ok_or_else(|| ApiError::not_found(format!("alert {id}")))
}

/// One incident with its history (workflow events and the alert's transitions).
#[utoipa::path(get, path = "/alerts/{incident_id}", tag = "alerts",
    params(("incident_id" = i64, Path)), responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub(super) async fn alert(
    State(st): State<ConsoleState>,
    p: Principal,
    Path(id): Path<i64>,
) -> ApiResult<Value> {
    let out = db(&st, move |c| {
        incident_in_scope(c, id, p.tenant_id)?;
        let i = incident::get(c, id)?.ok_or_else(|| ApiError::not_found(format!("alert {id}")))?;
        let events = c
            .prepare("SELECT kind, at_ms FROM feed_events WHERE incident_id = ?1 ORDER BY id")?
            .query_map([id], |r| Ok(json!({ "kind": r.get::<_, String>(0)?, "at_ms": r.get::<_, i64>(1)? })))?
            .collect::<Result<Vec<_>, _>>()?;
        let history = c
            .prepare(
                "SELECT h.at_ms, h.event, h.from_state, h.to_state, h.severity, h.value FROM alert_history h
                 JOIN incidents i ON i.instance_id = h.instance_id WHERE i.id = ?1 ORDER BY h.at_ms, h.id LIMIT 1000",
            )?
            .query_map([id], |r| {
                Ok(json!({
                    "at_ms": r.get::<_, i64>(0)?, "event": r.get::<_, String>(1)?,
                    "from": r.get::<_, Option<String>>(2)?, "to": r.get::<_, String>(3)?,
                    "severity": r.get::<_, Option<String>>(4)?, "value": r.get::<_, Option<f64>>(5)?,
                }))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(json!({ "incident": incident::incident_json(&i), "events": events, "history": history }))
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
    let out = db(&st, move |c| {
        incident_in_scope(c, id, p.tenant_id)?;
        let tx = c.transaction()?;
        match incident::ack_in(&tx, id, &p.actor, note.as_deref(), now)? {
            incident::Outcome::Done => {}
            incident::Outcome::Already => {
                return Err(ApiError::conflict(format!(
                    "alert {id}: already acknowledged"
                )));
            }
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
            "alert.ack",
            &format!("alert {id}"),
            json!({ "note": note }),
            now,
        )?;
        tx.commit()?;
        let i = incident::get(c, id)?.ok_or_else(|| ApiError::not_found(format!("alert {id}")))?;
        Ok(incident::incident_json(&i))
    })
    .await?;
    Ok(Json(out))
}

pub(super) fn incident_tenant_id(c: &Connection, id: i64) -> rusqlite::Result<Option<i64>> {
    c.query_row(
        "SELECT t.id FROM incidents i JOIN tenants t ON t.name = i.tenant WHERE i.id = ?1",
        [id],
        |r| r.get(0),
    )
    .optional()
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
    let out = db(&st, move |c| {
        incident_in_scope(c, id, p.tenant_id)?;
        let tx = c.transaction()?;
        let (state, instance): (String, i64) =
            tx.query_row("SELECT state, instance_id FROM incidents WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if !["acked", "snoozed"].contains(&state.as_str()) {
            return Err(ApiError::conflict(format!("alert {id}: is {state}, not acknowledged")));
        }
        tx.execute(
            "UPDATE incidents SET state = 'open', loop_no = loop_no + 1, loop_start_ms = ?2, snoozed_until_ms = NULL,
                acked_ms = NULL, acked_by = NULL, ack_note = NULL WHERE id = ?1",
            params![id, now],
        )?;
        tx.execute("UPDATE alert_instances SET acked_ms = NULL, acked_by = NULL WHERE id = ?1", [instance])?;
        incident::feed_event(&tx, id, "reopened", now)?;
        let tenant = incident_tenant_id(&tx, id)?;
        auth::audit(&tx, &p.actor, tenant, "alert.unack", &format!("alert {id}"), json!({ "note": note }), now)?;
        tx.commit()?;
        let i = incident::get(c, id)?.ok_or_else(|| ApiError::not_found(format!("alert {id}")))?;
        Ok(incident::incident_json(&i))
    })
    .await?;
    Ok(Json(out))
}
