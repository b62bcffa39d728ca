//! The HTTP listener (issue 15): HTTPS with the collector's own server certificate
//! to a real TLS client (hyper over tokio-rustls) that trusts the collector CA;
//! plain HTTP refused off loopback at start; the connection caps and deadlines an
//! unauthenticated peer meets; `alerts tail` remote (--url https, --token-file,
//! --ca) and local (a minted token, revoked at exit); `/metrics` figures moving
//! under real ingest.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use tandem_collector::http::tail;
use tandem_tests::{Feeder, Site, bin, free_port, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// This machine's address on its default route (not loopback).
fn non_loopback_ip() -> std::net::IpAddr {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect("192.0.2.1:9")
        .expect("this test needs a non-loopback IPv4 route on this machine");
    let ip = s.local_addr().unwrap().ip();
    assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
    ip
}

/// One request over a fresh connection; returns (status, headers, body). `tls`:
/// https, trusting that configuration's roots.
pub(crate) async fn request(
    host: &str,
    port: u16,
    tls: Option<&Arc<rustls::ClientConfig>>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<(u16, hyper::HeaderMap, String)> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = tokio::net::TcpStream::connect((bare, port)).await?;
    let io: Box<dyn Io> = match tls {
        None => Box::new(tcp),
        Some(cfg) => {
            let name = rustls_pki_types::ServerName::try_from(bare.to_owned())?;
            Box::new(
                tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, tcp)
                    .await?,
            )
        }
    };
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, format!("{host}:{port}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body.to_owned())))?)
        .await?;
    let status = resp.status().as_u16();
    let head = resp.headers().clone();
    let text = if head
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
    {
        String::new() // a stream: the status is enough
    } else {
        let b = resp.into_body().collect().await?.to_bytes();
        String::from_utf8_lossy(&b).into_owned()
    };
    driver.abort();
    Ok((status, head, text))
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// A TLS client trusting only a CA that is not the collector's.
fn stranger_tls() -> Arc<rustls::ClientConfig> {
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("other.pem");
    std::fs::write(&p, other.cert.pem()).unwrap();
    tail::client_tls(&p).unwrap()
}

async fn wait_listening(addr: SocketAddr) {
    wait_for(
        Duration::from_secs(10),
        "the HTTP listener",
        || async move { tokio::net::TcpStream::connect(addr).await.is_ok() },
    )
    .await
    .unwrap();
}

/// HTTPS off loopback: the collector's server certificate, trusted through the
/// collector CA and by nothing else; plain HTTP on that port gets no answer;
/// session cookies are Secure; the feed needs a login from everywhere, loopback
/// included, and streams to a remote reader over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_with_the_collector_certificate_and_a_feed_that_needs_a_login() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let ip = non_loopback_ip();
    // The server certificate names the address remote clients dial (as an operator
    // does with `pki server-cert --name`).
    tandem_collector::pki::server_cert(&site.data_dir(), &[ip.to_string()]).unwrap();
    let port = free_port();
    let collector = site
        .start_collector(&format!("[http]\nlisten = \"0.0.0.0:{port}\"\n"))
        .await
        .unwrap();
    let far = SocketAddr::new(ip, port);
    wait_listening(far).await;
    let host = ip.to_string();
    let ca =
        tail::client_tls(&tandem_collector::pki::PkiPaths::new(&site.data_dir()).ca_cert).unwrap();

    let (status, _, body) = request(&host, port, Some(&ca), "GET", "/healthz", &[], "")
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "ok"), "https with the CA");
    let err = request(
        &host,
        port,
        Some(&stranger_tls()),
        "GET",
        "/healthz",
        &[],
        "",
    )
    .await
    .expect_err("a client that does not trust the collector CA");
    assert!(
        format!("{err:#}").to_lowercase().contains("certificate"),
        "{err:#}"
    );
    // Plain HTTP to the TLS port: no HTTP answer.
    let mut s = tokio::net::TcpStream::connect(far).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(
        !String::from_utf8_lossy(&buf).contains("HTTP/1.1 200"),
        "plain HTTP answered: {}",
        String::from_utf8_lossy(&buf)
    );

    // Console login over TLS: the cookie is Secure.
    let out = Command::new(bin("tandem-collector"))
        .args(["user", "add", "ann", "--role", "msp-admin", "--data-dir"])
        .arg(site.data_dir())
        .env("TANDEM_PASSWORD", "correct horse battery staple")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, head, body) = request(
        &host,
        port,
        Some(&ca),
        "POST",
        "/api/v1/auth/login",
        &[("content-type", "application/json")],
        r#"{"username":"ann","password":"correct horse battery staple"}"#,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let cookie = head
        .get(hyper::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();

    // The feed: no login → 401, from far and from loopback alike.
    let feed = "/api/v1/feed";
    let sse = ("accept", "text/event-stream");
    for h in [host.as_str(), "127.0.0.1"] {
        let (status, _, body) = request(h, port, Some(&ca), "GET", feed, &[sse], "")
            .await
            .unwrap();
        assert_eq!(status, 401, "{h} without a login: {body}");
    }
    let (status, _, _) = request(
        &host,
        port,
        Some(&ca),
        "GET",
        feed,
        &[sse, ("authorization", "Bearer not-a-token")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(status, 401, "a made-up token");
    let (status, _, _) = request(
        &host,
        port,
        Some(&ca),
        "GET",
        feed,
        &[sse, ("cookie", &session)],
        "",
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "with the console session");

    // A feed-only token: the remote `alerts tail --url https://… --token-file --ca`.
    let token = site.cli_ok(&["token", "create-api", "noc-screen"]).await;
    let token_file = site.dir.path().join("noc.token");
    std::fs::write(&token_file, token.trim()).unwrap();
    let ca_file = site.dir.path().join("collector-ca.pem");
    std::fs::copy(
        tandem_collector::pki::PkiPaths::new(&site.data_dir()).ca_cert,
        &ca_file,
    )
    .unwrap();
    let mut tail_proc = Command::new(bin("tandem-collector"))
        .args(["alerts", "tail", "--url", &format!("https://{far}")])
        .arg("--token-file")
        .arg(&token_file)
        .arg("--ca")
        .arg(&ca_file)
        // Not on the collector host as far as it knows: a data dir that is not there.
        .arg("--data-dir")
        .arg(site.dir.path().join("nowhere"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // No rules here: an event is written straight into the feed table as the
    // engine would (the feed reads what is committed).
    let c = rusqlite::Connection::open(site.db_path()).unwrap();
    c.execute(
        "INSERT INTO feed_events (at_ms, kind, tenant, severity, incident_id, body)
         VALUES (1, 'opened', 'acme', 'critical', 1, '{\"incident\":{\"id\":1,\"rule\":\"r\",\"tenant\":\"acme\",\"hostname\":\"pc-1\",\"severity\":\"critical\"},\"event\":{\"at\":\"now\"}}')",
        [],
    )
    .unwrap();
    let mut lines = tokio::io::BufReader::new(tail_proc.stdout.take().unwrap());
    let mut line = String::new();
    let got = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line),
    )
    .await;
    if got.is_err() || !line.contains("opened") {
        let _ = tail_proc.start_kill();
        let out = tail_proc.wait_with_output().await.unwrap();
        panic!(
            "remote alerts tail printed {line:?}; stderr:\n{}\ncollector:\n{}",
            String::from_utf8_lossy(&out.stderr),
            collector.log()
        );
    }
    assert!(line.contains("pc-1") && line.contains("acme"), "{line}");
    let _ = tail_proc.start_kill();
    assert!(collector.terminate().await);
}

/// `[http] tls = false` off loopback stops the start with an error naming the
/// setting; on loopback it is allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_off_loopback_is_refused_at_start() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let port = free_port();
    let err = match site
        .start_collector(&format!(
            "[http]\nlisten = \"0.0.0.0:{port}\"\ntls = false\n"
        ))
        .await
    {
        Ok(c) => {
            let log = c.log();
            let _ = c.terminate().await;
            panic!("a plain non-loopback listener started:\n{log}");
        }
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("tls = false") && err.contains("loopback"),
        "the refusal names the setting: {err}"
    );
    assert!(
        std::net::TcpListener::bind(("0.0.0.0", port)).is_ok(),
        "nothing listens on {port}"
    );
    // On loopback, plain HTTP is allowed (as `demo` uses).
    let collector = site
        .start_collector(&format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\ntls = false\n"
        ))
        .await
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr).await;
    let (status, _, _) = request("127.0.0.1", port, None, "GET", "/healthz", &[], "")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(collector.terminate().await);
}

/// Reads until EOF or error; returns how long that took, or `None` if the
/// connection was still open after `within`.
async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> Option<Duration> {
    let t = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at((t + within).into(), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(t.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// An unauthenticated peer cannot starve the listener: connections past the
/// per-address cap are closed at once; a silent socket is dropped before the TLS
/// handshake after the first-byte deadline (5 s); a request header that does not
/// finish is dropped after the header deadline (10 s); then the listener serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_and_deadlines_hold_off_a_squatter() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let port = free_port();
    let collector = site
        .start_collector(&format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\ntls = true\nmax_connections_per_address = 3\n"
        ))
        .await
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // the probe's slot is released
    let ca =
        tail::client_tls(&tandem_collector::pki::PkiPaths::new(&site.data_dir()).ca_cert).unwrap();
    let mut silent = Vec::new();
    let connected = Instant::now();
    for _ in 0..3 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = tokio::net::TcpStream::connect(addr).await.unwrap();
    // "At once": well before the 5 s first-byte deadline, which would close it too.
    // 2 s, or 4 s when the whole suite shares the cores (CI), where the accept loop
    // of a debug build was once seen to take longer than 2 s.
    let within = Duration::from_secs(if tandem_tests::wait_scale() > 1 { 4 } else { 2 });
    let t = closed_within(&mut fourth, within).await;
    assert!(
        t.is_some(),
        "the 4th connection from one address is closed at once (within {within:?})"
    );
    let err = request("127.0.0.1", port, Some(&ca), "GET", "/healthz", &[], "").await;
    assert!(
        err.is_err(),
        "no room for a real client while 3 squat: {err:?}"
    );
    for (i, s) in silent.iter_mut().enumerate() {
        let t = closed_within(s, Duration::from_secs(8)).await;
        let t = t.unwrap_or_else(|| panic!("silent socket {i} still open after 8 s"));
        let since = connected.elapsed();
        assert!(
            since >= Duration::from_secs(4),
            "silent socket {i} closed {since:?} after it connected ({t:?} of waiting), before the 5 s deadline\n{}",
            collector.log()
        );
    }
    // A TLS connection that starts a request header and stalls.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(ca.clone())
        .connect(
            rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(15), tls.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "a stalled request header is dropped within 15 s");
    assert!(
        t.elapsed() >= Duration::from_secs(8),
        "dropped after {:?}, before the 10 s header deadline",
        t.elapsed()
    );
    // And the listener serves again.
    let (status, _, _) = request("127.0.0.1", port, Some(&ca), "GET", "/healthz", &[], "")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(collector.terminate().await);
}

/// `alerts tail` on the collector host with no flags but the data dir: it mints a
/// feed-only token there, follows the feed, and revokes the token when it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_alerts_tail_mints_a_token_and_revokes_it_at_exit() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let port = free_port();
    let collector = site
        .start_collector(&format!("[http]\nlisten = \"127.0.0.1:{port}\"\n"))
        .await
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr).await;
    let tail_proc = Command::new(bin("tandem-collector"))
        .args([
            "alerts",
            "tail",
            "--url",
            &format!("http://{addr}"),
            "--data-dir",
        ])
        .arg(site.data_dir())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let db = site.db_path();
    wait_for(Duration::from_secs(10), "a minted local token", || {
        let db = db.clone();
        async move {
            rusqlite::Connection::open(&db)
                .and_then(|c| {
                    c.query_row(
                        "SELECT count(*) FROM api_tokens WHERE name LIKE 'alerts tail (local%' AND revoked_ms IS NULL",
                        [],
                        |r| r.get::<_, i64>(0),
                    )
                })
                .is_ok_and(|n| n == 1)
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        collector
            .log()
            .contains("feed refused")
            .then_some(())
            .is_none(),
        "the local tail was refused:\n{}",
        collector.log()
    );
    let pid = tail_proc.id().unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let out = tokio::time::timeout(Duration::from_secs(10), tail_proc.wait_with_output())
        .await
        .expect("alerts tail ends on SIGTERM")
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (revoked, total): (i64, i64) = site
        .db()
        .query_row(
            "SELECT count(revoked_ms), count(*) FROM api_tokens WHERE name LIKE 'alerts tail (local%'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (revoked, total),
        (1, 1),
        "the local token is revoked at exit"
    );
    assert!(collector.terminate().await);
}

/// The value of the sample `series` (name with labels, exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `/metrics` moves under real work: values and batches from a real gRPC client
/// over mTLS, commits timed, the engine evaluating, the stream counted as a
/// connected agent, a TLS handshake without a client certificate counted as a
/// refusal, a webhook to a closed port counted as a failed notification; and the
/// whole exposition passes `promtool check metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_counters_move_under_real_ingest_and_pass_promtool() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let root = site.dir.path();
    std::fs::create_dir_all(root.join("rules")).unwrap();
    std::fs::write(
        root.join("rules/r.toml"),
        "[[rule]]\nname = \"cpu-high\"\nkind = \"threshold\"\nmetric = \"cpu.percent\"\n\
         custom_metric = true\ncritical = { above = 90 }\n",
    )
    .unwrap();
    let closed = free_port(); // nothing listens there: every webhook attempt fails
    std::fs::create_dir_all(root.join("policies")).unwrap();
    std::fs::write(
        root.join("policies/p.toml"),
        format!(
            "[[webhook]]\nname = \"down\"\nurl = \"http://127.0.0.1:{closed}/hook\"\n\n\
             [[policy]]\nname = \"msp\"\ndefault = true\n  [[policy.step]]\n  after_secs = 0\n  targets = [\"webhook:down\"]\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let collector = site
        .start_collector(&format!(
            "[alerts]\nrules_dir = \"rules\"\ntick_secs = 1\n\
             [notify]\npolicies_dir = \"policies\"\nretry_base_secs = 1\nretry_max_secs = 2\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n"
        ))
        .await
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr).await;
    // Loopback is no credential: a scrape without a token is refused.
    let (status, _, text) = request("127.0.0.1", port, None, "GET", "/metrics", &[], "")
        .await
        .unwrap();
    assert_eq!(status, 401, "a scrape without a token: {text}");
    assert!(
        !text.contains("tandem_"),
        "no figures without a token: {text}"
    );
    // What Prometheus is given: a token of `token create-api`.
    let token = site.cli_ok(&["token", "create-api", "prometheus"]).await;
    let auth = Arc::new(format!("Bearer {}", token.trim()));
    let (status, _, text) = request(
        "127.0.0.1",
        port,
        None,
        "GET",
        "/metrics",
        &[("authorization", "Bearer not-the-token")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(status, 401, "a wrong token: {text}");
    let scrape = move || {
        let auth = auth.clone();
        async move {
            let (status, _, text) = request(
                "127.0.0.1",
                port,
                None,
                "GET",
                "/metrics",
                &[("authorization", auth.as_str())],
                "",
            )
            .await
            .unwrap();
            assert_eq!(status, 200, "{text}");
            text
        }
    };
    let before = scrape().await;
    let get = |t: &str, s: &str| sample(t, s).unwrap_or_else(|| panic!("no {s} in:\n{t}"));
    assert_eq!(get(&before, "tandem_ingest_values_total"), 0.0);
    assert_eq!(get(&before, "tandem_agents_connected"), 0.0);

    let feeder = Feeder::start(
        collector.addr,
        &site.issue("acme", "pc-1"),
        Duration::from_millis(200),
        &[("cpu.percent", "", 99.0), ("mem.percent", "", 40.0)],
    )
    .await
    .unwrap();
    // A TLS client without a certificate on the telemetry port is refused.
    let ca =
        tail::client_tls(&tandem_collector::pki::PkiPaths::new(&site.data_dir()).ca_cert).unwrap();
    let mut h2 = (*ca).clone();
    h2.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(collector.addr)
        .await
        .unwrap();
    if let Ok(mut s) = tokio_rustls::TlsConnector::from(Arc::new(h2))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
    {
        // TLS 1.3: the server's refusal of the missing certificate arrives on read.
        let mut b = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await;
    }
    let last = Arc::new(std::sync::Mutex::new(String::new()));
    let l2 = last.clone();
    let moved = wait_for(Duration::from_secs(20), "the counters to move", move || {
        let scraped = scrape();
        let out = l2.clone();
        async move {
            let text = scraped.await;
            let v = |s: &str| sample(&text, s).unwrap_or(0.0);
            let ok = v("tandem_ingest_values_total") >= 10.0
                && v("tandem_ingest_batches_total{outcome=\"stored\"}") >= 5.0
                && v("tandem_store_commit_seconds_count") >= 5.0
                && v("tandem_agents_connected") == 1.0
                && v("tandem_alert_evaluations_total") >= 1.0
                && v("tandem_ingest_refusals_total{reason=\"tls_handshake\"}") >= 1.0
                && v("tandem_notifications_total{channel=\"webhook\",result=\"failed\"}") >= 1.0;
            *out.lock().unwrap() = text;
            ok
        }
    })
    .await;
    let after = last.lock().unwrap().clone();
    assert!(moved.is_ok(), "{moved:?}\n{after}\n{}", collector.log());
    // The histogram's buckets are cumulative and end at the count.
    assert_eq!(
        get(&after, "tandem_store_commit_seconds_bucket{le=\"+Inf\"}"),
        get(&after, "tandem_store_commit_seconds_count")
    );
    assert!(
        !after.contains("acme") && !after.contains("pc-1"),
        "no customer data"
    );
    drop(feeder);

    let promtool = std::path::Path::new("/usr/bin/promtool");
    if !promtool.exists() {
        tandem_tests::cannot_run("/usr/bin/promtool (Debian's prometheus) is not installed");
        return;
    }
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), after.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{after}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(collector.terminate().await);
}

/// Maintenance windows made at run time (issue 15): a window created through the
/// API for one device marks that device's firing alert suppressed in the running
/// engine (the other device's stays unsuppressed); deleting it ends the suppression.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maintenance_window_made_through_the_api_suppresses_until_deleted() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let root = site.dir.path();
    std::fs::create_dir_all(root.join("rules")).unwrap();
    std::fs::write(
        root.join("rules/r.toml"),
        "[[rule]]\nname = \"cpu-high\"\nkind = \"threshold\"\nmetric = \"cpu.percent\"\n\
         custom_metric = true\ncritical = { above = 90 }\n",
    )
    .unwrap();
    let port = free_port();
    let collector = site
        .start_collector(&format!(
            "[alerts]\nrules_dir = \"rules\"\ntick_secs = 1\n[http]\nlisten = \"127.0.0.1:{port}\"\n"
        ))
        .await
        .unwrap();
    wait_listening(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let out = Command::new(bin("tandem-collector"))
        .args(["user", "add", "noc", "--role", "msp-tech", "--data-dir"])
        .arg(site.data_dir())
        .env("TANDEM_PASSWORD", "correct horse battery staple")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, head, body) = request(
        "127.0.0.1",
        port,
        None,
        "POST",
        "/api/v1/auth/login",
        &[("content-type", "application/json")],
        r#"{"username":"noc","password":"correct horse battery staple"}"#,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let cookie = head
        .get(hyper::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_owned();
    let csrf = serde_json::from_str::<serde_json::Value>(&body).unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let api = |method: &'static str, path: String, body: String| {
        let (cookie, csrf) = (cookie.clone(), csrf.clone());
        async move {
            request(
                "127.0.0.1",
                port,
                None,
                method,
                &path,
                &[
                    ("cookie", cookie.as_str()),
                    ("x-csrf-token", csrf.as_str()),
                    ("content-type", "application/json"),
                ],
                &body,
            )
            .await
            .unwrap()
        }
    };
    let _hot = Feeder::start(
        collector.addr,
        &site.issue("acme", "pc-1"),
        Duration::from_millis(200),
        &[("cpu.percent", "", 99.0)],
    )
    .await
    .unwrap();
    let _other = Feeder::start(
        collector.addr,
        &site.issue("acme", "pc-2"),
        Duration::from_millis(200),
        &[("cpu.percent", "", 99.0)],
    )
    .await
    .unwrap();
    let suppressed = |device: &'static str| {
        let db = site.db();
        move || {
            db.query_row(
                "SELECT suppressed FROM alert_instances WHERE rule = 'cpu-high' AND device_id = ?1 AND state = 'firing'",
                [device],
                |r| r.get::<_, bool>(0),
            )
            .ok()
        }
    };
    let (pc1, pc2) = (suppressed("pc-1"), suppressed("pc-2"));
    wait_state("pc-1 firing", Some(false), &pc1, &collector).await;
    wait_state("pc-2 firing", Some(false), &pc2, &collector).await;

    let (status, _, body) = api(
        "POST",
        "/api/v1/maintenance".into(),
        r#"{"device":"pc-1","minutes":30,"note":"disk swap"}"#.into(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let made: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(made["tenant"], "acme", "the device's tenant: {body}");
    assert_eq!(made["status"], "active", "{body}");
    wait_state("pc-1 in the window", Some(true), &pc1, &collector).await;
    assert_eq!(pc2(), Some(false), "pc-2 is not in the window");
    let (status, _, body) = api("GET", "/api/v1/maintenance".into(), String::new()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("disk swap"), "{body}");

    let id = made["id"].as_i64().unwrap();
    let (status, _, body) = api("DELETE", format!("/api/v1/maintenance/{id}"), String::new()).await;
    assert_eq!(status, 204, "{body}");
    wait_state(
        "pc-1 after the window is deleted",
        Some(false),
        &pc1,
        &collector,
    )
    .await;
    assert_eq!(
        site.count("SELECT count(*) FROM audit_log WHERE action IN ('maintenance.create', 'maintenance.delete') AND actor = 'noc'"),
        2
    );
    assert!(collector.terminate().await);
}

/// Waits (bounded) until `f` answers `want`; fails with the collector's log.
async fn wait_state(
    what: &str,
    want: Option<bool>,
    f: &dyn Fn() -> Option<bool>,
    collector: &tandem_tests::CollectorProc,
) {
    let r = wait_for(Duration::from_secs(15), what, || {
        let now = f();
        async move { now == want }
    })
    .await;
    assert!(
        r.is_ok(),
        "{what}: {:?}, wanted {want:?}\n{}",
        f(),
        collector.log()
    );
}
