//! Background maintenance of the metric store (issue 17): compaction of the head
//! into compressed device-hour chunks with their rollups, the in-place upgrade of
//! the old row-per-value table, and retention.
//!
//! In the collector the maintenance thread only reads (a read-only connection): it
//! plans a step (decodes head rows and chunks, encodes the merged chunks and
//! rollups) and hands the step's writes to the store writer, which runs them inside
//! one of its group transactions ([`Via::Writer`]). So maintenance never takes
//! SQLite's write lock from the writer, and its writes become durable with the
//! writer's own commit. Tests and the benchmark tools write on the maintenance
//! connection itself ([`Via::Own`]). Either way every step is one short
//! transaction, so a crash at any instant leaves either the step's whole effect or
//! none of it: head rows are deleted in the same transaction that wrote their values
//! into chunks, and merging into a chunk keeps the first value per (series, instant),
//! so a repeated step can neither lose nor double a value.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::chunk::{self, Agg, CHUNK_MS, ChunkView, DAY_MS, SeriesPoints, TIER_1H_MS, TIER_5M_MS};
use super::writer::MaintenanceHandle;

/// Retention and compaction settings (`[storage]` in collector.toml).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StorageConfig {
    /// Raw values (chunks) are kept this long.
    pub raw_retention: Duration,
    /// 5-minute rollups.
    pub rollup_5m_retention: Duration,
    /// 1-hour rollups.
    pub rollup_1h_retention: Duration,
    /// How often the maintenance thread looks for work.
    pub interval: Duration,
    /// An hour is compacted once it ended this long ago (late batches of a closed
    /// hour are merged into its chunk later all the same).
    pub grace: Duration,
    /// The ceiling of compaction's pace in values/s (`compact_values_per_sec`): a
    /// backlog older than the last closed hour goes at it, steady work slower (see
    /// `run_pass_paced`).
    pub values_per_sec: u64,
    /// The ceiling of expiry's pace in chunks and rollup blobs a second
    /// (`expire_blobs_per_sec`; see [`DEFAULT_EXPIRE_BLOBS_PER_SEC`]).
    pub expire_blobs_per_sec: u64,
    /// The other tables (see [`expire_other`]).
    pub other: OtherRetention,
    /// `[store] compaction = false` turns the maintenance thread off: no
    /// compaction, no old-layout upgrade, no retention; the head only grows. For
    /// benchmarks and diagnosis (`loadgen --compaction-backlog` compares ingest with
    /// and without it), not for production.
    pub enabled: bool,
}

/// Retention of the tables besides the metric tiers (`[store] *_retention_days`).
/// Whatever its age, the latest patch report of each device (and its latest
/// successful one), the latest inventory of each device (`inventories`, never
/// expired), the latest history record of each alert instance and the delivery log
/// of a notification still pending are kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OtherRetention {
    /// Patch status reports (`patch_reports`, with their `pending_updates`).
    pub patch_reports: Duration,
    /// Programs added or removed between inventories (`inventory_changes`).
    pub inventory_changes: Duration,
    /// Alert state changes (`alert_history`).
    pub alert_history: Duration,
    /// Notification delivery attempts (`notify_log`).
    pub notify_log: Duration,
}

impl Default for OtherRetention {
    fn default() -> Self {
        Self {
            patch_reports: Duration::from_secs(365 * DAY),
            inventory_changes: Duration::from_secs(365 * DAY),
            alert_history: Duration::from_secs(365 * DAY),
            notify_log: Duration::from_secs(90 * DAY),
        }
    }
}

const DAY: u64 = 86_400;

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            raw_retention: Duration::from_secs(14 * DAY),
            rollup_5m_retention: Duration::from_secs(90 * DAY),
            rollup_1h_retention: Duration::from_secs(730 * DAY),
            interval: Duration::from_secs(60),
            grace: Duration::from_secs(300),
            values_per_sec: DEFAULT_VALUES_PER_SEC,
            expire_blobs_per_sec: DEFAULT_EXPIRE_BLOBS_PER_SEC,
            other: OtherRetention::default(),
            enabled: true,
        }
    }
}

/// The most chunks and rollup blobs a paced pass expires a second by default (while
/// it is behind; steady expiry is spread over half an hour). Expiry is
/// write-heavy (every freed page of a blob goes through the WAL and the checkpoint:
/// at about 1,300 blobs/s the collector wrote 25 MB/s more, and ingest's p99 ack
/// latency rose ×1.67 where compaction alone left it at ×1.00; docs/BENCHMARKS.md),
/// and its steady need is small: 1,000 devices retire about 49,000 blobs a
/// day (0.6/s), so 64/s is a hundred times that (ten times for 10,000 devices) and
/// catches up a retention lowered by a week on 1,000 devices in about 90 minutes.
pub const DEFAULT_EXPIRE_BLOBS_PER_SEC: u64 = 64;

/// Compaction's default ceiling: four times 50,000 values/s of ingest, so a backlog
/// is caught up at three times real time while compaction's CPU stays a small share
/// beside ingest (issue 17: at its unbounded pace, about 1.1 M values/s and 6 s of
/// CPU every 15 s, it moved ingest's p99 ack latency by ×1.6).
pub const DEFAULT_VALUES_PER_SEC: u64 = 200_000;

/// Head rows taken by one compaction step (one device).
const STEP_HEAD_ROWS: i64 = 2048;
/// Old-layout rows moved by one migration step.
const STEP_OLD_ROWS: i64 = 20_000;
/// Chunk or rollup rows expired by one retention step.
const STEP_EXPIRE_ROWS: i64 = 64;
/// Rows of the other tables expired by one retention step (small rows: a step
/// holds the write lock for about a millisecond).
pub(crate) const STEP_EXPIRE_OTHER: i64 = 500;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct PassReport {
    /// Devices whose compaction was skipped: a head row or chunk of theirs cannot be
    /// read (with why). Their rows stay where they are; the other devices go on.
    pub skipped: Vec<(String, String)>,
    pub head_rows_compacted: u64,
    /// Values those head rows held.
    pub values_compacted: u64,
    pub chunks_written: u64,
    pub old_rows_migrated: u64,
    pub chunks_expired: u64,
    pub rollups_expired: u64,
    /// Rows of the other tables expired ([`expire_other`]).
    pub other_expired: OtherExpired,
}

/// Rows expired from the other tables.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OtherExpired {
    pub patch_reports: u64,
    pub inventory_changes: u64,
    pub alert_history: u64,
    pub notify_log: u64,
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// Where a maintenance step writes.
#[derive(Clone, Copy)]
pub(crate) enum Via<'a> {
    /// A `BEGIN IMMEDIATE` transaction of the maintenance connection itself: for
    /// tests and tools, where no store writer runs beside it.
    Own,
    /// The store writer's group transactions (the collector).
    Writer(&'a MaintenanceHandle),
}

/// Runs one step's writes (`job` may read first: it runs with the write lock held).
fn write_step<T: Send + 'static>(
    conn: &mut Connection,
    via: Via<'_>,
    job: impl Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match via {
        Via::Own => {
            // IMMEDIATE: a deferred transaction that reads first could not take the
            // write lock once another connection committed in between (SQLITE_BUSY,
            // which the busy handler cannot retry).
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let v = job(&tx)?;
            tx.commit()?;
            Ok(v)
        }
        Via::Writer(w) => w.run(job),
    }
}

/// Runs every step that has work until none has, with the clock at `now_ms`.
#[cfg(test)]
pub(crate) fn run_pass(
    conn: &mut Connection,
    cfg: &StorageConfig,
    now_ms: i64,
) -> Result<PassReport, StoreError> {
    pass(conn, cfg, now_ms, None, Via::Own)
}

/// Like [`run_pass`], but paced. After each compaction step it sleeps at least as
/// long as the step took (bench7 brief: at full speed, about 1.5 M values/s and a
/// whole core, compaction moved ingest's p99 ack latency by ×1.6), and it keeps to
/// these rates. A collector that keeps up has, each hour, one hour of head rows to
/// compact (the hour that just closed) and one hour of blobs that just passed their
/// retention; it is *behind* when there is older work (after an outage, a restart
/// with a backlog, a migration, a lowered retention).
/// - A device whose compactable rows all lie in the last closed hour is compacted at
///   `pace()` values/s: [`STEADY_FACTOR`] times the ingest rate, which the
///   maintenance thread measures with [`IngestRate`]. The hour's work is so spread
///   over about 48 minutes instead of run at the ceiling for a quarter of the hour.
///   A device with older rows is caught up at the ceiling `compact_values_per_sec`.
/// - Expiry goes at the ceiling `expire_blobs_per_sec` while some blob is more than
///   its span past its retention, else it spreads the blobs due at the pass's start
///   over [`EXPIRY_SPREAD`] (at least 1 blob/s).
///
/// Issue 17 measured why: at the ceilings (200,000 values/s, 64 blobs/s) maintenance
/// moved ingest's p99 ack latency by ×1.12-1.25 on a calm disk, at the steady rates
/// not measurably (docs/BENCHMARKS.md). The writes are done by the store writer.
fn run_pass_paced(
    conn: &mut Connection,
    cfg: &StorageConfig,
    now_ms: i64,
    writer: &MaintenanceHandle,
    pace: &mut dyn FnMut() -> f64,
) -> Result<PassReport, StoreError> {
    pass(conn, cfg, now_ms, Some(pace), Via::Writer(writer))
}

/// Steady compaction runs at this multiple of the ingest rate: the hour that closed
/// is compacted in about 48 of the 60 minutes before the next one closes.
pub const STEADY_FACTOR: f64 = 1.25;
/// The least steady compaction pace (values/s): small sites, and the first
/// seconds after a start, before the ingest rate is known.
pub(crate) const STEADY_FLOOR: f64 = 10_000.0;
/// Expiry that is not behind spreads the blobs due at a pass's start over this long.
const EXPIRY_SPREAD: Duration = Duration::from_secs(1800);

/// Ingest's values/s as the store writer counts them, over a trailing window of
/// 10-20 s (two samples at least 10 s apart are kept).
#[derive(Debug, Default)]
pub(crate) struct IngestRate {
    old: Option<(std::time::Instant, u64)>,
    new: Option<(std::time::Instant, u64)>,
}

impl IngestRate {
    /// Takes the counter's value `total` at `at` and returns the rate since the
    /// older kept sample, once that is at least 5 s old.
    pub(crate) fn observe(&mut self, at: std::time::Instant, total: u64) -> Option<f64> {
        match self.new {
            None => {
                self.old = Some((at, total));
                self.new = Some((at, total));
            }
            Some((t, _)) if at.duration_since(t) >= Duration::from_secs(10) => {
                self.old = self.new;
                self.new = Some((at, total));
            }
            Some(_) => {}
        }
        let (t0, v0) = self.old?;
        let secs = at.duration_since(t0).as_secs_f64();
        (secs >= 5.0).then(|| total.saturating_sub(v0) as f64 / secs)
    }

    /// The steady compaction pace for ingest counted `total` at `at` (see [`Pace`]).
    pub(crate) fn steady_pace(&mut self, at: std::time::Instant, total: u64) -> f64 {
        self.observe(at, total)
            .map_or(STEADY_FLOOR, |r| (r * STEADY_FACTOR).max(STEADY_FLOOR))
    }
}

/// A pass: the old-layout upgrade, then compaction with retention steps between its
/// steps, then whatever retention is left and the other tables. `pace` (the steady
/// compaction pace in values/s, asked before each step) makes it paced; `None` runs
/// every step at once (tests, tools).
fn pass(
    conn: &mut Connection,
    cfg: &StorageConfig,
    now_ms: i64,
    mut pace: Option<&mut dyn FnMut() -> f64>,
    via: Via<'_>,
) -> Result<PassReport, StoreError> {
    let mut report = PassReport::default();
    loop {
        let n = migrate_step(conn, via)?;
        report.old_rows_migrated += n;
        if n == 0 {
            break;
        }
    }
    let cutoff = chunk::floor(now_ms - ms(cfg.grace), CHUNK_MS);
    // Each device with its oldest compactable row: one older than the last closed
    // hour means it is behind (see run_pass_paced).
    let devices: Vec<(String, i64)> = {
        let mut stmt = conn.prepare(
            "SELECT device_id, min(max_ts) FROM head WHERE max_ts < ?1 GROUP BY device_id",
        )?;
        stmt.query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?
    };
    let steady_from = cutoff - CHUNK_MS;
    // Retention steps go between the compaction steps, so a long compaction
    // backlog (after an outage, or while a large old database migrates) never holds
    // back the expiry that keeps the disk from filling.
    let mut expiring = true;
    let started = std::time::Instant::now();
    let ceiling = cfg.values_per_sec.max(1) as f64;
    let blob_rate = if pace.is_some() {
        expiry_rate(conn, cfg, now_ms)?
    } else {
        f64::INFINITY
    };
    // Steady expiry (a few blobs a second) in steps of about a second's blobs per
    // table, not a burst of 64 every minute or two.
    let expire_rows = (blob_rate.ceil() as i64).clamp(1, STEP_EXPIRE_ROWS);
    // How long until the next expiry step is due (at most `blob_rate` blobs a second).
    let expiry_wait = |r: &PassReport| {
        let blobs = (r.chunks_expired + r.rollups_expired) as f64;
        Duration::from_secs_f64(blobs / blob_rate).saturating_sub(started.elapsed())
    };
    // When the compaction done so far is due at its paces.
    let mut due = Duration::ZERO;
    for (device, oldest) in devices {
        let behind = oldest < steady_from;
        loop {
            let t = std::time::Instant::now();
            let (rows, chunks, values) = match step(conn, via, &device, cutoff) {
                Ok(done) => done,
                // One device's damaged row or chunk must not hold back the others'
                // compaction, nor the retention between their steps.
                Err(StoreError::Damaged(why)) => {
                    report.skipped.push((device.clone(), why));
                    break;
                }
                Err(e) => return Err(e),
            };
            if expiring && expiry_wait(&report).is_zero() {
                let (c, r, more) = expire_step(conn, via, cfg, now_ms, expire_rows)?;
                report.chunks_expired += c;
                report.rollups_expired += r;
                expiring = more;
            }
            report.values_compacted += values;
            if let Some(steady) = pace.as_mut() {
                // At most half of the time (a rest as long as the step), and no
                // faster than the device's pace over the pass.
                let rate = if behind {
                    ceiling
                } else {
                    steady().clamp(1.0, ceiling)
                };
                due += Duration::from_secs_f64(values as f64 / rate);
                let rest = t.elapsed().max(due.saturating_sub(started.elapsed()));
                std::thread::sleep(rest);
            }
            report.head_rows_compacted += rows;
            report.chunks_written += chunks;
            if rows < STEP_HEAD_ROWS as u64 {
                break;
            }
        }
    }
    while expiring {
        std::thread::sleep(expiry_wait(&report));
        let (c, r, more) = expire_step(conn, via, cfg, now_ms, expire_rows)?;
        report.chunks_expired += c;
        report.rollups_expired += r;
        expiring = more;
    }
    report.other_expired = expire_other(conn, via, &cfg.other, now_ms)?;
    Ok(report)
}

/// Moves up to `STEP_HEAD_ROWS` head rows of `device` whose samples all precede
/// `cutoff` into their device-hour chunks and rollups, in one transaction of `conn`.
/// Returns (head rows moved, chunks written). For tools and tests: the collector's
/// maintenance thread has the store writer do the writes (see [`Via`]).
pub fn compact_step(
    conn: &mut Connection,
    device: &str,
    cutoff: i64,
) -> Result<(u64, u64), StoreError> {
    step(conn, Via::Own, device, cutoff).map(|(rows, chunks, _)| (rows, chunks))
}

/// Times a step is planned again when what it was planned from changed before its
/// writes ran (a device removed meanwhile: the next plan finds nothing).
const STALE_TRIES: usize = 3;

/// One compaction step. The work is read and computed first, outside any write
/// lock (decoding the head rows and existing chunks, encoding the merged chunks and
/// rollups); the writes then run only if what was read is unchanged (the head rows
/// still there, the chunk and day-rollup blobs byte-equal), else the step is planned
/// again. The ingest writer so never waits for the encoding (bench7 brief).
/// Returns (head rows moved, chunks written, values moved).
fn step(
    conn: &mut Connection,
    via: Via<'_>,
    device: &str,
    cutoff: i64,
) -> Result<(u64, u64, u64), StoreError> {
    for _ in 0..STALE_TRIES {
        let plan = {
            let tx = conn.transaction()?;
            let plan = plan_step(&tx, device, cutoff)?;
            tx.commit()?;
            plan
        };
        if plan.ids.is_empty() {
            return Ok((0, 0, 0));
        }
        let moved = (plan.ids.len() as u64, plan.chunks.len() as u64, plan.values);
        let dev = device.to_owned();
        let applied = write_step(conn, via, move |tx| {
            if !still_current(tx, &dev, &plan)? {
                return Ok(false);
            }
            apply_plan(tx, &dev, &plan)?;
            Ok(true)
        })?;
        if applied {
            return Ok(moved);
        }
    }
    Err(StoreError::CommitFailed(format!(
        "device {device}: its head rows or chunks changed under {STALE_TRIES} compaction attempts in a row"
    )))
}

/// What one compaction step writes, and the blobs it was computed from.
struct StepPlan {
    /// Head rows taken.
    ids: Vec<i64>,
    /// Values they hold.
    values: u64,
    /// Per hour: the chunk as read (None: none yet), the merged chunk, its values,
    /// and the hour's 5-minute rollup blob with its bucket count.
    chunks: Vec<HourPlan>,
    /// Per day start: the 1-hour rollup blob as read, the new one, its buckets.
    days: BTreeMap<i64, DayPlan>,
}

/// A day's 1-hour rollup blob: as read (None: none yet), as it will be, its buckets.
type DayPlan = (Option<Vec<u8>>, Vec<u8>, i64);

struct HourPlan {
    hour: i64,
    read: Option<Vec<u8>>,
    blob: Vec<u8>,
    n_values: i64,
    r5: Vec<u8>,
    r5_buckets: i64,
}

/// Reads the head rows of one step and computes its chunks and rollups (no writes).
fn plan_step(conn: &Connection, device: &str, cutoff: i64) -> Result<StepPlan, StoreError> {
    let mut ids = Vec::new();
    let mut values = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT id, payload FROM head WHERE device_id = ?1 AND max_ts < ?2 ORDER BY id LIMIT ?3",
        )?;
        let mut rows = stmt.query(params![device, cutoff, STEP_HEAD_ROWS])?;
        while let Some(r) = rows.next()? {
            ids.push(r.get::<_, i64>(0)?);
            let payload: Vec<u8> = r.get(1)?;
            chunk::decode_head(&payload, &mut values).map_err(|e| damaged(device, &e))?;
        }
    }
    let mut plan = StepPlan {
        ids,
        values: values.len() as u64,
        chunks: Vec::new(),
        days: BTreeMap::new(),
    };
    if plan.ids.is_empty() {
        return Ok(plan);
    }
    // New values by hour, in arrival order (the first of equal instants wins).
    let mut by_hour: BTreeMap<i64, Vec<chunk::Value>> = BTreeMap::new();
    for v in values {
        by_hour
            .entry(chunk::floor(v.ts_ms, CHUNK_MS))
            .or_default()
            .push(v);
    }
    // The 1-hour tier keeps a device-day per blob: each hour replaces its buckets.
    let mut day_rows: BTreeMap<i64, (Option<Vec<u8>>, Vec<Agg>)> = BTreeMap::new();
    for (hour, new) in by_hour {
        let (hp, r1) = merge_hour(conn, device, hour, &new)?;
        plan.chunks.push(hp);
        let day = chunk::floor(hour, DAY_MS);
        let rows = match day_rows.entry(day) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let read = read_blob(conn, DAY_ROLLUP_SQL, params![TIER_1H_MS, device, day])?;
                let rows = match &read {
                    Some(b) => chunk::decode_rollups(b).map_err(|e| damaged(device, &e))?,
                    None => Vec::new(),
                };
                e.insert((read, rows))
            }
        };
        rows.1.retain(|a| a.bucket_ms != hour);
        rows.1.extend(r1);
    }
    for (day, (read, mut rows)) in day_rows {
        rows.sort_by_key(|a| (a.series_id, a.bucket_ms));
        let blob = chunk::encode_rollups(&rows).map_err(|e| damaged(device, &e))?;
        plan.days.insert(day, (read, blob, rows.len() as i64));
    }
    Ok(plan)
}

const CHUNK_SQL: &str = "SELECT blob FROM chunks WHERE device_id = ?1 AND start_ms = ?2";
const DAY_ROLLUP_SQL: &str =
    "SELECT blob FROM rollups WHERE tier = ?1 AND device_id = ?2 AND start_ms = ?3";

fn read_blob(
    conn: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .prepare_cached(sql)?
        .query_row(p, |r| r.get(0))
        .optional()?)
}

/// Whether what `plan` was computed from is still in the database (called inside
/// the write transaction).
fn still_current(conn: &Connection, device: &str, plan: &StepPlan) -> Result<bool, StoreError> {
    {
        let mut head = conn.prepare_cached("SELECT 1 FROM head WHERE id = ?1")?;
        for id in &plan.ids {
            if head.query_row([id], |_| Ok(())).optional()?.is_none() {
                return Ok(false);
            }
        }
    }
    for h in &plan.chunks {
        if read_blob(conn, CHUNK_SQL, params![device, h.hour])? != h.read {
            return Ok(false);
        }
    }
    for (day, (read, _, _)) in &plan.days {
        if read_blob(conn, DAY_ROLLUP_SQL, params![TIER_1H_MS, device, day])? != *read {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Writes the chunks and rollups of `plan` and deletes its head rows.
fn apply_plan(tx: &Connection, device: &str, plan: &StepPlan) -> Result<(), StoreError> {
    for h in &plan.chunks {
        tx.prepare_cached(
            "INSERT INTO chunks (device_id, start_ms, n_values, blob) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (device_id, start_ms) DO UPDATE SET n_values = excluded.n_values, blob = excluded.blob",
        )?
        .execute(params![device, h.hour, h.n_values, h.blob])?;
        write_rollup_blob(tx, TIER_5M_MS, device, h.hour, &h.r5, h.r5_buckets)?;
    }
    for (day, (_, blob, n)) in &plan.days {
        write_rollup_blob(tx, TIER_1H_MS, device, *day, blob, *n)?;
    }
    let mut del = tx.prepare_cached("DELETE FROM head WHERE id = ?1")?;
    for id in &plan.ids {
        del.execute([id])?;
    }
    Ok(())
}

fn damaged(device: &str, e: &chunk::ChunkError) -> StoreError {
    StoreError::Damaged(format!("device {device}: {e}"))
}

/// Merges `new` values into the chunk of (`device`, `hour`) — existing values first,
/// so a value seen again (a repeated step, a live copy) is kept once — and computes
/// that hour's rollups from the merged chunk: the 5-minute blob, and the 1-hour
/// buckets for the day blob.
fn merge_hour(
    conn: &Connection,
    device: &str,
    hour: i64,
    new: &[chunk::Value],
) -> Result<(HourPlan, Vec<Agg>), StoreError> {
    let existing = read_blob(conn, CHUNK_SQL, params![device, hour])?;
    let mut series: BTreeMap<i64, BTreeMap<i64, f64>> = BTreeMap::new();
    if let Some(blob) = &existing {
        let all = ChunkView::parse(blob)
            .and_then(|v| v.all())
            .map_err(|e| damaged(device, &e))?;
        for (id, p) in all {
            let s = series.entry(id).or_default();
            for (t, v) in p.ts.into_iter().zip(p.values) {
                s.entry(t).or_insert(v);
            }
        }
    }
    for v in new {
        series
            .entry(v.series_id)
            .or_default()
            .entry(v.ts_ms)
            .or_insert(v.value);
    }
    let points: BTreeMap<i64, SeriesPoints> = series
        .into_iter()
        .map(|(id, m)| {
            let (ts, values) = m.into_iter().unzip();
            (id, SeriesPoints { ts, values })
        })
        .collect();
    let n_values: usize = points.values().map(|p| p.ts.len()).sum();
    let blob = chunk::encode_chunk(&points).map_err(|e| damaged(device, &e))?;
    // Rollups of this hour, from all of its raw values.
    let mut r5 = Vec::new();
    let mut r1 = Vec::new();
    for (id, p) in &points {
        chunk::rollup(*id, p, TIER_5M_MS, &mut r5);
        chunk::rollup(*id, p, TIER_1H_MS, &mut r1);
    }
    let r5_blob = chunk::encode_rollups(&r5).map_err(|e| damaged(device, &e))?;
    Ok((
        HourPlan {
            hour,
            read: existing,
            blob,
            n_values: n_values as i64,
            r5: r5_blob,
            r5_buckets: r5.len() as i64,
        },
        r1,
    ))
}

fn write_rollup_blob(
    tx: &Connection,
    tier: i64,
    device: &str,
    start: i64,
    blob: &[u8],
    n_buckets: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO rollups (tier, device_id, start_ms, n_buckets, blob) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (tier, device_id, start_ms) DO UPDATE SET n_buckets = excluded.n_buckets, blob = excluded.blob",
    )?
    .execute(params![tier, device, start, n_buckets, blob])?;
    Ok(())
}

/// Moves up to `STEP_OLD_ROWS` rows of the old row-per-value table (`samples_old`,
/// issue 17 item 4) into the head, one head row per series run, in one transaction;
/// compaction then takes them into chunks like any batch. Returns the rows moved
/// (0: the upgrade is complete).
pub(crate) fn migrate_step(conn: &mut Connection, via: Via<'_>) -> Result<u64, StoreError> {
    write_step(conn, via, migrate_rows)
}

fn migrate_rows(tx: &Connection) -> Result<u64, StoreError> {
    let rows: Vec<(i64, i64, f64, String)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT o.series_id, o.ts_ms, o.value, coalesce(s.device_id, '')
             FROM samples_old o LEFT JOIN series s ON s.id = o.series_id
             ORDER BY o.series_id, o.ts_ms LIMIT ?1",
        )?;
        stmt.query_map([STEP_OLD_ROWS], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_, _>>()?
    };
    let Some(&(last_sid, last_ts, _, _)) = rows.last() else {
        return Ok(0);
    };
    {
        let mut ins = tx.prepare_cached(
            "INSERT INTO head (device_id, min_ts, max_ts, n_values, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for run in rows.chunk_by(|a, b| {
            a.0 == b.0 && chunk::floor(a.1, CHUNK_MS) == chunk::floor(b.1, CHUNK_MS)
        }) {
            let (sid, device) = (run[0].0, &run[0].3);
            let samples: Vec<(i64, [f64; 1])> = run.iter().map(|r| (r.1, [r.2])).collect();
            let refs: Vec<(i64, &[f64])> = samples.iter().map(|(t, v)| (*t, &v[..])).collect();
            let payload = chunk::encode_head(&[sid], &refs);
            ins.execute(params![
                device,
                run[0].1,
                run[run.len() - 1].1,
                run.len() as i64,
                payload
            ])?;
        }
    }
    let moved = tx.execute(
        "DELETE FROM samples_old WHERE (series_id, ts_ms) <= (?1, ?2)",
        params![last_sid, last_ts],
    )?;
    Ok(moved as u64)
}

/// Expires whole chunks and rollup blobs older than their tier's retention, a few
/// rows per transaction (never one long DELETE that would stall the writer).
/// Returns (chunks expired, rollup blobs expired). Writes on `conn` (tools, tests).
pub fn expire(
    conn: &mut Connection,
    cfg: &StorageConfig,
    now_ms: i64,
) -> Result<(u64, u64), StoreError> {
    let (mut chunks, mut rollups) = (0, 0);
    loop {
        let (c, r, more) = expire_step(conn, Via::Own, cfg, now_ms, STEP_EXPIRE_ROWS)?;
        chunks += c;
        rollups += r;
        if !more {
            return Ok((chunks, rollups));
        }
    }
}

/// One bounded step of [`expire`]: up to `limit` (at most [`STEP_EXPIRE_ROWS`])
/// chunks and as many blobs of each rollup tier, in one transaction.
/// Returns (chunks expired, rollup blobs expired, whether a table may have more).
fn expire_step(
    conn: &mut Connection,
    via: Via<'_>,
    cfg: &StorageConfig,
    now_ms: i64,
    limit: i64,
) -> Result<(u64, u64, bool), StoreError> {
    let (raw_before, r5_before, r1_before) = expiry_bounds(cfg, now_ms);
    write_step(conn, via, move |tx| {
        expire_blobs(tx, raw_before, r5_before, r1_before, limit)
    })
}

/// The newest start of a raw chunk, a 5-minute rollup blob (an hour) and a 1-hour
/// rollup blob (a day) that has expired: a blob goes once all of its span is older
/// than its tier's retention.
fn expiry_bounds(cfg: &StorageConfig, now_ms: i64) -> (i64, i64, i64) {
    (
        now_ms - ms(cfg.raw_retention) - CHUNK_MS,
        now_ms - ms(cfg.rollup_5m_retention) - CHUNK_MS,
        now_ms - ms(cfg.rollup_1h_retention) - DAY_MS,
    )
}

/// A paced pass's expiry rate in blobs/s (see [`run_pass_paced`]): the ceiling
/// `expire_blobs_per_sec` when a blob is more than its span past its retention,
/// else the blobs due spread over [`EXPIRY_SPREAD`], at least 1/s. Index range
/// probes only (the count stops at what the ceiling would expire in the spread).
fn expiry_rate(conn: &Connection, cfg: &StorageConfig, now_ms: i64) -> Result<f64, StoreError> {
    let ceiling = cfg.expire_blobs_per_sec.max(1) as f64;
    let (raw, r5, r1) = expiry_bounds(cfg, now_ms);
    let behind = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM chunks WHERE start_ms <= ?1)
                 OR EXISTS (SELECT 1 FROM rollups WHERE tier = ?2 AND start_ms <= ?3)
                 OR EXISTS (SELECT 1 FROM rollups WHERE tier = ?4 AND start_ms <= ?5)",
        )?
        .query_row(
            params![
                raw - CHUNK_MS,
                TIER_5M_MS,
                r5 - CHUNK_MS,
                TIER_1H_MS,
                r1 - DAY_MS
            ],
            |r| r.get::<_, bool>(0),
        )?;
    if behind {
        return Ok(ceiling);
    }
    let bound = (ceiling * EXPIRY_SPREAD.as_secs_f64()) as i64;
    let due: i64 = conn
        .prepare_cached(
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM chunks WHERE start_ms <= ?1 LIMIT ?6))
                  + (SELECT count(*) FROM (SELECT 1 FROM rollups WHERE tier = ?2 AND start_ms <= ?3 LIMIT ?6))
                  + (SELECT count(*) FROM (SELECT 1 FROM rollups WHERE tier = ?4 AND start_ms <= ?5 LIMIT ?6))",
        )?
        .query_row(
            params![raw, TIER_5M_MS, r5, TIER_1H_MS, r1, bound],
            |r| r.get(0),
        )?;
    Ok((due as f64 / EXPIRY_SPREAD.as_secs_f64()).clamp(1.0, ceiling))
}

fn expire_blobs(
    conn: &Connection,
    raw_before: i64,
    r5_before: i64,
    r1_before: i64,
    limit: i64,
) -> Result<(u64, u64, bool), StoreError> {
    let chunks = conn
        .prepare_cached(
            "DELETE FROM chunks WHERE id IN (SELECT id FROM chunks WHERE start_ms <= ?1 LIMIT ?2)",
        )?
        .execute(params![raw_before, limit])? as u64;
    let mut more = chunks == limit as u64;
    let mut rollups = 0;
    for (tier, before) in [(TIER_5M_MS, r5_before), (TIER_1H_MS, r1_before)] {
        let n = conn
            .prepare_cached(
                "DELETE FROM rollups WHERE id IN
                   (SELECT id FROM rollups WHERE tier = ?1 AND start_ms <= ?2 LIMIT ?3)",
            )?
            .execute(params![tier, before, limit])? as u64;
        rollups += n;
        more |= n == limit as u64;
    }
    Ok((chunks, rollups, more))
}

/// Deletes, in bounded transactions, the rows that `delete` (a statement taking the
/// cutoff as ?1 and the batch size as ?2) finds, until a step deletes less than a
/// full batch. Returns the rows deleted.
fn expire_table(
    conn: &mut Connection,
    via: Via<'_>,
    delete: &'static str,
    cutoff: i64,
) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let n = write_step(conn, via, move |tx| {
            Ok(tx
                .prepare_cached(delete)?
                .execute(params![cutoff, STEP_EXPIRE_OTHER])? as u64)
        })?;
        total += n;
        if n < STEP_EXPIRE_OTHER as u64 {
            return Ok(total);
        }
    }
}

/// Patch reports older than `cutoff`, [`STEP_EXPIRE_OTHER`] a transaction, with the
/// updates they listed; each device's latest report and latest successful one stay.
fn expire_patch_reports(
    conn: &mut Connection,
    via: Via<'_>,
    cutoff: i64,
) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let n = write_step(conn, via, move |tx| expire_patch_batch(tx, cutoff))?;
        total += n;
        if n < STEP_EXPIRE_OTHER as u64 {
            return Ok(total);
        }
    }
}

/// One batch of [`expire_patch_reports`]; it reads before it deletes, with the
/// write lock held.
fn expire_patch_batch(tx: &Connection, cutoff: i64) -> Result<u64, StoreError> {
    {
        let keys: Vec<(String, i64)> = tx
            .prepare_cached(
                "SELECT p.device_id, p.seq FROM patch_reports p
                 WHERE p.time_ms < ?1
                   AND p.seq < (SELECT max(seq) FROM patch_reports l WHERE l.device_id = p.device_id)
                   AND p.seq IS NOT (SELECT max(seq) FROM patch_reports l
                                     WHERE l.device_id = p.device_id AND l.error = '')
                 LIMIT ?2",
            )?
            .query_map(params![cutoff, STEP_EXPIRE_OTHER], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        {
            let mut updates = tx.prepare_cached(
                "DELETE FROM pending_updates WHERE device_id = ?1 AND report_seq = ?2",
            )?;
            let mut report =
                tx.prepare_cached("DELETE FROM patch_reports WHERE device_id = ?1 AND seq = ?2")?;
            for (device, seq) in &keys {
                updates.execute(params![device, seq])?;
                report.execute(params![device, seq])?;
            }
        }
        Ok(keys.len() as u64)
    }
}

/// Expires rows of the tables besides the metric tiers that are older than their
/// retention, in transactions of at most [`STEP_EXPIRE_OTHER`] rows each, so the
/// ingest writer never waits behind a long DELETE. Kept whatever their age: each
/// device's latest patch report and latest successful one (what the console and
/// the patch-age alerts show), each alert instance's latest history record, the log
/// of a delivery still pending. `inventories` holds only the latest inventory of
/// each device and is never expired.
pub(crate) fn expire_other(
    conn: &mut Connection,
    via: Via<'_>,
    cfg: &OtherRetention,
    now_ms: i64,
) -> Result<OtherExpired, StoreError> {
    let before = |d: Duration| now_ms.saturating_sub(ms(d));
    let patch_reports = expire_patch_reports(conn, via, before(cfg.patch_reports))?;
    let inventory_changes = expire_table(
        conn,
        via,
        "DELETE FROM inventory_changes WHERE rowid IN
           (SELECT rowid FROM inventory_changes WHERE time_ms < ?1 LIMIT ?2)",
        before(cfg.inventory_changes),
    )?;
    let alert_history = expire_table(
        conn,
        via,
        "DELETE FROM alert_history WHERE id IN
           (SELECT h.id FROM alert_history h WHERE h.at_ms < ?1
              AND h.at_ms < (SELECT max(at_ms) FROM alert_history l WHERE l.instance_id = h.instance_id)
            LIMIT ?2)",
        before(cfg.alert_history),
    )?;
    let notify_log = expire_table(
        conn,
        via,
        "DELETE FROM notify_log WHERE id IN
           (SELECT l.id FROM notify_log l JOIN notify_outbox o ON o.id = l.outbox_id
            WHERE l.at_ms < ?1 AND o.status <> 'pending' LIMIT ?2)",
        before(cfg.notify_log),
    )?;
    Ok(OtherExpired {
        patch_reports,
        inventory_changes,
        alert_history,
        notify_log,
    })
}

/// Starts the maintenance thread on its own read-only connection to `db`; its
/// writes go to the store writer through `writer`. It runs a pass at start and
/// every `cfg.interval`, and stops when `stop` is dropped or sent to, or when the
/// writer has stopped.
pub(crate) fn spawn(
    db: &Path,
    cfg: StorageConfig,
    stop: std::sync::mpsc::Receiver<()>,
    writer: MaintenanceHandle,
) -> Result<std::thread::JoinHandle<()>, StoreError> {
    if !cfg.enabled {
        tracing::warn!(
            "store maintenance is off ([store] compaction = false): no compaction, no retention"
        );
        return std::thread::Builder::new()
            .name("store-compact".into())
            .spawn(move || {
                let _ = stop.recv();
            })
            .map_err(|e| {
                StoreError::CommitFailed(format!("cannot start the store maintenance thread: {e}"))
            });
    }
    let mut conn = super::open_read_only(db)?;
    std::thread::Builder::new()
        .name("store-compact".into())
        .spawn(move || {
            // Below ingest on a busy machine (bench7 brief): this thread's nice +10
            // (on Linux a thread's own); the writer and the network threads keep theirs.
            #[cfg(unix)]
            if let Err(e) = rustix::process::nice(10) {
                tracing::debug!(error = %e, "cannot lower the maintenance thread's priority");
            }
            let mut warned = HashSet::new();
            let mut damaged = HashSet::new();
            // Kept across passes: a pass may last most of an hour.
            let mut ingest = IngestRate::default();
            loop {
                let now = tandem_proto::util::now_ms();
                let t0 = std::time::Instant::now();
                let mut pace =
                    || ingest.steady_pace(std::time::Instant::now(), writer.values_stored());
                let pass = run_pass_paced(&mut conn, &cfg, now, &writer, &mut pace);
                match pass {
                    // A skipped device makes the report differ from the default.
                    Ok(r) if r != PassReport::default() => {
                        for (device, why) in &r.skipped {
                            // Said once per device (the pass retries it every interval).
                            if damaged.insert(device.clone()) {
                                tracing::error!(
                                    device = %device,
                                    error = %why,
                                    "compaction skips this device: some of its stored data cannot be read; its head rows are kept as they are"
                                );
                            }
                        }
                        tracing::info!(
                            devices_skipped = r.skipped.len() as u64,
                            took_ms = t0.elapsed().as_millis() as u64,
                            head_rows = r.head_rows_compacted,
                            values = r.values_compacted,
                            chunks = r.chunks_written,
                            old_rows_migrated = r.old_rows_migrated,
                            chunks_expired = r.chunks_expired,
                            rollups_expired = r.rollups_expired,
                            patch_reports_expired = r.other_expired.patch_reports,
                            inventory_changes_expired = r.other_expired.inventory_changes,
                            alert_history_expired = r.other_expired.alert_history,
                            notify_log_expired = r.other_expired.notify_log,
                            "store maintenance pass"
                        );
                    }
                    Ok(_) => {}
                    // The collector is stopping; whatever step was queued is committed.
                    Err(StoreError::WriterGone) => break,
                    Err(e) => {
                        // With its causes ("database error: database is locked").
                        let mut msg = e.to_string();
                        let mut src = std::error::Error::source(&e);
                        while let Some(c) = src {
                            msg.push_str(&format!(": {c}"));
                            src = c.source();
                        }
                        // Said once per distinct error, then retried each interval.
                        if warned.insert(msg.clone()) {
                            tracing::error!(error = %msg, "store maintenance failed; retrying");
                        }
                    }
                }
                match stop.recv_timeout(cfg.interval) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => break,
                }
            }
        })
        .map_err(|e| {
            StoreError::CommitFailed(format!("cannot start the store maintenance thread: {e}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A steady pace above every ceiling: for passes whose work is all behind.
    fn at_ceiling() -> f64 {
        f64::MAX
    }
    use std::sync::atomic::{AtomicBool, Ordering};

    fn head_row(conn: &Connection, device: &str, ids: &[i64], ts: i64) {
        let vals: Vec<f64> = ids.iter().map(|&i| (ts / 1000 + i) as f64).collect();
        conn.execute(
            "INSERT INTO head (device_id, min_ts, max_ts, n_values, payload) VALUES (?1, ?2, ?2, ?3, ?4)",
            params![device, ts, ids.len() as i64, chunk::encode_head(ids, &[(ts, &vals)])],
        )
        .unwrap();
    }

    /// Retention does not wait for the end of a long compaction backlog: its steps
    /// go between the compaction steps. A paced pass over ten devices' backlog takes
    /// over a second here (10,000 values/s); another connection watching the file
    /// sees the expired chunks gone while head rows are still waiting.
    #[test]
    fn retention_runs_between_compaction_steps_not_after_the_whole_backlog() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = crate::store::open(&path).unwrap();
        let now = tandem_proto::util::now_ms();
        let hour = chunk::floor(now, CHUNK_MS) - 3 * CHUNK_MS;
        let ids: Vec<i64> = (1..=50).collect();
        for d in 0..10 {
            for k in 0..30 {
                head_row(&conn, &format!("d{d}"), &ids, hour + k * 10_000);
            }
        }
        let old = chunk::floor(now, CHUNK_MS) - 20 * DAY_MS;
        for k in 0..10 {
            conn.execute(
                "INSERT INTO chunks (device_id, start_ms, n_values, blob) VALUES ('old', ?1, 1, x'00')",
                [old + k * CHUNK_MS],
            )
            .unwrap();
        }
        let watcher = std::thread::spawn(move || {
            let c = crate::store::open_read_only(&path).unwrap();
            let n = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
            let t = std::time::Instant::now();
            while t.elapsed() < Duration::from_secs(60) {
                if n("SELECT count(*) FROM chunks WHERE device_id = 'old'") == 0 {
                    return n("SELECT count(*) FROM head");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            panic!("the expired chunks were never dropped");
        });
        let cfg = StorageConfig {
            values_per_sec: 10_000,
            ..StorageConfig::default()
        };
        let r = pass(&mut conn, &cfg, now, Some(&mut at_ceiling), Via::Own).unwrap();
        assert_eq!((r.head_rows_compacted, r.chunks_expired), (300, 10));
        let head_left = watcher.join().unwrap();
        assert!(
            head_left > 0,
            "the expired chunks waited for the whole compaction backlog"
        );
    }

    /// A head row that cannot be decoded stops only its own device's compaction:
    /// the pass compacts the other devices (whatever their order) and reports the
    /// skipped one, whose row stays in the head as it is.
    #[test]
    fn a_device_with_an_unreadable_head_row_is_skipped_and_the_others_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        let now = tandem_proto::util::now_ms();
        let hour = chunk::floor(now, CHUNK_MS) - 3 * CHUNK_MS;
        let ids: Vec<i64> = (1..=5).collect();
        for d in ["a", "m", "z"] {
            for k in 0..3 {
                head_row(&conn, d, &ids, hour + k * 10_000);
            }
        }
        conn.execute(
            "INSERT INTO head (device_id, min_ts, max_ts, n_values, payload) VALUES ('m', ?1, ?1, 5, x'00ff00ff')",
            [hour],
        )
        .unwrap();
        let r = run_pass(&mut conn, &StorageConfig::default(), now).unwrap();
        assert_eq!(r.skipped.len(), 1, "{r:?}");
        assert_eq!(r.skipped[0].0, "m");
        assert!(!r.skipped[0].1.is_empty());
        let n = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(n("SELECT count(*) FROM head WHERE device_id <> 'm'"), 0);
        assert_eq!(n("SELECT count(*) FROM head WHERE device_id = 'm'"), 4);
        assert_eq!(
            n("SELECT sum(n_values) FROM chunks WHERE device_id IN ('a', 'z')"),
            2 * 3 * 5
        );
        // The next pass skips it again and changes nothing else.
        let again = run_pass(&mut conn, &StorageConfig::default(), now).unwrap();
        assert_eq!(again.skipped.len(), 1);
        assert_eq!(again.head_rows_compacted, 0);
    }

    /// In the collector the maintenance connection only reads: every write of a
    /// pass (compaction, retention) goes to the store writer, inside its group
    /// transactions. The pass here runs on a read-only connection, so a write of
    /// its own would fail ("attempt to write a readonly database").
    #[test]
    fn a_pass_through_the_writer_compacts_and_expires_on_a_read_only_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = crate::store::open(&path).unwrap();
        let now = tandem_proto::util::now_ms();
        let hour = chunk::floor(now, CHUNK_MS) - 3 * CHUNK_MS;
        let ids: Vec<i64> = (1..=5).collect();
        for d in ["a", "b"] {
            for k in 0..3 {
                head_row(&conn, d, &ids, hour + k * 10_000);
            }
        }
        let old = chunk::floor(now, CHUNK_MS) - 20 * DAY_MS;
        for k in 0..100 {
            conn.execute(
                "INSERT INTO chunks (device_id, start_ms, n_values, blob) VALUES ('old', ?1, 1, x'00')",
                [old + k * CHUNK_MS],
            )
            .unwrap();
        }
        let (w, t) = crate::store::writer::Writer::spawn(
            conn,
            crate::store::writer::WriterConfig::default(),
        )
        .unwrap();
        let mut ro = crate::store::open_read_only(&path).unwrap();
        assert!(
            ro.execute("DELETE FROM chunks WHERE 0", []).is_err(),
            "the maintenance connection of this test can write"
        );
        let m = w.maintenance();
        let r = pass(
            &mut ro,
            &StorageConfig::default(),
            now,
            None,
            Via::Writer(&m),
        )
        .unwrap();
        assert_eq!(r.head_rows_compacted, 6);
        assert_eq!(r.chunks_written, 2);
        assert_eq!(r.chunks_expired, 100);
        assert!(w.stats.commits.load(Ordering::Relaxed) >= 3);
        drop(w);
        t.join();
        let conn = crate::store::open(&path).unwrap();
        let n = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(n("SELECT count(*) FROM head"), 0);
        assert_eq!(n("SELECT count(*) FROM chunks WHERE device_id = 'old'"), 0);
        assert_eq!(
            n("SELECT sum(n_values) FROM chunks WHERE device_id IN ('a', 'b')"),
            2 * 3 * 5
        );
    }

    /// Steady work goes at the steady pace, work that is behind at the ceiling: a
    /// device whose rows lie in the last closed hour is compacted at `pace()` values/s,
    /// one with rows three hours old at `compact_values_per_sec`.
    #[test]
    fn the_last_closed_hour_goes_at_the_steady_pace_and_older_rows_at_the_ceiling() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        let now = tandem_proto::util::now_ms();
        let cfg = StorageConfig {
            values_per_sec: 1_000_000,
            ..StorageConfig::default()
        };
        let cutoff = chunk::floor(now - ms(cfg.grace), CHUNK_MS);
        let ids: Vec<i64> = (1..=50).collect();
        for k in 0..30 {
            head_row(&conn, "old", &ids, cutoff - 3 * CHUNK_MS + k * 10_000);
        }
        let asked = std::cell::Cell::new(0);
        let mut steady = || {
            asked.set(asked.get() + 1);
            3_000.0
        };
        let t = std::time::Instant::now();
        let r = pass(&mut conn, &cfg, now, Some(&mut steady), Via::Own).unwrap();
        let behind = t.elapsed();
        assert_eq!(r.values_compacted, 1_500);
        assert_eq!(
            asked.get(),
            0,
            "rows three hours old were paced as steady work"
        );
        // 1,500 values at 1,000,000/s, and a rest as long as the step.
        assert!(behind < Duration::from_millis(400), "{behind:?}");
        for k in 0..30 {
            head_row(&conn, "new", &ids, cutoff - CHUNK_MS + k * 10_000);
        }
        let t = std::time::Instant::now();
        let r = pass(&mut conn, &cfg, now, Some(&mut steady), Via::Own).unwrap();
        let took = t.elapsed();
        assert_eq!(r.values_compacted, 1_500);
        assert_eq!(asked.get(), 1);
        // 1,500 values at 3,000/s.
        assert!(
            took >= Duration::from_millis(500),
            "not at the steady pace: {took:?}"
        );
        assert_eq!(
            conn.query_row("SELECT count(*) FROM head", [], |r| r.get::<_, i64>(0))
                .unwrap(),
            0
        );
    }

    /// Expiry's pace: the blobs due spread over EXPIRY_SPREAD (at least 1/s) while
    /// none is more than its span past its retention, else the ceiling.
    #[test]
    fn expiry_spreads_an_hour_of_blobs_and_catches_up_older_ones_at_the_ceiling() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        let now = tandem_proto::util::now_ms();
        let cfg = StorageConfig::default();
        let (raw, r5, _) = expiry_bounds(&cfg, now);
        assert_eq!(expiry_rate(&conn, &cfg, now).unwrap(), 1.0, "nothing due");
        let chunk = |device: &str, start: i64| {
            conn.execute(
                "INSERT INTO chunks (device_id, start_ms, n_values, blob) VALUES (?1, ?2, 1, x'00')",
                params![device, start],
            )
            .unwrap();
        };
        // One hour's worth of 2,700 devices' chunks and 900 rollup blobs, just due.
        for d in 0..2_700 {
            chunk(&format!("d{d}"), chunk::floor(raw, CHUNK_MS));
        }
        for d in 0..900 {
            conn.execute(
                "INSERT INTO rollups (tier, device_id, start_ms, n_buckets, blob) VALUES (?1, ?2, ?3, 1, x'00')",
                params![TIER_5M_MS, format!("d{d}"), chunk::floor(r5, CHUNK_MS)],
            )
            .unwrap();
        }
        // A chunk of the hour after is not due yet.
        chunk("d0", chunk::floor(raw, CHUNK_MS) + CHUNK_MS);
        let rate = expiry_rate(&conn, &cfg, now).unwrap();
        assert_eq!(rate, 3_600.0 / EXPIRY_SPREAD.as_secs_f64());
        // One blob more than an hour past its retention: behind.
        chunk("d0", chunk::floor(raw, CHUNK_MS) - CHUNK_MS);
        assert_eq!(
            expiry_rate(&conn, &cfg, now).unwrap(),
            DEFAULT_EXPIRE_BLOBS_PER_SEC as f64
        );
    }

    /// Steady expiry goes in steps of about a second's blobs, evenly: three chunks
    /// just due, at the least rate of 1 blob/s, take three steps a second apart
    /// (not one step of all three at once).
    #[test]
    fn steady_expiry_goes_a_few_blobs_a_step() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        let now = tandem_proto::util::now_ms();
        let cfg = StorageConfig::default();
        let (raw, _, _) = expiry_bounds(&cfg, now);
        for d in ["a", "b", "c"] {
            conn.execute(
                "INSERT INTO chunks (device_id, start_ms, n_values, blob) VALUES (?1, ?2, 1, x'00')",
                params![d, chunk::floor(raw, CHUNK_MS)],
            )
            .unwrap();
        }
        let t = std::time::Instant::now();
        let r = pass(&mut conn, &cfg, now, Some(&mut at_ceiling), Via::Own).unwrap();
        let took = t.elapsed();
        assert_eq!(r.chunks_expired, 3);
        assert!(
            took >= Duration::from_secs(2),
            "not in steps of one: {took:?}"
        );
    }

    /// The ingest rate over a trailing window, and the steady pace from it.
    #[test]
    fn the_ingest_rate_follows_the_writers_count_over_a_trailing_window() {
        let t0 = std::time::Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut r = IngestRate::default();
        assert_eq!(r.observe(at(0), 0), None);
        assert_eq!(r.observe(at(4), 40_000), None, "under 5 s of samples");
        assert_eq!(r.observe(at(6), 60_000), Some(10_000.0));
        assert_eq!(r.observe(at(12), 120_000), Some(10_000.0));
        // The window moved on to the sample at 12 s: 240,000 values in 12 s.
        assert_eq!(r.observe(at(24), 360_000), Some(20_000.0));
        // 260,000 values in the 13 s since the sample at 12 s.
        assert_eq!(r.steady_pace(at(25), 380_000), 20_000.0 * STEADY_FACTOR);
        let mut idle = IngestRate::default();
        assert_eq!(
            idle.steady_pace(at(0), 7),
            STEADY_FLOOR,
            "rate not known yet"
        );
        assert_eq!(
            idle.steady_pace(at(10), 1_007),
            STEADY_FLOOR,
            "100 values/s"
        );
    }

    /// The maintenance thread's pace: no more than `values_per_sec` values compacted
    /// and `expire_blobs_per_sec` blobs expired a second, however much is waiting (an
    /// unpaced pass does the same work at once).
    #[test]
    fn a_paced_pass_keeps_to_its_values_and_blobs_per_second() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        let now = tandem_proto::util::now_ms();
        let hour = chunk::floor(now, CHUNK_MS) - 3 * CHUNK_MS;
        let ids: Vec<i64> = (1..=50).collect();
        for d in ["a", "b"] {
            for k in 0..30 {
                head_row(&conn, d, &ids, hour + k * 10_000);
            }
        }
        let cfg = StorageConfig {
            values_per_sec: 10_000,
            ..StorageConfig::default()
        };
        let t = std::time::Instant::now();
        let r = pass(&mut conn, &cfg, now, Some(&mut at_ceiling), Via::Own).unwrap();
        let took = t.elapsed();
        assert_eq!(r.values_compacted, 2 * 30 * 50);
        // 3,000 values at 10,000/s: after the second device's step it rests until 0.3 s.
        assert!(
            took >= Duration::from_millis(300),
            "compaction not paced: {took:?}"
        );
        let old = chunk::floor(now, CHUNK_MS) - 20 * DAY_MS;
        for k in 0..2 * STEP_EXPIRE_ROWS {
            conn.execute(
                "INSERT INTO chunks (device_id, start_ms, n_values, blob) VALUES ('old', ?1, 1, x'00')",
                [old + k * CHUNK_MS],
            )
            .unwrap();
        }
        let t = std::time::Instant::now();
        let r = pass(&mut conn, &cfg, now, Some(&mut at_ceiling), Via::Own).unwrap();
        let took = t.elapsed();
        assert_eq!(r.chunks_expired, 2 * STEP_EXPIRE_ROWS as u64);
        // 64 chunks a step, a step due every 64 / expire_blobs_per_sec s: the third
        // (finding none left) two such times after the first.
        let paced = Duration::from_secs_f64(
            2.0 * STEP_EXPIRE_ROWS as f64 / cfg.expire_blobs_per_sec as f64,
        );
        assert!(took >= paced, "expiry not paced: {took:?}");
        for k in 0..2 * STEP_EXPIRE_ROWS {
            conn.execute(
                "INSERT INTO chunks (device_id, start_ms, n_values, blob) VALUES ('old', ?1, 1, x'00')",
                [old + k * CHUNK_MS],
            )
            .unwrap();
        }
        let t = std::time::Instant::now();
        let r = run_pass(&mut conn, &cfg, now).unwrap();
        assert_eq!(r.chunks_expired, 2 * STEP_EXPIRE_ROWS as u64);
        assert!(t.elapsed() < paced, "an unpaced pass waited");
    }

    /// bench7 brief: under ingest the writer commits hundreds of times a second. A
    /// step that read in a deferred transaction and then wrote failed with
    /// SQLITE_BUSY whenever such a commit fell in between (the busy handler cannot
    /// retry that), so compaction under ingest hardly ever got through.
    #[test]
    fn compaction_steps_go_through_while_another_connection_keeps_committing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = crate::store::open(&path).unwrap();
        let now = tandem_proto::util::now_ms();
        let hour = chunk::floor(now, CHUNK_MS) - 3 * CHUNK_MS;
        let ids: Vec<i64> = (1..=50).collect();
        let devices = ["d0", "d1", "d2", "d3"];
        {
            let tx = conn.transaction().unwrap();
            for d in devices {
                for k in 0..360 {
                    head_row(&tx, d, &ids, hour + k * 10_000);
                }
            }
            tx.commit().unwrap();
        }
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let live = {
            let (stop, path, ids) = (stop.clone(), path.clone(), ids.clone());
            std::thread::spawn(move || {
                let conn = crate::store::open(&path).unwrap();
                let mut commits = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    head_row(&conn, "live", &ids, now + commits as i64);
                    commits += 1;
                    // About the writer's pace under 50,000 values/s.
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                commits
            })
        };
        let mut moved = 0;
        for d in devices {
            loop {
                let (rows, _) = compact_step(&mut conn, d, hour + CHUNK_MS)
                    .unwrap_or_else(|e| panic!("compaction of {d} under commits: {e:?}"));
                moved += rows;
                if rows == 0 {
                    break;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        let commits = live.join().unwrap();
        assert!(commits > 0, "the other connection committed nothing");
        assert_eq!(moved, 4 * 360);
        let n = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(n("SELECT sum(n_values) FROM chunks"), 4 * 360 * 50);
        assert_eq!(n("SELECT count(*) FROM head WHERE device_id <> 'live'"), 0);
        assert_eq!(
            n("SELECT count(*) FROM head WHERE device_id = 'live'"),
            commits as i64
        );
    }
}
