//! The device routes: the device list (filtered, paginated), one device, its latest
//! values, one series, and a device's charts in one answer.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::api::{ApiResult, DeviceOut, Page, device_in_scope, paging, query, scope};
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::{ConsoleState, ONLINE_MS, now_ms, store};
use crate::store::console_query::{ConsoleQuery, DeviceFilter, PageAt};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct DevicesQuery {
    pub(crate) tenant: Option<String>,
    pub(crate) site: Option<String>,
    /// true: seen in the last 2 minutes; false: not.
    pub(crate) online: Option<bool>,
    /// OS family, e.g. `linux`, `windows`.
    pub(crate) os: Option<String>,
    /// Part of the host name (case-insensitive).
    pub(crate) hostname: Option<String>,
    /// Only devices with this tag (`tandem-collector device tag`).
    pub(crate) tag: Option<String>,
    pub(crate) page: Option<u32>,
    pub(crate) per_page: Option<u32>,
}

/// Devices (filtered, paginated), most recently seen first.
#[utoipa::path(get, path = "/devices", tag = "devices", params(DevicesQuery),
    responses((status = 200, body = Page<DeviceOut>), (status = 400, body = ErrorBody)))]
pub(super) async fn devices(
    State(st): State<ConsoleState>,
    p: Principal,
    q: Result<Query<DevicesQuery>, QueryRejection>,
) -> ApiResult<Page<DeviceOut>> {
    let q = query(q)?;
    let (page, per) = paging(q.page, q.per_page)?;
    let now = now_ms();
    let out = store(&st, move |d| {
        let scope = scope(d, &p, q.tenant.as_deref())?;
        let filter = DeviceFilter {
            scope,
            site: q.site.as_deref(),
            online: q.online,
            online_since_ms: now - ONLINE_MS,
            os_family: q.os.as_deref(),
            hostname: q.hostname.as_deref(),
            tag: q.tag.as_deref(),
        };
        let got = d.devices(
            &filter,
            PageAt {
                page,
                per_page: per,
            },
        )?;
        Ok(Page {
            items: got
                .items
                .into_iter()
                .map(|dev| DeviceOut::of(dev, now))
                .collect(),
            page,
            per_page: per,
            total: got.total,
        })
    })
    .await?;
    Ok(Json(out))
}

/// One device, with its patch status and inventory.
#[utoipa::path(get, path = "/devices/{device_id}", tag = "devices",
    params(("device_id" = String, Path)), responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub(super) async fn device(
    State(st): State<ConsoleState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Value> {
    let now = now_ms();
    let out = store(&st, move |d| {
        let dev = device_in_scope(d, &id, p.tenant_id, now)?;
        let patch = d.patch_status(&id)?;
        let inv = d.inventory(&id)?;
        Ok(json!({ "device": dev, "patch": patch, "inventory": inv }))
    })
    .await?;
    Ok(Json(out))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LatestOut {
    pub(crate) name: String,
    pub(crate) dimension: String,
    pub(crate) ts_ms: i64,
    pub(crate) value: f64,
}

/// The latest value of each of a device's series.
#[utoipa::path(get, path = "/devices/{device_id}/latest", tag = "devices",
    params(("device_id" = String, Path)), responses((status = 200, body = Vec<LatestOut>), (status = 404, body = ErrorBody)))]
pub(super) async fn device_latest(
    State(st): State<ConsoleState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Vec<LatestOut>> {
    let now = now_ms();
    let out = store(&st, move |d| {
        device_in_scope(d, &id, p.tenant_id, now)?;
        Ok(super::samples::latest(d, &id)?
            .into_iter()
            .map(|(name, dimension, ts_ms, value)| LatestOut {
                name,
                dimension,
                ts_ms,
                value,
            })
            .collect())
    })
    .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeriesQuery {
    /// Metric name, e.g. `cpu.usage`.
    pub(crate) metric: String,
    #[serde(default)]
    pub(crate) dimension: String,
    /// Start, Unix ms (default: `to` minus one hour).
    pub(crate) from_ms: Option<i64>,
    /// End, Unix ms, exclusive (default: now).
    pub(crate) to_ms: Option<i64>,
    /// Roll up to the mean per step (ms, at least 1000). When absent: raw points for
    /// a range of at most 6 h; a longer range is rolled up at range / 10,000 (the
    /// answer's `step_ms` says which step was used).
    pub(crate) step_ms: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SeriesOut {
    pub(crate) metric: String,
    pub(crate) dimension: String,
    pub(crate) from_ms: i64,
    pub(crate) to_ms: i64,
    pub(crate) step_ms: Option<i64>,
    /// `[time_ms, value]` pairs, oldest first.
    pub(crate) points: Vec<(i64, f64)>,
}

/// Most points one series answer carries.
const MAX_POINTS: i64 = 10_000;
/// Most series one charts answer carries (a device has about 100–150).
const MAX_CHART_SERIES: usize = 500;

/// The longest range answered with raw points when no step is asked for: 6 h of an
/// agent sampling every 5 s is 4,320 points. Longer ranges without a step are
/// rolled up, so a request without `step_ms` never reads a month of raw values.
const RAW_MAX_RANGE_MS: i64 = 6 * 3_600_000;

/// The range and step of a series query, checked: `to` defaults to now, `from` to an
/// hour before it; at most 31 days, a step of at least 1 s and no more than
/// [`MAX_POINTS`] buckets. Without a step, raw (`None`) up to [`RAW_MAX_RANGE_MS`],
/// else the step that gives [`MAX_POINTS`] buckets.
fn window(
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    step_ms: Option<i64>,
    now: i64,
) -> Result<(i64, i64, Option<i64>), ApiError> {
    let to = to_ms.unwrap_or(now);
    let from = from_ms.unwrap_or(to - 3_600_000);
    if from >= to {
        return Err(ApiError::bad_request(format!(
            "query from_ms {from}: must be before to_ms {to}"
        )));
    }
    if to - from > 31 * 86_400_000 {
        return Err(ApiError::bad_request(
            "query from_ms..to_ms: at most 31 days",
        ));
    }
    if let Some(step) = step_ms {
        if step < 1000 {
            return Err(ApiError::bad_request(format!(
                "query step_ms {step}: at least 1000"
            )));
        }
        if (to - from) / step > MAX_POINTS {
            return Err(ApiError::bad_request(format!(
                "query step_ms {step}: gives more than {MAX_POINTS} points over that range; use a larger step"
            )));
        }
    }
    let step = step_ms.or_else(|| {
        (to - from > RAW_MAX_RANGE_MS)
            .then(|| ((to - from + MAX_POINTS - 1) / MAX_POINTS).max(1000))
    });
    Ok((from, to, step))
}

/// One metric series of a device over a range, raw or rolled up.
#[utoipa::path(get, path = "/devices/{device_id}/series", tag = "devices",
    params(("device_id" = String, Path), SeriesQuery),
    responses((status = 200, body = SeriesOut), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn device_series(
    State(st): State<ConsoleState>,
    p: Principal,
    Path(id): Path<String>,
    q: Result<Query<SeriesQuery>, QueryRejection>,
) -> ApiResult<SeriesOut> {
    let q = query(q)?;
    let now = now_ms();
    let (from, to, step) = window(q.from_ms, q.to_ms, q.step_ms, now)?;
    let out = store(&st, move |d| {
        device_in_scope(d, &id, p.tenant_id, now)?;
        let points =
            super::samples::series(d, &id, &q.metric, &q.dimension, from..to, step, MAX_POINTS)?;
        Ok(SeriesOut {
            metric: q.metric,
            dimension: q.dimension,
            from_ms: from,
            to_ms: to,
            step_ms: step,
            points,
        })
    })
    .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChartsQuery {
    /// Comma-separated metric names (every dimension of each); all of the device's
    /// series when absent.
    pub(crate) metrics: Option<String>,
    /// Start, Unix ms (default: `to` minus one hour).
    pub(crate) from_ms: Option<i64>,
    /// End, Unix ms, exclusive (default: now).
    pub(crate) to_ms: Option<i64>,
    /// Roll up to the mean per step (ms, at least 1000). When absent: raw points for
    /// a range of at most 6 h; a longer range is rolled up at range / 10,000 (the
    /// answer's `step_ms` says which step was used).
    pub(crate) step_ms: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChartSeries {
    pub(crate) metric: String,
    pub(crate) dimension: String,
    /// `[time_ms, value]` pairs, oldest first.
    pub(crate) points: Vec<(i64, f64)>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChartsOut {
    pub(crate) from_ms: i64,
    pub(crate) to_ms: i64,
    pub(crate) step_ms: Option<i64>,
    pub(crate) series: Vec<ChartSeries>,
}

/// Several series of a device over one range in one answer (the device page's
/// charts), ordered by metric then dimension.
#[utoipa::path(get, path = "/devices/{device_id}/charts", tag = "devices",
    params(("device_id" = String, Path), ChartsQuery),
    responses((status = 200, body = ChartsOut), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn device_charts(
    State(st): State<ConsoleState>,
    p: Principal,
    Path(id): Path<String>,
    q: Result<Query<ChartsQuery>, QueryRejection>,
) -> ApiResult<ChartsOut> {
    let q = query(q)?;
    let now = now_ms();
    let (from, to, step) = window(q.from_ms, q.to_ms, q.step_ms, now)?;
    let metrics: Option<Vec<String>> = q
        .metrics
        .as_deref()
        .map(|m| m.split(',').map(|n| n.trim().to_owned()).collect());
    if let Some(bad) = metrics
        .iter()
        .flatten()
        .find(|n| n.is_empty() || n.len() > 200)
    {
        return Err(ApiError::bad_request(format!(
            "query metrics: {bad:?} is not a metric name (comma-separated names, e.g. cpu.usage.percent,mem.used.percent)"
        )));
    }
    let out = store(&st, move |d| {
        device_in_scope(d, &id, p.tenant_id, now)?;
        let names: Option<Vec<&str>> = metrics
            .as_ref()
            .map(|m| m.iter().map(String::as_str).collect());
        let got = super::samples::charts(d, &id, names.as_deref(), from..to, step, MAX_POINTS)?;
        if got.len() > MAX_CHART_SERIES {
            return Err(ApiError::bad_request(format!(
                "this device has {} series: name at most {MAX_CHART_SERIES} (query metrics)",
                got.len()
            )));
        }
        Ok(ChartsOut {
            from_ms: from,
            to_ms: to,
            step_ms: step,
            series: got
                .into_iter()
                .map(|(info, points)| ChartSeries {
                    metric: info.name,
                    dimension: info.dimension,
                    points,
                })
                .collect(),
        })
    })
    .await?;
    Ok(Json(out))
}

#[cfg(test)]
mod window_tests {
    use super::{MAX_POINTS, RAW_MAX_RANGE_MS, window};

    const NOW: i64 = 1_800_000_000_000;
    const DAY: i64 = 86_400_000;

    #[test]
    fn no_step_is_raw_up_to_six_hours_and_rolled_up_beyond() {
        let (from, to, step) = window(Some(NOW - RAW_MAX_RANGE_MS), None, None, NOW).unwrap();
        assert_eq!((from, to, step), (NOW - RAW_MAX_RANGE_MS, NOW, None));
        let (_, _, step) = window(Some(NOW - RAW_MAX_RANGE_MS - 1), None, None, NOW).unwrap();
        assert_eq!(step, Some(2_161), "ceil(6 h + 1 ms / 10,000)");
        let (from, to, step) = window(Some(NOW - 31 * DAY), None, None, NOW).unwrap();
        let step = step.expect("a month is rolled up");
        assert_eq!(step, 267_840);
        assert!((to - from) / step <= MAX_POINTS);
        // Short ranges never get a step below the API's own minimum of 1 s.
        let (_, _, step) = window(Some(NOW - RAW_MAX_RANGE_MS - 1), Some(NOW), None, NOW).unwrap();
        assert!(step.unwrap() >= 1000);
        // An asked-for step is kept as asked.
        let (_, _, step) = window(Some(NOW - 31 * DAY), None, Some(3_600_000), NOW).unwrap();
        assert_eq!(step, Some(3_600_000));
    }

    #[test]
    fn bad_ranges_and_steps_are_refused_with_what_was_wrong() {
        let e = window(Some(NOW), Some(NOW), None, NOW).unwrap_err();
        assert!(e.message.contains("must be before"), "{}", e.message);
        let e = window(Some(NOW - 32 * DAY), None, None, NOW).unwrap_err();
        assert!(e.message.contains("31 days"), "{}", e.message);
        let e = window(None, None, Some(10), NOW).unwrap_err();
        assert!(e.message.contains("at least 1000"), "{}", e.message);
        let e = window(Some(NOW - 31 * DAY), None, Some(1000), NOW).unwrap_err();
        assert!(
            e.message.contains("more than 10000 points"),
            "{}",
            e.message
        );
    }
}
