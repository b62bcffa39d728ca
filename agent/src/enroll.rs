//! Enrollment with a token: the only step that trusts nothing yet.
//!
//! The agent dials the address in the token over TLS 1.3 without a client
//! certificate and accepts the server only if the chain it sends contains a CA
//! certificate whose public-key fingerprint (SHA-256 of the SPKI) equals the one in
//! the token, and the server certificate verifies against that CA for the name
//! dialled ([`PinnedCa`]). Only then does it send the token's secret and a CSR for a
//! key made here; the key itself never leaves the device.
//!
//! At boot (a package's or MSI's first start) the collector may not be reachable
//! yet: [`retry_delay`] spaces the attempts, [`EnrollError::is_transient`] says
//! which failures are worth another, and [`find_token`] / [`consume_token_file`]
//! handle the one-time token an installer left on disk (removed, or blanked where
//! the file cannot be removed, once it has served or is not needed).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tandem_proto::token::{EnrollToken, hex, spki_fingerprint, split_address};
use tandem_proto::v1::EnrollRequest;
use tandem_proto::v1::enrollment_client::EnrollmentClient;

use crate::config::AgentConfig;
use crate::identity::{self, Enrollment, IdentityError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(transparent)]
    Token(#[from] tandem_proto::token::TokenError),
    #[error(
        "the collector at {address} is not the one the token names: {detail}; check the token, or whether something intercepts the connection"
    )]
    WrongCa { address: String, detail: String },
    #[error("cannot reach the collector at {address}: {detail}")]
    Connect { address: String, detail: String },
    #[error(
        "the token's address {address} reached port {port}, a listener that asks for a client certificate: that is the collector's telemetry port (mTLS), not its enrollment listener ([enrollment] listen in collector.toml, port 4444 by default); create the token again with --address HOST:ENROLLMENT_PORT"
    )]
    TelemetryPort { address: String, port: u16 },
    #[error("the collector refused the enrollment: {0}")]
    Refused(String),
    #[error("the collector refused the enrollment for now: {0}")]
    Busy(String),
    #[error("the token in {path}: {source}", path = .path.display())]
    TokenFile {
        path: PathBuf,
        source: tandem_proto::token::TokenError,
    },
    #[error("the collector answered with an unusable {0}")]
    BadAnswer(&'static str),
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

impl EnrollError {
    /// Whether a later attempt may succeed without anyone changing anything: the
    /// collector was unreachable (not started, DNS or network not up yet, a
    /// firewall dropping) or asked us to slow down. A refused, expired or damaged
    /// token, or a collector with the wrong CA, stays wrong: retrying is pointless.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, EnrollError::Connect { .. } | EnrollError::Busy(_))
    }
}

/// First wait between enrollment attempts; it doubles up to the configured cap.
pub(crate) const FIRST_RETRY: Duration = Duration::from_secs(2);

/// Wait after `failed` consecutive failed attempts (1 for the first): 2 s doubling
/// up to `max`, times `jitter` (the caller draws it from 0.8..=1.2 so a fleet that
/// booted together does not knock in step). Pure, for tests.
pub(crate) fn retry_delay(failed: u32, max: Duration, jitter: f64) -> Duration {
    let doubled = FIRST_RETRY.saturating_mul(1u32 << failed.saturating_sub(1).min(20));
    doubled.min(max).mul_f64(jitter.clamp(0.5, 1.5))
}

/// Where the token used for a first enrollment came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenSource {
    Config,
    Env,
    File(PathBuf),
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Config => f.write_str("enroll_token in the config"),
            TokenSource::Env => write!(f, "{}", crate::TOKEN_ENV),
            TokenSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The token to enroll with, in order: the config's `enroll_token`, the
/// `env_token` (`TANDEM_ENROLL_TOKEN`), the token file. An empty or missing file
/// is no token; an unreadable one is reported and skipped.
pub(crate) fn find_token(
    cfg: &AgentConfig,
    env_token: Option<String>,
) -> Result<Option<(String, TokenSource)>, EnrollError> {
    if let Some(t) = &cfg.enroll_token {
        return Ok(Some((t.0.clone(), TokenSource::Config)));
    }
    if let Some(t) = env_token.filter(|t| !t.trim().is_empty()) {
        return Ok(Some((t.trim().to_owned(), TokenSource::Env)));
    }
    match read_token_file(&cfg.enroll_token_file) {
        Some(t) => {
            EnrollToken::parse(&t).map_err(|source| EnrollError::TokenFile {
                path: cfg.enroll_token_file.clone(),
                source,
            })?;
            Ok(Some((t, TokenSource::File(cfg.enroll_token_file.clone()))))
        }
        None => Ok(None),
    }
}

/// The token file's text, trimmed, if there is a non-empty one.
pub(crate) fn read_token_file(path: &std::path::Path) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => Some(t.trim().to_owned()),
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read the enrollment token file; ignoring it");
            None
        }
    }
}

/// What [`consume_token_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Consumed {
    /// There was no token in the file (or no file).
    Nothing,
    Removed,
    /// Emptied in place: the file could not be removed (a systemd unit that makes
    /// just this file writable bind-mounts it, and a bind mount cannot be unlinked).
    Blanked,
    /// Neither worked; logged.
    Left,
}

/// Removes the installer's token file once it is no longer needed, or blanks it.
pub(crate) fn consume_token_file(path: &std::path::Path) -> Consumed {
    if read_token_file(path).is_none() {
        return Consumed::Nothing;
    }
    match std::fs::remove_file(path) {
        Ok(()) => Consumed::Removed,
        Err(remove) => match std::fs::File::create(path) {
            Ok(_) => Consumed::Blanked,
            Err(blank) => {
                tracing::warn!(file = %path.display(), remove = %remove, blank = %blank, "cannot remove or blank the used enrollment token file; delete it by hand");
                Consumed::Left
            }
        },
    }
}

/// Verifies the enrollment listener by the CA fingerprint pinned in the token.
#[derive(Debug)]
pub(crate) struct PinnedCa {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
    /// Why the last verification failed, for a precise error (rustls' own error
    /// reaches us wrapped in transport errors).
    failure: Arc<Mutex<Option<String>>>,
}

impl PinnedCa {
    pub(crate) fn new(pin: [u8; 32]) -> Self {
        Self {
            pin,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            failure: Arc::new(Mutex::new(None)),
        }
    }

    fn fail(&self, detail: String) -> rustls::Error {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(detail.clone());
        rustls::Error::General(detail)
    }

    /// Why the last handshake was refused, if it was.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|c| spki_fingerprint(c) == Some(self.pin))
        else {
            let seen: Vec<String> = intermediates
                .iter()
                .filter_map(|c| spki_fingerprint(c))
                .map(|f| hex(&f))
                .collect();
            return Err(self.fail(format!(
                "its CA fingerprint is {} but the token pins {}",
                if seen.is_empty() {
                    "missing (no CA certificate sent)".to_owned()
                } else {
                    seen.join(", ")
                },
                hex(&self.pin)
            )));
        };
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| self.fail(format!("its CA certificate is unusable: {e}")))?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| self.fail(format!("cannot build a verifier: {e}")))?;
        verifier
            .verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
            .map_err(|e| {
                self.fail(format!(
                    "its server certificate does not verify against the pinned CA: {e}"
                ))
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Presents no client certificate (enrollment is how a device gets one) but notes
/// that the server asked for one: only the telemetry listener does, so a token aimed
/// at it is named as such instead of as a wrong CA (issue 16, item 10). In TLS 1.3
/// the request arrives before the server's certificate, so the note is there when
/// the verification fails.
#[derive(Debug, Default)]
struct NoClientCert {
    asked: std::sync::atomic::AtomicBool,
}

impl rustls::client::ResolvesClientCert for NoClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.asked.store(true, std::sync::atomic::Ordering::Relaxed);
        None
    }

    fn has_certs(&self) -> bool {
        false
    }
}

/// What a successful enrollment wrote.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub enrollment: Enrollment,
    pub key: PathBuf,
    pub cert: PathBuf,
}

/// Enrolls this device with `token_text`, writing the key, certificate, CA and
/// `enrollment.toml` at the places `cfg` names.
pub async fn enroll(cfg: &AgentConfig, token_text: &str) -> Result<Enrolled, EnrollError> {
    let token = EnrollToken::parse(token_text)?;
    let address = token.address.clone();
    let (host, port) = split_address(&address).ok_or(EnrollError::BadAnswer("address"))?;
    let host = host.to_owned();
    let (key_pem, csr_der) = identity::new_key_and_csr()?;

    let pinned = Arc::new(PinnedCa::new(token.ca_fingerprint));
    let client_cert = Arc::new(NoClientCert::default());
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|e| EnrollError::Connect {
        address: address.clone(),
        detail: e.to_string(),
    })?
    .dangerous()
    .with_custom_certificate_verifier(pinned.clone())
    .with_client_cert_resolver(client_cert.clone());
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let server_name = ServerName::try_from(host.clone()).map_err(|_| EnrollError::Connect {
        address: address.clone(),
        detail: format!("{host:?} is not a valid server name"),
    })?;
    let dial = address.clone();
    let connect = tower::service_fn(move |_uri: tonic::transport::Uri| {
        let connector = connector.clone();
        let server_name = server_name.clone();
        let dial = dial.clone();
        async move {
            let addr = resolve(&dial).await?;
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    // The URI only names the authority for HTTP/2; TLS is done by the connector.
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{host}:{port}"))
        .map_err(|e| EnrollError::Connect {
            address: address.clone(),
            detail: e.to_string(),
        })?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(RPC_TIMEOUT);
    let conn_err = |detail: String| match pinned.failure() {
        _ if client_cert.asked.load(std::sync::atomic::Ordering::Relaxed) => {
            EnrollError::TelemetryPort {
                address: address.clone(),
                port,
            }
        }
        Some(f) => EnrollError::WrongCa {
            address: address.clone(),
            detail: f,
        },
        None => EnrollError::Connect {
            address: address.clone(),
            detail,
        },
    };
    let channel = endpoint
        .connect_with_connector(connect)
        .await
        .map_err(|e| conn_err(error_chain(&e)))?;
    let hostname = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let request = EnrollRequest {
        token_id: token.id_hex(),
        token_secret: token.secret.to_vec(),
        csr_der,
        hostname,
    };
    let resp = EnrollmentClient::new(channel)
        .enroll(request)
        .await
        .map_err(|s| match s.code() {
            tonic::Code::PermissionDenied | tonic::Code::InvalidArgument => {
                EnrollError::Refused(s.message().to_owned())
            }
            // The per-address rate limit: a site behind one NAT booting together.
            tonic::Code::ResourceExhausted => EnrollError::Busy(s.message().to_owned()),
            _ => conn_err(format!("{}: {}", s.code(), s.message())),
        })?
        .into_inner();

    // The CA bundle we store must hold the CA we pinned (during a CA rotation it
    // also holds the new CA, first).
    let pinned_in_bundle = all_ders(&resp.ca_pem)
        .iter()
        .any(|der| spki_fingerprint(der) == Some(token.ca_fingerprint));
    if !pinned_in_bundle {
        return Err(EnrollError::BadAnswer(
            "CA bundle (it does not hold the CA the token pins)",
        ));
    }
    if first_der(&resp.cert_pem).is_none() {
        return Err(EnrollError::BadAnswer("certificate"));
    }
    if !tandem_proto::is_valid_device_id(&resp.device_id) || resp.telemetry_port == 0 {
        return Err(EnrollError::BadAnswer("device id or telemetry port"));
    }
    identity::store(cfg, &key_pem, &resp.cert_pem, Some(&resp.ca_pem))?;
    let url_host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let enrollment = Enrollment {
        collector_url: format!("https://{url_host}:{}", resp.telemetry_port),
        device_id: resp.device_id,
        tenant: resp.tenant,
        site: resp.site,
    };
    enrollment.save(&cfg.state_dir)?;
    Ok(Enrolled {
        enrollment,
        key: cfg.key.clone(),
        cert: cfg.cert.clone(),
    })
}

async fn resolve(address: &str) -> std::io::Result<SocketAddr> {
    tokio::net::lookup_host(address)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{address} resolves to no address")))
}

fn all_ders(pem: &str) -> Vec<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .map(|c| c.to_vec())
        .collect()
}

fn first_der(pem: &str) -> Option<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()
        .map(|c| c.to_vec())
}

/// An error and its sources, joined: transport errors hide the cause in the chain.
/// A source whose text the message already holds is left out (many errors print
/// their cause themselves: "Connection refused (os error 111): Connection refused
/// (os error 111)", issue 16, item 13).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !text.is_empty() && !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_chain_does_not_repeat_its_cause() {
        #[derive(Debug)]
        struct Wrap(std::io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "tcp connect error: {}", self.0)
            }
        }
        impl std::error::Error for Wrap {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Wrap(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        ));
        assert_eq!(
            error_chain(&e),
            "tcp connect error: Connection refused (os error 111)"
        );
    }

    /// A CA and a server certificate it signed for "localhost".
    fn ca_and_server() -> (CertificateDer<'static>, CertificateDer<'static>) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = p.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::from_params(&p, &ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (ca.der().clone(), server.der().clone())
    }

    fn verify(v: &PinnedCa, leaf: &CertificateDer<'_>, chain: &[CertificateDer<'_>]) -> bool {
        let name = ServerName::try_from("localhost").unwrap();
        v.verify_server_cert(leaf, chain, &name, &[], UnixTime::now())
            .is_ok()
    }

    #[test]
    fn accepts_only_the_pinned_ca() {
        let (ca, server) = ca_and_server();
        let (other_ca, other_server) = ca_and_server();
        let pin = spki_fingerprint(&ca).unwrap();
        let v = PinnedCa::new(pin);
        assert!(verify(&v, &server, std::slice::from_ref(&ca)));
        assert!(v.failure().is_none());
        // No CA in the chain.
        assert!(!verify(&v, &server, &[]));
        assert!(v.failure().unwrap().contains("no CA certificate sent"));
        // An impostor with its own CA.
        let v = PinnedCa::new(pin);
        assert!(!verify(&v, &other_server, std::slice::from_ref(&other_ca)));
        assert!(v.failure().unwrap().contains(&hex(&pin)));
        // The pinned CA sent along, but the server certificate is another CA's.
        let v = PinnedCa::new(pin);
        assert!(!verify(&v, &other_server, std::slice::from_ref(&ca)));
        assert!(v.failure().unwrap().contains("does not verify"));
    }

    #[test]
    fn retries_back_off_to_the_cap() {
        let max = Duration::from_secs(60);
        let waits: Vec<u64> = (1..=8)
            .map(|n| retry_delay(n, max, 1.0).as_secs())
            .collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(1000, max, 1.0), max, "no overflow");
        assert_eq!(retry_delay(3, max, 0.8), Duration::from_millis(6400));
        assert_eq!(
            retry_delay(9, Duration::from_secs(2), 1.2),
            Duration::from_millis(2400)
        );
    }

    #[test]
    fn only_unreachable_or_busy_is_worth_a_retry() {
        let connect = EnrollError::Connect {
            address: "c:4444".into(),
            detail: "connection refused".into(),
        };
        assert!(connect.is_transient());
        assert!(EnrollError::Busy("too many enrollment attempts".into()).is_transient());
        assert!(!EnrollError::Refused("expired".into()).is_transient());
        let wrong = EnrollError::WrongCa {
            address: "c:4444".into(),
            detail: "x".into(),
        };
        assert!(!wrong.is_transient());
    }

    fn cfg_in(dir: &std::path::Path, toml: &str) -> AgentConfig {
        crate::config::parse(&dir.join("agent.toml"), toml).unwrap()
    }

    #[test]
    fn token_sources_in_order_and_the_file_is_consumed() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = cfg_in(dir.path(), "");
        assert_eq!(cfg.enroll_token_file, dir.path().join("enroll.token"));
        assert_eq!(find_token(&cfg, None).unwrap(), None);
        // An empty file (a blanked one) is no token.
        std::fs::write(&cfg.enroll_token_file, "\n").unwrap();
        assert_eq!(find_token(&cfg, None).unwrap(), None);
        assert_eq!(
            consume_token_file(&cfg.enroll_token_file),
            Consumed::Nothing
        );
        // A damaged token in the file names the file.
        std::fs::write(&cfg.enroll_token_file, "tdm1_nonsense\n").unwrap();
        let err = find_token(&cfg, None).unwrap_err().to_string();
        assert!(err.contains("enroll.token"), "{err}");
        let token = EnrollToken {
            id: [1; 8],
            secret: [2; 32],
            ca_fingerprint: [3; 32],
            address: "127.0.0.1:4444".into(),
        }
        .encode();
        std::fs::write(&cfg.enroll_token_file, format!("{token}\n")).unwrap();
        let (t, src) = find_token(&cfg, None).unwrap().unwrap();
        assert_eq!(t, token);
        assert_eq!(src, TokenSource::File(cfg.enroll_token_file.clone()));
        // The environment wins over the file, the config over both.
        let (_, src) = find_token(&cfg, Some("tdm1_env".into())).unwrap().unwrap();
        assert_eq!(src, TokenSource::Env);
        let (_, src) = find_token(&cfg, Some("  ".into())).unwrap().unwrap();
        assert!(
            matches!(src, TokenSource::File(_)),
            "a blank env is no token"
        );
        let with_cfg = cfg_in(dir.path(), &format!("enroll_token = \"{token}\"\n"));
        let (_, src) = find_token(&with_cfg, Some("tdm1_env".into()))
            .unwrap()
            .unwrap();
        assert_eq!(src, TokenSource::Config);
        assert_eq!(
            consume_token_file(&cfg.enroll_token_file),
            Consumed::Removed
        );
        assert!(!cfg.enroll_token_file.exists());
    }

    #[cfg(unix)]
    #[test]
    fn a_token_file_that_cannot_be_removed_is_blanked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("etc");
        std::fs::create_dir(&sub).unwrap();
        let file = sub.join("enroll.token");
        std::fs::write(&file, "tdm1_x").unwrap();
        // A read-only directory: unlink fails, truncation works (as root too, for
        // root ignores the mode, so only check what happened when it applies).
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o555)).unwrap();
        let done = consume_token_file(&file);
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        match done {
            Consumed::Blanked => assert_eq!(std::fs::read_to_string(&file).unwrap(), ""),
            Consumed::Removed => assert!(!file.exists(), "root may unlink anyway"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_pinned_ca_does_not_vouch_for_another_name() {
        let (ca, server) = ca_and_server();
        let v = PinnedCa::new(spki_fingerprint(&ca).unwrap());
        let name = ServerName::try_from("collector.example.net").unwrap();
        assert!(
            v.verify_server_cert(&server, &[ca], &name, &[], UnixTime::now())
                .is_err()
        );
    }
}
