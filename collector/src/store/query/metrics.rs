//! Metric queries through a backend-neutral interface (issue 17): [`MetricQuery`],
//! what any backend answers (the conformance suite in `store/store_tests.rs`), and
//! [`SqliteMetrics`], which merges the head, the chunks and old-layout rows.

use std::collections::{BTreeMap, HashSet};

use rusqlite::Connection;

use crate::store::StoreError;
use crate::store::chunk::{self, Agg, CHUNK_MS, ChunkView, DAY_MS, TIER_1H_MS, TIER_5M_MS};
use crate::store::compact::StorageConfig;

/// The resolution a range was answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Tier {
    /// Every stored value.
    Raw,
    /// 5-minute rollups.
    FiveMinutes,
    /// 1-hour rollups.
    OneHour,
}

impl Tier {
    /// Width of one stored bucket of this tier, in ms (1 for raw values).
    pub(crate) fn width_ms(self) -> i64 {
        match self {
            Tier::Raw => 1,
            Tier::FiveMinutes => TIER_5M_MS,
            Tier::OneHour => TIER_1H_MS,
        }
    }
}

/// One series of a device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SeriesInfo {
    pub id: i64,
    pub device_id: String,
    pub name: String,
    pub dimension: String,
}

/// One raw value.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Point {
    pub ts_ms: i64,
    pub value: f64,
}

/// Aggregates of one series over `[start_ms, start_ms + step_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Bucket {
    pub start_ms: i64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: i64,
    /// The value at the latest time in the bucket.
    pub last: f64,
    /// Counter increase over the bucket, resets counted (see [`chunk::Agg::increase`]).
    pub increase: f64,
}

impl Bucket {
    /// Mean of the bucket's values.
    pub(crate) fn avg(&self) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            self.sum / self.count as f64
        }
    }
}

/// A series over a range, at a step.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SeriesRange {
    pub series: SeriesInfo,
    /// Where the answer came from (chosen by the range's length and age).
    pub tier: Tier,
    /// The bucket width actually used: the step asked for, at least the tier's width.
    pub step_ms: i64,
    /// Buckets with data, ascending; empty buckets are left out.
    pub buckets: Vec<Bucket>,
}

/// The latest value of one series.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LatestValue {
    pub series: SeriesInfo,
    pub ts_ms: i64,
    pub value: f64,
}

/// All raw values of one series over a range.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SeriesPoints {
    pub series: SeriesInfo,
    pub points: Vec<Point>,
}

/// Ranges up to this long are answered from raw values.
pub(crate) const RAW_UP_TO_MS: i64 = 48 * 3_600_000;
/// Ranges up to this long (and older than raw retention) from 5-minute rollups;
/// longer ones from 1-hour rollups.
pub(crate) const FIVE_MINUTES_UP_TO_MS: i64 = 30 * 86_400_000;

/// Reads of metric values, whatever the backend. The console and the CLI call
/// these; a second backend implements the same trait and passes the same
/// conformance suite (`conformance` in `store/store_tests.rs`).
pub trait MetricQuery {
    /// A device's series, by name then dimension.
    fn series(&self, device_id: &str) -> Result<Vec<SeriesInfo>, StoreError>;

    /// One series over `[from_ms, to_ms)` in buckets of `step_ms` (raised to the
    /// tier's width). The tier: raw up to 48 h of range, 5-minute rollups up to
    /// 30 days (1-hour rollups there too when the step is a whole number of hours),
    /// 1-hour rollups beyond; a coarser tier when the range starts before the finer
    /// tier's retention. `NoSeries` for an unknown series id.
    fn series_range(
        &self,
        series_id: i64,
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
    ) -> Result<SeriesRange, StoreError>;

    /// Every raw value of one series in `[from_ms, to_ms)`, ascending.
    fn raw_points(
        &self,
        series_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Point>, StoreError>;

    /// The latest value of each series of a device (series with no value left out).
    fn latest_values(&self, device_id: &str) -> Result<Vec<LatestValue>, StoreError>;

    /// A device's last 24 hours up to `end_ms`: every series with its raw values.
    fn device_day(&self, device_id: &str, end_ms: i64) -> Result<Vec<SeriesPoints>, StoreError>;
}

/// The SQLite implementation of [`MetricQuery`], on a (read-only is enough)
/// connection. Reads merge the head, the chunks and the not yet upgraded rows of the
/// old layout; of two values at the same instant the first stored wins, as on write.
pub struct SqliteMetrics<'c> {
    conn: &'c Connection,
    retention: StorageConfig,
    now_ms: fn() -> i64,
}

impl<'c> SqliteMetrics<'c> {
    pub fn new(conn: &'c Connection, retention: StorageConfig) -> Self {
        Self {
            conn,
            retention,
            now_ms: tandem_proto::util::now_ms,
        }
    }

    fn info(&self, series_id: i64) -> Result<SeriesInfo, StoreError> {
        use rusqlite::OptionalExtension;
        self.conn
            .prepare_cached("SELECT id, device_id, name, dimension FROM series WHERE id = ?1")?
            .query_row([series_id], row_info)
            .optional()?
            .ok_or(StoreError::NoSeries(series_id))
    }

    /// Raw values of `device` in `[from, to)`; of `only` series if given.
    fn device_points(
        &self,
        device: &str,
        only: Option<i64>,
        from: i64,
        to: i64,
    ) -> Result<BTreeMap<i64, Vec<(i64, f64)>>, StoreError> {
        // Appended in precedence order (chunks, old rows, head), then stably sorted
        // by time and deduplicated keeping the first: cheaper than a map per value.
        let mut out: BTreeMap<i64, Vec<(i64, f64)>> = BTreeMap::new();
        // A chunk's series is sorted by time: its part in range is one slice,
        // appended at once (one map lookup per series and hour, not per value).
        let extend =
            |out: &mut BTreeMap<i64, Vec<(i64, f64)>>, sid: i64, p: chunk::SeriesPoints| {
                let lo = p.ts.partition_point(|&t| t < from);
                let hi = p.ts.partition_point(|&t| t < to);
                if lo < hi {
                    let v = out.entry(sid).or_default();
                    v.extend(
                        p.ts[lo..hi]
                            .iter()
                            .copied()
                            .zip(p.values[lo..hi].iter().copied()),
                    );
                }
            };
        let mut stmt = self.conn.prepare_cached(
            "SELECT blob FROM chunks WHERE device_id = ?1 AND start_ms >= ?2 AND start_ms < ?3 ORDER BY start_ms",
        )?;
        let mut rows = stmt.query(params_from(device, chunk::floor(from, CHUNK_MS), to))?;
        match only {
            Some(id) => {
                while let Some(r) = rows.next()? {
                    let blob = r.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
                    let view = ChunkView::parse(blob).map_err(damaged)?;
                    if let Some(p) = view.series(id).map_err(damaged)? {
                        extend(&mut out, id, p);
                    }
                }
            }
            None => {
                // Every series of many hours (a device's day): decoding is most of
                // the time, so the hours are split over the cores, each part
                // decoded into its own map, and the parts appended in time order.
                let mut blobs: Vec<Vec<u8>> = Vec::new();
                while let Some(r) = rows.next()? {
                    blobs.push(r.get(0)?);
                }
                let decode =
                    |part: &[Vec<u8>]| -> Result<BTreeMap<i64, Vec<(i64, f64)>>, StoreError> {
                        let mut m = BTreeMap::new();
                        for blob in part {
                            ChunkView::parse(blob)
                                .and_then(|v| v.each(|sid, p| extend(&mut m, sid, p)))
                                .map_err(damaged)?;
                        }
                        Ok(m)
                    };
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
                let parts: Vec<Result<_, StoreError>> = if cores > 1 && blobs.len() >= 2 * cores {
                    let size = blobs.len().div_ceil(cores);
                    std::thread::scope(|s| {
                        let handles: Vec<_> = blobs
                            .chunks(size)
                            .map(|part| s.spawn(move || decode(part)))
                            .collect();
                        handles
                            .into_iter()
                            .map(|h| {
                                h.join().unwrap_or_else(|_| {
                                    Err(StoreError::Damaged("chunk decoding panicked".into()))
                                })
                            })
                            .collect()
                    })
                } else {
                    vec![decode(&blobs)]
                };
                for part in parts {
                    for (sid, mut pts) in part? {
                        out.entry(sid).or_default().append(&mut pts);
                    }
                }
            }
        }
        let mut put = |sid: i64, ts: i64, v: f64| {
            if ts >= from && ts < to && only.is_none_or(|o| o == sid) {
                out.entry(sid).or_default().push((ts, v));
            }
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT o.series_id, o.ts_ms, o.value FROM samples_old o JOIN series s ON s.id = o.series_id
             WHERE s.device_id = ?1 AND o.ts_ms >= ?2 AND o.ts_ms < ?3",
        )?;
        let mut rows = stmt.query(params_from(device, from, to))?;
        while let Some(r) = rows.next()? {
            put(r.get(0)?, r.get(1)?, r.get(2)?);
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT payload FROM head WHERE device_id = ?1 AND max_ts >= ?2 AND min_ts < ?3 ORDER BY id",
        )?;
        let mut rows = stmt.query(params_from(device, from, to))?;
        let mut vals = Vec::new();
        while let Some(r) = rows.next()? {
            vals.clear();
            let blob = r.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
            chunk::decode_head(blob, &mut vals).map_err(damaged)?;
            for v in &vals {
                put(v.series_id, v.ts_ms, v.value);
            }
        }
        for points in out.values_mut() {
            points.sort_by_key(|p| p.0);
            points.dedup_by_key(|p| p.0);
        }
        Ok(out)
    }

    fn rollups(
        &self,
        tier: Tier,
        info: &SeriesInfo,
        from: i64,
        to: i64,
    ) -> Result<Vec<Agg>, StoreError> {
        let (width, span) = match tier {
            Tier::FiveMinutes => (TIER_5M_MS, CHUNK_MS),
            _ => (TIER_1H_MS, DAY_MS),
        };
        let mut aggs = Vec::new();
        // Hours the blobs cover; the rest (not yet compacted) is rolled up from raw.
        let mut covered = HashSet::new();
        let mut stmt = self.conn.prepare_cached(
            "SELECT start_ms, blob FROM rollups WHERE tier = ?1 AND device_id = ?2
               AND start_ms >= ?3 AND start_ms < ?4 ORDER BY start_ms",
        )?;
        let mut rows = stmt.query(rusqlite::params![
            width,
            info.device_id,
            chunk::floor(from, span),
            to
        ])?;
        while let Some(r) = rows.next()? {
            let start: i64 = r.get(0)?;
            let blob = r.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
            let all = chunk::decode_rollups(blob).map_err(damaged)?;
            if tier == Tier::FiveMinutes {
                covered.insert(start);
            }
            for a in all {
                if tier == Tier::OneHour {
                    covered.insert(a.bucket_ms);
                }
                if a.series_id == info.id
                    && a.bucket_ms >= chunk::floor(from, width)
                    && a.bucket_ms < to
                {
                    aggs.push(a);
                }
            }
        }
        // Values still in the head (or the old layout) for hours no blob covers yet.
        let mut stmt = self.conn.prepare_cached(
            "SELECT min(min_ts) FROM head WHERE device_id = ?1 AND max_ts >= ?2 AND min_ts < ?3",
        )?;
        let head_from: Option<i64> =
            stmt.query_row(params_from(&info.device_id, from, to), |r| r.get(0))?;
        let old_from: Option<i64> = self.conn.query_row(
            "SELECT min(ts_ms) FROM samples_old WHERE series_id = ?1 AND ts_ms >= ?2 AND ts_ms < ?3",
            rusqlite::params![info.id, from, to],
            |r| r.get(0),
        )?;
        if let Some(start) = [head_from, old_from].into_iter().flatten().min() {
            let pts = self.device_points(&info.device_id, Some(info.id), start.max(from), to)?;
            if let Some(m) = pts.get(&info.id) {
                let mut by_hour: BTreeMap<i64, chunk::SeriesPoints> = BTreeMap::new();
                for &(t, v) in m {
                    let h = chunk::floor(t, CHUNK_MS);
                    if covered.contains(&h) {
                        continue;
                    }
                    let p = by_hour.entry(h).or_default();
                    p.ts.push(t);
                    p.values.push(v);
                }
                for p in by_hour.values() {
                    chunk::rollup(info.id, p, width, &mut aggs);
                }
            }
        }
        aggs.sort_by_key(|a| a.bucket_ms);
        Ok(aggs)
    }

    /// The tier for a range, by its length and by what retention has left.
    pub(crate) fn tier_for(&self, from_ms: i64, to_ms: i64) -> Tier {
        let now = (self.now_ms)();
        let len = to_ms - from_ms;
        let ms = |d: std::time::Duration| d.as_millis().min(i64::MAX as u128) as i64;
        if len <= RAW_UP_TO_MS && from_ms >= now - ms(self.retention.raw_retention) {
            Tier::Raw
        } else if len <= FIVE_MINUTES_UP_TO_MS
            && from_ms >= now - ms(self.retention.rollup_5m_retention)
        {
            Tier::FiveMinutes
        } else {
            Tier::OneHour
        }
    }
}

fn params_from<'a>(device: &'a str, a: i64, b: i64) -> impl rusqlite::Params + 'a {
    rusqlite::params_from_iter([
        rusqlite::types::Value::Text(device.to_owned()),
        rusqlite::types::Value::Integer(a),
        rusqlite::types::Value::Integer(b),
    ])
}

fn damaged(e: chunk::ChunkError) -> StoreError {
    StoreError::Damaged(e.to_string())
}

fn row_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<SeriesInfo> {
    Ok(SeriesInfo {
        id: r.get(0)?,
        device_id: r.get(1)?,
        name: r.get(2)?,
        dimension: r.get(3)?,
    })
}

fn to_buckets(aggs: impl IntoIterator<Item = Agg>, step: i64) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    for a in aggs {
        let start = chunk::floor(a.bucket_ms, step);
        match out.last_mut() {
            Some(b) if b.start_ms == start => {
                b.min = b.min.min(a.min);
                b.max = b.max.max(a.max);
                b.sum += a.sum;
                b.count += a.count;
                b.last = a.last;
                b.increase += a.increase;
            }
            _ => out.push(Bucket {
                start_ms: start,
                min: a.min,
                max: a.max,
                sum: a.sum,
                count: a.count,
                last: a.last,
                increase: a.increase,
            }),
        }
    }
    out
}

impl MetricQuery for SqliteMetrics<'_> {
    fn series(&self, device_id: &str) -> Result<Vec<SeriesInfo>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, device_id, name, dimension FROM series WHERE device_id = ?1 ORDER BY name, dimension",
        )?;
        Ok(stmt
            .query_map([device_id], row_info)?
            .collect::<Result<_, _>>()?)
    }

    fn series_range(
        &self,
        series_id: i64,
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
    ) -> Result<SeriesRange, StoreError> {
        let series = self.info(series_id)?;
        let tier = match self.tier_for(from_ms, to_ms) {
            // A step of whole hours is answered exactly by the 1-hour tier, which
            // has twelve times fewer buckets to decode (store2 brief: 30 days of one
            // series at 1 h steps read 30 blobs instead of 720).
            Tier::FiveMinutes if step_ms >= TIER_1H_MS && step_ms % TIER_1H_MS == 0 => {
                Tier::OneHour
            }
            t => t,
        };
        let step = step_ms.max(tier.width_ms()).max(1);
        let buckets = match tier {
            Tier::Raw => {
                let mut aggs = Vec::new();
                let pts = self.device_points(&series.device_id, Some(series_id), from_ms, to_ms)?;
                if let Some(m) = pts.get(&series_id) {
                    let p = chunk::SeriesPoints {
                        ts: m.iter().map(|p| p.0).collect(),
                        values: m.iter().map(|p| p.1).collect(),
                    };
                    chunk::rollup(series_id, &p, step, &mut aggs);
                }
                to_buckets(aggs, step)
            }
            t => to_buckets(self.rollups(t, &series, from_ms, to_ms)?, step),
        };
        Ok(SeriesRange {
            series,
            tier,
            step_ms: step,
            buckets,
        })
    }

    fn raw_points(
        &self,
        series_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Point>, StoreError> {
        let info = self.info(series_id)?;
        let pts = self.device_points(&info.device_id, Some(series_id), from_ms, to_ms)?;
        Ok(pts
            .get(&series_id)
            .map(|m| {
                m.iter()
                    .map(|&(ts_ms, value)| Point { ts_ms, value })
                    .collect()
            })
            .unwrap_or_default())
    }

    fn latest_values(&self, device_id: &str) -> Result<Vec<LatestValue>, StoreError> {
        // The newest values are in the head or in the newest chunks; an idle
        // device's may be in an older chunk or the old layout, looked up after.
        let series = self.series(device_id)?;
        let mut latest: BTreeMap<i64, (i64, f64)> = BTreeMap::new();
        fn keep(latest: &mut BTreeMap<i64, (i64, f64)>, sid: i64, ts: i64, v: f64) {
            let e = latest.entry(sid).or_insert((ts, v));
            if ts > e.0 {
                *e = (ts, v);
            }
        }
        let mut vals = Vec::new();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT payload FROM head WHERE device_id = ?1")?;
        let mut rows = stmt.query([device_id])?;
        while let Some(r) = rows.next()? {
            vals.clear();
            let blob = r.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
            chunk::decode_head(blob, &mut vals).map_err(damaged)?;
            for v in &vals {
                keep(&mut latest, v.series_id, v.ts_ms, v.value);
            }
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT blob FROM chunks WHERE device_id = ?1 ORDER BY start_ms DESC",
        )?;
        let mut rows = stmt.query([device_id])?;
        let mut seen_chunks = 0;
        while let Some(r) = rows.next()? {
            let all_found = series.iter().all(|s| latest.contains_key(&s.id));
            if seen_chunks >= 2 && all_found {
                break;
            }
            seen_chunks += 1;
            let blob = r.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
            let view = ChunkView::parse(blob).map_err(damaged)?;
            for i in 0..view.entries.len() {
                let sid = view.entries[i].series_id;
                if seen_chunks > 2 && latest.contains_key(&sid) {
                    continue;
                }
                let p = view.series_at(i).map_err(damaged)?;
                if let (Some(&t), Some(&v)) = (p.ts.last(), p.values.last()) {
                    keep(&mut latest, sid, t, v);
                }
            }
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT ts_ms, value FROM samples_old WHERE series_id = ?1 ORDER BY ts_ms DESC LIMIT 1",
        )?;
        for s in &series {
            use rusqlite::OptionalExtension;
            if let Some((t, v)) = stmt
                .query_row([s.id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
            {
                keep(&mut latest, s.id, t, v);
            }
        }
        Ok(series
            .into_iter()
            .filter_map(|s| {
                latest.get(&s.id).map(|&(ts_ms, value)| LatestValue {
                    series: s,
                    ts_ms,
                    value,
                })
            })
            .collect())
    }

    fn device_day(&self, device_id: &str, end_ms: i64) -> Result<Vec<SeriesPoints>, StoreError> {
        let series = self.series(device_id)?;
        let mut pts = self.device_points(device_id, None, end_ms - 86_400_000, end_ms)?;
        Ok(series
            .into_iter()
            .map(|s| {
                let points = pts
                    .remove(&s.id)
                    .map(|m| {
                        m.into_iter()
                            .map(|(ts_ms, value)| Point { ts_ms, value })
                            .collect()
                    })
                    .unwrap_or_default();
                SeriesPoints { series: s, points }
            })
            .collect())
    }
}
