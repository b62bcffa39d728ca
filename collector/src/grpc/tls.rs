//! The telemetry listener's TLS: TLS 1.3 only, a client certificate from the
//! collector's CA required at the handshake.
//!
//! We run our own tokio-rustls acceptor instead of tonic's `ServerTlsConfig` because
//! that one cannot restrict protocol versions and takes no custom verifier (revocation
//! will plug in here). The accepted `TlsStream<TcpStream>` keeps tonic's
//! `Request::peer_certs()` working.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::pki::PkiPaths;

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

/// Builds the server-side TLS configuration from the PKI files.
pub fn server_config(paths: &PkiPaths) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca = load_certs(&paths.ca_cert)?;
    let mut roots = RootCertStore::empty();
    for c in ca {
        roots.add(c)?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
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
