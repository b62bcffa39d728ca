//! Storage (issue 17): one collector per data dir, compressed chunks, retention.

use std::time::{Duration, Instant};

use tandem_tests::{Site, bin};
use tokio::process::Command;

/// Runs `tandem-collector ARGS` to its end (at most 30 s): (exit ok, stderr, took).
async fn run_to_end(args: &[&std::ffi::OsStr]) -> (bool, String, Duration) {
    let start = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(bin("tandem-collector"))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("a refused collector must exit, not serve")
    .expect("run tandem-collector");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        start.elapsed(),
    )
}

/// A second `serve` and a `demo` on a data dir that a running collector holds are
/// refused at once, naming the dir and the holder's pid; once the holder is
/// SIGKILLed the OS has released its lock and a new collector starts.
#[tokio::test]
async fn a_second_collector_on_the_same_data_dir_is_refused() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let first = site.start_collector("").await.unwrap();
    let data_dir = site.data_dir();
    let version_before = user_version(&site);

    // Same data dir, its own (free) ports: only the lock can refuse it.
    let cfg2 = site.dir.path().join("collector2.toml");
    std::fs::write(
        &cfg2,
        "data_dir = \"collector\"\n[enrollment]\nlisten = \"127.0.0.1:0\"\n[telemetry]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let (ok, stderr, took) =
        run_to_end(&["serve".as_ref(), "--config".as_ref(), cfg2.as_os_str()]).await;
    assert!(
        !ok,
        "a second serve on the same data dir must fail; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("in use by another collector")
            && stderr.contains(&format!("pid {}", first.pid())),
        "the refusal names the holder's pid; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains(&data_dir.file_name().unwrap().to_string_lossy().to_string()),
        "the refusal names the data dir; stderr:\n{stderr}"
    );
    assert!(
        took < Duration::from_secs(10),
        "refused at once, took {took:?}"
    );

    // `demo --dir <site>` uses <site>/collector: the same data dir.
    let (ok, stderr, _) = run_to_end(&[
        "demo".as_ref(),
        "--dir".as_ref(),
        site.dir.path().as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
    ])
    .await;
    assert!(!ok, "demo on a held data dir must fail; stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", first.pid())),
        "demo's refusal names the holder; stderr:\n{stderr}"
    );
    assert_eq!(
        user_version(&site),
        version_before,
        "nothing migrated by the refused ones"
    );

    // The holder still runs after the refusals...
    let mut first = first;
    assert!(
        first.child.try_wait().unwrap().is_none(),
        "the holder is unharmed"
    );
    // ... and once it is killed (no clean exit), the OS has released the lock.
    first.kill9().await;
    let again = site.start_collector("").await.unwrap();
    assert!(
        again.terminate().await,
        "the restarted collector stops cleanly"
    );
}

fn user_version(site: &Site) -> i64 {
    site.db()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

const DEVICES: usize = 12;
const SERIES: usize = 25;
/// Samples per batch: 10 minutes at 10 s.
const PER_BATCH: usize = 60;
/// Batches per device: 3 hours of closed data, all compactable at once.
const BATCHES: u64 = 18;

fn old_batch(seq: u64, start: i64) -> tandem_proto::v1::AgentFrame {
    use tandem_proto::v1::{MetricBatch, Sample, SeriesKey, agent_frame};
    tandem_proto::v1::AgentFrame {
        kind: Some(agent_frame::Kind::Batch(MetricBatch {
            seq,
            series: (0..SERIES)
                .map(|i| SeriesKey {
                    name: format!("m.{i}"),
                    dimension: String::new(),
                })
                .collect(),
            samples: (0..PER_BATCH)
                .map(|j| Sample {
                    time_unix_ms: start + j as i64 * 10_000,
                    values: (0..SERIES)
                        .map(|i| (seq as usize * 7 + j + i) as f64 * 0.5)
                        .collect(),
                })
                .collect(),
        })),
    }
}

/// SIGKILL while the maintenance thread compacts (several times, at different
/// moments), then a clean run to the end: every acknowledged value is counted
/// exactly once, and the head is empty. Kills that land mid-pass are seen as a head
/// that is partly compacted; at least one must.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_compaction_counts_every_value_exactly_once() {
    use tandem_tests::{Stream, client, now_ms};
    crate::crypto();
    let site = Site::new().await.unwrap();
    // First run: compaction waits a day after its (empty) first pass.
    let collector = site
        .start_collector("[store]\ncompact_interval_secs = 86400\ncompact_grace_secs = 0\n")
        .await
        .unwrap();
    let now = now_ms();
    let start = now - now.rem_euclid(3_600_000) - 4 * 3_600_000;
    for d in 0..DEVICES {
        let creds = site.issue("acme", &format!("dev-{d}"));
        let mut c = client(collector.addr, &creds).await.unwrap();
        let (mut s, _) = Stream::hello(&mut c).await.unwrap();
        for seq in 1..=BATCHES {
            s.send(old_batch(seq, start + (seq as i64 - 1) * 600_000))
                .await
                .unwrap();
        }
        let mut acked = 0;
        while acked < BATCHES {
            acked = s.next_ack().await.unwrap().expect("ack");
        }
    }
    let expected = (DEVICES * SERIES * PER_BATCH) as i64 * BATCHES as i64;
    let head_rows = (DEVICES as u64 * BATCHES) as i64;
    assert!(collector.terminate().await);
    assert_eq!(site.count("SELECT count(*) FROM head"), head_rows);
    assert_eq!(site.count("SELECT count(*) FROM samples"), expected);

    // Now compaction every second from the start, killed at growing delays.
    let mut partial = 0;
    for delay_ms in [150u64, 300, 500, 800, 1200, 1800] {
        let c = site
            .start_collector("[store]\ncompact_interval_secs = 1\ncompact_grace_secs = 0\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        c.kill9().await;
        let left = site.count("SELECT count(*) FROM head");
        // Cheap count per kill (head rows and chunks record their values); the
        // value-by-value count through the `samples` view runs at the end.
        let values = site.count(
            "SELECT (SELECT coalesce(sum(n_values), 0) FROM head) + (SELECT coalesce(sum(n_values), 0) FROM chunks)",
        );
        eprintln!("killed after {delay_ms} ms: {left} head rows left, {values} values");
        assert_eq!(values, expected, "after a kill at {delay_ms} ms");
        if left > 0 && left < head_rows {
            partial += 1;
        }
        if left == 0 {
            break;
        }
    }
    assert!(
        partial >= 1,
        "no kill landed during a compaction pass; make the data larger"
    );
    let c = site
        .start_collector("[store]\ncompact_interval_secs = 1\ncompact_grace_secs = 0\n")
        .await
        .unwrap();
    tandem_tests::wait_for(Duration::from_secs(60), "compaction to finish", || async {
        site.count("SELECT count(*) FROM head") == 0
    })
    .await
    .unwrap();
    assert!(c.terminate().await);
    assert_eq!(
        site.count("SELECT count(*) FROM samples"),
        expected,
        "exactly once"
    );
    let chunks = site.count("SELECT count(*) FROM chunks");
    assert_eq!(chunks, DEVICES as i64 * 3, "one chunk per device-hour");
    let stored: i64 = site.count("SELECT sum(n_values) FROM chunks");
    assert_eq!(stored, expected);
}

// --- store2 brief (issue 17): SIGKILL during retention ---

/// Old alert history rows for the retention test: enough that expiring them (500
/// rows a transaction, one fsync each) takes many transactions, so kills land
/// inside it.
const OLD_HISTORY: i64 = 200_000;
const NEW_HISTORY: i64 = 1_000;

/// SIGKILL while the maintenance thread expires (raw chunks older than a day, alert
/// history older than a day), several times at growing delays, then a clean run to
/// the end: every value and row that should survive is counted exactly once after
/// every kill, each old chunk is either whole or gone, and at the end only the
/// survivors are left. At least one kill must land mid-expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_retention_keeps_every_surviving_value_exactly_once() {
    use tandem_tests::{Stream, client, now_ms};
    crate::crypto();
    let site = Site::new().await.unwrap();
    // First run: no maintenance after the first (empty) pass; data goes to the head.
    let collector = site
        .start_collector("[store]\ncompact_interval_secs = 86400\ncompact_grace_secs = 0\n")
        .await
        .unwrap();
    let now = now_ms();
    let hour = now - now.rem_euclid(3_600_000);
    // Three hours 30 h ago (older than a day of raw retention) and three hours
    // that end two hours ago (inside it).
    let old_start = hour - 30 * 3_600_000;
    let new_start = hour - 5 * 3_600_000;
    for d in 0..DEVICES {
        let creds = site.issue("acme", &format!("dev-{d}"));
        let mut c = client(collector.addr, &creds).await.unwrap();
        let (mut s, _) = Stream::hello(&mut c).await.unwrap();
        for seq in 1..=BATCHES {
            s.send(old_batch(seq, old_start + (seq as i64 - 1) * 600_000))
                .await
                .unwrap();
        }
        for seq in BATCHES + 1..=2 * BATCHES {
            s.send(old_batch(
                seq,
                new_start + (seq - BATCHES - 1) as i64 * 600_000,
            ))
            .await
            .unwrap();
        }
        let mut acked = 0;
        while acked < 2 * BATCHES {
            acked = s.next_ack().await.unwrap().expect("ack");
        }
    }
    assert!(collector.terminate().await);
    let per_hour = (SERIES * PER_BATCH * 6) as i64;
    let survivors = DEVICES as i64 * 3 * per_hour;
    assert_eq!(site.count("SELECT count(*) FROM samples"), 2 * survivors);

    // Compact everything, keeping it all (30 days of raw).
    let c = site
        .start_collector(
            "[store]\ncompact_interval_secs = 1\ncompact_grace_secs = 0\nraw_retention_days = 30\n",
        )
        .await
        .unwrap();
    tandem_tests::wait_for(Duration::from_secs(60), "compaction to finish", || async {
        site.count("SELECT count(*) FROM head") == 0
    })
    .await
    .unwrap();
    assert!(c.terminate().await);
    let old_chunks = DEVICES as i64 * 3;
    assert_eq!(
        site.count(&format!(
            "SELECT count(*) FROM chunks WHERE start_ms < {new_start}"
        )),
        old_chunks
    );

    // Alert history: many rows older than a day, some recent (each instance's
    // latest record is recent, so every old one may go).
    {
        let mut db = rusqlite::Connection::open(site.db_path()).unwrap();
        let tx = db.transaction().unwrap();
        for id in [1, 2] {
            tx.execute(
                "INSERT INTO alert_instances (id, rule, device_id, dimension, tenant, state, since_ms,
                   breach_start_ms, breach_samples, recover_start_ms, last_sample_ms, last_arrival_ms,
                   last_value, stale, flapping, suppressed, changes, updated_ms)
                 VALUES (?1, 'r', 'dev-0', ?1, 'acme', 'ok', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '[]', 0)",
                [id],
            )
            .unwrap();
        }
        {
            let mut ins = tx
                .prepare("INSERT INTO alert_history (instance_id, at_ms, event, to_state, suppressed) VALUES (?1, ?2, 'transition', 'ok', 0)")
                .unwrap();
            for i in 0..OLD_HISTORY {
                ins.execute(rusqlite::params![1 + i % 2, now - 400 * 86_400_000 + i])
                    .unwrap();
            }
            for i in 0..NEW_HISTORY {
                ins.execute(rusqlite::params![1 + i % 2, now - 3_600_000 + i])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let cutoff_ms = now - 86_400_000;
    let old_history = format!("SELECT count(*) FROM alert_history WHERE at_ms < {cutoff_ms}");
    let new_history = format!("SELECT count(*) FROM alert_history WHERE at_ms >= {cutoff_ms}");

    let retention = "[store]\ncompact_interval_secs = 1\ncompact_grace_secs = 0\nraw_retention_days = 1\nalert_history_retention_days = 1\n";
    let mut partial = 0;
    let mut history_left = OLD_HISTORY;
    for delay_ms in [100u64, 200, 350, 500, 800, 1200, 1800] {
        let c = site.start_collector(retention).await.unwrap();
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        c.kill9().await;
        let surviving = site.count(&format!(
            "SELECT coalesce(sum(n_values), 0) FROM chunks WHERE start_ms >= {new_start}"
        ));
        let old_left = site.count(&format!(
            "SELECT count(*) FROM chunks WHERE start_ms < {new_start}"
        ));
        let broken = site.count(&format!(
            "SELECT count(*) FROM chunks WHERE n_values <> {per_hour}"
        ));
        let old_h = site.count(&old_history);
        eprintln!(
            "killed after {delay_ms} ms: {old_left} old chunks, {old_h} old history rows left"
        );
        assert_eq!(
            surviving, survivors,
            "surviving values after a kill at {delay_ms} ms"
        );
        assert_eq!(broken, 0, "every chunk whole after a kill at {delay_ms} ms");
        assert_eq!(
            site.count(&new_history),
            NEW_HISTORY,
            "recent history after a kill at {delay_ms} ms"
        );
        assert!(old_h <= history_left, "expired rows do not come back");
        history_left = old_h;
        if old_h > 0 && old_h < OLD_HISTORY {
            partial += 1;
        }
        if old_h == 0 && old_left == 0 {
            break;
        }
    }
    assert!(
        partial >= 1,
        "no kill landed during expiry; make the old history larger"
    );
    let c = site.start_collector(retention).await.unwrap();
    tandem_tests::wait_for(Duration::from_secs(60), "expiry to finish", || async {
        site.count(&old_history) == 0
            && site.count(&format!(
                "SELECT count(*) FROM chunks WHERE start_ms < {new_start}"
            )) == 0
    })
    .await
    .unwrap();
    assert!(c.terminate().await);
    assert_eq!(
        site.count("SELECT count(*) FROM samples"),
        survivors,
        "the surviving values exactly once, nothing older"
    );
    assert_eq!(site.count(&new_history), NEW_HISTORY);
    // The 5-minute rollups of the expired hours stay (their retention is 90 days).
    assert_eq!(
        site.count(&format!(
            "SELECT count(*) FROM rollups WHERE tier = 300000 AND start_ms < {new_start}"
        )),
        old_chunks
    );
}
