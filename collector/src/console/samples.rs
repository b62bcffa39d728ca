//! The console's one door to stored samples: it reads through the store's
//! backend-neutral [`MetricQuery`] interface (raw values, or rollups chosen by the
//! range), so the console does not care how samples are kept. Latest values come
//! from the same interface.

use crate::store::compact::StorageConfig;
use crate::store::console_query::ConsoleQuery;
use crate::store::query::{MetricQuery, SeriesInfo};
use crate::store::{Db, StoreError};

/// `(time_ms, value)` pairs, oldest first.
pub(crate) type Points = Vec<(i64, f64)>;

/// Points of one series of a device in `range` (Unix ms), oldest first: raw when
/// `step_ms` is `None`, else the mean per bucket of at least `step_ms` (time =
/// bucket start; the store raises the step to its tier's width for long ranges).
/// At most `limit` points. An unknown series is no points. Tiers are chosen with
/// the default retention (`StorageConfig::default()`).
pub(crate) fn series(
    db: &Db,
    device_id: &str,
    name: &str,
    dimension: &str,
    range: std::ops::Range<i64>,
    step_ms: Option<i64>,
    limit: i64,
) -> Result<Vec<(i64, f64)>, StoreError> {
    let m = db.metric_query(StorageConfig::default());
    let Some(info) = m
        .series(device_id)?
        .into_iter()
        .find(|s| s.name == name && s.dimension == dimension)
    else {
        return Ok(Vec::new());
    };
    points(&m, &info, range, step_ms, limit)
}

/// Every series of a device whose metric is in `metrics` (all of them when `None`),
/// each as [`series`] gives it, ordered by name then dimension: a whole chart page
/// in one read, the series list looked up once.
pub(crate) fn charts(
    db: &Db,
    device_id: &str,
    metrics: Option<&[&str]>,
    range: std::ops::Range<i64>,
    step_ms: Option<i64>,
    limit: i64,
) -> Result<Vec<(SeriesInfo, Points)>, StoreError> {
    let m = db.metric_query(StorageConfig::default());
    let mut infos: Vec<SeriesInfo> = m
        .series(device_id)?
        .into_iter()
        .filter(|s| metrics.is_none_or(|ms| ms.contains(&s.name.as_str())))
        .collect();
    infos.sort_by(|a, b| (&a.name, &a.dimension).cmp(&(&b.name, &b.dimension)));
    infos
        .into_iter()
        .map(|info| {
            let p = points(&m, &info, range.clone(), step_ms, limit)?;
            Ok((info, p))
        })
        .collect()
}

fn points(
    m: &impl MetricQuery,
    info: &SeriesInfo,
    range: std::ops::Range<i64>,
    step_ms: Option<i64>,
    limit: i64,
) -> Result<Vec<(i64, f64)>, StoreError> {
    let limit = usize::try_from(limit.max(0)).unwrap_or(usize::MAX);
    let mut out: Vec<(i64, f64)> = match step_ms {
        None => m
            .raw_points(info.id, range.start, range.end)?
            .into_iter()
            .map(|p| (p.ts_ms, p.value))
            .collect(),
        Some(step) => m
            .series_range(info.id, range.start, range.end, step.max(1))?
            .buckets
            .into_iter()
            .map(|b| (b.start_ms, b.avg()))
            .collect(),
    };
    out.truncate(limit);
    Ok(out)
}

/// The latest value of every series of a device: (name, dimension, ts_ms, value).
pub(crate) fn latest(
    db: &Db,
    device_id: &str,
) -> Result<Vec<(String, String, i64, f64)>, StoreError> {
    Ok(db
        .metric_query(StorageConfig::default())
        .latest_values(device_id)?
        .into_iter()
        .map(|l| (l.series.name, l.series.dimension, l.ts_ms, l.value))
        .collect())
}
