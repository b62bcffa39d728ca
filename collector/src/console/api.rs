//! The handlers of `/api/v1`. Each one takes its [`Principal`] first (so an
//! unauthenticated or CSRF-less request is refused before its body is read), and
//! passes the principal's tenant into its SQL as the scope.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::auth::{self, Principal, Role};
use super::error::{ApiError, ErrorBody};
use super::{ConsoleState, ONLINE_MS, SESSION_COOKIE, db, now_ms};
use crate::notify::incident;

pub(super) type ApiResult<T> = Result<Json<T>, ApiError>;

pub(super) fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(t)| t).map_err(ApiError::from)
}

pub(super) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t).map_err(ApiError::from)
}

/// The tenant a request is about: the principal's own for a tenant role (another
/// named tenant does not exist for it), or the named one, or all (`None`).
pub(super) fn scope(
    conn: &Connection,
    p: &Principal,
    requested: Option<&str>,
) -> Result<Option<i64>, ApiError> {
    match (p.tenant_id, requested) {
        (Some(own), None) => Ok(Some(own)),
        (Some(own), Some(t)) if Some(t) == p.tenant.as_deref() => Ok(Some(own)),
        (Some(_), Some(t)) => Err(ApiError::not_found(format!("tenant {t:?}"))),
        (None, Some(t)) => auth::tenant_id(conn, t).map(Some),
        (None, None) => Ok(None),
    }
}

pub(super) fn paging(page: Option<u32>, per_page: Option<u32>) -> Result<(i64, i64), ApiError> {
    let page = page.unwrap_or(1);
    let per = per_page.unwrap_or(50);
    if page == 0 {
        return Err(ApiError::bad_request("query page: starts at 1"));
    }
    if !(1..=500).contains(&per) {
        return Err(ApiError::bad_request(format!(
            "query per_page: {per}; use 1 to 500"
        )));
    }
    Ok((page as i64, per as i64))
}

/// A page of results.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    pub(crate) page: i64,
    pub(crate) per_page: i64,
    pub(crate) total: i64,
}

// ---------------------------------------------------------------- auth

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginBody {
    pub(crate) username: String,
    pub(crate) password: String,
}

/// Who is logged in, and the CSRF token to send with every write.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Me {
    pub(crate) username: String,
    pub(crate) role: Role,
    pub(crate) tenant: Option<String>,
    /// Send as `X-CSRF-Token` on every write (absent for API tokens).
    pub(crate) csrf_token: Option<String>,
}

fn me_of(p: &Principal) -> Me {
    Me {
        username: p.actor.clone(),
        role: p.role,
        tenant: p.tenant.clone(),
        csrf_token: p.csrf.clone(),
    }
}

fn session_cookie(st: &ConsoleState, value: &str, max_age: i64) -> HeaderValue {
    let secure = if st.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Log in with a user name and password; sets the session cookie.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginBody,
    responses((status = 200, body = Me), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(super) async fn login(
    State(st): State<ConsoleState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    b: Result<Json<LoginBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(b)?;
    let addr = peer.ip().to_string();
    if let Some(wait) = st.limiter.blocked(&b.username, &addr) {
        st.counters
            .logins_rate_limited
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(user = %b.username, peer = %addr, "console login refused: rate limited");
        let mut r = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many failed logins for this account or address; wait up to {wait} s"),
        )
        .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return Ok(r);
    }
    let (user, pw) = (b.username.clone(), b.password);
    let now = now_ms();
    match db(&st, move |c| auth::login(c, &user, &pw, now)).await? {
        Ok((cookie, p)) => {
            st.limiter.succeeded(&b.username);
            st.counters
                .logins_ok
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(user = %b.username, peer = %addr, "console login");
            let mut r = Json(me_of(&p)).into_response();
            r.headers_mut().insert(
                header::SET_COOKIE,
                session_cookie(&st, &cookie, auth::SESSION_TTL_MS / 1000),
            );
            Ok(r)
        }
        Err(auth::LoginError::BadCredentials) => {
            st.limiter.failed(&b.username, &addr);
            st.counters
                .logins_failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(user = %b.username, peer = %addr, "console login failed");
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bad_credentials",
                "user name or password is wrong",
            ))
        }
    }
}

/// End this session.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", responses((status = 204)))]
pub(super) async fn logout(
    State(st): State<ConsoleState>,
    _p: Principal,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(c) = super::cookie(&headers, SESSION_COOKIE) {
        let now = now_ms();
        db(&st, move |conn| Ok(auth::logout(conn, &c, now)?)).await?;
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&st, "", 0));
    Ok(r)
}

/// Who am I (and the CSRF token).
#[utoipa::path(get, path = "/auth/me", tag = "auth", responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub(super) async fn me(p: Principal) -> ApiResult<Me> {
    Ok(Json(me_of(&p)))
}

// ---------------------------------------------------------------- tenants, sites, fleet

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TenantOut {
    pub(crate) name: String,
    pub(crate) devices: i64,
    pub(crate) sites: i64,
}

/// Tenants visible to the caller.
#[utoipa::path(get, path = "/tenants", tag = "fleet", responses((status = 200, body = Vec<TenantOut>)))]
pub(super) async fn tenants(
    State(st): State<ConsoleState>,
    p: Principal,
) -> ApiResult<Vec<TenantOut>> {
    let rows = db(&st, move |c| {
        let mut s = c.prepare(
            "SELECT t.name, (SELECT count(*) FROM devices d WHERE d.tenant_id = t.id AND d.revoked_ms IS NULL),
                    (SELECT count(*) FROM sites s WHERE s.tenant_id = t.id)
             FROM tenants t WHERE (?1 IS NULL OR t.id = ?1) ORDER BY t.name",
        )?;
        let rows = s.query_map([p.tenant_id], |r| {
            Ok(TenantOut { name: r.get(0)?, devices: r.get(1)?, sites: r.get(2)? })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    })
    .await?;
    Ok(Json(rows))
}

/// One tenant's fleet at a glance.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FleetOut {
    pub(crate) tenant: String,
    pub(crate) devices: i64,
    pub(crate) online: i64,
    pub(crate) offline: i64,
    /// Not seen for 24 hours.
    pub(crate) stale_24h: i64,
    pub(crate) alerts_warning: i64,
    pub(crate) alerts_critical: i64,
    /// Devices whose latest patch report needs a reboot.
    pub(crate) reboot_pending: i64,
    /// Devices with a pending security update.
    pub(crate) security_pending: i64,
    /// Devices with a security update pending for more than `overdue_days` (patch
    /// compliance: `1 - security_overdue / devices`).
    pub(crate) security_overdue: i64,
    /// The `overdue_days` these counts used.
    pub(crate) overdue_days: u32,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct FleetQuery {
    /// A security update pending longer than this many days is overdue (1–365,
    /// default 7).
    pub(crate) overdue_days: Option<u32>,
}

/// Default of [`FleetQuery::overdue_days`].
const OVERDUE_DAYS: u32 = 7;

/// Fleet overview per tenant: online/offline counts, open alerts by severity, patches.
#[utoipa::path(get, path = "/fleet", tag = "fleet", params(FleetQuery),
    responses((status = 200, body = Vec<FleetOut>), (status = 400, body = ErrorBody)))]
pub(super) async fn fleet(
    State(st): State<ConsoleState>,
    p: Principal,
    q: Result<Query<FleetQuery>, QueryRejection>,
) -> ApiResult<Vec<FleetOut>> {
    let q = query(q)?;
    let overdue_days = q.overdue_days.unwrap_or(OVERDUE_DAYS);
    if !(1..=365).contains(&overdue_days) {
        return Err(ApiError::bad_request(format!(
            "query overdue_days {overdue_days}: use 1 to 365"
        )));
    }
    let now = now_ms();
    let overdue_before = now - i64::from(overdue_days) * 86_400_000;
    let rows = db(&st, move |c| {
        // One pass over the devices grouped by tenant (not eight subqueries per
        // tenant): the fleet page must stay fast at 10,000 devices.
        let mut s = c.prepare_cached(
            "WITH live AS (
                 SELECT id, tenant_id, last_seen_ms FROM devices
                  WHERE revoked_ms IS NULL AND (?1 IS NULL OR tenant_id = ?1)),
             devs AS (
                 SELECT tenant_id, count(*) AS n, sum(last_seen_ms >= ?2) AS online,
                        sum(last_seen_ms < ?3) AS stale
                   FROM live GROUP BY tenant_id),
             pat AS (
                 SELECT l.tenant_id, sum(r.reboot_required != 0) AS reboot,
                        sum(EXISTS (SELECT 1 FROM pending_updates u
                                     WHERE u.device_id = l.id AND u.report_seq = r.seq
                                       AND u.classification = 'security')) AS sec,
                        sum(EXISTS (SELECT 1 FROM pending_updates u
                                     WHERE u.device_id = l.id AND u.report_seq = r.seq
                                       AND u.classification = 'security'
                                       AND u.first_seen_ms < ?4)) AS overdue
                   FROM live l JOIN patch_reports r ON r.device_id = l.id
                    AND r.seq = (SELECT max(seq) FROM patch_reports WHERE device_id = l.id)
                  GROUP BY l.tenant_id),
             inc AS (
                 SELECT tenant, sum(severity = 'warning') AS w, sum(severity = 'critical') AS c
                   FROM incidents WHERE state IN ('open', 'acked', 'snoozed') GROUP BY tenant)
             SELECT t.name, coalesce(devs.n, 0), coalesce(devs.online, 0),
                    coalesce(devs.stale, 0), coalesce(inc.w, 0), coalesce(inc.c, 0),
                    coalesce(pat.reboot, 0), coalesce(pat.sec, 0), coalesce(pat.overdue, 0)
               FROM tenants t
               LEFT JOIN devs ON devs.tenant_id = t.id
               LEFT JOIN pat ON pat.tenant_id = t.id
               LEFT JOIN inc ON inc.tenant = t.name
              WHERE (?1 IS NULL OR t.id = ?1) ORDER BY t.name",
        )?;
        let rows = s.query_map(
            params![
                p.tenant_id,
                now - ONLINE_MS,
                now - 86_400_000,
                overdue_before
            ],
            |r| {
                let devices: i64 = r.get(1)?;
                let online: i64 = r.get(2)?;
                Ok(FleetOut {
                    tenant: r.get(0)?,
                    devices,
                    online,
                    offline: devices - online,
                    stale_24h: r.get(3)?,
                    alerts_warning: r.get(4)?,
                    alerts_critical: r.get(5)?,
                    reboot_pending: r.get(6)?,
                    security_pending: r.get(7)?,
                    security_overdue: r.get(8)?,
                    overdue_days,
                })
            },
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    })
    .await?;
    Ok(Json(rows))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct TenantFilter {
    /// Only this tenant.
    pub(crate) tenant: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SiteOut {
    pub(crate) tenant: String,
    pub(crate) name: String,
    pub(crate) devices: i64,
}

/// Sites, per tenant.
#[utoipa::path(get, path = "/sites", tag = "fleet", params(TenantFilter), responses((status = 200, body = Vec<SiteOut>)))]
pub(super) async fn sites(
    State(st): State<ConsoleState>,
    p: Principal,
    q: Result<Query<TenantFilter>, QueryRejection>,
) -> ApiResult<Vec<SiteOut>> {
    let q = query(q)?;
    let rows = db(&st, move |c| {
        let scope = scope(c, &p, q.tenant.as_deref())?;
        let mut s = c.prepare(
            "SELECT t.name, s.name, (SELECT count(*) FROM devices d WHERE d.site_id = s.id)
             FROM sites s JOIN tenants t ON t.id = s.tenant_id
             WHERE (?1 IS NULL OR s.tenant_id = ?1) ORDER BY t.name, s.name",
        )?;
        let rows = s.query_map([scope], |r| {
            Ok(SiteOut {
                tenant: r.get(0)?,
                name: r.get(1)?,
                devices: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    })
    .await?;
    Ok(Json(rows))
}

// ---------------------------------------------------------------- shared by the device routes

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeviceOut {
    pub(crate) id: String,
    pub(crate) tenant: String,
    pub(crate) site: Option<String>,
    pub(crate) hostname: String,
    pub(crate) os_family: String,
    pub(crate) os_version: String,
    pub(crate) agent_version: String,
    pub(crate) first_seen_ms: i64,
    pub(crate) last_seen_ms: i64,
    pub(crate) online: bool,
    pub(crate) open_alerts: i64,
}

pub(super) const DEVICE_SELECT: &str =
    "SELECT d.id, t.name, s.name, d.hostname, d.os_family, d.os_version,
        d.agent_version, d.first_seen_ms, d.last_seen_ms,
        (SELECT count(*) FROM incidents i WHERE i.device_id = d.id AND i.state != 'resolved')
    FROM devices d JOIN tenants t ON t.id = d.tenant_id LEFT JOIN sites s ON s.id = d.site_id";

pub(super) fn device_row(r: &rusqlite::Row<'_>, now: i64) -> rusqlite::Result<DeviceOut> {
    let last: i64 = r.get(8)?;
    Ok(DeviceOut {
        id: r.get(0)?,
        tenant: r.get(1)?,
        site: r.get(2)?,
        hostname: r.get(3)?,
        os_family: r.get(4)?,
        os_version: r.get(5)?,
        agent_version: r.get(6)?,
        first_seen_ms: r.get(7)?,
        last_seen_ms: last,
        online: last >= now - ONLINE_MS,
        open_alerts: r.get(9)?,
    })
}

pub(super) fn device_in_scope(
    c: &Connection,
    id: &str,
    scope: Option<i64>,
    now: i64,
) -> Result<DeviceOut, ApiError> {
    c.query_row(
        &format!("{DEVICE_SELECT} WHERE d.id = ?1 AND (?2 IS NULL OR d.tenant_id = ?2)"),
        params![id, scope],
        |r| device_row(r, now),
    )
    .optional()?
    .ok_or_else(|| ApiError::not_found(format!("device {id:?}")))
}

// ---------------------------------------------------------------- alerts

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

// ---------------------------------------------------------------- live feed

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    pub(crate) tenant: Option<String>,
    /// `warning` (default) or `critical`.
    pub(crate) min_severity: Option<String>,
    /// Replay after this event id (as `Last-Event-ID`); default: only new events.
    pub(crate) since: Option<i64>,
}

/// The live alert feed (server-sent events), scoped to the caller's tenant.
#[utoipa::path(get, path = "/events", tag = "alerts", params(EventsQuery),
    responses((status = 200, content_type = "text/event-stream", description = "incident events")))]
pub(super) async fn events(
    State(st): State<ConsoleState>,
    p: Principal,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let critical_only = match q.min_severity.as_deref() {
        None | Some("warning") => false,
        Some("critical") => true,
        Some(o) => {
            return Err(ApiError::bad_request(format!(
                "query min_severity {o:?}: use warning or critical"
            )));
        }
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .or(q.since);
    let (tenant, start) = db(&st, move |c| {
        let scope = scope(c, &p, q.tenant.as_deref())?;
        let name: Option<String> = match scope {
            Some(id) => {
                Some(c.query_row("SELECT name FROM tenants WHERE id = ?1", [id], |r| r.get(0))?)
            }
            None => None,
        };
        let start = match resume {
            Some(id) => id,
            None => c.query_row("SELECT coalesce(max(id), 0) FROM feed_events", [], |r| {
                r.get(0)
            })?,
        };
        Ok((name, start))
    })
    .await?;
    let stop = st.stop.clone();
    let only = tenant.clone();
    let keep = move |e: &crate::http::hub::FeedEvent| {
        only.as_deref().is_none_or(|t| e.tenant == t) && (!critical_only || e.critical)
    };
    Ok(crate::http::feed_sse(
        start,
        st.feeds.subscribe(),
        stop,
        keep,
        move |from| {
            let (st, t) = (st.clone(), tenant.clone());
            async move {
                db(&st, move |c| {
                    Ok(crate::http::feed_page(
                        c,
                        from,
                        t.as_deref(),
                        critical_only,
                    )?)
                })
                .await
                .map_err(|e| e.message)
            }
        },
    ))
}
