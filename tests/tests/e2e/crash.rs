//! SIGKILL of the collector mid-stream: nothing it acknowledged is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tandem_tests::{Site, Stream, batch, client, now_ms, wait_for};

const DEVICES: usize = 4;
const VALUES: usize = 25;

/// Streams batches with up to 8 unacknowledged, recording the highest ack, until the
/// stream breaks. Batch `seq` is stamped `base + seq` ms, so every batch is a
/// distinct instant (the store keeps one value per series and instant).
async fn stream_until_broken(
    site: Arc<Site>,
    addr: std::net::SocketAddr,
    device: String,
    (base, start_seq): (i64, u64),
    acked: Arc<AtomicU64>,
) {
    let creds = site.issue("acme", &device);
    let Ok(mut c) = client(addr, &creds).await else {
        return;
    };
    let Ok((mut s, w)) = Stream::hello(&mut c).await else {
        return;
    };
    assert!(
        w.acked_seq + 1 >= start_seq,
        "collector holds {} but we resume at {start_seq}",
        w.acked_seq
    );
    let mut next = start_seq;
    let mut in_flight = 0;
    loop {
        while in_flight < 8 {
            if s.send(batch(next, base + next as i64, VALUES))
                .await
                .is_err()
            {
                return;
            }
            next += 1;
            in_flight += 1;
        }
        match s.next_ack().await {
            Ok(Some(a)) => {
                acked.fetch_max(a, Ordering::SeqCst);
                in_flight -= 1;
            }
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_no_acknowledged_batch() {
    crate::crypto();
    let site = Arc::new(Site::new().await.unwrap());
    let base = now_ms();
    let acked: Vec<Arc<AtomicU64>> = (0..DEVICES).map(|_| Arc::new(AtomicU64::new(0))).collect();
    for round in 0..3 {
        let collector = site.start_collector("").await.unwrap();
        let mut tasks = Vec::new();
        for (i, a) in acked.iter().enumerate() {
            // Resume after what we know is acked; anything sent but unacked is
            // replayed (and must then be stored once).
            let start = a.load(Ordering::SeqCst) + 1;
            tasks.push(tokio::spawn(stream_until_broken(
                site.clone(),
                collector.addr,
                format!("dev-{i}"),
                (base, start),
                a.clone(),
            )));
        }
        let target: Vec<u64> = acked
            .iter()
            .map(|a| a.load(Ordering::SeqCst) + 30)
            .collect();
        wait_for(Duration::from_secs(60), "acks to advance", || {
            let ok = acked
                .iter()
                .zip(&target)
                .all(|(a, t)| a.load(Ordering::SeqCst) >= *t);
            async move { ok }
        })
        .await
        .unwrap();
        collector.kill9().await;
        for t in tasks {
            t.await.unwrap();
        }
        eprintln!(
            "round {round}: killed with acked = {:?}",
            acked
                .iter()
                .map(|a| a.load(Ordering::SeqCst))
                .collect::<Vec<_>>()
        );

        // Every acknowledged batch is in the database, whole.
        let db = site.db();
        let ok: String = db
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        for (i, a) in acked.iter().enumerate() {
            let a = a.load(Ordering::SeqCst) as i64;
            let (n, min, max): (i64, i64, i64) = db
                .query_row(
                    "SELECT count(*), coalesce(min(seq),0), coalesce(max(seq),0) FROM batches WHERE device_id = ?1 AND seq <= ?2",
                    rusqlite::params![format!("dev-{i}"), a],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .unwrap();
            assert_eq!(
                (n, min, max),
                (a, 1, a),
                "dev-{i}: every acked seq 1..={a} stored"
            );
            let values: i64 = db
                .query_row(
                    "SELECT count(*) FROM samples v JOIN series s ON s.id = v.series_id
                     WHERE s.device_id = ?1",
                    [format!("dev-{i}")],
                    |r| r.get(0),
                )
                .unwrap();
            let stored_batches: i64 = db
                .query_row(
                    "SELECT count(*) FROM batches WHERE device_id = ?1",
                    [format!("dev-{i}")],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(
                values,
                stored_batches * VALUES as i64,
                "dev-{i}: no batch half-stored"
            );
        }
    }
}
