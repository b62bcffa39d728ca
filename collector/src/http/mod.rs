//! The collector's HTTP listener (`[http]`, axum): the one-click acknowledge links
//! of notification mails and the live MSP feed (`GET /api/v1/feed`, server-sent
//! events). The console (`crate::console`: API, login, dashboard) is merged into
//! the same server.
//!
//! Invariants:
//! - an ack link acknowledges only the incident it was signed for, only before it
//!   expires; `GET` shows the incident and a button, `POST` acknowledges — mail
//!   scanners that prefetch links must not acknowledge alerts for people;
//! - the feed is served to a console session or an API token
//!   (`Authorization: Bearer …`; `tandem-collector token create-api`, or one with a
//!   role), from every address, loopback included; a tenant's login or token sees
//!   only that tenant;
//! - the listener is TLS (the collector's server certificate) unless it is on
//!   loopback; each connection is capped per address and in total, and must finish
//!   its handshake and each request header in time ([`Limits`]);
//! - events carry their id; `Last-Event-ID` resumes after exactly that event, so a
//!   reconnecting client misses nothing and sees nothing twice;
//! - SQLite is read on the blocking pool, never on the runtime's threads; internal
//!   errors are logged and answered with a plain 500, never their text.
//!
//! This file is the listener (state, limits, TLS, routes, connections); the handlers are
//! in `ack.rs` (ack links) and `feed.rs` (the feed and its event stream).

mod ack;
mod feed;
pub(crate) mod hub;
pub mod tail;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::notify::link::LinkKey;
pub(crate) use feed::{feed_page, feed_sse};

use ack::{ack_page, ack_post};
use feed::feed;

/// How often the feed watcher looks for new events (see [`hub`]).
const FEED_POLL: Duration = Duration::from_millis(200);
/// Connections kept open for the listener's requests (ack links, feeds, console).
const POOL_IDLE: usize = 8;

#[derive(Clone)]
pub(crate) struct HttpState {
    pub(crate) db_path: PathBuf,
    /// Connections reused across requests, shared with the console.
    pub(crate) pool: Arc<crate::store::pool::Pool>,
    /// The one watcher of the feed that every open stream waits on.
    pub(crate) feeds: hub::FeedHub,
    pub(crate) key: LinkKey,
    /// Ends feed streams at shutdown (graceful shutdown waits for open connections,
    /// and an event stream never ends on its own).
    pub(crate) stop: CancellationToken,
    /// The listener's TLS (the collector's server certificate); `None`: plain HTTP,
    /// which [`listener_tls`] allows on loopback only.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) limits: Limits,
    /// collector.toml's enrollment and telemetry listeners (the console's enrollment
    /// page defaults its address from them).
    pub(crate) listeners: crate::console::Listeners,
}

impl HttpState {
    /// The state for a listener over the database at `db_path`.
    pub(crate) fn new(
        db_path: PathBuf,
        key: LinkKey,
        tls: Option<Arc<rustls::ServerConfig>>,
        limits: Limits,
    ) -> Self {
        let stop = CancellationToken::new();
        let pool = crate::store::pool::Pool::new(&db_path, POOL_IDLE);
        HttpState {
            feeds: hub::FeedHub::new(pool.clone(), FEED_POLL, stop.clone()),
            pool,
            db_path,
            key,
            stop,
            tls,
            limits,
            listeners: crate::console::Listeners::default(),
        }
    }

    /// With the enrollment and telemetry listeners as bound (not the defaults).
    pub(crate) fn with_listeners(mut self, listeners: crate::console::Listeners) -> Self {
        self.listeners = listeners;
        self
    }

    /// `https` or `http`.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// What the listener allows one peer and all of them (issue 10's lessons applied
/// to the HTTP listener): an unauthenticated peer cannot hold connections open
/// without talking, nor take every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// A peer that has sent no byte by then is dropped (before the TLS handshake).
    pub(crate) first_byte: Duration,
    /// The whole TLS handshake must be done by then.
    pub(crate) handshake: Duration,
    /// A request's header must have arrived by then (the first request and each
    /// later one on a kept-alive connection).
    pub(crate) header_read: Duration,
    pub(crate) connections_total: usize,
    pub(crate) connections_per_address: usize,
}

impl Limits {
    pub(crate) fn from_config(h: &crate::notify::config::HttpConfig) -> Self {
        Limits {
            first_byte: Duration::from_secs(5),
            handshake: Duration::from_secs(10),
            header_read: Duration::from_secs(10),
            connections_total: h.max_connections,
            connections_per_address: h.max_connections_per_address,
        }
    }
}

/// Why the HTTP listener does not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenerTlsError {
    #[error(
        "[http] tls = false: plain HTTP is only allowed when [http] listen is a loopback address, not {0}; \
         remove `tls = false` (the listener then uses the collector's server certificate) or listen on 127.0.0.1"
    )]
    PlainOffLoopback(SocketAddr),
    #[error("[http] listener TLS: {0}")]
    Tls(#[from] crate::grpc::tls::TlsSetupError),
}

/// The HTTP listener's TLS: the collector's own server certificate (the one the
/// gRPC listeners present, chained to the collector CA that agents and
/// `alerts tail --ca` trust), no client certificate, HTTP/1.1.
/// `[http] tls` unset means TLS unless `listen` is loopback; `tls = false` off
/// loopback is refused.
pub(crate) fn listener_tls(
    h: &crate::notify::config::HttpConfig,
    data_dir: &std::path::Path,
) -> Result<Option<Arc<rustls::ServerConfig>>, ListenerTlsError> {
    let loopback = h.listen.ip().is_loopback();
    match h.tls {
        Some(false) if !loopback => return Err(ListenerTlsError::PlainOffLoopback(h.listen)),
        Some(false) => return Ok(None),
        None if loopback => return Ok(None),
        _ => {}
    }
    let paths = crate::pki::PkiPaths::new(data_dir);
    let mut cfg = (*crate::grpc::tls::enroll_server_config(&paths)?).clone();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(cfg)))
}

/// The whole application: every route of the listener. Other parts of the
/// collector (the console) add theirs here, as nested or merged routers with their
/// own state, so that `serve` stays the one place the server is built.
pub(crate) fn router(state: HttpState, secure_cookies: bool) -> Router {
    // Issue 15: the console (API + dashboard); cookies are Secure unless on loopback.
    let mut console = crate::console::ConsoleState::new(
        state.db_path.clone(),
        state.stop.clone(),
        secure_cookies,
    )
    .with_listeners(state.listeners);
    console.pool = state.pool.clone();
    console.feeds = state.feeds.clone();
    Router::new()
        .merge(notify_routes(state))
        .route("/healthz", get(|| async { "ok" }))
        .merge(crate::console::router(console))
}

/// The notification routes: ack links and the MSP feed.
pub(crate) fn notify_routes(state: HttpState) -> Router {
    Router::new()
        .route("/ack/{token}", get(ack_page).post(ack_post))
        .route("/api/v1/feed", get(feed))
        .with_state(state)
}

/// How long shutdown waits for open connections to finish.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves [`router`] until `stop` is cancelled: each connection under
/// `state.limits` (counted per address and in total, TLS when `state.tls`), HTTP/1.1.
/// Worker threads of the HTTP listener's own runtime.
const HTTP_WORKERS: usize = 2;
/// Their CPU priority, as a nice increment (unix), as the store pool's.
#[cfg(unix)]
const HTTP_NICE: i32 = 10;

/// Serves the listener on a runtime of its own (`http-worker` threads, nice +10 on
/// unix), apart from the agents' streams: TLS, HTTP parsing and the writes of 200
/// open feeds then wait for the cores when ingest needs them, and never delay an
/// agent's ack (issue 15: the console's cost to ingest p99). The returned receiver
/// resolves when the listener has stopped (`stop`).
pub(crate) fn serve_apart(
    listener: TcpListener,
    state: HttpState,
    stop: CancellationToken,
) -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    // Moved to the new runtime's reactor (deregistered from this one).
    let listener = listener.into_std()?;
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("http-runtime".into())
        .spawn(move || {
            lower_priority();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(HTTP_WORKERS)
                .thread_name("http-worker")
                .on_thread_start(lower_priority)
                .enable_all()
                .build();
            let result = match rt {
                Ok(rt) => rt.block_on(async move {
                    serve(TcpListener::from_std(listener)?, state, stop).await
                }),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "http listener failed");
            }
            let _ = done.send(());
        })?;
    Ok(finished)
}

/// Lowers the calling thread's CPU priority (unix; elsewhere a no-op).
fn lower_priority() {
    #[cfg(unix)]
    if let Err(e) = rustix::process::nice(HTTP_NICE) {
        tracing::debug!(error = %e, "cannot lower an http thread's priority");
    }
}

pub(crate) async fn serve(
    listener: TcpListener,
    state: HttpState,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let limits = state.limits;
    let acceptor = state.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    // Cookies are Secure whenever the listener is TLS.
    let app = router(state, acceptor.is_some());
    let counts = Arc::new(crate::grpc::tls::Counts::default());
    let tracker = tokio_util::task::TaskTracker::new();
    let mut last_error: Option<std::time::Instant> = None;
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: logged at most every 10 s, and a short pause.
                    if last_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        tracing::warn!(error = %e, "http accept failed");
                        last_error = Some(std::time::Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(counted) = counts.try_add(
            peer.ip(),
            Some(limits.connections_per_address),
            Some(limits.connections_total),
        ) else {
            let (total, here) = counts.get(peer.ip());
            tracing::debug!(%peer, total, from_address = here, "http connection refused: connection cap");
            continue;
        };
        let (app, acceptor, stop) = (app.clone(), acceptor.clone(), stop.clone());
        tracker.spawn(async move {
            let _counted = counted;
            let _ = tcp.set_nodelay(true);
            match acceptor {
                None => serve_connection(tcp, peer, app, stop, limits).await,
                Some(acceptor) => {
                    let mut probe = [0u8; 1];
                    match tokio::time::timeout(limits.first_byte, tcp.peek(&mut probe)).await {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => return,
                    }
                    match tokio::time::timeout(limits.handshake, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => serve_connection(tls, peer, app, stop, limits).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "http tls handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "http tls handshake timed out"),
                    }
                }
            }
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(DRAIN, tracker.wait()).await;
    Ok(())
}

/// One connection: HTTP/1.1 with a header-read deadline; the peer's address is
/// given to handlers as `ConnectInfo<SocketAddr>`.
async fn serve_connection<S>(
    io: S,
    peer: SocketAddr,
    app: Router,
    stop: CancellationToken,
    limits: Limits,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::Service as _;
    let svc =
        hyper::service::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let mut app = app.clone();
            async move { app.call(req).await }
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "http connection ended with an error");
            }
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN, conn).await;
        }
    }
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "http request failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

/// Runs `f` with a pooled store handle on the pool's threads.
async fn with_store<T: Send + 'static>(
    pool: Arc<crate::store::pool::Pool>,
    f: impl FnOnce(&mut crate::store::Db) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, String> {
    match pool.run(f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}
