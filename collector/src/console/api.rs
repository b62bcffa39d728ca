//! The handlers of `/api/v1`. Each one takes its [`Principal`] first (so an
//! unauthenticated or CSRF-less request is refused before its body is read), and
//! passes the principal's tenant into its SQL as the scope.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{self, Principal, Role};
use super::error::{ApiError, ErrorBody};
use super::{ConsoleState, ONLINE_MS, SESSION_COOKIE, now_ms, store};
use crate::store::Db;
use crate::store::api::NotifyStore;
use crate::store::console_query::{ConsoleDevice, ConsoleQuery, FleetWindow, ScopeLookup};

pub(super) type ApiResult<T> = Result<Json<T>, ApiError>;

pub(super) fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(t)| t).map_err(ApiError::from)
}

pub(super) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t).map_err(ApiError::from)
}

/// The tenant a request is about: the principal's own for a tenant role (another
/// named tenant does not exist for it), or the named one, or all (`None`).
///
/// On anything that looks tenants up ([`ScopeLookup`]): a store handle, or (until
/// their handlers move behind the store) the connection of the legacy entry.
pub(super) fn scope(
    c: &impl ScopeLookup,
    p: &Principal,
    requested: Option<&str>,
) -> Result<Option<i64>, ApiError> {
    p.scope_in(c, requested)
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
    match super::store(&st, move |d| auth::login(d, &user, &pw, now)).await? {
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
        super::store(&st, move |d| auth::logout(d, &c, now)).await?;
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
    let rows = store(&st, move |d| {
        Ok(d.tenants(p.tenant_id)?
            .into_iter()
            .map(|t| TenantOut {
                name: t.name,
                devices: t.devices,
                sites: t.sites,
            })
            .collect())
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
    let window = FleetWindow {
        online_since_ms: now - ONLINE_MS,
        stale_before_ms: now - 86_400_000,
        overdue_before_ms: overdue_before,
    };
    let rows = store(&st, move |d| {
        Ok(d.fleet(p.tenant_id, &window)?
            .into_iter()
            .map(|f| FleetOut {
                tenant: f.tenant,
                devices: f.devices,
                online: f.online,
                offline: f.devices - f.online,
                stale_24h: f.stale,
                alerts_warning: f.alerts_warning,
                alerts_critical: f.alerts_critical,
                reboot_pending: f.reboot_pending,
                security_pending: f.security_pending,
                security_overdue: f.security_overdue,
                overdue_days,
            })
            .collect())
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
    let rows = store(&st, move |d| {
        let scope = scope(d, &p, q.tenant.as_deref())?;
        Ok(d.sites(scope)?
            .into_iter()
            .map(|s| SiteOut {
                tenant: s.tenant,
                name: s.name,
                devices: s.devices,
            })
            .collect())
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

impl DeviceOut {
    /// The device as the API shows it: online when seen in the last [`ONLINE_MS`]
    /// before `now`.
    pub(super) fn of(d: ConsoleDevice, now: i64) -> DeviceOut {
        DeviceOut {
            online: d.last_seen_ms >= now - ONLINE_MS,
            id: d.id,
            tenant: d.tenant,
            site: d.site,
            hostname: d.hostname,
            os_family: d.os_family,
            os_version: d.os_version,
            agent_version: d.agent_version,
            first_seen_ms: d.first_seen_ms,
            last_seen_ms: d.last_seen_ms,
            open_alerts: d.open_alerts,
        }
    }
}

/// Device `id` if it is within `scope`; else 404, as if it did not exist.
pub(super) fn device_in_scope(
    d: &Db,
    id: &str,
    scope: Option<i64>,
    now: i64,
) -> Result<DeviceOut, ApiError> {
    d.device(id, scope)?
        .map(|dev| DeviceOut::of(dev, now))
        .ok_or_else(|| ApiError::not_found(format!("device {id:?}")))
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
    let (tenant, start) = store(&st, move |d| {
        let scope = scope(d, &p, q.tenant.as_deref())?;
        let name: Option<String> = match scope {
            Some(id) => Some(
                d.tenant_name(id)?
                    .ok_or_else(|| ApiError::internal(format!("tenant {id}: not in the store")))?,
            ),
            None => None,
        };
        let start = match resume {
            Some(id) => id,
            None => d.feed_head()?,
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
                store(&st, move |d| {
                    Ok(crate::http::feed_page(
                        d,
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
