//! Issue 16, "nothing lost in every failure path", with the real binaries: an agent
//! whose clock is a day ahead or days behind (libfaketime), corrupt spool files, and
//! a collector restart the fleet must come back from within seconds.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use tandem_tests::{AgentProc, Site, last_seq, now_ms, wait_for};

const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The environment that runs a process with its wall clock moved by `offset`
/// (libfaketime syntax, e.g. "+1d"); its monotonic clock is left alone. Panics with
/// the way out when libfaketime is missing (tests/run-all.sh installs it).
fn skewed(offset: &'static str) -> [(&'static str, &'static str); 3] {
    assert!(
        Path::new(FAKETIME_LIB).exists(),
        "{FAKETIME_LIB} is missing: apt-get install faketime (tests/run-all.sh does)"
    );
    [
        ("LD_PRELOAD", FAKETIME_LIB),
        ("FAKETIME", offset),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ]
}

/// Every seq 1..=acked of `device` is stored (batches ledger) or inside a stored gap
/// record; returns the gap reasons seen.
fn assert_accounted(site: &Site, device: &str) -> Vec<(u64, u64, String)> {
    let acked = site.acked_seq(device);
    let stored: BTreeSet<u64> = site.stored_seqs(device).into_iter().collect();
    let db = site.db();
    let mut st = db
        .prepare(
            "SELECT first_dropped_seq, last_dropped_seq, reason FROM gaps WHERE device_id = ?1",
        )
        .unwrap();
    let gaps: Vec<(u64, u64, String)> = st
        .query_map([device], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, i64>(1)? as u64,
                r.get(2)?,
            ))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let missing: Vec<u64> = (1..=acked)
        .filter(|s| !stored.contains(s) && !gaps.iter().any(|(a, b, _)| (a..=b).contains(&s)))
        .collect();
    assert!(
        missing.is_empty(),
        "{device}: seqs {missing:?} neither stored nor in a gap (gaps {gaps:?})"
    );
    gaps
}

/// The newest value of `metric` the collector holds for `device`: (ts_ms, value).
fn newest(site: &Site, device: &str, metric: &str) -> Option<(i64, f64)> {
    site.db()
        .query_row(
            "SELECT v.ts_ms, v.value FROM samples v JOIN series s ON s.id = v.series_id
             WHERE s.device_id = ?1 AND s.name = ?2 ORDER BY v.ts_ms DESC LIMIT 1",
            [device, metric],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok()
}

/// An agent whose clock runs a day ahead: before issue 16 every frame was refused
/// ("ahead of the collector's clock") and dropped, and the gap report with it. Now
/// it learns the collector's clock from the Welcome, stamps its samples with it,
/// reports its offset, and every seq is stored or in a gap record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_a_day_ahead_delivers_with_corrected_timestamps() {
    crate::crypto();
    let env = skewed("+1d");
    let site = Site::new().await.unwrap();
    let collector = site.start_collector("").await.unwrap();
    let dir = site.provision_agent("ahead", &collector.url(), "").await;
    let agent = AgentProc::start_with_env(&dir, &env).await;
    wait_for(
        Duration::from_secs(20),
        "batches from the skewed agent",
        || {
            let n = site.stored_seqs("ahead").len();
            async move { n >= 5 }
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nagent log:\n{}\ncollector log:\n{}",
            agent.log(),
            collector.log()
        )
    });
    let (ts, offset) = newest(&site, "ahead", "agent.clock_offset_ms").expect("offset metric");
    let day = 86_400_000.0;
    assert!(
        (offset + day).abs() < 60_000.0,
        "offset {offset} ms, expected about -1 day"
    );
    assert!(
        (ts - now_ms()).abs() < 60_000,
        "samples are stamped with the collector's time: {ts} vs {}",
        now_ms()
    );
    let skew = newest(&site, "ahead", "agent.clock_skew_secs").unwrap().1;
    assert!((skew - 86_400.0).abs() < 60.0, "{skew}");
    assert!(agent.terminate().await);
    assert_accounted(&site, "ahead");
    assert!(collector.terminate().await);
}

/// An agent three days behind: the server certificate of a fresh `pki init` was
/// "not yet valid" from its point of view (backdated one hour), so it could not
/// connect. Now certificates are backdated 30 days: it connects and delivers. One
/// 40 days behind still cannot, and its log says its clock is the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_days_behind_connects_and_one_far_behind_is_told_why_not() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let collector = site.start_collector("").await.unwrap();
    let dir = site.provision_agent("behind", &collector.url(), "").await;
    let agent = AgentProc::start_with_env(&dir, &skewed("-3d")).await;
    site.wait_acked(
        "behind",
        3,
        Duration::from_secs(20),
        "batches from an agent 3 days behind",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log()));
    wait_for(Duration::from_secs(10), "its offset reported", || {
        let o = newest(&site, "behind", "agent.clock_offset_ms");
        async move { o.is_some() }
    })
    .await
    .unwrap();
    let (_, offset) = newest(&site, "behind", "agent.clock_offset_ms").unwrap();
    assert!((offset - 3.0 * 86_400_000.0).abs() < 60_000.0, "{offset}");
    assert!(agent.terminate().await);

    let far = site.provision_agent("far", &collector.url(), "").await;
    let agent = AgentProc::start_with_env(&far, &skewed("-40d")).await;
    wait_for(Duration::from_secs(15), "a clock-skew message", || {
        let log = agent.log();
        async move { log.contains("this clock is probably behind") }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log()));
    assert!(agent.terminate().await);
    assert!(collector.terminate().await);
}

/// Spool files damaged while the collector was away: one truncated, one garbled,
/// one with a flipped value bit. Before issue 16 the first blocked every later
/// upload ("spool file … is corrupt") and the bit flip was stored. Now each is
/// moved aside and reported as a `corrupt` gap, nothing of it is stored, and
/// everything else arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_spool_files_are_reported_and_do_not_block_delivery() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    site.pin_free_port();
    let collector = site.start_collector("").await.unwrap();
    let url = collector.url();
    collector.kill9().await;
    let dir = site.provision_agent("damaged", &url, "").await;
    let agent = AgentProc::start(&dir).await;
    wait_for(Duration::from_secs(20), "five samples spooled", || {
        let n = last_seq(&dir);
        async move { n >= 5 }
    })
    .await
    .unwrap();
    agent.kill9().await;
    let spool = dir.join("state/spool");
    let file = |seq: u64| spool.join(format!("{seq:020}.frame"));
    let bytes = std::fs::read(file(2)).unwrap();
    std::fs::write(file(2), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(file(3), b"\x00\x01 garbage \xff").unwrap();
    let mut bytes = std::fs::read(file(4)).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x04;
    std::fs::write(file(4), &bytes).unwrap();
    let collector = site.start_collector("").await.unwrap();
    let agent = AgentProc::start(&dir).await;
    site.wait_acked(
        "damaged",
        8,
        Duration::from_secs(20),
        "delivery past the corrupt frames",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log()));
    let stored = site.stored_seqs("damaged");
    for s in [2, 3, 4] {
        assert!(
            !stored.contains(&s),
            "corrupt seq {s} was stored: {stored:?}"
        );
    }
    let gaps = assert_accounted(&site, "damaged");
    assert!(
        gaps.iter()
            .any(|(a, b, r)| r == "corrupt" && *a <= 2 && *b >= 4),
        "{gaps:?}"
    );
    assert_eq!(
        std::fs::read_dir(dir.join("state/spool-corrupt"))
            .unwrap()
            .count(),
        3,
        "kept aside"
    );
    assert!(agent.terminate().await);
    assert!(collector.terminate().await);
}

/// A collector away for 15 s: the agent is back within a few seconds of its
/// return. Before issue 16 the backoff had grown to 8–16 s by then (a median 19 s
/// in the field), so "the newest sample at once" waited that long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_reconnects_within_seconds_of_the_collectors_return() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    site.pin_free_port();
    let collector = site.start_collector("").await.unwrap();
    let dir = site
        .provision_agent("returning", &collector.url(), "")
        .await;
    let agent = AgentProc::start(&dir).await;
    site.wait_acked("returning", 2, Duration::from_secs(20), "first batches")
        .await
        .unwrap();
    collector.kill9().await;
    // Long enough for the old backoff (1, 2, 4, 8 s, full jitter) to grow.
    let away = Instant::now();
    while away.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let before = site.acked_seq("returning");
    let collector = site.start_collector("").await.unwrap();
    let back = Instant::now();
    wait_for(Duration::from_secs(20), "the agent back", || {
        let n = site.acked_seq("returning");
        async move { n > before }
    })
    .await
    .unwrap();
    let took = back.elapsed();
    eprintln!(
        "reconnected {:.1} s after the collector's return",
        took.as_secs_f64()
    );
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} (retry 0.25–3 s, plus one sample interval)"
    );
    assert!(agent.terminate().await);
    assert!(collector.terminate().await);
}

/// Overwrites the first bytes of the root page of `table` in a closed database.
fn corrupt_table(db: &Path, table: &str) {
    use std::io::{Seek, SeekFrom, Write};
    let conn = rusqlite::Connection::open(db).unwrap();
    let root: i64 = conn
        .query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = ?1",
            [table],
            |r| r.get(0),
        )
        .unwrap();
    let page: i64 = conn
        .pragma_query_value(None, "page_size", |r| r.get(0))
        .unwrap();
    conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")
        .unwrap();
    drop(conn);
    let mut f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    f.seek(SeekFrom::Start(((root - 1) * page) as u64)).unwrap();
    f.write_all(&[0xA5; 64]).unwrap();
    f.sync_all().unwrap();
}

/// A database with a damaged page: before issue 16 the collector served it without
/// complaint. Now it refuses to start, naming the file and the recovery steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_database_is_refused_at_start_with_a_clear_message() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let collector = site.start_collector("").await.unwrap();
    let dir = site.provision_agent("victim", &collector.url(), "").await;
    let agent = AgentProc::start(&dir).await;
    site.wait_acked("victim", 2, Duration::from_secs(20), "some batches")
        .await
        .unwrap();
    agent.kill9().await;
    assert!(collector.terminate().await);
    corrupt_table(&site.db_path(), "batches");
    let err = match site.start_collector("").await {
        Ok(c) => {
            let _ = c.terminate().await;
            panic!("a collector served a corrupt database");
        }
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("tandem.db is corrupt") && err.contains("docs/OPERATIONS.md"),
        "{err}"
    );
}

/// `backup --to FILE` while an agent streams: a consistent copy, verified; the
/// restore of docs/OPERATIONS.md (stop, replace the file, start) brings the
/// collector back with the copy's data, and the agent goes on delivering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_backup_is_consistent_and_restores() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    site.pin_free_port();
    let collector = site.start_collector("").await.unwrap();
    let dir = site.provision_agent("backed", &collector.url(), "").await;
    let agent = AgentProc::start(&dir).await;
    site.wait_acked("backed", 3, Duration::from_secs(20), "some batches")
        .await
        .unwrap();
    let to = site.dir.path().join("backup.db");
    let out = site.cli_ok(&["backup", "--to", to.to_str().unwrap()]).await;
    assert!(out.contains("integrity ok"), "{out}");
    let (again, _, err) = site.cli(&["backup", "--to", to.to_str().unwrap()]).await;
    assert!(!again && err.contains("exists"), "never overwrites: {err}");
    let copy = rusqlite::Connection::open(&to).unwrap();
    let check: String = copy
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let (copied, acked): (i64, i64) = copy
        .query_row(
            "SELECT (SELECT count(*) FROM batches WHERE device_id = 'backed'),
                    (SELECT acked_seq FROM devices WHERE id = 'backed')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(copied >= 3, "{copied}");
    // Consistent: every seq up to the copy's acked_seq is in the copy.
    assert_eq!(copied, acked, "a torn copy");
    drop(copy);
    // Restore: stop the collector, put the copy in place (WAL files of the old
    // database go with it), start.
    assert!(collector.terminate().await);
    let db = site.db_path();
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    std::fs::copy(&to, &db).unwrap();
    let collector = site.start_collector("").await.unwrap();
    let before = site.acked_seq("backed");
    wait_for(
        Duration::from_secs(20),
        "delivery after the restore",
        || {
            let n = site.acked_seq("backed");
            async move { n > before }
        },
    )
    .await
    .unwrap();
    assert!(agent.terminate().await);
    assert!(collector.terminate().await);
}

/// The agent's state dir on a full disk (a 128 KiB tmpfs) while the collector is
/// away: before issue 16 it logged "sample lost" and reported nothing, and no seq
/// was used, so the seqs even looked complete. Now every lost sample uses a seq
/// recorded as an `agent_disk` gap, and once the collector is back every seq is
/// stored or inside a gap record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_a_full_disk_reports_what_it_lost() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    site.pin_free_port();
    let collector = site.start_collector("").await.unwrap();
    let url = collector.url();
    collector.kill9().await;
    let dir = site.provision_agent("cramped", &url, "").await;
    let Some(_fs) = tandem_tests::Tmpfs::mount(&dir.join("state"), "128k") else {
        tandem_tests::cannot_run("cannot mount a tmpfs here (not root?)");
        return;
    };
    let agent = AgentProc::start(&dir).await;
    wait_for(
        Duration::from_secs(40),
        "samples lost to the full disk",
        || {
            let n = agent.log().matches("sample lost").count();
            async move { n >= 3 }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log()));
    let collector = site.start_collector("").await.unwrap();
    wait_for(Duration::from_secs(30), "an agent_disk gap stored", || {
        let n = site.count(
            "SELECT count(*) FROM gaps WHERE device_id = 'cramped' AND reason = 'agent_disk'",
        );
        async move { n >= 1 }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log()));
    wait_for(Duration::from_secs(20), "caught up", || {
        let ok = site.acked_seq("cramped") >= last_seq(&dir);
        async move { ok }
    })
    .await
    .unwrap();
    assert!(agent.terminate().await);
    let gaps = assert_accounted(&site, "cramped");
    eprintln!("gaps: {gaps:?}");
    assert!(collector.terminate().await);
}
