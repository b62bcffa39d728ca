//! Tests of the metric store (issue 17): the conformance suite of
//! [`MetricQuery`](super::query::MetricQuery), run against the SQLite backend through
//! the real writer; compaction, rollups against values computed from the raw data,
//! retention at tier boundaries, and the upgrade of the old row-per-value layout.

use std::collections::BTreeMap;
use std::path::Path;

use tandem_proto::v1::{MetricBatch, Sample, SeriesKey};

use super::chunk::{CHUNK_MS, DAY_MS};
use super::compact::{self, StorageConfig};
use super::query::{MetricQuery, SqliteMetrics, Tier};
use super::writer::{DeviceFacts, DeviceIdentity, Writer, WriterConfig};

const H: i64 = 3_600_000;
const SERIES: usize = 4;

/// The value of series `s` at time `t`; series 3 is a counter reset every 37 steps.
fn value(s: usize, t: i64) -> f64 {
    let step = t / 10_000;
    match s {
        3 => ((step % 37) * 100) as f64,
        _ => ((step * (s as i64 + 1)) % 1000) as f64 / 4.0,
    }
}

fn keys() -> Vec<SeriesKey> {
    (0..SERIES)
        .map(|s| SeriesKey {
            name: format!("m{s}"),
            dimension: String::new(),
        })
        .collect()
}

/// Writes `device`'s values every 10 s over `[from, to)` through the real writer, 6
/// samples a batch. Returns every value written: (series name, ts, value).
async fn fill(path: &Path, device: &str, from: i64, to: i64) -> Vec<(String, i64, f64)> {
    let (w, t) = Writer::spawn(super::open(path).unwrap(), WriterConfig::default()).unwrap();
    let who = DeviceIdentity {
        tenant: "acme".into(),
        device_id: device.into(),
    };
    let mut seq = w.hello(who, DeviceFacts::default()).await.unwrap();
    let mut written = Vec::new();
    let times: Vec<i64> = (0..)
        .map(|i| from + i * 10_000)
        .take_while(|&t| t < to)
        .collect();
    let mut pending = Vec::new();
    for group in times.chunks(6) {
        seq += 1;
        let samples = group
            .iter()
            .map(|&t| Sample {
                time_unix_ms: t,
                values: (0..SERIES).map(|s| value(s, t)).collect(),
            })
            .collect();
        for &t in group {
            for s in 0..SERIES {
                written.push((format!("m{s}"), t, value(s, t)));
            }
        }
        let batch = MetricBatch {
            seq,
            series: keys(),
            samples,
        };
        pending.push(w.submit_batch(device.into(), batch).await.unwrap());
    }
    for p in pending {
        p.await.unwrap().unwrap();
    }
    drop(w);
    t.join();
    written
}

fn count_values(conn: &rusqlite::Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM samples", [], |r| r.get(0))
        .unwrap()
}

/// The conformance suite: what any backend must answer for the data of [`fill`].
/// `q` holds `device` filled over `[from, to)`; `now` is after `to`.
fn conformance(
    q: &dyn MetricQuery,
    device: &str,
    written: &[(String, i64, f64)],
    from: i64,
    to: i64,
) {
    let series = q.series(device).unwrap();
    assert_eq!(
        series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["m0", "m1", "m2", "m3"]
    );
    assert!(q.series("no-such-device").unwrap().is_empty());
    assert!(matches!(
        q.raw_points(-1, from, to),
        Err(super::StoreError::NoSeries(-1))
    ));

    // Raw points: exactly what was written, once each.
    for s in &series {
        let want: Vec<(i64, f64)> = written
            .iter()
            .filter(|w| w.0 == s.name)
            .map(|w| (w.1, w.2))
            .collect();
        let got: Vec<(i64, f64)> = q
            .raw_points(s.id, from, to)
            .unwrap()
            .iter()
            .map(|p| (p.ts_ms, p.value))
            .collect();
        assert_eq!(got, want, "raw points of {}", s.name);
    }

    // Latest values: the last written instant of every series.
    let latest = q.latest_values(device).unwrap();
    assert_eq!(latest.len(), SERIES);
    for l in &latest {
        let w = written.iter().rfind(|w| w.0 == l.series.name).unwrap();
        assert_eq!(
            (l.ts_ms, l.value),
            (w.1, w.2),
            "latest of {}",
            l.series.name
        );
    }

    // A device's 24 h: every series, every value of the last day.
    let day = q.device_day(device, to).unwrap();
    assert_eq!(day.len(), SERIES);
    let n: usize = day.iter().map(|d| d.points.len()).sum();
    let want = written.iter().filter(|w| w.1 >= to - DAY_MS).count();
    assert_eq!(n, want);

    // A range at a step: buckets equal to aggregates computed directly from raw,
    // whatever tier answers. The counter series (m3) is reset every 37 steps.
    // A step of whole hours inside the 5-minute tier's range is answered from the
    // 1-hour tier (exact for such steps, twelve times fewer buckets).
    for (len, step, tier) in [
        (6 * H, H, Tier::Raw),
        (3 * DAY_MS, H / 2, Tier::FiveMinutes),
        (3 * DAY_MS, H, Tier::OneHour),
        (31 * DAY_MS, 6 * H, Tier::OneHour),
    ] {
        let (a, b) = (to - len, to);
        if a < from {
            continue;
        }
        for s in &series {
            let r = q.series_range(s.id, a, b, step).unwrap();
            assert_eq!(r.tier, tier, "tier for {len} ms");
            assert_eq!(r.step_ms, step);
            let mut direct: BTreeMap<i64, (f64, f64, f64, i64, f64)> = BTreeMap::new();
            for w in written
                .iter()
                .filter(|w| w.0 == s.name && w.1 >= a && w.1 < b)
            {
                let k = w.1.div_euclid(step) * step;
                let e = direct
                    .entry(k)
                    .or_insert((f64::INFINITY, f64::NEG_INFINITY, 0.0, 0, 0.0));
                e.0 = e.0.min(w.2);
                e.1 = e.1.max(w.2);
                e.2 += w.2;
                e.3 += 1;
                e.4 = w.2;
            }
            assert_eq!(r.buckets.len(), direct.len(), "{} {tier:?}", s.name);
            for (bk, (k, d)) in r.buckets.iter().zip(&direct) {
                assert_eq!(bk.start_ms, *k);
                assert_eq!(
                    (bk.min, bk.max, bk.count, bk.last),
                    (d.0, d.1, d.3, d.4),
                    "{} {tier:?} @{k}",
                    s.name
                );
                assert!((bk.sum - d.2).abs() < 1e-6, "sum {} vs {}", bk.sum, d.2);
            }
            if s.name == "m3" {
                // Counter increase with resets, from raw: steps within one chunk hour
                // (a step across an hour boundary is not counted in the rollup tiers).
                let pts: Vec<&(String, i64, f64)> = written
                    .iter()
                    .filter(|w| w.0 == "m3" && w.1 >= a && w.1 < b)
                    .collect();
                let mut inc: BTreeMap<i64, f64> = BTreeMap::new();
                for pair in pts.windows(2) {
                    let same_hour =
                        pair[0].1.div_euclid(CHUNK_MS) == pair[1].1.div_euclid(CHUNK_MS);
                    if tier != Tier::Raw && !same_hour {
                        continue;
                    }
                    let (p, c) = (pair[0].2, pair[1].2);
                    *inc.entry(pair[1].1.div_euclid(step) * step).or_default() +=
                        if c >= p { c - p } else { c };
                }
                for bk in &r.buckets {
                    let inc = inc.get(&bk.start_ms).copied().unwrap_or(0.0);
                    assert_eq!(bk.increase, inc, "increase {tier:?} @{}", bk.start_ms);
                    assert!(inc > 0.0);
                }
            }
        }
    }
}

#[tokio::test]
async fn sqlite_backend_passes_the_conformance_suite_before_and_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let now = tandem_proto::util::now_ms();
    // 32 days up to the last full hour, then 20 minutes of the open hour.
    let to = now - now.rem_euclid(H) - 2 * H;
    let from = to - 32 * DAY_MS;
    let written = fill(&path, "d1", from, to).await;
    let n = written.len() as i64;
    let cfg = StorageConfig {
        raw_retention: std::time::Duration::from_secs(40 * 86_400),
        ..StorageConfig::default()
    };
    let mut conn = super::open(&path).unwrap();
    let heads: i64 = conn
        .query_row("SELECT count(*) FROM head", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        heads,
        (written.len() / SERIES).div_ceil(6) as i64,
        "one head row per batch"
    );
    assert_eq!(count_values(&conn), n);
    {
        let q = SqliteMetrics::new(&conn, cfg);
        // Before compaction: rollup tiers are computed from the head.
        conformance(&q, "d1", &written, from, to);
    }
    let r = compact::run_pass(&mut conn, &cfg, now).unwrap();
    assert!(r.chunks_written >= 32 * 24, "{r:?}");
    let heads: i64 = conn
        .query_row("SELECT count(*) FROM head", [], |r| r.get(0))
        .unwrap();
    assert_eq!(heads, 0);
    assert_eq!(
        count_values(&conn),
        n,
        "every value exactly once after compaction"
    );
    conformance(&SqliteMetrics::new(&conn, cfg), "d1", &written, from, to);

    // A second pass changes nothing; a late batch for a compacted hour is merged.
    assert_eq!(
        compact::run_pass(&mut conn, &cfg, now)
            .unwrap()
            .chunks_written,
        0
    );
    drop(conn);
    let late = fill(&path, "d1", to - 3 * H + 5_000, to - 3 * H + 65_000).await;
    let mut conn = super::open(&path).unwrap();
    compact::run_pass(&mut conn, &cfg, now).unwrap();
    assert_eq!(count_values(&conn), n + late.len() as i64);

    // Bytes per value of the chunks (these values are regular; measured on real
    // agent data in docs/BENCHMARKS.md).
    let bytes: i64 = conn
        .query_row("SELECT sum(length(blob)) FROM chunks", [], |r| r.get(0))
        .unwrap();
    assert!(
        (bytes as f64) / (n as f64) < 2.0,
        "{bytes} B for {n} values"
    );
}

#[tokio::test]
async fn retention_expires_whole_chunks_exactly_at_tier_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let now = tandem_proto::util::now_ms();
    let top = now - now.rem_euclid(DAY_MS) - DAY_MS;
    // Ten days of data ending at a day boundary.
    fill(&path, "d1", top - 10 * DAY_MS, top).await;
    let mut conn = super::open(&path).unwrap();
    let keep_all = StorageConfig {
        raw_retention: std::time::Duration::from_secs(100 * 86_400),
        ..StorageConfig::default()
    };
    compact::run_pass(&mut conn, &keep_all, now).unwrap();
    let n = |conn: &rusqlite::Connection, sql: &str| -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    };
    assert_eq!(n(&conn, "SELECT count(*) FROM chunks"), 240);
    // Retention 3 d / 5 d / 7 d, evaluated at `at` = top + 30 min: a blob goes once
    // all of its span is older than the retention.
    let cfg = StorageConfig {
        raw_retention: std::time::Duration::from_secs(3 * 86_400),
        rollup_5m_retention: std::time::Duration::from_secs(5 * 86_400),
        rollup_1h_retention: std::time::Duration::from_secs(7 * 86_400),
        ..StorageConfig::default()
    };
    let at = top + 30 * 60_000;
    let (c, _) = compact::expire(&mut conn, &cfg, at).unwrap();
    // Raw: hours whose end <= at - 3 d. Hours start at top - 10 d ... top - 1 h.
    let raw_cut = at - 3 * DAY_MS;
    let expect_raw = (0..240)
        .filter(|i| top - 10 * DAY_MS + i * H + H > raw_cut)
        .count() as i64;
    assert_eq!(n(&conn, "SELECT count(*) FROM chunks"), expect_raw);
    assert_eq!(c as i64, 240 - expect_raw);
    assert_eq!(
        n(&conn, "SELECT min(start_ms) FROM chunks"),
        top - 3 * DAY_MS,
        "the oldest raw hour kept is the one still inside retention"
    );
    let r5 = n(&conn, "SELECT count(*) FROM rollups WHERE tier = 300000");
    let expect_r5 = (0..240)
        .filter(|i| top - 10 * DAY_MS + i * H + H > at - 5 * DAY_MS)
        .count() as i64;
    assert_eq!(r5, expect_r5);
    let r1 = n(&conn, "SELECT count(*) FROM rollups WHERE tier = 3600000");
    let expect_r1 = (0..10)
        .filter(|d| top - 10 * DAY_MS + d * DAY_MS + DAY_MS > at - 7 * DAY_MS)
        .count() as i64;
    assert_eq!(r1, expect_r1);
    // Answers still come, from the tiers that remain: 6 days back is 1-hour tier.
    let q = SqliteMetrics::new(&conn, cfg);
    let id: i64 = n(&conn, "SELECT id FROM series WHERE name = 'm0'");
    let r = q
        .series_range(id, top - 6 * DAY_MS, top - 5 * DAY_MS, H)
        .unwrap();
    assert_eq!(
        r.tier,
        Tier::FiveMinutes.max_tier_if(at, &cfg, top - 6 * DAY_MS)
    );
    assert_eq!(r.buckets.len(), 24);
    assert!(r.buckets.iter().all(|b| b.count == 360));
}

impl Tier {
    /// The tier the planner must pick for a range starting at `from` (test helper).
    fn max_tier_if(self, now: i64, cfg: &StorageConfig, from: i64) -> Tier {
        let ms = |d: std::time::Duration| d.as_millis() as i64;
        if from >= now - ms(cfg.rollup_5m_retention) {
            self
        } else {
            Tier::OneHour
        }
    }
}

#[tokio::test]
async fn old_row_per_value_layout_upgrades_in_bounded_steps_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    // An old database: every migration before 0013_chunks, values in `samples`.
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        let chunks = super::MIGRATIONS
            .iter()
            .position(|(name, _)| *name == "0013_chunks")
            .expect("the chunk migration is listed");
        for (i, (_, sql)) in super::MIGRATIONS.iter().enumerate().take(chunks) {
            let tx = conn.transaction().unwrap();
            tx.execute_batch(sql).unwrap();
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .unwrap();
            tx.commit().unwrap();
        }
        conn.execute_batch(
            "INSERT INTO tenants (name, created_ms) VALUES ('acme', 0);
             INSERT INTO devices (id, tenant_id, first_seen_ms, last_seen_ms) VALUES ('d1', 1, 0, 0);",
        )
        .unwrap();
        let base = tandem_proto::util::now_ms() - 5 * DAY_MS;
        let tx = conn.transaction().unwrap();
        for s in 0..SERIES {
            tx.execute(
                "INSERT INTO series (device_id, name, dimension) VALUES ('d1', ?1, '')",
                [format!("m{s}")],
            )
            .unwrap();
            let id = tx.last_insert_rowid();
            let mut ins = tx
                .prepare("INSERT INTO samples (series_id, ts_ms, value) VALUES (?1, ?2, ?3)")
                .unwrap();
            for i in 0..12_000i64 {
                let t = base + i * 10_000;
                ins.execute(rusqlite::params![id, t, value(s, t)]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let before = 4 * 12_000i64;
    let mut conn = super::open(&path).unwrap();
    // Readable at once, before any step.
    assert_eq!(count_values(&conn), before);
    // Bounded steps: each moves at most 20,000 rows.
    let mut steps = 0;
    loop {
        let n = compact::migrate_step(&mut conn, compact::Via::Own).unwrap();
        assert!(n <= 20_000);
        if n == 0 {
            break;
        }
        steps += 1;
        assert_eq!(count_values(&conn), before, "counted between steps");
    }
    assert_eq!(steps, 3);
    let old: i64 = conn
        .query_row("SELECT count(*) FROM samples_old", [], |r| r.get(0))
        .unwrap();
    assert_eq!(old, 0);
    compact::run_pass(
        &mut conn,
        &StorageConfig::default(),
        tandem_proto::util::now_ms(),
    )
    .unwrap();
    assert_eq!(count_values(&conn), before, "counted after compaction");
    let q = SqliteMetrics::new(&conn, StorageConfig::default());
    let id: i64 = conn
        .query_row("SELECT id FROM series WHERE name = 'm2'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(q.raw_points(id, 0, i64::MAX).unwrap().len(), 12_000);
}

// --- store2 brief (issue 17): retention of the other tables ---

/// Every table with its own retention expires exactly the rows older than its
/// cutoff (a row at the cutoff stays), in batches, and keeps what must stay whatever
/// its age: each device's latest patch report and latest successful one with their
/// updates, the latest inventory, each alert instance's latest history record, the
/// log of a delivery still pending.
#[test]
fn other_tables_expire_exactly_at_their_cutoffs_and_keep_the_latest() {
    use super::compact::{OtherRetention, STEP_EXPIRE_OTHER};
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let mut conn = super::open(&dir.path().join("t.db")).unwrap();
    let now = 1_000 * DAY_MS;
    let cfg = OtherRetention {
        patch_reports: Duration::from_secs(10 * 86_400),
        inventory_changes: Duration::from_secs(20 * 86_400),
        alert_history: Duration::from_secs(30 * 86_400),
        notify_log: Duration::from_secs(40 * 86_400),
    };
    let cut = |days: i64| now - days * DAY_MS;
    let (patch_cut, inv_cut, alert_cut, log_cut) = (cut(10), cut(20), cut(30), cut(40));
    // More old rows than three batches hold, so expiry takes several transactions.
    let old = 2 * STEP_EXPIRE_OTHER + 201;
    {
        let tx = conn.transaction().unwrap();
        let mut report = tx
            .prepare("INSERT INTO patch_reports VALUES (?1, ?2, ?3, 'apt', ?4, 0, 0, 0)")
            .unwrap();
        let mut update = tx
            .prepare(
                "INSERT INTO pending_updates VALUES (?1, ?2, 'pkg', '1', '2', 'security', '', 0)",
            )
            .unwrap();
        // d1: `old` reports before the cutoff, one at it (the latest successful),
        // one after it with an error (the latest).
        for seq in 1..=old {
            report
                .execute(rusqlite::params![
                    "d1",
                    seq,
                    patch_cut - 1 - (old - seq),
                    ""
                ])
                .unwrap();
        }
        report
            .execute(rusqlite::params!["d1", old + 1, patch_cut, ""])
            .unwrap();
        report
            .execute(rusqlite::params![
                "d1",
                old + 2,
                patch_cut + 1,
                "apt failed"
            ])
            .unwrap();
        update.execute(rusqlite::params!["d1", 5]).unwrap();
        update.execute(rusqlite::params!["d1", old + 1]).unwrap();
        // d2: all old; the latest (an error) and the latest successful stay.
        report
            .execute(rusqlite::params!["d2", 1, patch_cut - 30, ""])
            .unwrap();
        report
            .execute(rusqlite::params!["d2", 2, patch_cut - 20, ""])
            .unwrap();
        report
            .execute(rusqlite::params!["d2", 3, patch_cut - 10, "failed"])
            .unwrap();
        update.execute(rusqlite::params!["d2", 2]).unwrap();
        drop((report, update));
        tx.execute(
            "INSERT INTO inventories VALUES ('d2', 1, ?1, ?1, 'Debian', '12', '', '6.1', 'x86_64',
               '', '', '', 'cpu', 2, 1, 'dpkg', '', 0)",
            [inv_cut - 500 * DAY_MS],
        )
        .unwrap();
        let mut change = tx
            .prepare("INSERT INTO inventory_changes VALUES ('d1', 1, ?1, 'added', 'pkg', '1')")
            .unwrap();
        for i in 0..old {
            change.execute([inv_cut - 1 - i]).unwrap();
        }
        change.execute([inv_cut]).unwrap();
        drop(change);
        for (id, device) in [(1, "d1"), (2, "d2")] {
            tx.execute(
                "INSERT INTO alert_instances (id, rule, device_id, dimension, tenant, state, since_ms,
                   breach_start_ms, breach_samples, recover_start_ms, last_sample_ms, last_arrival_ms,
                   last_value, stale, flapping, suppressed, changes, updated_ms)
                 VALUES (?1, 'r', ?2, '', 'acme', 'firing', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '[]', 0)",
                rusqlite::params![id, device],
            )
            .unwrap();
        }
        let mut history = tx
            .prepare("INSERT INTO alert_history (instance_id, at_ms, event, to_state, suppressed) VALUES (?1, ?2, 'transition', 'firing', 0)")
            .unwrap();
        // Instance 1: both old, the later is its latest and stays.
        history
            .execute(rusqlite::params![1, alert_cut - 100])
            .unwrap();
        history
            .execute(rusqlite::params![1, alert_cut - 1])
            .unwrap();
        // Instance 2: one before the cutoff, one at it.
        history
            .execute(rusqlite::params![2, alert_cut - 1])
            .unwrap();
        history.execute(rusqlite::params![2, alert_cut]).unwrap();
        drop(history);
        for (id, status) in [(1, "sent"), (2, "pending")] {
            tx.execute(
                "INSERT INTO notify_outbox (id, idem_key, incident_id, tenant, transition, channel,
                   recipient, created_ms, status, next_attempt_ms)
                 VALUES (?1, ?1, 0, 'acme', 'test', 'email', 'a@b', 0, ?2, 0)",
                rusqlite::params![id, status],
            )
            .unwrap();
        }
        let mut log = tx
            .prepare("INSERT INTO notify_log (outbox_id, at_ms, attempt, result, answer) VALUES (?1, ?2, 1, 'retry', '')")
            .unwrap();
        log.execute(rusqlite::params![1, log_cut - 1]).unwrap();
        log.execute(rusqlite::params![1, log_cut]).unwrap();
        log.execute(rusqlite::params![2, log_cut - 5]).unwrap();
        drop(log);
        tx.commit().unwrap();
    }
    let r = compact::expire_other(&mut conn, compact::Via::Own, &cfg, now).unwrap();
    assert_eq!(r.patch_reports, old as u64 + 1, "{r:?}");
    assert_eq!(r.inventory_changes, old as u64, "{r:?}");
    assert_eq!(r.alert_history, 2, "{r:?}");
    assert_eq!(r.notify_log, 1, "{r:?}");
    let list = |sql: &str| -> Vec<String> {
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(
        list("SELECT device_id || ':' || seq FROM patch_reports ORDER BY device_id, seq"),
        [
            format!("d1:{}", old + 1),
            format!("d1:{}", old + 2),
            "d2:2".into(),
            "d2:3".into()
        ]
    );
    assert_eq!(
        list("SELECT device_id || ':' || report_seq FROM pending_updates ORDER BY device_id"),
        [format!("d1:{}", old + 1), "d2:2".into()]
    );
    assert_eq!(list("SELECT device_id FROM inventories"), ["d2"]);
    let times = |sql: &str| -> Vec<i64> {
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |r| r.get::<_, i64>(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(times("SELECT time_ms FROM inventory_changes"), [inv_cut]);
    assert_eq!(
        times("SELECT instance_id * 1000000000000 + at_ms FROM alert_history ORDER BY 1"),
        [
            1_000_000_000_000 + alert_cut - 1,
            2_000_000_000_000 + alert_cut
        ]
    );
    assert_eq!(
        times("SELECT outbox_id * 1000000000000 + at_ms FROM notify_log ORDER BY 1"),
        [1_000_000_000_000 + log_cut, 2_000_000_000_000 + log_cut - 5]
    );
    // A second pass finds nothing more.
    let again = compact::expire_other(&mut conn, compact::Via::Own, &cfg, now).unwrap();
    assert_eq!(again, compact::OtherExpired::default());
}
