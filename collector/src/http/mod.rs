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

pub(crate) mod hub;
pub mod tail;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use rusqlite::{Connection, OptionalExtension};
use tandem_proto::util::now_ms;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::notify::incident::{self, Outcome};
use crate::notify::link::{LinkError, LinkKey, token_hash};

/// How often the feed watcher looks for new events (see [`hub`]).
const FEED_POLL: Duration = Duration::from_millis(200);
/// Connections kept open for the listener's requests (ack links, feeds, console).
const POOL_IDLE: usize = 8;
/// Most events one read of the feed returns.
const FEED_PAGE: usize = 500;

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

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The look of every page the listener serves to people (ack links): one card.
const PAGE_CSS: &str = "body{margin:0;background:#f3f4f6;color:#1f2937;\
font:16px/1.5 -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif}\
.card{max-width:34em;margin:3em auto;background:#fff;border:1px solid #e5e7eb;border-radius:8px;overflow:hidden}\
.brand{background:#1e3a5f;color:#fff;padding:.7em 1.5em;font-size:.9em;font-weight:600;letter-spacing:.03em}\
.body{padding:1.5em}h1{font-size:1.4em;margin:0 0 .8em}\
.sev{display:inline-block;padding:0 .5em;border-radius:4px;color:#fff;font-size:.75em;font-weight:600;\
text-transform:uppercase;letter-spacing:.05em;vertical-align:.15em;margin-right:.4em;background:#b45309}\
.sev.critical{background:#b91c1c}\
dl{display:grid;grid-template-columns:9em 1fr;gap:.3em 1em;margin:0 0 1.2em}dt{color:#6b7280}dd{margin:0}\
label{display:block;color:#6b7280;margin-bottom:.3em}\
input{box-sizing:border-box;width:100%;padding:.55em .7em;border:1px solid #cbd5e1;border-radius:4px;font:inherit}\
button{margin-top:1em;background:#1e3a5f;color:#fff;border:0;border-radius:4px;padding:.65em 1.3em;font:inherit;font-weight:600;cursor:pointer}\
.note{color:#6b7280;font-size:.85em;margin-top:1.2em}";

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    (
        status,
        Html(format!(
            "<!doctype html><html><head><meta charset=utf-8>\
             <meta name=viewport content=\"width=device-width\"><title>{t}</title>\
             <style>{PAGE_CSS}</style></head><body><div class=card><div class=brand>Tandem</div>\
             <div class=body><h1>{t}</h1>{body}</div></div></body></html>",
            t = esc(title)
        )),
    )
        .into_response()
}

fn link_refused(e: &LinkError) -> Response {
    let msg = match e {
        LinkError::Expired => {
            "This acknowledge link has expired. Ask your IT service provider, or acknowledge the alert in Tandem."
        }
        _ => {
            "This acknowledge link is not valid (it may have been cut when the mail was forwarded)."
        }
    };
    tracing::info!(reason = %e, "ack link refused");
    page(
        StatusCode::FORBIDDEN,
        "Link not valid",
        &format!("<p>{msg}</p>"),
    )
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "http request failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

async fn with_db<T: Send + 'static>(
    pool: Arc<crate::store::pool::Pool>,
    f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, String> {
    let turn = pool.gate().await;
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let mut c = pool.get().map_err(|e| e.to_string())?;
        f(&mut c).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn ack_page(State(st): State<HttpState>, Path(token): Path<String>) -> Response {
    let link = match st.key.verify(&token, now_ms()) {
        Ok(l) => l,
        Err(e) => return link_refused(&e),
    };
    let id = link.incident;
    let inc = match with_db(st.pool.clone(), move |c| incident::get(c, id)).await {
        Ok(Some(i)) => i,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                "No such alert",
                "<p>This alert no longer exists.</p>",
            );
        }
        Err(e) => return internal(e),
    };
    let host = if inc.hostname.is_empty() {
        &inc.device_id
    } else {
        &inc.hostname
    };
    let state = match (inc.state.as_str(), &inc.acked_by) {
        ("resolved", _) => "<p>This problem is already over.</p>".to_owned(),
        ("acked", Some(by)) => format!("<p>Already acknowledged by {}.</p>", esc(by)),
        _ => format!(
            "<form method=post><label for=note>Note for the other side (optional)</label>\
             <input id=note name=note maxlength=500 placeholder=\"e.g. rebooting it now\">\
             <button type=submit>Acknowledge as {}</button></form>\
             <p class=note>Acknowledging tells everyone watching this alert that it is taken in \
             hand, and stops further escalation mails.</p>",
            esc(&link.recipient)
        ),
    };
    let since = jiff::Timestamp::from_millisecond(inc.opened_ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let what = if inc.dimension.is_empty() {
        esc(&inc.rule)
    } else {
        format!("{} on {}", esc(&inc.rule), esc(&inc.dimension))
    };
    let site = inc.site.as_deref().unwrap_or("-");
    page(
        StatusCode::OK,
        "Acknowledge alert",
        &format!(
            "<dl><dt>What is wrong</dt><dd><span class=\"sev {sev}\">{sev}</span>{what} (value {value})</dd>\
             <dt>Which machine</dt><dd><b>{host}</b> (site {site}, {tenant})</dd>\
             <dt>Since</dt><dd>{since}</dd></dl>{state}",
            sev = esc(&inc.severity),
            value = inc.value,
            host = esc(host),
            site = esc(site),
            tenant = esc(&inc.tenant),
        ),
    )
}

#[derive(Debug, serde::Deserialize)]
struct AckForm {
    #[serde(default)]
    note: String,
}

async fn ack_post(
    State(st): State<HttpState>,
    Path(token): Path<String>,
    form: Result<Form<AckForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let link = match st.key.verify(&token, now_ms()) {
        Ok(l) => l,
        Err(e) => return link_refused(&e),
    };
    let note: String = form
        .map(|f| f.0.note)
        .unwrap_or_default()
        .chars()
        .take(500)
        .collect();
    let note = (!note.trim().is_empty()).then_some(note);
    let (id, by) = (link.incident, format!("{} (mail link)", link.recipient));
    let by2 = by.clone();
    let out = with_db(st.pool.clone(), move |c| {
        incident::ack(c, id, &by2, note.as_deref(), now_ms())
    })
    .await;
    match out {
        Ok(Outcome::Done) => page(
            StatusCode::OK,
            "Acknowledged",
            &format!(
                "<p>Thank you. The alert is acknowledged by {}; escalation stops.</p>",
                esc(&by)
            ),
        ),
        Ok(Outcome::Already) => page(
            StatusCode::OK,
            "Already acknowledged",
            "<p>Someone acknowledged this alert already.</p>",
        ),
        Ok(Outcome::Resolved) => page(
            StatusCode::OK,
            "Already over",
            "<p>This problem is already over.</p>",
        ),
        Ok(Outcome::NoSuchIncident) => page(
            StatusCode::NOT_FOUND,
            "No such alert",
            "<p>This alert no longer exists.</p>",
        ),
        Err(e) => internal(e),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedQuery {
    tenant: Option<String>,
    min_severity: Option<String>,
    /// Replay from after this event id (as `Last-Event-ID`); default: only new events.
    since: Option<i64>,
}

/// Whose incidents a feed reader sees.
#[derive(Debug, Clone, PartialEq)]
enum FeedScope {
    All,
    Tenant(String),
}

/// Who reads the feed (issue 15: every peer, loopback included, needs a console
/// session or an API token): `Err(why)` when neither is valid.
fn feed_scope(
    c: &Connection,
    bearer: Option<&str>,
    session: Option<&str>,
    now: i64,
) -> rusqlite::Result<Result<FeedScope, String>> {
    use crate::console::auth;
    let principal = match (bearer, session) {
        (Some(token), _) => {
            // A token of `token create-api` (no role, no tenant) reads the whole feed.
            let feed_only: Option<Option<i64>> = c
                .query_row(
                    "SELECT revoked_ms FROM api_tokens WHERE sha256_hex = ?1 AND role IS NULL AND tenant_id IS NULL",
                    [token_hash(token)],
                    |r| r.get(0),
                )
                .optional()?;
            match feed_only {
                Some(None) => return Ok(Ok(FeedScope::All)),
                Some(Some(_)) => return Ok(Err("API token: revoked".into())),
                None => auth::token_principal(c, token),
            }
        }
        (None, Some(cookie)) => auth::session_principal(c, cookie, now),
        (None, None) => {
            return Ok(Err(
                "the feed needs a console session or an API token (Authorization: Bearer; `tandem-collector token create-api`)".into(),
            ));
        }
    };
    Ok(match principal {
        Ok(p) => match (p.tenant_id, p.tenant) {
            (None, _) if !p.role.is_tenant() => Ok(FeedScope::All),
            (Some(_), Some(t)) => Ok(FeedScope::Tenant(t)),
            _ => Err(format!("{}: no tenant for role {}", p.actor, p.role)),
        },
        // A failed query is a 500 (logged), not a refusal.
        Err(e) if e.status.is_server_error() => {
            return Err(rusqlite::Error::ToSqlConversionFailure(e.message.into()));
        }
        Err(e) => Err(e.message),
    })
}

async fn feed(
    State(st): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    q: Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("feed query: {}\n", e.body_text()),
            )
                .into_response();
        }
    };
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let session = crate::console::cookie(&headers, crate::console::SESSION_COOKIE);
    let scope = match with_db(st.pool.clone(), move |c| {
        feed_scope(c, bearer.as_deref(), session.as_deref(), now_ms())
    })
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(why)) => {
            tracing::info!(peer = %peer, reason = %why, "feed refused");
            return (StatusCode::UNAUTHORIZED, format!("{why}\n")).into_response();
        }
        Err(e) => return internal(e),
    };
    let tenant = match (scope, q.tenant) {
        (FeedScope::All, t) => t,
        (FeedScope::Tenant(mine), Some(asked)) if asked != mine => {
            return (
                StatusCode::FORBIDDEN,
                format!("tenant={asked:?}: this login sees only tenant {mine:?}\n"),
            )
                .into_response();
        }
        (FeedScope::Tenant(mine), _) => Some(mine),
    };
    let critical_only = match q.min_severity.as_deref() {
        None | Some("warning") => false,
        Some("critical") => true,
        Some(other) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("min_severity {other:?}: use warning or critical\n"),
            )
                .into_response();
        }
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .or(q.since);
    let start = match resume {
        Some(id) => id,
        None => match with_db(st.pool.clone(), |c| {
            c.query_row("SELECT coalesce(max(id), 0) FROM feed_events", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .await
        {
            Ok(id) => id,
            Err(e) => return internal(e),
        },
    };
    let pool = st.pool.clone();
    let only = tenant.clone();
    let keep = move |e: &hub::FeedEvent| {
        only.as_deref().is_none_or(|t| e.tenant == t) && (!critical_only || e.critical)
    };
    feed_sse(
        start,
        st.feeds.subscribe(),
        st.stop.clone(),
        keep,
        move |from| {
            let (pool, t) = (pool.clone(), tenant.clone());
            async move {
                with_db(pool, move |c| {
                    feed_page(c, from, t.as_deref(), critical_only)
                })
                .await
            }
        },
    )
}

pub(crate) type FeedRow = (i64, String, String);

/// Up to [`FEED_PAGE`] feed events after `after`, oldest first: of one tenant (or all), and
/// only critical ones when `critical_only`. Shared by the MSP feed and the console's
/// tenant-scoped event stream.
pub(crate) fn feed_page(
    c: &rusqlite::Connection,
    after: i64,
    tenant: Option<&str>,
    critical_only: bool,
) -> rusqlite::Result<Vec<FeedRow>> {
    let mut s = c.prepare_cached(
        "SELECT id, kind, body FROM feed_events WHERE id > ?1
           AND (?2 IS NULL OR tenant = ?2) AND (NOT ?3 OR severity = 'critical')
         ORDER BY id LIMIT ?4",
    )?;
    let page = FEED_PAGE as i64;
    let rows = s.query_map(rusqlite::params![after, tenant, critical_only, page], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    rows.collect()
}

/// A server-sent-events response of feed events after `start`, in order (event id
/// = feed id, so `Last-Event-ID` resumes): those `keep` accepts of the [`hub`]'s
/// `recent` events, or, when the stream's cursor is below what the hub holds (a
/// resume from far back), pages from `read(cursor)` until it catches up. Between
/// pages the stream sleeps until the hub publishes. A failed read is logged and
/// retried at the next publish; the stream ends when `stop` is cancelled.
pub(crate) fn feed_sse<F, Fut, K>(
    start: i64,
    recent: tokio::sync::watch::Receiver<Arc<hub::Recent>>,
    stop: CancellationToken,
    keep: K,
    read: F,
) -> axum::response::Response
where
    F: Fn(i64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Vec<FeedRow>, String>> + Send,
    K: Fn(&hub::FeedEvent) -> bool + Clone + Send + Sync + 'static,
{
    struct At {
        cursor: i64,
        queue: std::collections::VecDeque<FeedRow>,
        /// Look again without waiting: the first look, or the last page was full.
        now: bool,
        recent: tokio::sync::watch::Receiver<Arc<hub::Recent>>,
    }
    let at = At {
        cursor: start,
        queue: Default::default(),
        now: true,
        recent,
    };
    let stream = futures::stream::unfold(at, move |mut at| {
        let (read, keep) = (read.clone(), keep.clone());
        async move {
            loop {
                if let Some((id, kind, body)) = at.queue.pop_front() {
                    let ev = Event::default().id(id.to_string()).event(kind).data(body);
                    return Some((Ok::<_, std::convert::Infallible>(ev), at));
                }
                if !at.now {
                    // Wait for the feed to move; a closed hub ends the stream.
                    at.recent.changed().await.ok()?;
                }
                let snap = at.recent.borrow_and_update().clone();
                if let Some(events) = snap.after(at.cursor, &keep, FEED_PAGE) {
                    at.now = events.len() >= FEED_PAGE;
                    at.cursor = match (at.now, events.last()) {
                        (true, Some(last)) => last.id,
                        // Every event up to the hub's head was looked at.
                        _ => at.cursor.max(snap.head),
                    };
                    at.queue.extend(
                        events
                            .iter()
                            .map(|e| (e.id, e.kind.clone(), e.body.clone())),
                    );
                    continue;
                }
                match read(at.cursor).await {
                    Ok(rows) => {
                        at.now = rows.len() >= FEED_PAGE;
                        if let Some(last) = rows.last() {
                            at.cursor = last.0;
                        }
                        if !at.now {
                            // Everything up to the hub's head is read (its invariant):
                            // the next look can be served from memory.
                            at.cursor = at.cursor.max(snap.head);
                        }
                        at.queue.extend(rows);
                    }
                    Err(e) => {
                        at.now = false;
                        tracing::warn!(error = %e, "feed read failed; retrying");
                    }
                }
            }
        }
    });
    let stream = futures::StreamExt::take_until(stream, stop.cancelled_owned());
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
