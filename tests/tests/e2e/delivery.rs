//! Delivery that loses nothing: collector crashes, agent crashes, long outages, a
//! full disk, backpressure, live data during catch-up, and config reloads — with the
//! real binaries.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tandem_tests::{
    AgentProc, Site, Stream, batch, client, last_seq, now_ms, spool_contents, wait_for,
};

/// A small deterministic PRNG (xorshift), seeded from the clock and printed, so a
/// failing run can be replayed.
struct Rng(u64);
impl Rng {
    fn new() -> Self {
        let seed = (now_ms() as u64) | 1;
        eprintln!("rng seed {seed}");
        Self(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Waits until the collector holds everything each agent has numbered so far.
async fn wait_caught_up(site: &Site, dirs: &[PathBuf], within: Duration) {
    wait_for(within, "every agent's spool to be acknowledged", || {
        let ok = dirs.iter().all(|d| {
            let name = d.file_name().unwrap().to_string_lossy().into_owned();
            site.acked_seq(&name) >= last_seq(d)
        });
        async move { ok }
    })
    .await
    .unwrap();
}

/// After a clean stop: the device's stored seqs are exactly 1..=last_seq, each
/// once, with every value of every batch; the spool is empty. (The ledger holds
/// patch reports too, with their update count as `n_values`: they are left out of
/// the value count.)
fn assert_exactly_once(site: &Site, dir: &Path) {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let last = last_seq(dir);
    let stored = site.stored_seqs(&name);
    assert_eq!(
        stored,
        (1..=last).collect::<Vec<_>>(),
        "{name}: every seq 1..={last} stored once"
    );
    let (values, declared): (i64, i64) = site
        .db()
        .query_row(
            "SELECT (SELECT count(*) FROM samples v JOIN series s ON s.id = v.series_id WHERE s.device_id = ?1),
                    (SELECT coalesce(sum(n_values), 0) FROM batches WHERE device_id = ?1
                       AND seq NOT IN (SELECT seq FROM patch_reports WHERE device_id = ?1)
                       AND seq NOT IN (SELECT seq FROM gaps WHERE device_id = ?1))",
            [&name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    if values != declared {
        // Say which instants are short, to tell a lost batch from a collision.
        let db = site.db();
        let mut st = db
            .prepare(
                "SELECT v.ts_ms, count(*) FROM samples v JOIN series s ON s.id = v.series_id
                 WHERE s.device_id = ?1 GROUP BY v.ts_ms ORDER BY v.ts_ms",
            )
            .unwrap();
        let per_ts: Vec<(i64, i64)> = st
            .query_map([&name], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut st = db
            .prepare(
                "SELECT seq, n_values FROM batches WHERE device_id = ?1
                 AND seq NOT IN (SELECT seq FROM patch_reports WHERE device_id = ?1) ORDER BY seq",
            )
            .unwrap();
        let per_seq: Vec<(i64, i64)> = st
            .query_map([&name], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        eprintln!("{name}: values per instant {per_ts:?}\nvalues per seq {per_seq:?}");
    }
    assert_eq!(
        values, declared,
        "{name}: every value of every batch stored, none twice"
    );
    assert_eq!(
        spool_contents(dir).0,
        0,
        "{name}: spool empty after a clean stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_agents_survive_ten_collector_kills_with_every_sample_stored_once() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let port = site.pin_free_port();
    let first = site.start_collector("").await.unwrap();
    let url = first.url();
    let mut dirs = Vec::new();
    for i in 0..50 {
        dirs.push(
            site.provision_agent(
                &format!("fleet-{i:02}"),
                &url,
                "catchup_batches_per_sec = 50\n",
            )
            .await,
        );
    }
    let mut agents = Vec::new();
    for d in &dirs {
        agents.push(AgentProc::start(d).await);
    }
    let mut rng = Rng::new();
    let mut collector = first;
    for round in 0..10 {
        tokio::time::sleep(Duration::from_millis(500 + rng.below(2000))).await;
        let acked: u64 = dirs
            .iter()
            .map(|d| site.acked_seq(&d.file_name().unwrap().to_string_lossy()))
            .sum();
        collector.kill9().await;
        eprintln!("round {round}: collector SIGKILLed with {acked} batches acknowledged in all");
        tokio::time::sleep(Duration::from_millis(rng.below(1000))).await;
        collector = site.start_collector("").await.unwrap();
        assert_eq!(collector.addr.port(), port);
    }
    wait_caught_up(&site, &dirs, Duration::from_secs(120)).await;
    for a in agents {
        assert!(a.terminate().await, "agent exits 0 on SIGTERM");
    }
    for d in &dirs {
        assert_exactly_once(&site, d);
    }
    let ok: String = site
        .db()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    assert!(collector.terminate().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_during_an_outage_replays_its_whole_spool() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    site.pin_free_port();
    let collector = site.start_collector("").await.unwrap();
    let dir = site.provision_agent("crashy", &collector.url(), "").await;
    let agent = AgentProc::start(&dir).await;
    site.wait_acked("crashy", 2, Duration::from_secs(30), "first batches")
        .await
        .unwrap();
    collector.kill9().await;
    let at_outage = last_seq(&dir);
    wait_for(
        Duration::from_secs(30),
        "spooling during the outage",
        || {
            // last_seq is written just after its frame: at_outage + 4 means four
            // frames of the outage are on disk (one may have gone before the kill).
            let n = last_seq(&dir);
            async move { n >= at_outage + 4 }
        },
    )
    .await
    .unwrap();
    agent.kill9().await;
    let spooled_before_restart = spool_contents(&dir).0;
    assert!(
        spooled_before_restart >= 3,
        "the outage's samples are on disk: {spooled_before_restart}"
    );
    let agent = AgentProc::start(&dir).await;
    wait_for(
        Duration::from_secs(30),
        "more samples after the agent restart",
        || {
            let n = last_seq(&dir);
            async move { n >= at_outage + 5 }
        },
    )
    .await
    .unwrap();
    let collector = site.start_collector("").await.unwrap();
    wait_caught_up(&site, std::slice::from_ref(&dir), Duration::from_secs(60)).await;
    assert!(agent.terminate().await);
    assert_exactly_once(&site, &dir);
    assert!(collector.terminate().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_respects_the_spool_bound_and_the_gap_is_reported() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    site.pin_free_port();
    let collector = site.start_collector("").await.unwrap();
    // 16 KiB holds only a few samples of this machine (~1-3 KiB each).
    let max_bytes = 16 * 1024;
    let dir = site
        .provision_agent(
            "far",
            &collector.url(),
            &format!("spool_max_bytes = {max_bytes}\n"),
        )
        .await;
    let agent = AgentProc::start(&dir).await;
    site.wait_acked("far", 1, Duration::from_secs(30), "first batch")
        .await
        .unwrap();
    collector.kill9().await;
    let at_outage = last_seq(&dir);
    // A "long" outage: far more samples than the spool can hold.
    let mut biggest = 0;
    wait_for(
        Duration::from_secs(60),
        "20 samples during the outage",
        || {
            let (_, _, bytes) = spool_contents(&dir);
            biggest = biggest.max(bytes);
            let n = last_seq(&dir);
            async move { n >= at_outage + 20 }
        },
    )
    .await
    .unwrap();
    let (frames, _, bytes) = spool_contents(&dir);
    assert!(
        bytes <= max_bytes + 4096,
        "spool bound respected: {bytes} bytes in {frames} frames"
    );
    assert!(
        biggest <= max_bytes + 4096,
        "spool bound respected throughout: peak {biggest} bytes"
    );
    assert!(frames < 20, "old samples were dropped: {frames} kept");

    let collector = site.start_collector("").await.unwrap();
    wait_caught_up(&site, std::slice::from_ref(&dir), Duration::from_secs(60)).await;
    assert!(agent.terminate().await);
    let last = last_seq(&dir);

    // Every seq the agent assigned is accounted for exactly once: stored as a batch
    // or gap record, or inside a reported dropped range.
    let stored: BTreeSet<u64> = site.stored_seqs("far").into_iter().collect();
    let gaps: Vec<(u64, u64, String)> = {
        let db = site.db();
        let mut st = db
            .prepare("SELECT first_dropped_seq, last_dropped_seq, reason FROM gaps WHERE device_id = 'far' ORDER BY seq")
            .unwrap();
        st.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, i64>(1)? as u64,
                r.get(2)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    assert!(!gaps.is_empty(), "the hole is reported");
    assert!(gaps.iter().all(|g| g.2 == "spool_full"), "{gaps:?}");
    let mut dropped = BTreeSet::new();
    for (a, b, _) in &gaps {
        for s in *a..=*b {
            // A dropped seq may still be stored: the collector can commit a frame and
            // die before its ack arrives, and the agent later drops its copy. The gap
            // then names data that is in fact there: pessimistic, never a hidden loss.
            assert!(dropped.insert(s), "seq {s} reported dropped twice");
        }
    }
    let all: BTreeSet<u64> = stored.union(&dropped).copied().collect();
    assert_eq!(
        all,
        (1..=last).collect::<BTreeSet<_>>(),
        "no seq unaccounted for"
    );
    // 20 samples were taken during the outage and at most `frames` of them fit.
    assert!(
        dropped.len() + frames >= 20,
        "what did not fit was dropped: {} dropped, {frames} kept",
        dropped.len()
    );
    assert!(collector.terminate().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_clear_error_and_ingest_resumes_when_space_returns() {
    crate::crypto();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let Some(disk) = tandem_tests::Tmpfs::mount(&data, "1m") else {
        // Mounting needs root (CI runs as root): a failure there, a skip elsewhere.
        tandem_tests::cannot_run("cannot mount a tmpfs here (not root?)");
        return;
    };
    let site = Site { dir };
    let out = tokio::process::Command::new(tandem_tests::bin("tandem-collector"))
        .args(["pki", "init", "--data-dir"])
        .arg(site.data_dir())
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let collector = site.start_collector("").await.unwrap();
    let creds = site.issue("acme", "filler");
    let base = now_ms();
    let mut c = client(collector.addr, &creds).await.unwrap();
    let (mut s, _) = Stream::hello(&mut c).await.unwrap();
    // Fill the disk: 200 values per batch until the collector refuses.
    let mut acked = 0;
    let mut seq = 0;
    let refusal = loop {
        seq += 1;
        s.send(batch(seq, base + seq as i64, 200)).await.unwrap();
        match s.next_ack().await {
            Ok(Some(a)) => acked = a,
            Ok(None) => panic!("stream ended without a reason"),
            Err(status) => break status,
        }
        assert!(seq < 100_000, "the disk never filled");
    };
    eprintln!("disk full after {acked} acked batches: {refusal:?}");
    eprintln!("collector log:\n{}", collector.log());
    assert_eq!(refusal.code(), tonic::Code::Unavailable, "{refusal:?}");
    assert!(
        refusal.message().contains("cannot store data right now"),
        "{refusal:?}"
    );
    assert!(acked > 0);
    assert!(
        collector.log().contains("disk is full"),
        "the log names the cause"
    );

    // Space returns: the same agent reconnects and resumes where it was acked.
    disk.resize("64m");
    let (mut s, welcome) = Stream::hello(&mut c).await.unwrap();
    assert_eq!(
        welcome.acked_seq, acked,
        "nothing past the last ack was recorded as stored"
    );
    for q in acked + 1..=acked + 20 {
        s.send(batch(q, base + q as i64, 200)).await.unwrap();
    }
    let mut last = 0;
    while last < acked + 20 {
        last = s
            .next_ack()
            .await
            .unwrap()
            .expect("ack after space returned");
    }
    let stored = site.stored_seqs("filler");
    assert_eq!(stored, (1..=acked + 20).collect::<Vec<_>>());
    let ok: String = site
        .db()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    assert!(collector.terminate().await);
    drop(site);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_write_queue_asks_agents_to_slow_down_and_drops_nothing() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let collector = site
        .start_collector("[store]\nwrite_queue = 8\nmax_group = 2\n")
        .await
        .unwrap();
    let addr = collector.addr;
    let slow_downs = Arc::new(AtomicU64::new(0));
    let base = now_ms();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let creds = site.issue("acme", &format!("pusher-{i}"));
        let slow_downs = slow_downs.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = client(addr, &creds).await.unwrap();
            let (mut s, _) = Stream::hello(&mut c).await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(4);
            let (mut next, mut acked, mut in_flight) = (1u64, 0u64, 0);
            while Instant::now() < deadline {
                while in_flight < 16 {
                    s.send(batch(next, base + next as i64, 50)).await.unwrap();
                    next += 1;
                    in_flight += 1;
                }
                acked = s.next_ack().await.unwrap().unwrap();
                in_flight -= 1;
            }
            while in_flight > 0 {
                acked = s.next_ack().await.unwrap().unwrap();
                in_flight -= 1;
            }
            slow_downs.fetch_add(u64::from(s.slow_downs), Ordering::Relaxed);
            acked
        }));
    }
    let mut total = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        let acked = t.await.unwrap();
        assert_eq!(
            site.stored_seqs(&format!("pusher-{i}")),
            (1..=acked).collect::<Vec<_>>()
        );
        total += acked;
    }
    eprintln!(
        "{total} batches acked, {} slow-downs sent",
        slow_downs.load(Ordering::Relaxed)
    );
    assert!(
        slow_downs.load(Ordering::Relaxed) > 0,
        "the collector asked to slow down"
    );
    assert!(collector.terminate().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_data_arrives_while_the_backlog_is_still_draining() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    site.pin_free_port();
    let collector = site.start_collector("").await.unwrap();
    // Two backlog frames per second against one new sample per second: a
    // 10-sample backlog takes ~10 s to drain.
    let dir = site
        .provision_agent("laptop", &collector.url(), "catchup_batches_per_sec = 2\n")
        .await;
    let agent = AgentProc::start(&dir).await;
    site.wait_acked("laptop", 1, Duration::from_secs(30), "first batch")
        .await
        .unwrap();
    collector.kill9().await;
    let at_outage = last_seq(&dir);
    wait_for(Duration::from_secs(30), "a backlog of 10", || {
        let n = last_seq(&dir);
        async move { n >= at_outage + 10 }
    })
    .await
    .unwrap();
    let collector = site.start_collector("").await.unwrap();
    // The agent reconnects after its backoff (which grew during the outage).
    wait_for(Duration::from_secs(70), "the agent to reconnect", || {
        let n = collector.log().matches("agent connected").count();
        async move { n >= 2 }
    })
    .await
    .unwrap();
    let reconnect = now_ms();
    // The present shows up at once, long before the backlog is through.
    wait_for(Duration::from_secs(5), "a sample newer than the reconnect", || {
        let newest: i64 = site.count(
            "SELECT coalesce(max(v.ts_ms), 0) FROM samples v JOIN series s ON s.id = v.series_id WHERE s.device_id = 'laptop'",
        );
        async move { newest >= reconnect - 1500 }
    })
    .await
    .unwrap();
    let behind = last_seq(&dir).saturating_sub(site.acked_seq("laptop"));
    assert!(
        behind >= 3,
        "the backlog was still draining ({behind} behind) when live data arrived"
    );
    wait_caught_up(&site, std::slice::from_ref(&dir), Duration::from_secs(60)).await;
    assert!(agent.terminate().await);
    assert_exactly_once(&site, &dir);
    assert!(collector.terminate().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_edits_apply_without_restart_and_bad_edits_are_refused() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let collector = site.start_collector("").await.unwrap();
    // The agent starts with a one-hour interval: one sample, then silence.
    let dir = site
        .provision_agent("tuned", &collector.url(), "interval_secs = 3600\n")
        .await;
    let agent = AgentProc::start(&dir).await;
    site.wait_acked("tuned", 1, Duration::from_secs(30), "the first sample")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // One sample; the only other frames allowed are the start-up patch report,
    // inventory and posture report.
    assert!(last_seq(&dir) <= 4, "nothing more within the hour");
    assert_eq!(
        site.count(
            "SELECT count(*) FROM batches b WHERE device_id = 'tuned' AND NOT EXISTS \
             (SELECT 1 FROM patch_reports p WHERE p.device_id = b.device_id AND p.seq = b.seq) \
             AND NOT EXISTS \
             (SELECT 1 FROM inventories i WHERE i.device_id = b.device_id AND i.seq = b.seq) \
             AND NOT EXISTS \
             (SELECT 1 FROM posture_reports r WHERE r.device_id = b.device_id AND r.seq = b.seq)"
        ),
        1,
        "one sample within the hour"
    );

    // Agent-side edit: interval 1 s.
    let toml = dir.join("agent.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace("interval_secs = 3600", "interval_secs = 1"),
    )
    .unwrap();
    // The three start-up frames, then two samples at the new interval.
    site.wait_acked(
        "tuned",
        5,
        Duration::from_secs(15),
        "samples at the new interval",
    )
    .await
    .unwrap();

    // A bad edit is refused with its position; the agent goes on.
    let good = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, format!("{good}interval_secs = \"often\"\n")).unwrap();
    wait_for(Duration::from_secs(10), "the rejection in the log", || {
        let log = agent.log();
        async move { log.contains("config reload rejected") }
    })
    .await
    .unwrap();
    let log = agent.log();
    let line = log
        .lines()
        .find(|l| l.contains("config reload rejected"))
        .unwrap();
    assert!(line.contains("agent.toml:"), "names the file: {line}");
    let before = site.acked_seq("tuned");
    site.wait_acked(
        "tuned",
        before + 2,
        Duration::from_secs(10),
        "sampling to go on",
    )
    .await
    .unwrap();

    // Collector-side edit: push a 3600 s interval to the agent; sampling stops.
    std::fs::write(&toml, good).unwrap();
    let cfg = site.dir.path().join("collector.toml");
    let ctext = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{ctext}sample_interval_secs = 3600\n")).unwrap();
    wait_for(Duration::from_secs(10), "the collector to reload", || {
        let log = collector.log();
        async move { log.contains("configuration reloaded") }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = last_seq(&dir);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        last_seq(&dir) <= settled + 1,
        "the pushed interval applies: {} -> {}",
        settled,
        last_seq(&dir)
    );
    assert!(agent.terminate().await);
    assert!(collector.terminate().await);
}
