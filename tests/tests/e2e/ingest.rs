//! The happy path and replay: what is acknowledged is stored, once.

use tandem_tests::{Site, Stream, batch, client, now_ms};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_batches_are_in_sqlite_with_the_device_from_the_certificate() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let collector = site.start_collector("").await.unwrap();
    let creds = site.issue("acme", "dev-a");
    let mut c = client(collector.addr, &creds).await.unwrap();
    let (mut s, welcome) = Stream::hello(&mut c).await.unwrap();
    assert_eq!(welcome.acked_seq, 0);
    assert_eq!(welcome.device_id, "dev-a");
    assert_eq!(welcome.tenant, "acme");
    let t = now_ms();
    for seq in 1..=5 {
        s.send(batch(seq, t + seq as i64, 20)).await.unwrap();
    }
    let mut last = 0;
    while last < 5 {
        last = s.next_ack().await.unwrap().expect("ack");
    }
    // Acked means committed: readable from another connection right away.
    assert_eq!(
        site.count("SELECT count(*) FROM batches WHERE device_id = 'dev-a'"),
        5
    );
    assert_eq!(
        site.count("SELECT count(*) FROM samples v JOIN series s ON s.id = v.series_id WHERE s.device_id = 'dev-a'"),
        100
    );
    let (tenant, host): (String, String) = site
        .db()
        .query_row(
            "SELECT t.name, d.hostname FROM devices d JOIN tenants t ON t.id = d.tenant_id WHERE d.id = 'dev-a'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((tenant.as_str(), host.as_str()), ("acme", "test-host"));
    assert!(collector.terminate().await, "clean shutdown on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_replayed_after_reconnect_is_stored_once() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let collector = site.start_collector("").await.unwrap();
    let creds = site.issue("acme", "dev-r");
    let t = now_ms();
    {
        let mut c = client(collector.addr, &creds).await.unwrap();
        let (mut s, _) = Stream::hello(&mut c).await.unwrap();
        for seq in 1..=3 {
            s.send(batch(seq, t + seq as i64, 10)).await.unwrap();
        }
        let mut last = 0;
        while last < 3 {
            last = s.next_ack().await.unwrap().expect("ack");
        }
    } // the stream drops here, as if the network went away before the agent saw the acks
    let mut c = client(collector.addr, &creds).await.unwrap();
    let (mut s, welcome) = Stream::hello(&mut c).await.unwrap();
    assert_eq!(
        welcome.acked_seq, 3,
        "the collector tells the agent what it already holds"
    );
    // An agent that missed the acks resends 2 and 3, then goes on with 4.
    for seq in 2..=4 {
        s.send(batch(seq, t + seq as i64, 10)).await.unwrap();
    }
    let mut acks = Vec::new();
    while acks.last() != Some(&4) {
        acks.push(s.next_ack().await.unwrap().expect("ack"));
    }
    assert_eq!(acks, vec![2, 3, 4], "replayed batches are acknowledged");
    assert_eq!(
        site.count("SELECT count(*) FROM batches WHERE device_id = 'dev-r'"),
        4
    );
    assert_eq!(
        site.count("SELECT count(*) FROM samples"),
        40,
        "4 batches x 10 values, none twice"
    );
    let acked: i64 = site.count("SELECT acked_seq FROM devices WHERE id = 'dev-r'");
    assert_eq!(acked, 4);
    drop(s);
    assert!(collector.terminate().await);
}
