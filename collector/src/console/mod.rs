//! The console (issue 15): the JSON API under `/api/v1` and the dashboard, served on
//! the collector's HTTP listener next to the ack links and the feed.
//!
//! Invariants:
//! - every API route but login and the OpenAPI document needs a principal (a session
//!   cookie or a bearer API token), and every write with a session cookie needs the
//!   session's CSRF token in `X-CSRF-Token` ([`auth`]);
//! - tenant scoping is in the SQL of every query: a principal bound to a tenant passes
//!   its tenant id as a bound parameter, and another tenant's object answers 404, as
//!   if it did not exist;
//! - every write lands in `audit_log` in the same transaction as the change;
//! - bodies above [`MAX_BODY_BYTES`] are refused with 413 before they are parsed; an
//!   unknown field or a bad value is a 400 naming it ([`error`]);
//! - the routes and the OpenAPI document come from the same code (utoipa-axum), so a
//!   route cannot exist undocumented.

pub(crate) mod actions;
pub(crate) mod alerts;
pub(crate) mod api;
pub mod auth;
pub mod cli;
pub(crate) mod device;
pub(crate) mod devices;
pub(crate) mod enroll;
pub(crate) mod error;
pub(crate) mod maintenance;
pub(crate) mod metrics;
pub(crate) mod roles;
pub(crate) mod routes;
pub(crate) mod rules;
pub(crate) mod samples;
pub mod tokens;
pub(crate) mod users;
pub(crate) mod web;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Method, header};
use tokio_util::sync::CancellationToken;

use auth::{Principal, RateLimit};
use error::ApiError;

/// Largest request body the API reads.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;
/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "tandem_session";
/// A device is online when it was seen within this long.
pub(crate) const ONLINE_MS: i64 = 120_000;

/// The collector's listeners as collector.toml configures them (`[enrollment] listen`
/// and `[telemetry] listen`): where the enrollment page's address defaults come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Listeners {
    pub(crate) enrollment: std::net::SocketAddr,
    pub(crate) telemetry: std::net::SocketAddr,
}

impl Default for Listeners {
    /// The defaults of an empty collector.toml.
    fn default() -> Self {
        let c = crate::config::Config::new(
            std::path::PathBuf::new(),
            std::net::SocketAddr::from(([0, 0, 0, 0], 4443)),
        );
        Listeners {
            enrollment: c.enrollment.listen,
            telemetry: c.listen,
        }
    }
}

#[derive(Clone)]
pub(crate) struct ConsoleState {
    pub(crate) db_path: PathBuf,
    /// Connections reused across requests (a request used to open its own).
    pub(crate) pool: Arc<crate::store::pool::Pool>,
    /// The shared feed watcher the event streams wait on.
    pub(crate) feeds: crate::http::hub::FeedHub,
    pub(crate) stop: CancellationToken,
    pub(crate) limiter: Arc<RateLimit>,
    /// Mark cookies `Secure` (everywhere but plain HTTP on loopback).
    pub(crate) secure_cookies: bool,
    /// Login counts for `/metrics`.
    pub(crate) counters: Arc<metrics::Counters>,
    /// collector.toml's listeners, for the enrollment page's address defaults.
    pub(crate) listeners: Listeners,
}

impl ConsoleState {
    pub(crate) fn new(db_path: PathBuf, stop: CancellationToken, secure_cookies: bool) -> Self {
        let pool = crate::store::pool::Pool::new(&db_path, POOL_IDLE);
        ConsoleState {
            feeds: crate::http::hub::FeedHub::new(pool.clone(), EVENTS_POLL, stop.clone()),
            pool,
            db_path,
            stop,
            // 5 failures per account, 20 per address, in 15 minutes.
            limiter: Arc::new(RateLimit::new(Duration::from_secs(900), 5, 20)),
            secure_cookies,
            counters: Arc::default(),
            listeners: Listeners::default(),
        }
    }

    /// With the listeners of the collector's configuration (not the defaults).
    pub(crate) fn with_listeners(mut self, listeners: Listeners) -> Self {
        self.listeners = listeners;
        self
    }
}

pub(crate) use tandem_proto::util::now_ms;

/// Connections kept open for requests: about as many as requests run at once on
/// the blocking pool in normal use (a page load fetches up to eight charts).
const POOL_IDLE: usize = 8;
/// How often the event streams' watcher looks for new events.
const EVENTS_POLL: Duration = Duration::from_millis(250);

/// Runs `f` with a pooled store handle on the pool's threads (below ingest's CPU
/// priority: see `store::pool`).
pub(crate) async fn store<T: Send + 'static>(
    st: &ConsoleState,
    f: impl FnOnce(&mut crate::store::Db) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    st.pool.run(f).await.map_err(ApiError::internal)?
}

pub(crate) fn cookie(parts: &axum::http::HeaderMap, name: &str) -> Option<String> {
    parts
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

impl FromRequestParts<ConsoleState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &ConsoleState) -> Result<Self, ApiError> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_owned());
        let session = cookie(&parts.headers, SESSION_COOKIE);
        let p = match (bearer, session) {
            (Some(t), _) => store(st, move |d| tokens::token_principal(d, &t)).await?,
            (None, Some(s)) => {
                let now = now_ms();
                store(st, move |d| auth::session_principal(d, &s, now)).await?
            }
            (None, None) => {
                return Err(ApiError::unauthenticated(
                    "log in (session cookie) or send Authorization: Bearer <API token>",
                ));
            }
        };
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if let (false, Some(expected)) = (safe, p.csrf.as_deref()) {
            let sent = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok());
            if sent != Some(expected) {
                return Err(ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "csrf",
                    "header X-CSRF-Token: missing or wrong (GET /api/v1/auth/me gives it)",
                ));
            }
        }
        Ok(p)
    }
}

/// The API and the dashboard, ready to merge into the HTTP listener's router.
pub(crate) fn router(st: ConsoleState) -> axum::Router {
    let (api, doc) = routes::routes().split_for_parts();
    let doc = Arc::new(doc);
    let doc_json = {
        let d = doc.clone();
        move || {
            let d = d.clone();
            async move { axum::Json((*d).clone()) }
        }
    };
    axum::Router::new()
        .nest(
            "/api/v1",
            api.route("/openapi.json", axum::routing::get(doc_json)),
        )
        .route("/metrics", axum::routing::get(metrics::metrics))
        .merge(web::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(st)
}

/// The OpenAPI document (for tests and `openapi.json`).
#[cfg(test)]
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    routes::routes().split_for_parts().1
}
