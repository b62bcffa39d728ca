//! Metric store benchmark (issue 17): generates a database of D devices × N days of
//! S series every 10 s through the real head encoding and the real compaction, then
//! reports compaction speed, bytes per value (chunks alone, and the whole file with
//! rollups, indexes and page overhead) and query latencies through `MetricQuery`.
//!
//! The values are a synthetic agent-like mix (not recorded agent data): a quarter
//! percentages with one decimal (random walks), a quarter byte counters (integers
//! rising by random amounts, reset now and then), a quarter memory-like integer
//! gauges, a quarter unrounded floats (smoothed load averages). With `--replay DB` they
//! are instead a real agent's samples from a collector database, looped (the 30-day ×
//! 1,000-device database of issue 17 is built that way: the synthetic mix's noise
//! makes it too big for this machine's disk).
//!
//! Run (release): `cargo build --release -p tandem-tests --bin storebench &&
//! target/release/storebench --devices 20 --days 30`.

use std::time::Instant;

use clap::Parser;
use rusqlite::params;
use tandem_collector::store::chunk::{self, CHUNK_MS, DAY_MS};
use tandem_collector::store::compact::{self, StorageConfig};
use tandem_collector::store::query::{MetricQuery, SqliteMetrics, Tier};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 20)]
    devices: usize,
    #[arg(long, default_value_t = 30)]
    days: i64,
    #[arg(long, default_value_t = 107)]
    series: usize,
    /// Where to put the database (default: a temp dir, removed at the end).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Queries of each kind to time.
    #[arg(long, default_value_t = 40)]
    queries: usize,
    /// Devices the database holds in all: after generating `--devices`, filler
    /// devices are added up to this many, whose chunk and rollup rows are byte copies
    /// of the generated devices' (so tables and indexes have the size of the larger
    /// fleet; their blobs name the source device's series ids, so queries go to the
    /// generated devices only). 0: no filler.
    #[arg(long, default_value_t = 0)]
    fleet: usize,
    /// Only time the queries, on the database an earlier run left in `--dir`.
    #[arg(long)]
    queries_only: bool,
    /// Instead of generating: copy this collector database (e.g. a real agent's data
    /// from `tandem-collector demo`), compact all of it, and compare codecs on it.
    #[arg(long)]
    from_db: Option<std::path::PathBuf>,
    /// Instead of the synthetic mix: the generated devices' values are a real agent's,
    /// replayed from this collector database (e.g. `tandem-collector demo`'s). Its
    /// busiest device's samples, thinned to about one every 10 s, are looped end to
    /// end over `--days`, keeping each sample's real values and its offset in the
    /// recording; the first `--series` of its series (by id) are kept, with their
    /// real names.
    #[arg(long)]
    replay: Option<std::path::PathBuf>,
}

/// A real agent's samples, to be looped (`--replay`).
struct Recording {
    /// (name, dimension) of each kept series.
    series: Vec<(String, String)>,
    /// Samples: offset from the recording's first sample, one value per kept series
    /// (NaN where the series has none at that instant).
    samples: Vec<(i64, Vec<f64>)>,
    /// How long one loop lasts: the recording's span plus one sampling step.
    period_ms: i64,
    /// The sampling step after thinning, and the recording's own.
    step_ms: i64,
    recorded_step_ms: i64,
    device: String,
}

/// Loads `--replay`: compacts a copy of the database (as `--from-db`), reads its
/// busiest device's chunks and thins them to about one sample every 10 s.
fn load_recording(src: &std::path::Path, max_series: usize) -> anyhow::Result<Recording> {
    use std::collections::BTreeMap;
    let (_tmp, conn, _) = compacted_copy(src)?;
    let device: String = conn
        .query_row(
            "SELECT device_id FROM chunks GROUP BY device_id ORDER BY sum(n_values) DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .map_err(|e| anyhow::anyhow!("{}: no metric values to replay ({e})", src.display()))?;
    // series id -> (ts -> value), over all of the device's chunks.
    let mut points: BTreeMap<i64, BTreeMap<i64, f64>> = BTreeMap::new();
    {
        let mut stmt =
            conn.prepare("SELECT blob FROM chunks WHERE device_id = ?1 ORDER BY start_ms")?;
        let mut rows = stmt.query([&device])?;
        while let Some(r) = rows.next()? {
            let blob: Vec<u8> = r.get(0)?;
            for (id, p) in chunk::ChunkView::parse(&blob)?.all()? {
                points
                    .entry(id)
                    .or_default()
                    .extend(p.ts.into_iter().zip(p.values));
            }
        }
    }
    let mut times: Vec<i64> = points.values().flat_map(|m| m.keys().copied()).collect();
    times.sort_unstable();
    times.dedup();
    anyhow::ensure!(
        times.len() >= 2,
        "{}: fewer than two samples",
        src.display()
    );
    let mut gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_unstable();
    let recorded_step_ms = gaps[gaps.len() / 2].max(1);
    let every = ((10_000 + recorded_step_ms / 2) / recorded_step_ms).max(1) as usize;
    let kept: Vec<i64> = times.iter().copied().step_by(every).collect();
    // The first --series series (by id) that have a value at a kept instant.
    let ids: Vec<i64> = points
        .iter()
        .filter(|(_, m)| kept.iter().any(|t| m.contains_key(t)))
        .map(|(id, _)| *id)
        .take(max_series)
        .collect();
    let mut series = Vec::new();
    for id in &ids {
        series.push(conn.query_row(
            "SELECT name, dimension FROM series WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?);
    }
    let first = kept[0];
    let samples: Vec<(i64, Vec<f64>)> = kept
        .iter()
        .map(|t| {
            let vals = ids
                .iter()
                .map(|id| points[id].get(t).copied().unwrap_or(f64::NAN))
                .collect();
            (t - first, vals)
        })
        .filter(|(_, v): &(i64, Vec<f64>)| v.iter().any(|x| !x.is_nan()))
        .collect();
    let step_ms = recorded_step_ms * every as i64;
    let period_ms = kept[kept.len() - 1] - first + step_ms;
    // A shorter loop would repeat itself inside one device-hour chunk, and the
    // repetition would flatter the bytes per value.
    anyhow::ensure!(
        period_ms >= CHUNK_MS,
        "{}: the recording spans {:.1} min; --replay needs at least an hour (one chunk) of samples",
        src.display(),
        period_ms as f64 / 60_000.0
    );
    Ok(Recording {
        series,
        period_ms,
        samples,
        step_ms,
        recorded_step_ms,
        device,
    })
}

impl Recording {
    /// The samples of the hour starting at `hour`, the recording looped from `start`.
    fn hour(&self, start: i64, hour: i64) -> Vec<(i64, Vec<f64>)> {
        let mut out = Vec::new();
        let mut i = (hour - start) / self.period_ms;
        while start + i * self.period_ms < hour + CHUNK_MS {
            let base = start + i * self.period_ms;
            for (o, v) in &self.samples {
                let ts = base + o;
                if ts >= hour && ts < hour + CHUNK_MS {
                    out.push((ts, v.clone()));
                }
            }
            i += 1;
        }
        out
    }
}

/// The synthetic agent-like mix of the module doc: 360 samples an hour, 10 s apart.
struct Synthetic {
    rng: Rng,
    state: Vec<f64>,
}

impl Synthetic {
    fn new(device: usize, series: usize) -> Self {
        Self {
            rng: Rng(0x9E37_79B9_7F4A_7C15 ^ (device as u64 + 1)),
            state: (0..series)
                .map(|s| if s % 4 == 2 { 4e9 } else { 10.0 })
                .collect(),
        }
    }

    fn hour(&mut self, hour: i64) -> Vec<(i64, Vec<f64>)> {
        let rng = &mut self.rng;
        (0..360)
            .map(|k| {
                let ts = hour + k * 10_000 + (rng.next() % 40) as i64;
                let vals: Vec<f64> = self
                    .state
                    .iter_mut()
                    .enumerate()
                    .map(|(s, v)| match s % 4 {
                        0 => {
                            *v = (*v + (rng.unit() - 0.5) * 4.0).clamp(0.0, 100.0);
                            (*v * 10.0).round() / 10.0
                        }
                        1 => {
                            if rng.next().is_multiple_of(50_000) {
                                *v = 0.0;
                            }
                            *v += (rng.next() % 1_000_000) as f64;
                            *v
                        }
                        2 => {
                            *v = (*v + ((rng.next() % 2_000_001) as f64 - 1e6)).max(0.0);
                            *v
                        }
                        _ => {
                            *v = *v * 0.92 + rng.unit() * 4.0 * 0.08;
                            *v
                        }
                    })
                    .collect();
                (ts, vals)
            })
            .collect()
    }
}

/// A compacted copy of a collector database (`VACUUM INTO` a temp dir, then every
/// head row compacted with `compact::compact_step`), with the devices its head held.
/// The temp dir holds the copy: keep it as long as the connection.
fn compacted_copy(
    src: &std::path::Path,
) -> anyhow::Result<(tempfile::TempDir, rusqlite::Connection, Vec<String>)> {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("copy.db");
    rusqlite::Connection::open(src)?.execute("VACUUM INTO ?1", [path.to_string_lossy()])?;
    let mut conn = tandem_collector::store::open(&path)?;
    let cutoff = tandem_tests::now_ms() + 2 * CHUNK_MS;
    let devices: Vec<String> = conn
        .prepare("SELECT DISTINCT device_id FROM head")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for d in &devices {
        while compact::compact_step(&mut conn, d, cutoff)?.0 > 0 {}
    }
    Ok((tmp, conn, devices))
}

/// Compacts a copy of a real database and reports bytes/value of pco (as stored)
/// against deflate (level 9) of the same per-series streams.
fn from_db(src: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    let (_tmp, conn, devices) = compacted_copy(src)?;
    let mut values = 0usize;
    let mut series_n = 0usize;
    let (mut pco_bytes, mut deflate_bytes, mut raw_bytes) = (0usize, 0usize, 0usize);
    let mut stmt = conn.prepare("SELECT blob FROM chunks")?;
    let mut rows = stmt.query([])?;
    let deflate = |b: &[u8]| -> anyhow::Result<usize> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(b)?;
        Ok(e.finish()?.len())
    };
    while let Some(r) = rows.next()? {
        let blob: Vec<u8> = r.get(0)?;
        pco_bytes += blob.len();
        let view = chunk::ChunkView::parse(&blob)?;
        let all = view.all()?;
        let mut seen_ts: Vec<Vec<i64>> = Vec::new();
        for p in all.values() {
            values += p.ts.len();
            series_n += 1;
            raw_bytes += 16 * p.ts.len();
            let vb: Vec<u8> = p.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            deflate_bytes += deflate(&vb)?;
            // Times shared the same way as in the pco layout, delta-encoded first.
            if !seen_ts.contains(&p.ts) {
                let mut prev = 0;
                let tb: Vec<u8> =
                    p.ts.iter()
                        .flat_map(|&t| {
                            let d = t - prev;
                            prev = t;
                            d.to_le_bytes()
                        })
                        .collect();
                deflate_bytes += deflate(&tb)?;
                seen_ts.push(p.ts.clone());
            }
        }
    }
    let file: i64 = conn.query_row(
        "SELECT (page_count - freelist_count) * page_size FROM pragma_page_count, pragma_freelist_count, pragma_page_size",
        [],
        |r| r.get(0),
    )?;
    println!(
        "storebench --from-db {}: {} devices, {series_n} series-hours, {values} values",
        src.display(),
        devices.len()
    );
    println!(
        "  uncompressed (i64 time + f64 value): {:.3} B/value",
        raw_bytes as f64 / values as f64
    );
    println!(
        "  deflate-9 per series (delta times, shared): {:.3} B/value",
        deflate_bytes as f64 / values as f64
    );
    println!(
        "  pco chunks as stored (headers included): {:.3} B/value",
        pco_bytes as f64 / values as f64
    );
    println!("  whole database file in use (everything else included): {file} B");
    // bench7 brief: all-in bytes of the metric store (head, chunks and rollups with
    // their indexes, page overhead included), in place after compaction and again
    // after a VACUUM (the pages the deleted head rows left, given back).
    let head_left: i64 = conn.query_row("SELECT count(*) FROM head", [], |r| r.get(0))?;
    for when in ["after compaction, in place", "after VACUUM"] {
        if when == "after VACUUM" {
            conn.execute_batch("VACUUM")?;
        }
        let (store_bytes, series_bytes) = metric_store_bytes(&conn)?;
        println!(
            "  all-in metric store {when} (head {head_left} rows, chunks, rollups, their indexes): {store_bytes} B = {:.3} B/value; series table + index {series_bytes} B = {:.3} B/value more",
            store_bytes as f64 / values as f64,
            series_bytes as f64 / values as f64
        );
    }
    Ok(())
}

/// Bytes (whole pages, from `dbstat`) of the metric store's tables and indexes, and
/// of the `series` table with its index.
fn metric_store_bytes(conn: &rusqlite::Connection) -> anyhow::Result<(i64, i64)> {
    let sum = |tables: &str| -> anyhow::Result<i64> {
        Ok(conn.query_row(
            &format!(
                "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN
                   (SELECT name FROM sqlite_schema WHERE tbl_name IN ({tables}))"
            ),
            [],
            |r| r.get(0),
        )?)
    };
    Ok((sum("'head', 'chunks', 'rollups'")?, sum("'series'")?))
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn pct(v: &[u64]) -> impl Fn(f64) -> f64 + '_ {
    move |p| {
        let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
        v[i] as f64 / 1000.0
    }
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if let Some(src) = &a.from_db {
        return from_db(src);
    }
    let tmp = tempfile::tempdir()?;
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    let path = dir.join("bench.db");
    if a.queries_only {
        // The generated devices of an earlier run with the same --dir and --devices.
        let conn = tandem_collector::store::open_read_only(&path)?;
        let mut series_ids = Vec::new();
        for d in 0..a.devices {
            let ids: Vec<i64> = conn
                .prepare("SELECT id FROM series WHERE device_id = ?1 ORDER BY id")?
                .query_map([format!("dev-{d}")], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            anyhow::ensure!(!ids.is_empty(), "{}: no device dev-{d}", path.display());
            series_ids.push(ids);
        }
        let end: i64 = conn.query_row(
            "SELECT max(start_ms) FROM chunks WHERE device_id = 'dev-0'",
            [],
            |r| r.get(0),
        )?;
        println!(
            "storebench --queries-only: {} ({} generated devices)",
            path.display(),
            a.devices
        );
        return run_queries(&path, &a, &series_ids, end + CHUNK_MS);
    }
    let mut conn = tandem_collector::store::open(&path)?;
    let now = tandem_tests::now_ms();
    let end = now - now.rem_euclid(CHUNK_MS) - CHUNK_MS;
    let start = end - a.days * DAY_MS;
    conn.execute(
        "INSERT INTO tenants (name, created_ms) VALUES ('bench', 0)",
        [],
    )?;
    let recording = match &a.replay {
        Some(src) => {
            let r = load_recording(src, a.series)?;
            println!(
                "storebench --replay {}: device {}, {} series, {} samples ({} ms apart, thinned from {} ms) looped every {:.1} min",
                src.display(),
                r.device,
                r.series.len(),
                r.samples.len(),
                r.step_ms,
                r.recorded_step_ms,
                r.period_ms as f64 / 60_000.0
            );
            Some(r)
        }
        None => None,
    };
    let names: Vec<(String, String)> = match &recording {
        Some(r) => r.series.clone(),
        None => (0..a.series)
            .map(|s| (format!("metric.{s}"), String::new()))
            .collect(),
    };
    let mut series_ids: Vec<Vec<i64>> = Vec::new();
    for d in 0..a.devices {
        let dev = format!("dev-{d}");
        conn.execute(
            "INSERT INTO devices (id, tenant_id, first_seen_ms, last_seen_ms) VALUES (?1, 1, 0, 0)",
            [&dev],
        )?;
        let mut ids = Vec::new();
        for (name, dim) in &names {
            conn.execute(
                "INSERT INTO series (device_id, name, dimension) VALUES (?1, ?2, ?3)",
                params![dev, name, dim],
            )?;
            ids.push(conn.last_insert_rowid());
        }
        series_ids.push(ids);
    }
    let cutoff = now;
    let mut values = 0u64;
    let mut compact_secs = 0.0;
    let mut encode_secs = 0.0;
    let t_all = Instant::now();
    for (d, ids) in series_ids.iter().enumerate() {
        let dev = format!("dev-{d}");
        let mut synthetic = Synthetic::new(d, a.series);
        let mut hour = start;
        while hour < end {
            let samples = match &recording {
                Some(r) => r.hour(start, hour),
                None => synthetic.hour(hour),
            };
            // One head row per 60 samples (10 minutes at 10 s), as an agent batch would be.
            let t0 = Instant::now();
            let tx = conn.transaction()?;
            for batch in samples.chunks(60) {
                let refs: Vec<(i64, &[f64])> =
                    batch.iter().map(|(t, v)| (*t, v.as_slice())).collect();
                let n: i64 = batch
                    .iter()
                    .map(|(_, v)| v.iter().filter(|x| !x.is_nan()).count() as i64)
                    .sum();
                let payload = chunk::encode_head(ids, &refs);
                tx.execute(
                    "INSERT INTO head (device_id, min_ts, max_ts, n_values, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![dev, refs[0].0, refs[refs.len() - 1].0, n, payload],
                )?;
                values += n as u64;
            }
            tx.commit()?;
            encode_secs += t0.elapsed().as_secs_f64();
            hour += CHUNK_MS;
            // Compact a day at a time (the collector compacts each hour once closed).
            if (hour - start) % DAY_MS == 0 || hour >= end {
                let t1 = Instant::now();
                while compact::compact_step(&mut conn, &dev, cutoff)?.0 > 0 {}
                compact_secs += t1.elapsed().as_secs_f64();
            }
        }
        eprintln!(
            "device {d}: {values} values so far, {:.0} s",
            t_all.elapsed().as_secs_f64()
        );
    }
    compact::expire(
        &mut conn,
        &StorageConfig {
            raw_retention: std::time::Duration::from_secs(400 * 86_400),
            ..Default::default()
        },
        now,
    )?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    let n = |sql: &str| -> anyhow::Result<i64> { Ok(conn.query_row(sql, [], |r| r.get(0))?) };
    let chunk_bytes = n("SELECT sum(length(blob)) FROM chunks")?;
    let rollup_bytes = n("SELECT coalesce(sum(length(blob)), 0) FROM rollups")?;
    let head_left = n("SELECT count(*) FROM head")?;
    let used_bytes = n(
        "SELECT (page_count - freelist_count) * page_size FROM pragma_page_count, pragma_freelist_count, pragma_page_size",
    )?;
    let chunk_values = n("SELECT sum(n_values) FROM chunks")?;
    // Filler devices up to --fleet, one transaction each.
    let t_fill = Instant::now();
    for f in a.devices..a.fleet {
        let dev = format!("fill-{f}");
        let src = format!("dev-{}", f % a.devices);
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO devices (id, tenant_id, first_seen_ms, last_seen_ms) VALUES (?1, 1, 0, 0)",
            [&dev],
        )?;
        tx.execute(
            "INSERT INTO series (device_id, name, dimension) SELECT ?1, name, dimension FROM series WHERE device_id = ?2",
            [&dev, &src],
        )?;
        tx.execute(
            "INSERT INTO chunks (device_id, start_ms, n_values, blob) SELECT ?1, start_ms, n_values, blob FROM chunks WHERE device_id = ?2",
            [&dev, &src],
        )?;
        tx.execute(
            "INSERT INTO rollups (tier, device_id, start_ms, n_buckets, blob) SELECT tier, ?1, start_ms, n_buckets, blob FROM rollups WHERE device_id = ?2",
            [&dev, &src],
        )?;
        tx.commit()?;
        if (f + 1) % 10 == 0 {
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
            eprintln!("filler device {f}: {:.0} s", t_fill.elapsed().as_secs_f64());
        }
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    let fleet_bytes: i64 = conn.query_row(
        "SELECT (page_count - freelist_count) * page_size FROM pragma_page_count, pragma_freelist_count, pragma_page_size",
        [],
        |r| r.get(0),
    )?;
    let fleet_chunks: i64 = conn.query_row("SELECT count(*) FROM chunks", [], |r| r.get(0))?;
    println!(
        "storebench: {} devices × {} days × {} series, {} = {values} values ({chunk_values} in chunks, {head_left} head rows left)",
        a.devices,
        a.days,
        names.len(),
        if recording.is_some() {
            "a real agent's samples looped"
        } else {
            "synthetic, every 10 s"
        }
    );
    println!(
        "  head encode + insert: {:.0} values/s",
        values as f64 / encode_secs
    );
    println!(
        "  compaction (chunks + rollups): {:.0} values/s of one core",
        values as f64 / compact_secs
    );
    println!(
        "  raw chunks: {:.3} B/value ({chunk_bytes} B)",
        chunk_bytes as f64 / values as f64
    );
    println!(
        "  rollups (5 m + 1 h): {rollup_bytes} B = {:.3} B/raw value",
        rollup_bytes as f64 / values as f64
    );
    println!(
        "  whole database in use (chunks, rollups, indexes, pages): {:.3} B/value ({used_bytes} B)",
        used_bytes as f64 / values as f64
    );
    if a.fleet > a.devices {
        println!(
            "  with {} filler devices (byte copies): {} devices, {fleet_chunks} chunk rows, {fleet_bytes} B in use",
            a.fleet - a.devices,
            a.fleet
        );
    }
    drop(conn);

    run_queries(&path, &a, &series_ids, end)
}

/// Times the queries on a read-only connection, as the console would.
fn run_queries(
    path: &std::path::Path,
    a: &Args,
    series_ids: &[Vec<i64>],
    end: i64,
) -> anyhow::Result<()> {
    let ro = tandem_collector::store::open_read_only(path)?;
    let q = SqliteMetrics::new(
        &ro,
        StorageConfig {
            raw_retention: std::time::Duration::from_secs(400 * 86_400),
            ..Default::default()
        },
    );
    let mut rng = Rng(42);
    let (mut day, mut month, mut month5, mut year) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..a.queries {
        let d = (rng.next() % a.devices as u64) as usize;
        let dev = format!("dev-{d}");
        let day_end = end - (rng.next() % ((a.days - 1).max(1) as u64)) as i64 * DAY_MS;
        let t = Instant::now();
        let r = q.device_day(&dev, day_end)?;
        day.push(t.elapsed().as_micros() as u64);
        assert_eq!(r.len(), series_ids[d].len());
        let sid = series_ids[d][(rng.next() % series_ids[d].len() as u64) as usize];
        let t = Instant::now();
        let r = q.series_range(sid, end - 30 * DAY_MS, end, 3_600_000)?;
        month.push(t.elapsed().as_micros() as u64);
        // A whole-hour step is answered from the 1-hour tier.
        assert_eq!(r.tier, Tier::OneHour);
        let t = Instant::now();
        let r = q.series_range(sid, end - 30 * DAY_MS, end, 300_000)?;
        month5.push(t.elapsed().as_micros() as u64);
        assert_eq!(r.tier, Tier::FiveMinutes);
        let t = Instant::now();
        let r = q.series_range(sid, end - 365 * DAY_MS, end, DAY_MS)?;
        year.push(t.elapsed().as_micros() as u64);
        assert_eq!(r.tier, Tier::OneHour);
    }
    for (name, v) in [
        ("device 24 h, all series (raw)", &mut day),
        ("one series 30 d at 1 h (1 h rollups)", &mut month),
        ("one series 30 d at 5 min (5 m rollups)", &mut month5),
        ("one series 365 d at 1 d (1 h rollups)", &mut year),
    ] {
        v.sort_unstable();
        let p = pct(v);
        println!(
            "  query {name}: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
            p(0.5),
            p(0.95),
            p(1.0)
        );
    }
    Ok(())
}
