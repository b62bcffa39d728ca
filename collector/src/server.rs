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
use crate::grpc::ingest::Ingest;
use crate::grpc::ratelimit::RateLimiter;
use crate::grpc::tls;
use crate::pki::{self, PkiError, PkiPaths};
use crate::reload;
use crate::revocation::{self, Revocations};
use crate::store::writer::{Writer, WriterThread};
use crate::store::{self, StoreError};

/// How long shutdown waits for open streams to finish their acks.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest enrollment request, enforced by tonic from the message's length prefix,
/// before its body is buffered: a CSR is at most `pki::MAX_CSR_BYTES` (16 KiB) plus
/// a token and a hostname.
pub(crate) const ENROLL_MAX_REQUEST_BYTES: usize = 32 * 1024;
/// HTTP/2 streams at once on one enrollment connection (an agent uses one).
const ENROLL_MAX_STREAMS: u32 = 4;
/// Flow-control windows of an enrollment connection: what a peer may have sent and
/// we hold unread, per stream and per connection; with the stream cap this bounds
/// the memory one connection can pin.
const ENROLL_STREAM_WINDOW_BYTES: u32 = 64 * 1024;
const ENROLL_CONNECTION_WINDOW_BYTES: u32 = 128 * 1024;
/// An enrollment connection is told to go away after this, and closed after the
/// grace; an agent enrolls in one request of well under a second.
const ENROLL_MAX_CONNECTION_AGE: Duration = Duration::from_secs(30);
const ENROLL_CONNECTION_AGE_GRACE: Duration = Duration::from_secs(5);
/// An enrollment request that takes longer is answered with a timeout.
const ENROLL_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// HTTP/2 streams at once on one telemetry connection (an agent uses one stream
/// plus an occasional renewal).
const TELEMETRY_MAX_STREAMS: u32 = 64;
/// Largest header block either listener accepts.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

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
    #[error(transparent)]
    Integrity(#[from] crate::store::integrity::IntegrityError),
    #[error("notifications: {0}")]
    Notify(#[from] crate::notify::service::NotifyStartError),
    #[error(transparent)]
    Locked(#[from] crate::store::lock::LockError),
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
    /// The enrollment listener's caps, sized from the open-file limit.
    enroll_limits: tls::ListenerLimits,
    /// Dropped with the collector: stops the periodic integrity check.
    _integrity_stop: std::sync::mpsc::Sender<()>,
    /// The notification dispatcher and the HTTP listener (issue #12), when configured.
    notifier: Option<crate::notify::service::Notifier>,
    /// Dropped with the collector: stops store maintenance (issue 17).
    _compact_stop: std::sync::mpsc::Sender<()>,
    /// One collector per data dir (issue 17): held until the collector is dropped.
    _lock: store::lock::DataDirLock,
}

impl Collector {
    /// Opens the store, loads the TLS material and binds the telemetry port.
    pub async fn bind(config: Config) -> Result<Self, ServeError> {
        let paths = PkiPaths::new(&config.data_dir);
        make_private(&config)?;
        // Before anything is recovered, migrated or bound: a second collector on this
        // data dir stops here (issue 17 item 7).
        let lock = store::lock::acquire(&config.data_dir)?;
        pki::recover(&config.data_dir)?;
        let nofile = crate::fdlimit::raise();
        let enroll_limits = tls::enroll_limits(nofile.now);
        tracing::info!(
            nofile_before = nofile.before,
            nofile = nofile.now,
            nofile_hard = nofile
                .hard
                .map_or_else(|| "unlimited".to_owned(), |h| h.to_string()),
            enroll_connections_max = enroll_limits.connections_total.unwrap_or(0),
            enroll_connections_per_address = enroll_limits.connections_per_address.unwrap_or(0),
            "open-file limit"
        );
        let db = config.db_path();
        let alerts_cfg = config.alerts.clone();
        let (conn, alerts) = tokio::task::spawn_blocking(move || {
            let conn = store::open(&db)?;
            // A database with a damaged page is refused before anything is served
            // from it or written to it (store::integrity).
            let checked = store::integrity::check(&conn, &db, store::integrity::START_LIMIT)?;
            tracing::info!(db = %db.display(), took_ms = checked.took.as_millis() as u64, "database integrity check ok");
            let alerts = match alerts_cfg {
                None => None,
                Some(a) => {
                    let set = rules::load_dir(&a.rules_dir)?;
                    Some(AlertService::spawn(
                        store::Db::open(&db)?,
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
            issued: Default::default(),
        });
        let (writer, writer_thread) =
            Writer::spawn_with_sink(conn, config.writer, sink).map_err(ServeError::Thread)?;
        let (integrity_stop, integrity_rx) = std::sync::mpsc::channel();
        store::integrity::spawn_periodic(config.db_path(), integrity_rx)
            .map_err(ServeError::Thread)?;
        // Compaction, the old-layout upgrade and retention (issue 17); stops with
        // the collector (the sender is dropped with it).
        let (compact_stop, compact_rx) = std::sync::mpsc::channel();
        store::compact::spawn(
            &config.db_path(),
            config.storage,
            compact_rx,
            writer.maintenance(),
        )?;
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
        // Issue 15: the console's enrollment page defaults to the ports bound.
        let bound = crate::console::Listeners {
            enrollment: enroll_listener.local_addr().unwrap_or(enroll_addr),
            telemetry: listener.local_addr().unwrap_or(config.listen),
        };
        let notifier = crate::notify::service::Notifier::bind(&config, bound).await?;
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
            enroll_limits,
            _integrity_stop: integrity_stop,
            notifier,
            _compact_stop: compact_stop,
            _lock: lock,
        })
    }

    /// The address the HTTP listener bound (`[http]`), if any.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.notifier.as_ref().and_then(|n| n.http_addr())
    }

    // --- issue 15 (api): the HTTP listener's URL, with its scheme ---
    /// The HTTP listener's base URL (`https://` unless plain HTTP on loopback).
    #[cfg(feature = "demo")]
    pub(crate) fn http_url(&self) -> Option<String> {
        self.notifier.as_ref().and_then(|n| n.http_url())
    }
    // --- end issue 15 (api) ---

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
            tls::TELEMETRY_LIMITS,
            conn_tx,
            token.clone(),
            tracker.clone(),
        ));
        let (enroll_tx, enroll_rx) = mpsc::channel(64);
        let enroll_accept = tokio::spawn(tls::accept_loop(
            self.enroll_listener,
            self.enroll_tls,
            self.enroll_limits,
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
        let (live_tx, live_rx) = watch::channel(reload::live_config(&self.config));
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
            issuing: self.issuing.clone(),
        };
        let renew = IdentityServer::new(RenewService {
            issuing: self.issuing.clone(),
            revocations: self.revocations.clone(),
            limiter: std::sync::Mutex::new(RateLimiter::with_rate(
                crate::grpc::enroll::RENEW_BURST,
                crate::grpc::enroll::renew_refill(self.config.enrollment.cert_lifetime),
            )),
        });
        let enroll = EnrollmentServer::new(EnrollService {
            issuing: self.issuing.clone(),
            limiter: std::sync::Mutex::new(RateLimiter::new(
                self.config.enrollment.attempts_per_minute,
            )),
            telemetry_port,
        })
        .max_decoding_message_size(ENROLL_MAX_REQUEST_BYTES);
        let enroll_stop = token.clone();
        let enroll_server = tokio::spawn(
            tonic::transport::Server::builder()
                .timeout(ENROLL_REQUEST_TIMEOUT)
                .max_concurrent_streams(ENROLL_MAX_STREAMS)
                .initial_stream_window_size(ENROLL_STREAM_WINDOW_BYTES)
                .initial_connection_window_size(ENROLL_CONNECTION_WINDOW_BYTES)
                .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
                .max_connection_age(ENROLL_MAX_CONNECTION_AGE)
                .max_connection_age_grace(ENROLL_CONNECTION_AGE_GRACE)
                .http2_keepalive_interval(Some(Duration::from_secs(10)))
                .http2_keepalive_timeout(Some(Duration::from_secs(10)))
                .add_service(enroll)
                .serve_with_incoming_shutdown(ReceiverStream::new(enroll_rx), async move {
                    enroll_stop.cancelled().await;
                }),
        );
        let svc = TelemetryServer::new(ingest)
            .max_decoding_message_size(tandem_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(tandem_proto::MAX_MESSAGE_BYTES)
            .accept_compressed(CompressionEncoding::Gzip);
        // store2 brief (issue 17): frames to agents go uncompressed. They are acks
        // and settings of a few bytes, which gzip makes larger, and tonic builds a
        // fresh deflate state (hundreds of KiB, zeroed) for every message: in the
        // `loadgen` profile that was the largest single cost on the collector's
        // runtime threads (docs/BENCHMARKS.md). Agents accept both.
        // --- issue 15 (api): /metrics reads the writer's, the engine's and the stream counts ---
        crate::stats::register(
            self.writer.stats.clone(),
            self.alerts.as_ref().map(|a| a.stats.clone()),
            sessions.clone(),
        );
        let queue_sampler = tokio::spawn(crate::stats::sample_queue(
            self.writer.clone(),
            token.clone(),
        ));
        // --- end issue 15 (api) ---
        let reporter = tokio::spawn(report_stats(self.writer.clone(), sessions, token.clone()));
        let notifier = self.notifier.map(|n| n.spawn(token.clone()));
        drop(self.writer);

        let stop = token.clone();
        let server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .max_concurrent_streams(TELEMETRY_MAX_STREAMS)
            .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
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
        let _ = queue_sampler.await; // issue 15 (api)
        if let Some(n) = notifier {
            let _ = n.await;
        }
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

/// The data dir holds token hashes, the device list and the CA key: it and they are
/// owner-only (0700 / 0600). Made so on creation; an older install that is more
/// open is tightened here, and the log says so.
fn make_private(config: &Config) -> Result<(), ServeError> {
    use crate::private_fs;
    private_fs::create_dir(&config.data_dir).map_err(PkiError::from)?;
    let paths = PkiPaths::new(&config.data_dir);
    let db = config.db_path();
    let wal = db.with_extension("db-wal");
    let shm = db.with_extension("db-shm");
    for p in [
        config.data_dir.as_path(),
        paths.dir.as_path(),
        paths.ca_key.as_path(),
        paths.server_key.as_path(),
        db.as_path(),
        wal.as_path(),
        shm.as_path(),
    ] {
        if !p.exists() {
            continue;
        }
        if private_fs::tighten(p).map_err(PkiError::from)? {
            tracing::warn!(path = %p.display(), "was readable by other users; made owner-only");
        }
    }
    Ok(())
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
