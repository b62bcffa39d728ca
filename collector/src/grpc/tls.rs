//! The collector's two TLS listeners.
//!
//! - Telemetry: TLS 1.3 only, a client certificate from the collector's CA required
//!   at the handshake, and refused if the device or the certificate's serial is
//!   revoked ([`RevocationCheck`] wraps rustls' `WebPkiClientVerifier`).
//! - Enrollment: TLS 1.3 only, no client certificate (a new agent has none yet). It
//!   sends the chain `[server certificate, CA certificate]`, so the agent can pin the
//!   CA by the fingerprint in its token. The two share no configuration.
//!
//! We run our own tokio-rustls acceptor instead of tonic's `ServerTlsConfig` because
//! that one cannot restrict protocol versions and takes no custom verifier. The
//! accepted `TlsStream<TcpStream>` keeps tonic's `Request::peer_certs()` and
//! `remote_addr()` working.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls_pki_types::UnixTime;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::pki::PkiPaths;
use crate::revocation::Revocations;

/// A handshake that has not finished by then is dropped, so a client that opens a
/// socket and says nothing cannot hold a slot.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; beyond it new sockets wait in the kernel backlog.
const MAX_CONCURRENT_HANDSHAKES: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{path}: {source}")]
    Pem {
        path: String,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("invalid client CA: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The client-certificate verifier of the telemetry listener: rustls' WebPKI checks
/// (chain to our CA, validity, ClientAuth usage), then the revocation set.
#[derive(Debug)]
pub struct RevocationCheck {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: Arc<Revocations>,
}

impl ClientCertVerifier for RevocationCheck {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        // A certificate of our CA without a device identity or serial cannot be
        // checked against revocations; ingest refuses it anyway, refuse it here.
        let serial = crate::pki::cert_serial_hex(end_entity);
        let identity = crate::pki::identity_from_der(end_entity);
        match (identity, serial) {
            (Some((_, device)), Some(serial)) if !self.revoked.is_revoked(&device, &serial) => {
                Ok(verified)
            }
            (Some((_, device)), Some(serial)) => {
                tracing::info!(device = %device, serial = %serial, "handshake with a revoked certificate refused");
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::Revoked,
                ))
            }
            _ => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Builds the telemetry listener's TLS configuration from the PKI files.
pub fn server_config(
    paths: &PkiPaths,
    revoked: Arc<Revocations>,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca = load_certs(&paths.ca_cert)?;
    let mut roots = RootCertStore::empty();
    for c in ca {
        roots.add(c)?;
    }
    let inner =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let verifier = Arc::new(RevocationCheck { inner, revoked });
    let chain = load_certs(&paths.server_cert)?;
    let key =
        PrivateKeyDer::from_pem_file(&paths.server_key).map_err(|source| TlsSetupError::Pem {
            path: paths.server_key.display().to_string(),
            source,
        })?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// Builds the enrollment listener's TLS configuration: no client certificate; the
/// chain carries the CA so a new agent can check it against its token's pin.
pub fn enroll_server_config(paths: &PkiPaths) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut chain = load_certs(&paths.server_cert)?;
    chain.extend(load_certs(&paths.ca_cert)?);
    let key =
        PrivateKeyDer::from_pem_file(&paths.server_key).map_err(|source| TlsSetupError::Pem {
            path: paths.server_key.display().to_string(),
            source,
        })?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsSetupError::Pem {
            path: path.display().to_string(),
            source,
        })
}

/// Accepts TCP connections, runs the TLS handshake for each on its own task, and
/// hands finished streams to `out` (which tonic serves). Stops on `shutdown`.
pub async fn accept_loop(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    out: mpsc::Sender<Result<TlsStream<TcpStream>, std::io::Error>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let acceptor = TlsAcceptor::from(config);
    // Bounds handshakes in progress (each holds a socket and some crypto state).
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(err) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let out = out.clone();
        tracker.spawn(async move {
            let _permit = permit;
            handshake(acceptor, tcp, peer, out).await;
        });
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    out: mpsc::Sender<Result<TlsStream<TcpStream>, std::io::Error>>,
) {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => {
            let _ = out.send(Ok(stream)).await;
        }
        Ok(Err(err)) => {
            // Refused clients (no certificate, wrong CA, expired) end here. Debug level:
            // a scanner must not be able to flood the log.
            tracing::debug!(%peer, error = %err, "tls handshake refused");
        }
        Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
    }
}
