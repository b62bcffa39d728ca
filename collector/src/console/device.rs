//! A device's page beyond its charts: filesystems and services (from its latest
//! values), the pending updates of its latest patch report with their age, and its
//! software inventory (searchable). Every handler checks the device is within the
//! caller's scope in SQL first ([`super::api::device_in_scope`]): another tenant's
//! device answers 404.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api::{ApiResult, Page, device_in_scope, paging, query};
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::{ConsoleState, now_ms, store};
use crate::store::console_query::{ConsoleQuery, PageAt};

/// One mounted filesystem, from the device's latest `fs.*` values.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FilesystemOut {
    pub(crate) mount: String,
    pub(crate) total_bytes: Option<f64>,
    pub(crate) used_bytes: Option<f64>,
    pub(crate) free_bytes: Option<f64>,
    pub(crate) used_percent: Option<f64>,
    pub(crate) inodes_used_percent: Option<f64>,
    /// When the device measured it (its clock).
    pub(crate) ts_ms: i64,
}

/// The device's filesystems (latest values), fullest first.
#[utoipa::path(get, path = "/devices/{device_id}/filesystems", tag = "devices",
    params(("device_id" = String, Path)), responses((status = 200, body = Vec<FilesystemOut>), (status = 404, body = ErrorBody)))]
pub(super) async fn filesystems(
    State(st): State<ConsoleState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Vec<FilesystemOut>> {
    let now = now_ms();
    let out = store(&st, move |d| {
        device_in_scope(d, &id, p.tenant_id, now)?;
        let mut by_mount: std::collections::BTreeMap<String, FilesystemOut> = Default::default();
        for (name, dim, ts, v) in super::samples::latest(d, &id)? {
            let Some(field) = name.strip_prefix("fs.") else {
                continue;
            };
            let f = by_mount
                .entry(dim.clone())
                .or_insert_with(|| FilesystemOut {
                    mount: dim,
                    total_bytes: None,
                    used_bytes: None,
                    free_bytes: None,
                    used_percent: None,
                    inodes_used_percent: None,
                    ts_ms: ts,
                });
            f.ts_ms = f.ts_ms.max(ts);
            match field {
                "total.bytes" => f.total_bytes = Some(v),
                "used.bytes" => f.used_bytes = Some(v),
                "free.bytes" => f.free_bytes = Some(v),
                "used.percent" => f.used_percent = Some(v),
                "inodes.used.percent" => f.inodes_used_percent = Some(v),
                _ => {}
            }
        }
        let mut out: Vec<_> = by_mount.into_values().collect();
        out.sort_by(|a, b| {
            b.used_percent
                .unwrap_or(0.0)
                .total_cmp(&a.used_percent.unwrap_or(0.0))
                .then(a.mount.cmp(&b.mount))
        });
        Ok(out)
    })
    .await?;
    Ok(Json(out))
}

/// A service the agent watches (`service.up`) or a failed systemd unit (`service.failed`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ServiceOut {
    pub(crate) name: String,
    /// `configured` (from the agent's config) or `failed-unit` (systemd reported it failed).
    pub(crate) kind: String,
    pub(crate) running: bool,
    pub(crate) ts_ms: i64,
}

/// The device's services: the configured ones with their state, and failed units.
#[utoipa::path(get, path = "/devices/{device_id}/services", tag = "devices",
    params(("device_id" = String, Path)), responses((status = 200, body = Vec<ServiceOut>), (status = 404, body = ErrorBody)))]
pub(super) async fn services(
    State(st): State<ConsoleState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Vec<ServiceOut>> {
    let now = now_ms();
    let out = store(&st, move |d| {
        device_in_scope(d, &id, p.tenant_id, now)?;
        let mut out: Vec<ServiceOut> = super::samples::latest(d, &id)?
            .into_iter()
            .filter_map(|(name, dim, ts, v)| match name.as_str() {
                "service.up" => Some(ServiceOut {
                    name: dim,
                    kind: "configured".into(),
                    running: v >= 1.0,
                    ts_ms: ts,
                }),
                // A failed unit is reported while it is failed; an old value means it recovered.
                "service.failed" if v >= 1.0 => Some(ServiceOut {
                    name: dim,
                    kind: "failed-unit".into(),
                    running: false,
                    ts_ms: ts,
                }),
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| a.running.cmp(&b.running).then(a.name.cmp(&b.name)));
        Ok(out)
    })
    .await?;
    Ok(Json(out))
}

/// One pending update of the device's latest patch report.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UpdateOut {
    pub(crate) name: String,
    pub(crate) current_version: String,
    pub(crate) new_version: String,
    /// `security`, `critical`, `other`, … as the source classifies it.
    pub(crate) classification: String,
    pub(crate) advisory_id: String,
    /// When the agent first saw it pending (its clock).
    pub(crate) first_seen_ms: i64,
    /// Whole days it has been pending.
    pub(crate) age_days: i64,
}

/// The pending updates of the device's latest patch report, oldest first.
#[utoipa::path(get, path = "/devices/{device_id}/updates", tag = "devices",
    params(("device_id" = String, Path)), responses((status = 200, body = Vec<UpdateOut>), (status = 404, body = ErrorBody)))]
pub(super) async fn updates(
    State(st): State<ConsoleState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Vec<UpdateOut>> {
    let now = now_ms();
    let out = store(&st, move |d| {
        device_in_scope(d, &id, p.tenant_id, now)?;
        let rows = d
            .pending_updates(&id)?
            .into_iter()
            .map(|u| UpdateOut {
                age_days: ((now - u.first_seen_ms) / 86_400_000).max(0),
                name: u.name,
                current_version: u.current_version,
                new_version: u.new_version,
                classification: u.classification,
                advisory_id: u.advisory_id,
                first_seen_ms: u.first_seen_ms,
            })
            .collect();
        Ok(rows)
    })
    .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct SoftwareQuery {
    /// Part of the name or publisher (case-insensitive).
    pub(crate) q: Option<String>,
    pub(crate) page: Option<u32>,
    pub(crate) per_page: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SoftwareOut {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) publisher: String,
}

/// The device's installed software (its latest inventory), by name; searchable.
#[utoipa::path(get, path = "/devices/{device_id}/software", tag = "devices",
    params(("device_id" = String, Path), SoftwareQuery),
    responses((status = 200, body = Page<SoftwareOut>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn software(
    State(st): State<ConsoleState>,
    p: Principal,
    Path(id): Path<String>,
    q: Result<Query<SoftwareQuery>, QueryRejection>,
) -> ApiResult<Page<SoftwareOut>> {
    let q = query(q)?;
    let (page, per) = paging(q.page, q.per_page)?;
    if q.q.as_ref().is_some_and(|s| s.chars().count() > 200) {
        return Err(ApiError::bad_request("query q: at most 200 characters"));
    }
    let now = now_ms();
    let out = store(&st, move |d| {
        device_in_scope(d, &id, p.tenant_id, now)?;
        let search = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let got = d.software_page(
            &id,
            search,
            PageAt {
                page,
                per_page: per,
            },
        )?;
        let items = got
            .items
            .into_iter()
            .map(|r| SoftwareOut {
                name: r.name,
                version: r.version,
                publisher: r.publisher,
            })
            .collect();
        let total = got.total;
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
