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
//! accepted `TlsStream<TcpStream>`, wrapped in [`Conn`], keeps tonic's
//! `Request::peer_certs()` and `remote_addr()` working.
//!
//! Each listener runs under [`ListenerLimits`] (issue #10): a silent peer is dropped
//! after `first_byte`, an unfinished handshake after `handshake`, a connection whose
//! HTTP/2 preface is late after `preface`; handshakes in progress are capped in
//! total and per source address, and the enrollment listener caps its open
//! connections per address and in total (a quarter of the open-file limit), so an
//! unauthenticated host cannot starve the telemetry listener of file descriptors.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls_pki_types::UnixTime;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::pki::PkiPaths;
use crate::revocation::Revocations;

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
pub(crate) struct RevocationCheck {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: Arc<Revocations>,
    /// The CA certificates of `ca.pem`: a leaf must be signed by one of them itself.
    cas: Vec<Vec<u8>>,
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
        // The certificate policy: clientAuth usage, signed by our CA directly.
        if let Err(err) = crate::pki::check_client_policy(end_entity, &self.cas) {
            tracing::debug!(error = %err, "handshake refused by the certificate policy");
            return Err(rustls::Error::InvalidCertificate(match err {
                crate::pki::PolicyError::NoClientAuth => rustls::CertificateError::InvalidPurpose,
                _ => rustls::CertificateError::ApplicationVerificationFailure,
            }));
        }
        // A certificate of our CA without a device identity or serial cannot be
        // checked against revocations; ingest refuses it anyway, refuse it here.
        let serial = crate::pki::cert_serial_hex(end_entity);
        let identity = crate::pki::identity_from_der(end_entity);
        match (identity, serial) {
            (Some((_, device)), Some(serial)) if !self.revoked.is_revoked(&device, &serial) => {
                Ok(verified)
            }
            (Some((_, device)), Some(serial)) => {
                // Once per device and run: a revoked agent retries, and an
                // unauthenticated-looking stream of lines helps nobody.
                if self.revoked.first_refusal(&device) {
                    tracing::info!(device = %device, serial = %serial, "handshake with a revoked certificate refused; this device's further attempts are logged at debug");
                } else {
                    tracing::debug!(device = %device, serial = %serial, "handshake with a revoked certificate refused");
                }
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
pub(crate) fn server_config(
    paths: &PkiPaths,
    revoked: Arc<Revocations>,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca = load_certs(&paths.ca_cert)?;
    let cas = ca.iter().map(|c| c.to_vec()).collect();
    let mut roots = RootCertStore::empty();
    for c in ca {
        roots.add(c)?;
    }
    let inner =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let verifier = Arc::new(RevocationCheck {
        inner,
        revoked,
        cas,
    });
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
pub(crate) fn enroll_server_config(
    paths: &PkiPaths,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
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

/// What one listener allows: deadlines before and after the TLS handshake, and caps
/// on connections in progress and open. See docs/SECURITY.md, "Listener limits",
/// for the figures and how they were chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListenerLimits {
    /// A peer that has sent no byte of its ClientHello by then is dropped: a silent
    /// TCP socket cannot hold a handshake slot for the whole handshake deadline.
    pub(crate) first_byte: Duration,
    /// The whole TLS handshake must be done by then.
    pub(crate) handshake: Duration,
    /// After the handshake, the 24-byte HTTP/2 client preface must have arrived by
    /// then (tonic waits for it forever otherwise).
    pub(crate) preface: Duration,
    /// Handshakes in progress at once; beyond it new sockets wait in the kernel
    /// backlog (each holds a socket and some crypto state).
    pub(crate) max_handshakes: usize,
    /// Handshakes in progress at once from one source address; more are closed at
    /// once, so one host cannot take every slot.
    pub(crate) handshakes_per_address: usize,
    /// Open connections (handshaking or established) from one source address;
    /// `None`: no cap (the telemetry listener, where a NAT may hide a whole site).
    pub(crate) connections_per_address: Option<usize>,
    /// Open connections in total; `None`: no cap.
    pub(crate) connections_total: Option<usize>,
}

/// The 24 bytes every HTTP/2 client sends first (RFC 9113, 3.4).
const HTTP2_PREFACE_LEN: usize = 24;

/// Telemetry: every connection must present a certificate of our CA, so only the
/// unauthenticated part (before and during the handshake) is tightly bounded.
pub(crate) const TELEMETRY_LIMITS: ListenerLimits = ListenerLimits {
    first_byte: Duration::from_secs(3),
    handshake: Duration::from_secs(5),
    preface: Duration::from_secs(5),
    max_handshakes: 512,
    handshakes_per_address: 64,
    connections_per_address: None,
    connections_total: None,
};

/// Most connections the enrollment listener holds, before the share of the file
/// limit ([`enroll_limits`]) is applied. An agent enrolls once, with one connection
/// that lives a second.
pub(crate) const ENROLL_MAX_CONNECTIONS: usize = 256;
/// Connections from one address on the enrollment listener: a site enrolling many
/// machines behind one NAT retries with backoff; one host cannot take more.
pub(crate) const ENROLL_CONNECTIONS_PER_ADDRESS: usize = 8;

/// Enrollment: unauthenticated, so everything is capped, and its total is at most a
/// quarter of the open-file limit `nofile`, so the telemetry listener always keeps
/// file descriptors.
pub(crate) fn enroll_limits(nofile: u64) -> ListenerLimits {
    let share = usize::try_from(nofile / 4).unwrap_or(usize::MAX);
    let total = ENROLL_MAX_CONNECTIONS.min(share).max(1);
    ListenerLimits {
        first_byte: Duration::from_secs(3),
        handshake: Duration::from_secs(5),
        preface: Duration::from_secs(5),
        max_handshakes: total,
        handshakes_per_address: ENROLL_CONNECTIONS_PER_ADDRESS,
        connections_per_address: Some(ENROLL_CONNECTIONS_PER_ADDRESS.min(total)),
        connections_total: Some(total),
    }
}

/// Live connections of one listener, in total and per source address.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    inner: std::sync::Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One counted connection; uncounted when dropped.
#[derive(Debug)]
pub(crate) struct Counted {
    counts: Arc<Counts>,
    ip: IpAddr,
}

impl Counts {
    /// Counts a connection from `ip` unless that passes a cap.
    pub(crate) fn try_add(
        self: &Arc<Self>,
        ip: IpAddr,
        per_address: Option<usize>,
        total: Option<usize>,
    ) -> Option<Counted> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (n, map) = &mut *g;
        let here = map.get(&ip).copied().unwrap_or(0);
        if per_address.is_some_and(|cap| here >= cap) || total.is_some_and(|cap| *n >= cap) {
            return None;
        }
        *n += 1;
        map.insert(ip, here + 1);
        Some(Counted {
            counts: self.clone(),
            ip,
        })
    }

    /// Open connections: in total, and from `ip`.
    pub(crate) fn get(&self, ip: IpAddr) -> (usize, usize) {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (g.0, g.1.get(&ip).copied().unwrap_or(0))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut g = self.counts.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (n, map) = &mut *g;
        *n = n.saturating_sub(1);
        if let Some(c) = map.get_mut(&self.ip) {
            *c -= 1;
            if *c == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// A finished TLS connection as tonic serves it: counted against its listener's caps
/// until tonic drops it, and closed if the HTTP/2 preface does not arrive in time.
pub(crate) struct Conn {
    inner: TlsStream<TcpStream>,
    _counted: Counted,
    /// Until the preface is read: its deadline and how many bytes are still due.
    preface: Option<(Pin<Box<tokio::time::Sleep>>, usize)>,
}

impl Conn {
    fn new(inner: TlsStream<TcpStream>, counted: Counted, preface: Duration) -> Self {
        Self {
            inner,
            _counted: counted,
            preface: Some((Box::pin(tokio::time::sleep(preface)), HTTP2_PREFACE_LEN)),
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = <TlsStream<TcpStream> as tonic::transport::server::Connected>::ConnectInfo;

    /// The TLS stream's own info, so `Request::peer_certs()` and `remote_addr()` work.
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let me = &mut *self;
        match Pin::new(&mut me.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if let Some((_, due)) = &mut me.preface {
                    *due = due.saturating_sub(n);
                    if *due == 0 {
                        me.preface = None;
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let late = me
                    .preface
                    .as_mut()
                    .is_some_and(|(deadline, _)| deadline.as_mut().poll(cx).is_ready());
                if late {
                    Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no HTTP/2 preface in time",
                    )))
                } else {
                    Poll::Pending
                }
            }
            other => other,
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// How often a repeating accept error is logged (with how many were not).
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Accepts TCP connections, runs the TLS handshake for each on its own task under
/// `limits`, and hands finished connections to `out` (which tonic serves). Stops on
/// `shutdown`.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    limits: ListenerLimits,
    out: mpsc::Sender<Result<Conn, std::io::Error>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let acceptor = TlsAcceptor::from(config);
    // Bounds handshakes in progress (each holds a socket and some crypto state).
    let slots = Arc::new(Semaphore::new(limits.max_handshakes.max(1)));
    let connections = Arc::new(Counts::default());
    let handshakes = Arc::new(Counts::default());
    let mut accept_errors = (None::<Instant>, 0u64);
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
                    // EMFILE and friends: once per interval in the log, and back off
                    // briefly instead of spinning.
                    let (last, suppressed) = &mut accept_errors;
                    if last.is_none_or(|t| t.elapsed() >= ACCEPT_ERROR_LOG_INTERVAL) {
                        tracing::warn!(error = %err, suppressed = *suppressed, "accept failed");
                        *last = Some(Instant::now());
                        *suppressed = 0;
                    } else {
                        *suppressed += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let ip = peer.ip();
        let Some(counted) =
            connections.try_add(ip, limits.connections_per_address, limits.connections_total)
        else {
            let (total, here) = connections.get(ip);
            tracing::debug!(%peer, total, from_address = here, "connection refused: listener connection cap");
            continue;
        };
        let Some(handshaking) = handshakes.try_add(ip, Some(limits.handshakes_per_address), None)
        else {
            tracing::debug!(%peer, "connection refused: too many handshakes from this address");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let out = out.clone();
        tracker.spawn(async move {
            let stream = handshake(acceptor, tcp, peer, limits).await;
            drop((permit, handshaking));
            if let Some(stream) = stream {
                let _ = out
                    .send(Ok(Conn::new(stream, counted, limits.preface)))
                    .await;
            }
        });
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    limits: ListenerLimits,
) -> Option<TlsStream<TcpStream>> {
    // A squatter that says nothing is dropped after `first_byte`, not `handshake`.
    let mut probe = [0u8; 1];
    match tokio::time::timeout(limits.first_byte, tcp.peek(&mut probe)).await {
        Ok(Ok(n)) if n > 0 => {}
        Ok(_) => return None,
        Err(_) => {
            tracing::debug!(%peer, "tls handshake: no client hello in time");
            return None;
        }
    }
    match tokio::time::timeout(limits.handshake, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(err)) => {
            crate::counters::tls_refused(); // issue 15: /metrics refusals by reason
            // Refused clients (no certificate, wrong CA, expired) end here. A warning an
            // operator sees, but at most one a minute with a count of the rest, so a
            // scanner cannot flood the log (issue 16, item 13); each one at debug.
            static LOGGED: crate::lograte::Every =
                crate::lograte::Every::new(Duration::from_secs(60));
            match LOGGED.check(std::time::Instant::now()) {
                Some(left_out) => {
                    tracing::warn!(%peer, error = %err, left_out, "tls handshake refused (one line a minute; left_out: refusals not logged since the last line)")
                }
                None => tracing::debug!(%peer, error = %err, "tls handshake refused"),
            }
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "tls handshake timed out");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_cap_per_address_and_in_total_and_release_on_drop() {
        let c = Arc::new(Counts::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = c.try_add(a, Some(2), Some(3)).unwrap();
        let _a2 = c.try_add(a, Some(2), Some(3)).unwrap();
        assert!(c.try_add(a, Some(2), Some(3)).is_none(), "per-address cap");
        let _b1 = c.try_add(b, Some(2), Some(3)).unwrap();
        assert!(c.try_add(b, Some(2), Some(3)).is_none(), "total cap");
        drop(a1);
        assert_eq!(c.get(a), (2, 1));
        assert!(c.try_add(b, Some(2), Some(3)).is_some());
    }

    #[test]
    fn enrollment_takes_at_most_a_quarter_of_the_file_limit() {
        assert_eq!(enroll_limits(1024).connections_total, Some(256));
        assert_eq!(enroll_limits(160).connections_total, Some(40));
        assert_eq!(enroll_limits(160).connections_per_address, Some(8));
        assert_eq!(enroll_limits(1 << 20).connections_total, Some(256));
        assert_eq!(enroll_limits(0).connections_total, Some(1));
    }
}
