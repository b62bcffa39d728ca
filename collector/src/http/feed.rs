//! The live MSP feed (`GET /api/v1/feed`, server-sent events): who may read it, the
//! page read from `feed_events`, and the event stream shared with the console (see the
//! invariants in [`super`]). Split from `http/mod.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tandem_proto::util::now_ms;
use tokio_util::sync::CancellationToken;

use super::{HttpState, hub, internal, with_store};
use crate::notify::link::token_hash;
use crate::store::api::NotifyStore;
use crate::store::console_query::{ConsoleQuery, RolelessToken};
use crate::store::{Db, StoreError};

/// Most events one read of the feed returns.
const FEED_PAGE: usize = 500;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FeedQuery {
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
/// session or an API token): `Ok(Err(why))` when neither is valid, `Err` when a
/// read failed (a 500, logged, not a refusal).
async fn feed_scope(
    pool: Arc<crate::store::pool::Pool>,
    bearer: Option<String>,
    session: Option<String>,
    now: i64,
) -> Result<Result<FeedScope, String>, String> {
    if let Some(token) = &bearer {
        // A token of `token create-api` (no role, no tenant) reads the whole feed.
        let hash = token_hash(token);
        match with_store(pool.clone(), move |d| d.roleless_token(&hash)).await? {
            Some(RolelessToken::Valid) => return Ok(Ok(FeedScope::All)),
            Some(RolelessToken::Revoked) => return Ok(Err("API token: revoked".into())),
            None => {}
        }
    }
    let principal = match (bearer, session) {
        (Some(token), _) => principal(pool, Credential::Token(token)).await?,
        (None, Some(cookie)) => principal(pool, Credential::Session(cookie, now)).await?,
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
        Err(e) if e.status.is_server_error() => return Err(e.message),
        Err(e) => Err(e.message),
    })
}

/// A console credential: an API token, or a session cookie at a time.
enum Credential {
    Token(String),
    Session(String, i64),
}

/// The console principal of a credential, as `console::auth` resolves it.
async fn principal(
    pool: Arc<crate::store::pool::Pool>,
    c: Credential,
) -> Result<Result<crate::console::auth::Principal, crate::console::error::ApiError>, String> {
    with_store(pool, move |conn| {
        Ok(match c {
            Credential::Token(t) => crate::console::tokens::token_principal(conn, &t),
            Credential::Session(cookie, now) => {
                crate::console::auth::session_principal(conn, &cookie, now)
            }
        })
    })
    .await
}

pub(super) async fn feed(
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
    let scope = match feed_scope(st.pool.clone(), bearer, session, now_ms()).await {
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
        None => match with_store(st.pool.clone(), |d| d.feed_head()).await {
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
                with_store(pool, move |d| {
                    feed_page(d, from, t.as_deref(), critical_only)
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
    d: &Db,
    after: i64,
    tenant: Option<&str>,
    critical_only: bool,
) -> Result<Vec<FeedRow>, StoreError> {
    Ok(d.feed_page(after, tenant, critical_only, FEED_PAGE as i64)?
        .into_iter()
        .map(|r| (r.id, r.kind, r.body))
        .collect())
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
