//! `GET /metrics`: Prometheus text exposition about the collector itself, read from
//! the database at scrape time, plus the console's own login counters and the
//! in-process figures of `crate::counters` (ingest values and batches, refusals by
//! reason, write queue depth, commit latency, alert evaluations, notifications,
//! connected agents).
//!
//! Served only to a caller with a credential, from every address, loopback included
//! ([`may_scrape`]): a `token create-api` token, an MSP role's API token or console
//! session. Carries no tenant names (a scrape target is MSP infrastructure, but
//! still: no customer data).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::auth::Principal;
use super::error::ApiError;
use super::{ConsoleState, ONLINE_MS, now_ms, store};
use crate::store::console_query::{ConsoleQuery, RolelessToken, ScrapeFigures};

/// Console counters since start.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) logins_ok: AtomicU64,
    pub(crate) logins_failed: AtomicU64,
    pub(crate) logins_rate_limited: AtomicU64,
}

/// What the database says, at scrape time (the store's [`ScrapeFigures`]).
pub(crate) type DbFigures = ScrapeFigures;

fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: &[(Option<(&str, &str)>, f64)],
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (label, v) in samples {
        match label {
            Some((k, val)) => {
                let val = val
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = writeln!(out, "{name}{{{k}=\"{val}\"}} {v}");
            }
            None => {
                let _ = writeln!(out, "{name} {v}");
            }
        }
    }
}

/// The exposition text.
pub(crate) fn render(f: &DbFigures, c: &Counters) -> String {
    let mut out = String::new();
    let labelled = |rows: &[(String, i64)]| -> Vec<(String, f64)> {
        rows.iter().map(|(k, v)| (k.clone(), *v as f64)).collect()
    };
    family(
        &mut out,
        "tandem_devices",
        "gauge",
        "Enrolled devices by whether they were seen in the last 2 minutes.",
        &[
            (Some(("state", "online")), f.devices_online as f64),
            (Some(("state", "offline")), f.devices_offline as f64),
        ],
    );
    let open = labelled(&f.incidents_open);
    family(
        &mut out,
        "tandem_incidents_open",
        "gauge",
        "Incidents not resolved, by severity.",
        &open
            .iter()
            .map(|(k, v)| (Some(("severity", k.as_str())), *v))
            .collect::<Vec<_>>(),
    );
    let outbox = labelled(&f.outbox);
    family(
        &mut out,
        "tandem_notify_outbox",
        "gauge",
        "Notification deliveries in the outbox, by status.",
        &outbox
            .iter()
            .map(|(k, v)| (Some(("status", k.as_str())), *v))
            .collect::<Vec<_>>(),
    );
    let attempts = labelled(&f.notify_attempts);
    family(
        &mut out,
        "tandem_notify_attempts_total",
        "counter",
        "Notification delivery attempts, by result (from the delivery log).",
        &attempts
            .iter()
            .map(|(k, v)| (Some(("result", k.as_str())), *v))
            .collect::<Vec<_>>(),
    );
    family(
        &mut out,
        "tandem_feed_events_total",
        "counter",
        "Events written to the live alert feed.",
        &[(None, f.feed_events as f64)],
    );
    family(
        &mut out,
        "tandem_console_sessions",
        "gauge",
        "Console sessions not expired.",
        &[(None, f.sessions as f64)],
    );
    family(
        &mut out,
        "tandem_console_logins_total",
        "counter",
        "Console login attempts since the collector started, by result.",
        &[
            (
                Some(("result", "ok")),
                c.logins_ok.load(Ordering::Relaxed) as f64,
            ),
            (
                Some(("result", "bad_credentials")),
                c.logins_failed.load(Ordering::Relaxed) as f64,
            ),
            (
                Some(("result", "rate_limited")),
                c.logins_rate_limited.load(Ordering::Relaxed) as f64,
            ),
        ],
    );
    crate::counters::render(&mut out);
    out
}

/// Who may scrape (issue 15: every peer, loopback included, shows a credential):
/// a bearer token of `token create-api` (no role, no tenant: it reads the whole feed,
/// which says more than these figures do), a bearer API token of an MSP role, or a
/// console session of an MSP role. A tenant's token or session is refused (403):
/// the figures are about every tenant's devices together.
///
/// `roleless`: what the store knows of the bearer token as a `token create-api`
/// one (`None` when there is no bearer token or it is not one); `principal`: the
/// request's principal as the API resolves it (bearer token first, then session).
pub(crate) fn may_scrape(
    bearer: bool,
    session: bool,
    roleless: Option<RolelessToken>,
    principal: Result<Principal, ApiError>,
) -> Result<(), ApiError> {
    let p = match (bearer, session) {
        (true, _) => match roleless {
            Some(RolelessToken::Valid) => return Ok(()),
            Some(RolelessToken::Revoked) => {
                return Err(ApiError::unauthenticated("API token: revoked"));
            }
            None => principal?,
        },
        (false, true) => principal?,
        (false, false) => {
            return Err(ApiError::unauthenticated(
                "/metrics: send Authorization: Bearer <token> (`tandem-collector token create-api NAME`, \
                 or an API token of an MSP role), or log in to the console as MSP staff",
            ));
        }
    };
    if p.tenant_id.is_some() || p.role.is_tenant() {
        return Err(ApiError::forbidden(format!(
            "/metrics: {} has role {}; the collector's figures need an MSP role or a `token create-api` token",
            p.actor, p.role
        )));
    }
    Ok(())
}

/// `GET /metrics`. The principal is resolved as for every API route (and ignored
/// for a `token create-api` token, which is not one); the check and the figures
/// are one read of the store.
pub(crate) async fn metrics(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    principal: Result<Principal, ApiError>,
) -> Result<Response, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let session = super::cookie(&headers, super::SESSION_COOKIE).is_some();
    let now = now_ms();
    let f = store(&st, move |d| {
        let roleless = match &bearer {
            Some(t) => d.roleless_token(&crate::notify::link::token_hash(t))?,
            None => None,
        };
        may_scrape(bearer.is_some(), session, roleless, principal)?;
        Ok(d.scrape_figures(now - ONLINE_MS, now)?)
    })
    .await?;
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&f, &st.counters),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_passes_promtool() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::Db::open(&dir.path().join("t.db")).unwrap();
        db.connection().execute_batch(
            "INSERT INTO tenants (id, name, created_ms) VALUES (1, 'acme', 0);
             INSERT INTO devices (id, tenant_id, first_seen_ms, last_seen_ms) VALUES ('a', 1, 0, 0);",
        )
        .unwrap();
        let counters = Counters::default();
        counters.logins_failed.store(3, Ordering::Relaxed);
        let now = now_ms();
        let f = db.scrape_figures(now - ONLINE_MS, now).unwrap();
        let text = render(&f, &counters);
        assert!(
            text.contains("tandem_devices{state=\"offline\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("tandem_console_logins_total{result=\"bad_credentials\"} 3\n"),
            "{text}"
        );
        assert!(!text.contains("acme"), "no tenant names: {text}");
        let promtool = std::path::Path::new("/usr/bin/promtool");
        if !promtool.exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool missing: tests/run-all.sh installs Debian's prometheus"
            );
            eprintln!(
                "SKIP promtool check: /usr/bin/promtool not installed (apt-get install prometheus)"
            );
            return;
        }
        use std::io::Write;
        let mut child = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
