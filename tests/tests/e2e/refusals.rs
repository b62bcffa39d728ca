//! What the collector refuses, and that refusing one peer disturbs nobody else.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prost::Message;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tandem_collector::pki::Validity;
use tandem_proto::v1::{AgentFrame, Hello, PatchReport, PendingUpdate, agent_frame};
use tandem_tests::{Creds, Site, Stream, batch, channel, client, hello_frame, now_ms, raw};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Connects with tokio-rustls directly, speaks the HTTP/2 preface and reads. Ok
/// means the server answered at the HTTP/2 level (the handshake was accepted);
/// Err means the connection was refused by TLS before any application data.
async fn tls_probe(addr: std::net::SocketAddr, creds: &Creds) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(creds.ca_pem.as_bytes()) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut cfg = match (&creds.cert_pem, &creds.key_pem) {
        (Some(c), Some(k)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(c.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            let key = PrivateKeyDer::from_pem_slice(k.as_bytes()).map_err(|e| e.to_string())?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| e.to_string())?
        }
        _ => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3),
        "only TLS 1.3 is negotiated"
    );
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await {
        Err(_) => Err("no answer".into()),
        Ok(Err(e)) => Err(format!("read: {e}")),
        Ok(Ok(0)) => Err("closed".into()),
        Ok(Ok(_)) => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_valid_certificate_are_refused_at_the_handshake() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let other = Site::new().await.unwrap();
    let collector = site.start_collector("").await.unwrap();
    let good = site.issue("acme", "dev-good");
    let ca = site.ca_pem();
    let now = time::OffsetDateTime::now_utc();
    let cases = [
        (
            "no client certificate",
            Creds {
                ca_pem: ca.clone(),
                cert_pem: None,
                key_pem: None,
            },
        ),
        (
            "certificate from another CA",
            Creds {
                ca_pem: ca.clone(),
                ..other.issue("acme", "dev-x")
            },
        ),
        (
            "expired certificate",
            site.issue_with(
                "acme",
                "dev-old",
                Validity {
                    not_before: now - time::Duration::days(10),
                    not_after: now - time::Duration::days(1),
                },
            ),
        ),
    ];
    // The probe itself can tell acceptance from refusal.
    tls_probe(collector.addr, &good)
        .await
        .expect("a valid certificate is accepted");
    for (what, creds) in &cases {
        let err = tls_probe(collector.addr, creds).await.expect_err(what);
        eprintln!("{what}: refused ({err})");
        // And through a gRPC client: the first RPC fails (TLS 1.3 reports the
        // refusal late, so connect() itself may succeed).
        let rpc = async {
            let mut c = client(collector.addr, creds).await?;
            Stream::hello(&mut c).await
        };
        assert!(rpc.await.is_err(), "{what}: the RPC must fail");
    }
    // The listener still serves valid devices, and nothing of the refused ones exists.
    let mut c = client(collector.addr, &good).await.unwrap();
    let (_s, w) = Stream::hello(&mut c).await.unwrap();
    assert_eq!(w.device_id, "dev-good");
    assert_eq!(site.count("SELECT count(*) FROM devices"), 1);
}

/// Sends `frames` on a new stream and returns the status it ends with.
async fn refused(
    c: &mut tandem_proto::v1::telemetry_client::TelemetryClient<tonic::transport::Channel>,
    frames: Vec<AgentFrame>,
) -> tonic::Status {
    let mut it = frames.into_iter();
    let first = it.next().expect("a frame");
    let mut s = match Stream::open(c, first).await {
        Ok(s) => s,
        Err(status) => return status,
    };
    for f in it {
        let _ = s.send(f).await;
    }
    match tokio::time::timeout(Duration::from_secs(20), s.outcome()).await {
        Ok(Err(status)) => status,
        Ok(Ok(())) => panic!("stream ended cleanly; expected a refusal"),
        Err(_) => panic!("no refusal within 20 s"),
    }
}

fn hello_with(f: impl FnOnce(&mut Hello)) -> AgentFrame {
    let mut frame = hello_frame();
    if let Some(agent_frame::Kind::Hello(h)) = frame.kind.as_mut() {
        f(h);
    }
    frame
}

fn assert_refusal(status: &tonic::Status, code: tonic::Code, needle: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(needle),
        "message {:?} should contain {needle:?}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_are_refused_with_a_reason_and_other_devices_carry_on() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let collector = site.start_collector("").await.unwrap();

    // A well-behaved device streams the whole time.
    let good = site.issue("acme", "dev-good");
    let mut gc = client(collector.addr, &good).await.unwrap();
    let (mut gs, _) = Stream::hello(&mut gc).await.unwrap();
    let good_acked = Arc::new(AtomicU64::new(0));
    let acked = good_acked.clone();
    let stop = tokio_util_stop();
    let stop2 = stop.clone();
    let good_task = tokio::spawn(async move {
        let mut seq = 0;
        while !stop2.load(Ordering::Relaxed) {
            seq += 1;
            gs.send(batch(seq, now_ms(), 5)).await.unwrap();
            let a = gs
                .next_ack()
                .await
                .expect("good device keeps getting acks")
                .expect("ack");
            acked.store(a, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seq
    });

    let bad = site.issue("acme", "dev-bad");
    let mut c = client(collector.addr, &bad).await.unwrap();
    let t = now_ms();
    let before = good_acked.load(Ordering::Relaxed);

    // Malformed protobuf bytes (a length-delimited field that runs past the end).
    let ch = channel(collector.addr, &bad).await.unwrap();
    let status = match raw::stream(ch.clone(), vec![vec![0x0a, 0x10, 0x01]]).await {
        Ok(mut rx) => loop {
            match rx.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("malformed frame accepted"),
                Err(s) => break s,
            }
        },
        Err(s) => s,
    };
    assert_refusal(&status, tonic::Code::InvalidArgument, "malformed");

    // Oversized: a hello, then a 6 MiB frame (limit 4 MiB).
    let mut big = batch(1, t, 1);
    if let Some(agent_frame::Kind::Batch(b)) = big.kind.as_mut() {
        b.series[0].dimension = "x".repeat(6 * 1024 * 1024);
    }
    let status =
        match raw::stream(ch, vec![hello_frame().encode_to_vec(), big.encode_to_vec()]).await {
            Ok(mut rx) => loop {
                match rx.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("oversized frame accepted"),
                    Err(s) => break s,
                }
            },
            Err(s) => s,
        };
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("too large"), "{status:?}");

    // Unknown enum value.
    let s = refused(&mut c, vec![hello_with(|h| h.os_family = 42)]).await;
    assert_refusal(
        &s,
        tonic::Code::InvalidArgument,
        "unknown os_family value 42",
    );
    let patch = AgentFrame {
        kind: Some(agent_frame::Kind::PatchReport(PatchReport {
            seq: 50,
            time_unix_ms: t,
            source: "apt".into(),
            updates: vec![PendingUpdate {
                name: "openssl".into(),
                classification: 77,
                ..Default::default()
            }],
            ..Default::default()
        })),
    };
    let s = refused(&mut c, vec![hello_frame(), patch]).await;
    assert_refusal(
        &s,
        tonic::Code::InvalidArgument,
        "unknown classification value 77",
    );

    // Repeated seq: the first copy is stored and acked, the repeat refused.
    let s = refused(
        &mut c,
        vec![hello_frame(), batch(100, t, 3), batch(100, t + 1, 3)],
    )
    .await;
    assert_refusal(&s, tonic::Code::InvalidArgument, "seq 100 repeats");
    assert_eq!(
        s.metadata()
            .get(tandem_proto::REFUSED_SEQ_METADATA)
            .and_then(|v| v.to_str().ok()),
        Some("100"),
        "the agent learns which seq was refused"
    );
    // Going backwards.
    let s = refused(
        &mut c,
        vec![hello_frame(), batch(205, t, 3), batch(203, t + 1, 3)],
    )
    .await;
    assert_refusal(&s, tonic::Code::InvalidArgument, "seq 203 goes backwards");
    // Far future and far past.
    let s = refused(&mut c, vec![hello_frame(), batch(300, t + 3_600_000, 3)]).await;
    assert_refusal(
        &s,
        tonic::Code::InvalidArgument,
        "ahead of the collector's clock",
    );
    let s = refused(
        &mut c,
        vec![hello_frame(), batch(301, t - 60 * 86_400_000, 3)],
    )
    .await;
    assert_refusal(&s, tonic::Code::InvalidArgument, "in the past");
    // Values that do not match the declared series.
    let mut odd = batch(302, t, 3);
    if let Some(agent_frame::Kind::Batch(b)) = odd.kind.as_mut() {
        b.samples[0].values.pop();
    }
    let s = refused(&mut c, vec![hello_frame(), odd]).await;
    assert_refusal(
        &s,
        tonic::Code::InvalidArgument,
        "has 2 values but the batch declares 3 series",
    );
    // Protocol order and identity.
    let s = refused(&mut c, vec![batch(400, t, 3)]).await;
    assert_refusal(
        &s,
        tonic::Code::FailedPrecondition,
        "first frame of a stream must be a hello",
    );
    let s = refused(
        &mut c,
        vec![hello_with(|h| h.claimed_device_id = "dev-good".into())],
    )
    .await;
    assert_refusal(
        &s,
        tonic::Code::PermissionDenied,
        "client certificate is for device \"dev-bad\"",
    );

    // The good device was served throughout, and all it was acked is stored.
    assert!(
        good_acked.load(Ordering::Relaxed) > before,
        "the good device made progress meanwhile"
    );
    stop.store(true, Ordering::Relaxed);
    let sent = good_task.await.unwrap();
    assert_eq!(
        site.count("SELECT count(*) FROM batches WHERE device_id = 'dev-good'"),
        sent as i64
    );
    // Of the bad device, exactly what was acknowledged is stored: seq 100 and 205.
    let stored: Vec<i64> = {
        let db = site.db();
        let mut st = db
            .prepare("SELECT seq FROM batches WHERE device_id = 'dev-bad' ORDER BY seq")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(stored, vec![100, 205]);
    assert!(
        collector.log().contains("stream refused"),
        "refusals are logged"
    );
}

fn tokio_util_stop() -> Arc<std::sync::atomic::AtomicBool> {
    Arc::new(std::sync::atomic::AtomicBool::new(false))
}
