//! Enrollment, renewal and revocation with the real binaries: `tandem-collector`
//! (serve and its admin CLI) and `tandem-agent` (enroll and run).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_collector::pki;
use tandem_proto::token::EnrollToken;
use tandem_proto::v1::RenewRequest;
use tandem_proto::v1::identity_client::IdentityClient;
use tandem_tests::{
    CollectorProc, Creds, Site, Stream, batch, bin, channel, client, now_ms, wait_for,
};
use tokio::process::{Child, Command};

/// An agent's folder: agent.toml, key, certificate, CA, state.
struct AgentDir {
    dir: PathBuf,
}

impl AgentDir {
    fn new(site: &Site, name: &str) -> Self {
        let dir = site.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("agent.toml"), "interval_secs = 1\n").unwrap();
        Self { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.join("agent.toml")
    }

    /// `tandem-agent enroll --token T`: (success, stdout, stderr).
    async fn enroll(&self, token: &str) -> (bool, String, String) {
        let out = Command::new(bin("tandem-agent"))
            .args(["enroll", "--token", token, "--config"])
            .arg(self.config())
            .env("RUST_BACKTRACE", "0")
            .env_remove("TANDEM_ENROLL_TOKEN")
            .output()
            .await
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Enrolls and returns the device id; the enrollment must succeed.
    async fn enroll_ok(&self, token: &str) -> String {
        let (ok, out, err) = self.enroll(token).await;
        assert!(ok, "enroll failed:\n{err}");
        out.split_whitespace()
            .skip_while(|w| *w != "device")
            .nth(1)
            .expect("device id in the output")
            .to_owned()
    }

    /// Enrollment must fail; returns its stderr.
    async fn enroll_refused(&self, token: &str) -> String {
        let (ok, out, err) = self.enroll(token).await;
        assert!(!ok, "enrollment should have been refused, got: {out}");
        assert!(
            !self.dir.join("agent.pem").exists() && !self.dir.join("agent.key").exists(),
            "a refused enrollment writes no identity"
        );
        err
    }

    fn creds(&self) -> Creds {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap();
        Creds {
            ca_pem: read("ca.pem"),
            cert_pem: Some(read("agent.pem")),
            key_pem: Some(read("agent.key")),
        }
    }

    fn cert_serial(&self) -> String {
        let pem = std::fs::read_to_string(self.dir.join("agent.pem")).unwrap();
        pki::cert_serial_hex(&pki::first_cert_der(&pem).unwrap()).unwrap()
    }

    fn identity(&self) -> Option<(String, String)> {
        let pem = std::fs::read_to_string(self.dir.join("agent.pem")).ok()?;
        pki::identity_from_der(&pki::first_cert_der(&pem)?)
    }

    fn spawn(&self, log_name: &str) -> Child {
        let log = std::fs::File::create(self.dir.join(log_name)).unwrap();
        Command::new(bin("tandem-agent"))
            .arg("run")
            .arg("--config")
            .arg(self.config())
            .env("RUST_LOG", "info")
            .env_remove("TANDEM_ENROLL_TOKEN")
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    fn log(&self, log_name: &str) -> String {
        std::fs::read_to_string(self.dir.join(log_name)).unwrap_or_default()
    }
}

async fn token(site: &Site, collector: &CollectorProc, args: &[&str]) -> String {
    let addr = collector.enroll_addr.to_string();
    let mut all = vec!["token", "create", "--address", addr.as_str()];
    all.extend_from_slice(args);
    site.cli_ok(&all).await.trim().to_owned()
}

fn batches_of(site: &Site, device: &str) -> i64 {
    site.db()
        .query_row(
            "SELECT count(*) FROM batches WHERE device_id = ?1",
            [device],
            |r| r.get(0),
        )
        .unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(not(unix))]
fn mode(_path: &Path) -> u32 {
    0o600
}

async fn stop(mut child: Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_stream_renew_revoke_refused() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let collector = site.start_collector("").await.unwrap();
    site.cli_ok(&["tenant", "create", "acme"]).await;
    site.cli_ok(&["site", "create", "--tenant", "acme", "hq"])
        .await;
    let listed = site.cli_ok(&["tenant", "list"]).await;
    assert!(listed.contains("acme"), "{listed}");
    let t = token(&site, &collector, &["--tenant", "acme", "--site", "hq"]).await;
    assert!(t.starts_with("tdm1_"), "one line with the token: {t}");

    // Enroll: the key is made on the device and is private.
    let agent = AgentDir::new(&site, "agent");
    let device = agent.enroll_ok(&t).await;
    assert_eq!(mode(&agent.dir.join("agent.key")), 0o600, "key file mode");
    assert_eq!(
        agent.identity(),
        Some(("acme".to_owned(), device.clone())),
        "the certificate's URI SAN names the tenant and the new device"
    );
    let uri = tandem_proto::device_uri("acme", &device);
    assert!(uri.starts_with("spiffe://tandem/tenant/acme/device/"));

    // Enrolling again by mistake is refused and changes nothing.
    let again = token(&site, &collector, &["--tenant", "acme"]).await;
    let (ok, _, err) = agent.enroll(&again).await;
    assert!(
        !ok && err.contains(&format!("already enrolled as device {device}")),
        "{err}"
    );
    assert_eq!(agent.identity(), Some(("acme".to_owned(), device.clone())));

    // Stream.
    let run = agent.spawn("agent.log");
    wait_for(
        Duration::from_secs(30),
        "batches from the enrolled agent",
        || {
            let n = batches_of(&site, &device);
            async move { n >= 2 }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log("agent.log")));
    let list = site.cli_ok(&["device", "list"]).await;
    let line = list
        .lines()
        .find(|l| l.starts_with(&device))
        .unwrap_or_else(|| panic!("device missing from:\n{list}"));
    let host = hostname::get().unwrap().to_string_lossy().into_owned();
    for want in ["acme", "hq", host.as_str(), "linux", "0.1.0", " ok"] {
        assert!(line.contains(want), "{want:?} missing from {line:?}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&site.cli_ok(&["device", "list", "--json"]).await).unwrap();
    let row = &json[0];
    assert_eq!(row["site"], "hq");
    let expiry = row["cert_not_after_ms"].as_i64().unwrap();
    let thirty_days = 30 * 86_400_000;
    assert!(
        (expiry - now_ms() - thirty_days).abs() < 120_000,
        "default lifetime is 30 days: {expiry}"
    );

    // Renew now, on the collector's request.
    let first_serial = agent.cert_serial();
    site.cli_ok(&["device", "renew", &device]).await;
    wait_for(Duration::from_secs(20), "the agent to renew", || {
        let s = agent.cert_serial();
        let first = first_serial.clone();
        async move { s != first }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log("agent.log")));
    assert_eq!(
        mode(&agent.dir.join("agent.key")),
        0o600,
        "renewed key mode"
    );
    assert_eq!(
        agent.identity(),
        Some(("acme".to_owned(), device.clone())),
        "renewal keeps the identity"
    );
    let renewed = site.count(&format!(
        "SELECT count(*) FROM certificates WHERE device_id = '{device}' AND how = 'renew'"
    ));
    assert_eq!(renewed, 1);
    // The renewed certificate and key work (the file pair is consistent). This
    // stream replaces the agent's (one live stream per device, issue #10); once it
    // is closed, the agent streams again.
    let creds = agent.creds();
    let mut c = client(collector.addr, &creds).await.unwrap();
    let (held, w) = Stream::hello(&mut c).await.unwrap();
    assert_eq!(w.device_id, device);
    drop(held);
    drop(c);
    let streaming = batches_of(&site, &device);
    wait_for(Duration::from_secs(20), "the agent to stream again", || {
        let n = batches_of(&site, &device);
        async move { n > streaming + 1 }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log("agent.log")));

    // Revoke: the agent's open stream is closed at once, new handshakes fail.
    let before = batches_of(&site, &device);
    site.cli_ok(&["device", "revoke", &device, "--yes"]).await;
    wait_for(
        Duration::from_secs(10),
        "the open stream closed as revoked",
        || {
            let log = agent.log("agent.log");
            // The agent names the refusal (issue 16 item 8), or logs the raw reason
            // if the stream ended before it could classify it.
            async move {
                log.contains("the certificate of this device has been revoked")
                    || log.contains("the collector has revoked this device's certificate")
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log("agent.log")));
    let refused = async {
        let mut c = client(collector.addr, &creds).await?;
        Stream::hello(&mut c).await
    };
    assert!(refused.await.is_err(), "a new handshake must fail");
    // The agent process itself is cut off too: nothing more is stored.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = batches_of(&site, &device);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        batches_of(&site, &device),
        after,
        "nothing stored after revocation"
    );
    assert!(after >= before);
    let log = agent.log("agent.log");
    assert!(log.contains("revoked"), "agent log says why:\n{log}");
    let list = site.cli_ok(&["device", "list"]).await;
    assert!(list.contains("revoked"), "{list}");
    // A revoked device cannot renew either (refused at the handshake).
    let renew = async {
        let mut c = IdentityClient::new(channel(collector.addr, &creds).await?);
        let key = rcgen::KeyPair::generate()?;
        let csr = rcgen::CertificateParams::default().serialize_request(&key)?;
        anyhow::Ok(
            c.renew(RenewRequest {
                csr_der: csr.der().to_vec(),
            })
            .await?,
        )
    };
    assert!(renew.await.is_err(), "a revoked device cannot renew");
    stop(run).await;
    // A restarted collector knows the revocation from its first handshake on.
    assert!(collector.terminate().await);
    let collector = site.start_collector("").await.unwrap();
    let refused = async {
        let mut c = client(collector.addr, &creds).await?;
        Stream::hello(&mut c).await
    };
    assert!(refused.await.is_err(), "still refused after a restart");
    assert!(collector.terminate().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_a_message_that_says_which() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let other = Site::new().await.unwrap();
    let collector = site
        .start_collector_with("", "attempts_per_minute = 1000")
        .await
        .unwrap();
    site.cli_ok(&["tenant", "create", "acme"]).await;
    let n = std::sync::atomic::AtomicUsize::new(0);
    let fresh = || {
        AgentDir::new(
            &site,
            &format!("a{}", n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
        )
    };

    // Expired.
    let expired = token(&site, &collector, &["--tenant", "acme", "--expires", "1s"]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let err = fresh().enroll_refused(&expired).await;
    assert!(err.contains("enrollment token has expired"), "{err}");

    // Used up.
    let once = token(&site, &collector, &["--tenant", "acme", "--uses", "2"]).await;
    let d1 = fresh().enroll_ok(&once).await;
    let d2 = fresh().enroll_ok(&once).await;
    assert_ne!(d1, d2, "each enrollment is a new device");
    let err = fresh().enroll_refused(&once).await;
    assert!(err.contains("used up (it allowed 2 enrollments)"), "{err}");

    // Revoked.
    let revoked = token(&site, &collector, &["--tenant", "acme"]).await;
    let id = EnrollToken::parse(&revoked).unwrap().id_hex();
    site.cli_ok(&["token", "revoke", &id]).await;
    let listed = site.cli_ok(&["token", "list"]).await;
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("revoked")),
        "{listed}"
    );
    let err = fresh().enroll_refused(&revoked).await;
    assert!(err.contains("enrollment token has been revoked"), "{err}");

    // Tampered: a changed character is caught by the agent before it dials.
    let good = token(&site, &collector, &["--tenant", "acme"]).await;
    let mut bytes = good.clone().into_bytes();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let err = fresh()
        .enroll_refused(&String::from_utf8(bytes).unwrap())
        .await;
    assert!(err.contains("damaged or tampered with"), "{err}");
    // Tampered with care (checksum recomputed, another secret): the collector says so.
    let mut forged = EnrollToken::parse(&good).unwrap();
    forged.secret[0] ^= 0xff;
    let err = fresh().enroll_refused(&forged.encode()).await;
    assert!(err.contains("secret does not match"), "{err}");
    // A token id the collector never issued.
    let mut unknown = EnrollToken::parse(&good).unwrap();
    unknown.id = [0xab; 8];
    let err = fresh().enroll_refused(&unknown.encode()).await;
    assert!(err.contains("not recognised"), "{err}");

    // A wrong CA fingerprint: the agent refuses the collector before sending the secret.
    let other_fp = pki::load_ca(&other.data_dir())
        .unwrap()
        .fingerprint()
        .unwrap();
    let mut wrong_ca = EnrollToken::parse(&good).unwrap();
    wrong_ca.ca_fingerprint = other_fp;
    let err = fresh().enroll_refused(&wrong_ca.encode()).await;
    assert!(err.contains("is not the one the token names"), "{err}");
    assert!(
        err.contains(&tandem_proto::token::hex(&other_fp)),
        "names the pin: {err}"
    );
    // ... and the secret was never used: the genuine token still works, once.
    fresh().enroll_ok(&good).await;
    let err = fresh().enroll_refused(&good).await;
    assert!(err.contains("used up"), "{err}");

    // A tenant or site that does not exist cannot get a token.
    let (ok, _, err) = site
        .cli(&[
            "token",
            "create",
            "--address",
            "127.0.0.1:1",
            "--tenant",
            "nobody",
        ])
        .await;
    assert!(!ok && err.contains("no tenant \"nobody\""), "{err}");
    let (ok, _, err) = site
        .cli(&[
            "token",
            "create",
            "--address",
            "127.0.0.1:1",
            "--tenant",
            "acme",
            "--site",
            "nowhere",
        ])
        .await;
    assert!(!ok && err.contains("no site \"nowhere\""), "{err}");
    // The collector served every refusal and is still fine.
    assert!(collector.terminate().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_attempts_are_rate_limited_per_source_address() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let collector = site
        .start_collector_with("", "attempts_per_minute = 3")
        .await
        .unwrap();
    site.cli_ok(&["tenant", "create", "acme"]).await;
    let good = token(&site, &collector, &["--tenant", "acme"]).await;
    let mut guess = EnrollToken::parse(&good).unwrap();
    guess.id = [0x11; 8];
    let agent = AgentDir::new(&site, "guesser");
    for _ in 0..3 {
        let err = agent.enroll_refused(&guess.encode()).await;
        assert!(err.contains("not recognised"), "{err}");
    }
    let err = agent.enroll_refused(&guess.encode()).await;
    assert!(
        err.contains("too many enrollment attempts from 127.0.0.1"),
        "{err}"
    );
    // Even a good token from the same address waits its turn.
    let err = AgentDir::new(&site, "late").enroll_refused(&good).await;
    assert!(err.contains("too many enrollment attempts"), "{err}");
    // The telemetry listener is untouched by the limit.
    let creds = site.issue("acme", "dev-manual");
    let mut c = client(collector.addr, &creds).await.unwrap();
    let (s, _) = Stream::hello(&mut c).await.unwrap();
    s.send(batch(1, now_ms(), 1)).await.unwrap();
    assert!(collector.log().contains("rate-limited"));
    assert!(collector.terminate().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_report_as_another_device_or_tenant() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let collector = site.start_collector("").await.unwrap();
    site.cli_ok(&["tenant", "create", "acme"]).await;
    site.cli_ok(&["tenant", "create", "globex"]).await;
    let ta = token(&site, &collector, &["--tenant", "acme"]).await;
    let tb = token(&site, &collector, &["--tenant", "globex"]).await;
    let a = AgentDir::new(&site, "a");
    let b = AgentDir::new(&site, "b");
    let dev_a = a.enroll_ok(&ta).await;
    let dev_b = b.enroll_ok(&tb).await;
    let creds_a = a.creds();

    // Claiming B's id with A's certificate is refused.
    let mut c = client(collector.addr, &creds_a).await.unwrap();
    let mut hello = tandem_tests::hello_frame();
    if let Some(tandem_proto::v1::agent_frame::Kind::Hello(h)) = &mut hello.kind {
        h.claimed_device_id = dev_b.clone();
    }
    let mut s = Stream::open(&mut c, hello).await.unwrap();
    let err = s.outcome().await.expect_err("refused");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(
        err.message()
            .contains(&format!("claims device \"{dev_b}\"")),
        "{}",
        err.message()
    );

    // Whatever A sends is stored under A (the certificate), never B.
    let (mut s, w) = Stream::hello(&mut c).await.unwrap();
    assert_eq!(
        (w.device_id.as_str(), w.tenant.as_str()),
        (dev_a.as_str(), "acme")
    );
    s.send(batch(1, now_ms(), 2)).await.unwrap();
    assert_eq!(s.next_ack().await.unwrap(), Some(1));
    assert_eq!(batches_of(&site, &dev_a), 1);
    assert_eq!(batches_of(&site, &dev_b), 0);

    // A certificate from the same CA naming A's device id under another tenant is
    // refused: a device id belongs to one tenant forever.
    let cross = Creds {
        ca_pem: creds_a.ca_pem.clone(),
        ..site.issue("globex", &dev_a)
    };
    let mut c = client(collector.addr, &cross).await.unwrap();
    let err = match Stream::hello(&mut c).await {
        Ok(_) => panic!("a hello under another tenant must be refused"),
        Err(e) => e,
    };
    assert!(
        err.to_string().contains("registered to another tenant"),
        "{err}"
    );

    // Renewal cannot change the identity: a CSR asking for B gets a certificate for A.
    let mut rc = IdentityClient::new(channel(collector.addr, &creds_a).await.unwrap());
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(vec![tandem_proto::device_uri("globex", &dev_b)])
        .unwrap()
        .serialize_request(&key)
        .unwrap();
    let cert = rc
        .renew(RenewRequest {
            csr_der: csr.der().to_vec(),
        })
        .await
        .unwrap()
        .into_inner()
        .cert_pem;
    assert_eq!(
        pki::identity_from_der(&pki::first_cert_der(&cert).unwrap()),
        Some(("acme".to_owned(), dev_a.clone()))
    );
    // Reusing the current key for a "renewal" is refused.
    let current_key = rcgen::KeyPair::from_pem(creds_a.key_pem.as_deref().unwrap()).unwrap();
    let same = rcgen::CertificateParams::default()
        .serialize_request(&current_key)
        .unwrap();
    let err = rc
        .renew(RenewRequest {
            csr_der: same.der().to_vec(),
        })
        .await
        .expect_err("same key");
    assert!(err.message().contains("new key"), "{}", err.message());
    // Garbage for a CSR gets a clear refusal, and the collector keeps serving.
    let err = rc
        .renew(RenewRequest {
            csr_der: b"garbage".to_vec(),
        })
        .await
        .expect_err("garbage");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().starts_with("csr: "), "{}", err.message());
    assert!(collector.terminate().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_renew_themselves_and_the_agent_outlives_its_first_certificate() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    // 15 s certificates: renewal due about 10 s after issue.
    let collector = site
        .start_collector_with("", "cert_lifetime_secs = 15")
        .await
        .unwrap();
    let port = collector.addr.port();
    site.cli_ok(&["tenant", "create", "acme"]).await;
    let t = token(&site, &collector, &["--tenant", "acme"]).await;
    let agent = AgentDir::new(&site, "agent");
    // First `run` enrolls by itself with the token from the environment.
    let log = std::fs::File::create(agent.dir.join("agent.log")).unwrap();
    let run = Command::new(bin("tandem-agent"))
        .arg("run")
        .arg("--config")
        .arg(agent.config())
        .env("TANDEM_ENROLL_TOKEN", &t)
        .env("RUST_LOG", "info")
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(20), "enrollment on first run", || {
        let done = agent.identity().is_some();
        async move { done }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log("agent.log")));
    let (_, device) = agent.identity().unwrap();
    let first_serial = agent.cert_serial();
    let issued = |how: &str| -> Vec<i64> {
        let db = site.db();
        let mut st = db
            .prepare("SELECT issued_ms FROM certificates WHERE device_id = ?1 AND how = ?2 ORDER BY issued_ms")
            .unwrap();
        st.query_map([device.as_str(), how], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    wait_for(Duration::from_secs(30), "an automatic renewal", || {
        let n = issued("renew").len();
        async move { n >= 1 }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log("agent.log")));
    let gap = issued("renew")[0] - issued("enroll")[0];
    assert!(
        (7_000..=14_000).contains(&gap),
        "renewed at two thirds of 15 s (+1.5 s backdate), took {gap} ms"
    );
    wait_for(
        Duration::from_secs(10),
        "the new certificate on disk",
        || {
            let s = agent.cert_serial();
            let first = first_serial.clone();
            async move { s != first }
        },
    )
    .await
    .unwrap();

    // Wait until the first certificate has expired, crash the collector, bring it
    // back on the same port: the agent reconnects with the renewed certificate.
    let first_expiry: i64 = site
        .db()
        .query_row(
            "SELECT not_after_ms FROM certificates WHERE device_id = ?1 AND how = 'enroll'",
            [device.as_str()],
            |r| r.get(0),
        )
        .unwrap();
    let left = (first_expiry + 1_000 - now_ms()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(left)).await;
    collector.kill9().await;
    std::fs::write(
        site.dir.path().join("collector.toml"),
        format!(
            "data_dir = \"collector\"\n[enrollment]\nlisten = \"127.0.0.1:0\"\ncert_lifetime_secs = 15\n[telemetry]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    )
    .unwrap();
    let collector = site.start_collector("").await.unwrap();
    let logs = || {
        format!(
            "agent log:\n{}\ncollector log:\n{}",
            agent.log("agent.log"),
            collector.log()
        )
    };
    let before = batches_of(&site, &device);
    wait_for(
        Duration::from_secs(60),
        "streaming after the first certificate expired",
        || {
            let n = batches_of(&site, &device);
            async move { n >= before + 3 }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    // The renewed certificate is itself renewed about 10 s after it was issued,
    // which may be after those batches: wait for it rather than race it.
    wait_for(Duration::from_secs(30), "renewals go on", || {
        let n = issued("renew").len();
        async move { n >= 2 }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    stop(run).await;
    assert!(collector.terminate().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinstalling_is_a_new_device_unless_the_operator_replaces_one() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let collector = site.start_collector("").await.unwrap();
    site.cli_ok(&["tenant", "create", "acme"]).await;
    site.cli_ok(&["tenant", "create", "globex"]).await;
    let old = AgentDir::new(&site, "old");
    let device = old
        .enroll_ok(&token(&site, &collector, &["--tenant", "acme"]).await)
        .await;
    let old_creds = old.creds();
    let mut c = client(collector.addr, &old_creds).await.unwrap();
    let (mut s, _) = Stream::hello(&mut c).await.unwrap();
    for seq in 1..=3 {
        s.send(batch(seq, now_ms() + seq as i64, 1)).await.unwrap();
        assert_eq!(s.next_ack().await.unwrap(), Some(seq));
    }
    drop(s);

    // Enrolling again, as a reinstalled machine does, is a new device.
    let again = AgentDir::new(&site, "again");
    let fresh = again
        .enroll_ok(&token(&site, &collector, &["--tenant", "acme"]).await)
        .await;
    assert_ne!(fresh, device, "history is never merged silently");

    // The operator may choose to replace: only within the device's tenant, single use.
    let (ok, _, err) = site
        .cli(&[
            "token",
            "create",
            "--address",
            "127.0.0.1:1",
            "--tenant",
            "globex",
            "--replace",
            &device,
        ])
        .await;
    assert!(!ok && err.contains("belongs to tenant \"acme\""), "{err}");
    let (ok, _, err) = site
        .cli(&[
            "token",
            "create",
            "--address",
            "127.0.0.1:1",
            "--tenant",
            "acme",
            "--replace",
            &device,
            "--uses",
            "2",
        ])
        .await;
    assert!(!ok && err.contains("single-use"), "{err}");
    let replace = token(
        &site,
        &collector,
        &["--tenant", "acme", "--replace", &device],
    )
    .await;
    let new = AgentDir::new(&site, "reinstalled");
    assert_eq!(
        new.enroll_ok(&replace).await,
        device,
        "same id, same history"
    );
    // The old installation's certificate stops working (within the 1 s poll).
    wait_for(
        Duration::from_secs(10),
        "the old certificate to be refused",
        || {
            let creds = old_creds.clone();
            let addr = collector.addr;
            async move {
                let attempt = async {
                    let mut c = client(addr, &creds).await?;
                    Stream::hello(&mut c).await
                };
                attempt.await.is_err()
            }
        },
    )
    .await
    .unwrap();
    // The new one streams on, after the history.
    let mut c = client(collector.addr, &new.creds()).await.unwrap();
    let (mut s, w) = Stream::hello(&mut c).await.unwrap();
    assert_eq!(w.acked_seq, 3, "the replacement sees the device's history");
    s.send(batch(4, now_ms() + 10, 1)).await.unwrap();
    assert_eq!(s.next_ack().await.unwrap(), Some(4));
    assert_eq!(batches_of(&site, &device), 4);
    assert!(collector.terminate().await);
}

/// Stops the collector and starts it again on the same ports (agents know the
/// telemetry port from their enrollment, tokens carry the enrollment port).
async fn restart(site: &Site, collector: CollectorProc) -> CollectorProc {
    let port = collector.addr.port();
    let enroll_port = collector.enroll_addr.port();
    assert!(collector.terminate().await, "clean stop");
    std::fs::write(
        site.dir.path().join("collector.toml"),
        format!(
            "data_dir = \"collector\"\n[enrollment]\nlisten = \"127.0.0.1:{enroll_port}\"\n[telemetry]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    )
    .unwrap();
    let c = site.start_collector("").await.unwrap();
    assert_eq!((c.addr.port(), c.enroll_addr.port()), (port, enroll_port));
    c
}

fn certs_in(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .matches("BEGIN CERTIFICATE")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_rotates_without_cutting_off_renewed_devices() {
    crate::crypto();
    let site = Site::new().await.unwrap();
    let collector = site.start_collector("").await.unwrap();
    site.cli_ok(&["tenant", "create", "acme"]).await;
    let unused_old_token = token(&site, &collector, &["--tenant", "acme"]).await;
    let agent = AgentDir::new(&site, "agent");
    let device = agent
        .enroll_ok(&token(&site, &collector, &["--tenant", "acme"]).await)
        .await;
    let idle = AgentDir::new(&site, "idle");
    let idle_device = idle
        .enroll_ok(&token(&site, &collector, &["--tenant", "acme"]).await)
        .await;
    let run = agent.spawn("agent.log");
    wait_for(Duration::from_secs(30), "streaming", || {
        let n = batches_of(&site, &device);
        async move { n >= 2 }
    })
    .await
    .unwrap();

    // Step 1: a new issuing CA; the old one keeps serving.
    site.cli_ok(&["pki", "rotate-ca", "begin"]).await;
    let (ok, _, err) = site.cli(&["pki", "rotate-ca", "begin"]).await;
    assert!(!ok && err.contains("already in progress"), "{err}");
    let collector = restart(&site, collector).await;
    // Enrollment goes on during the rotation, and brings both CAs.
    let mid = AgentDir::new(&site, "mid");
    mid.enroll_ok(&token(&site, &collector, &["--tenant", "acme"]).await)
        .await;
    assert_eq!(certs_in(&mid.dir.join("ca.pem")), 2, "new + old CA");
    // Renewal hands the running agent a new-CA certificate and both CAs.
    let serial = agent.cert_serial();
    site.cli_ok(&["device", "renew", &device]).await;
    wait_for(
        Duration::from_secs(30),
        "renewal during the rotation",
        || {
            let s = agent.cert_serial();
            let old = serial.clone();
            async move { s != old }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log("agent.log")));
    assert_eq!(
        certs_in(&agent.dir.join("ca.pem")),
        2,
        "agent trusts both CAs"
    );

    // Step 2 refuses while a device would be cut off, names it, and goes on with --force.
    let (ok, _, err) = site.cli(&["pki", "rotate-ca", "finish"]).await;
    assert!(!ok && err.contains(&idle_device), "{err}");
    assert!(!err.contains(&device), "the renewed device is ready: {err}");
    site.cli_ok(&["pki", "rotate-ca", "finish", "--force"])
        .await;
    let collector = restart(&site, collector).await;

    // The renewed agent reconnects to the new server certificate and streams on.
    let before = batches_of(&site, &device);
    wait_for(
        Duration::from_secs(60),
        "streaming after the rotation",
        || {
            let n = batches_of(&site, &device);
            async move { n >= before + 3 }
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nagent log:\n{}\ncollector log:\n{}",
            agent.log("agent.log"),
            collector.log()
        )
    });
    // The device that never renewed holds an old-CA certificate: refused.
    let idle_creds = Creds {
        ca_pem: std::fs::read_to_string(agent.dir.join("ca.pem")).unwrap(),
        ..idle.creds()
    };
    let attempt = async {
        let mut c = client(collector.addr, &idle_creds).await?;
        Stream::hello(&mut c).await
    };
    assert!(attempt.await.is_err(), "old-CA certificates stop working");
    // Tokens made before pin the old CA and are refused as such; new ones work.
    let err = AgentDir::new(&site, "late")
        .enroll_refused(&unused_old_token)
        .await;
    assert!(err.contains("is not the one the token names"), "{err}");
    AgentDir::new(&site, "new")
        .enroll_ok(&token(&site, &collector, &["--tenant", "acme"]).await)
        .await;
    stop(run).await;
    assert!(collector.terminate().await);
}
