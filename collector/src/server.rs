//! Wires the collector together: store writer, alert engine, the telemetry
//! listener (mTLS: ingest and certificate renewal), the enrollment listener
//! (server-only TLS), the revocation poller, config reload, and the shutdown order
//! (stop intake → flush acks → commit → evaluate what was committed → close the
//! database).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tandem_proto::v1::Settings;
use tandem_proto::v1::enrollment_server::EnrollmentServer;
use tandem_proto::v1::identity_server::IdentityServer;
use tandem_proto::v1::telemetry_server::TelemetryServer;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::codec::CompressionEncoding;

use crate::alerts::rules::{self, RulesError};
use crate::alerts::service::{AlertService, ServiceError};
use crate::config::Config;
use crate::grpc::enroll::{EnrollService, Issuing, RenewService};
use crate::grpc::ingest::{Ingest, LiveConfig};
use crate::grpc::ratelimit::RateLimiter;
use crate::grpc::tls;
use crate::pki::{self, PkiError, PkiPaths};
use crate::reload;
use crate::revocation::{self, Revocations};
use crate::store::writer::{Writer, WriterThread};
use crate::store::{self, StoreError};

/// How long shutdown waits for open streams to finish their acks.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("tls setup: {0}")]
    Tls(#[from] tls::TlsSetupError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the store writer: {0}")]
    Thread(#[source] std::io::Error),
    #[error("grpc server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("alert rules:\n{0}")]
    Rules(#[from] RulesError),
    #[error(transparent)]
    Alerts(#[from] ServiceError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("cannot load revocations: {0}")]
    Revocations(#[from] crate::store::admin::AdminError),
}

/// What of `config` applies to open streams.
pub(crate) fn live_config(config: &Config) -> LiveConfig {
    LiveConfig {
        limits: config.limits,
        settings: Settings {
            sample_interval_secs: config.sample_interval_secs,
            renew_now: false,
        },
    }
}

/// A collector bound to its port, not yet serving.
pub struct Collector {
    config: Config,
    /// The file the config came from, watched for edits when set.
    config_path: Option<std::path::PathBuf>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    enroll_listener: TcpListener,
    enroll_tls: Arc<rustls::ServerConfig>,
    issuing: Arc<Issuing>,
    revocations: Arc<Revocations>,
    cursor: revocation::Cursor,
    writer: Writer,
    writer_thread: WriterThread,
    /// Evaluates what the writer committed; stops after the writer (its only feeder).
    alerts: Option<AlertService>,
}

impl Collector {
    /// Opens the store, loads the TLS material and binds the telemetry port.
    pub async fn bind(config: Config) -> Result<Self, ServeError> {
        let paths = PkiPaths::new(&config.data_dir);
        let db = config.db_path();
        let alerts_cfg = config.alerts.clone();
        let (conn, alerts) = tokio::task::spawn_blocking(move || {
            let conn = store::open(&db)?;
            let alerts = match alerts_cfg {
                None => None,
                Some(a) => {
                    let set = rules::load_dir(&a.rules_dir)?;
                    Some(AlertService::spawn(
                        store::open(&db)?,
                        set,
                        a.tick,
                        Some(a.rules_dir),
                    )?)
                }
            };
            Ok::<_, ServeError>((conn, alerts))
        })
        .await
        .map_err(|e| ServeError::Thread(std::io::Error::other(e)))??;
        let (sink, alerts) = match alerts {
            Some((sink, service)) => (Some(sink), Some(service)),
            None => (None, None),
        };
        // Every revocation is known before the first handshake.
        let revocations = Arc::new(Revocations::default());
        let mut cursor = revocation::Cursor::default();
        revocation::load_new(&conn, &revocations, &mut cursor)?;
        let tls = tls::server_config(&paths, revocations.clone())?;
        let enroll_tls = tls::enroll_server_config(&paths)?;
        let issuing = Arc::new(Issuing {
            ca: pki::load_ca(&config.data_dir)?,
            db: std::sync::Mutex::new(None),
            db_path: config.db_path(),
            lifetime: config.enrollment.cert_lifetime,
        });
        let (writer, writer_thread) =
            Writer::spawn_with_sink(conn, config.writer, sink).map_err(ServeError::Thread)?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let enroll_addr = config.enrollment.listen;
        let enroll_listener =
            TcpListener::bind(enroll_addr)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: enroll_addr,
                    source,
                })?;
        Ok(Self {
            config,
            config_path: None,
            listener,
            tls,
            enroll_listener,
            enroll_tls,
            issuing,
            revocations,
            cursor,
            writer,
            writer_thread,
            alerts,
        })
    }

    /// Watches `path` (the file `config` came from) and applies edits while serving.
    pub fn watch_config(mut self, path: std::path::PathBuf) -> Self {
        self.config_path = Some(path);
        self
    }

    /// The address the enrollment listener actually bound.
    pub fn enroll_addr(&self) -> SocketAddr {
        self.enroll_listener
            .local_addr()
            .unwrap_or(self.config.enrollment.listen)
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// Serves until `shutdown` resolves, then drains and closes the store.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let telemetry_port = self.local_addr().port();
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        // Finished TLS handshakes waiting for tonic to pick them up.
        let (conn_tx, conn_rx) = mpsc::channel(256);
        let accept = tokio::spawn(tls::accept_loop(
            self.listener,
            self.tls,
            conn_tx,
            token.clone(),
            tracker.clone(),
        ));
        let (enroll_tx, enroll_rx) = mpsc::channel(64);
        let enroll_accept = tokio::spawn(tls::accept_loop(
            self.enroll_listener,
            self.enroll_tls,
            enroll_tx,
            token.clone(),
            tracker.clone(),
        ));
        let poller = tokio::spawn(revocation::poll(
            self.config.db_path(),
            self.revocations.clone(),
            self.cursor,
            token.clone(),
        ));
        let sessions = Arc::new(AtomicI64::new(0));
        let (live_tx, live_rx) = watch::channel(live_config(&self.config));
        let watcher = match &self.config_path {
            Some(path) => {
                match reload::watch(path.clone(), self.config.clone(), live_tx, token.clone()) {
                    Ok(h) => Some(h),
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot watch the config file; edits apply on restart only");
                        None
                    }
                }
            }
            None => None,
        };
        let ingest = Ingest {
            writer: self.writer.clone(),
            live_config: live_rx,
            tracker: tracker.clone(),
            shutdown: token.clone(),
            sessions: sessions.clone(),
            revocations: self.revocations.clone(),
        };
        let renew = IdentityServer::new(RenewService {
            issuing: self.issuing.clone(),
            revocations: self.revocations.clone(),
        });
        let enroll = EnrollmentServer::new(EnrollService {
            issuing: self.issuing.clone(),
            limiter: std::sync::Mutex::new(RateLimiter::new(
                self.config.enrollment.attempts_per_minute,
            )),
            telemetry_port,
        });
        let enroll_stop = token.clone();
        let enroll_server = tokio::spawn(
            tonic::transport::Server::builder()
                .timeout(Duration::from_secs(30))
                .add_service(enroll)
                .serve_with_incoming_shutdown(ReceiverStream::new(enroll_rx), async move {
                    enroll_stop.cancelled().await;
                }),
        );
        let svc = TelemetryServer::new(ingest)
            .max_decoding_message_size(tandem_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(tandem_proto::MAX_MESSAGE_BYTES)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip);
        let reporter = tokio::spawn(report_stats(self.writer.clone(), sessions, token.clone()));
        drop(self.writer);

        let stop = token.clone();
        let server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .add_service(svc)
            .add_service(renew)
            .serve_with_incoming_shutdown(ReceiverStream::new(conn_rx), async move {
                stop.cancelled().await;
            });
        // Boxed so it can be dropped (with the service and its writer handle) even
        // when draining timed out.
        let mut server = Box::pin(server);
        let served = tokio::select! {
            r = &mut server => r,
            _ = shutdown => {
                tracing::info!("shutting down: intake stopped, flushing acks");
                token.cancel();
                match tokio::time::timeout(DRAIN_TIMEOUT, &mut server).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::warn!("streams did not finish in time; closing them");
                        Ok(())
                    }
                }
            }
        };
        token.cancel();
        let _ = accept.await;
        if let Some(w) = watcher {
            let _ = w.await;
        }
        let _ = enroll_accept.await;
        let _ = poller.await;
        let _ = enroll_server.await;
        let _ = reporter.await;
        tracker.close();
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait()).await;
        // The service (and its writer handle) is gone with the server future; once the
        // sessions are done too, the writer commits what is queued and closes the db.
        drop(server);
        let alerts = self.alerts;
        let _ = tokio::task::spawn_blocking(move || {
            self.writer_thread.join();
            // The writer held the engine's only sink: the engine now saves what is
            // left and stops.
            if let Some(a) = alerts {
                a.join();
            }
        })
        .await;
        tracing::info!("collector stopped");
        served.map_err(ServeError::from)
    }
}

async fn report_stats(writer: Writer, sessions: Arc<AtomicI64>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    let mut last = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let values = writer.stats.values_stored.load(Ordering::Relaxed);
        tracing::info!(
            streams = sessions.load(Ordering::Relaxed),
            values_per_sec = (values - last) / 60,
            batches = writer.stats.batches_stored.load(Ordering::Relaxed),
            duplicates = writer.stats.batches_duplicate.load(Ordering::Relaxed),
            commit_failures = writer.stats.commit_failures.load(Ordering::Relaxed),
            queue = writer.queue_depth(),
            "ingest"
        );
        last = values;
    }
}
