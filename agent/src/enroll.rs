//! Enrollment with a token: the only step that trusts nothing yet.
//!
//! The agent dials the address in the token over TLS 1.3 without a client
//! certificate and accepts the server only if the chain it sends contains a CA
//! certificate whose public-key fingerprint (SHA-256 of the SPKI) equals the one in
//! the token, and the server certificate verifies against that CA for the name
//! dialled ([`PinnedCa`]). Only then does it send the token's secret and a CSR for a
//! key made here; the key itself never leaves the device.

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
    #[error("the collector refused the enrollment: {0}")]
    Refused(String),
    #[error("the collector answered with an unusable {0}")]
    BadAnswer(&'static str),
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// Verifies the enrollment listener by the CA fingerprint pinned in the token.
#[derive(Debug)]
pub struct PinnedCa {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
    /// Why the last verification failed, for a precise error (rustls' own error
    /// reaches us wrapped in transport errors).
    failure: Arc<Mutex<Option<String>>>,
}

impl PinnedCa {
    pub fn new(pin: [u8; 32]) -> Self {
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
    pub fn failure(&self) -> Option<String> {
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
    .with_no_client_auth();
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
            tonic::Code::PermissionDenied
            | tonic::Code::InvalidArgument
            | tonic::Code::ResourceExhausted => EnrollError::Refused(s.message().to_owned()),
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
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

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
