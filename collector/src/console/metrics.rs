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

use super::error::ApiError;
use super::{ConsoleState, ONLINE_MS, db, now_ms};

/// Console counters since start.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) logins_ok: AtomicU64,
    pub(crate) logins_failed: AtomicU64,
    pub(crate) logins_rate_limited: AtomicU64,
}

/// What the database says, at scrape time.
#[derive(Debug, Default)]
pub(crate) struct DbFigures {
    pub(crate) devices_online: i64,
    pub(crate) devices_offline: i64,
    pub(crate) incidents_open: Vec<(String, i64)>,
    pub(crate) outbox: Vec<(String, i64)>,
    pub(crate) notify_attempts: Vec<(String, i64)>,
    pub(crate) sessions: i64,
    pub(crate) feed_events: i64,
}

fn figures(c: &rusqlite::Connection, now: i64) -> rusqlite::Result<DbFigures> {
    let pairs = |sql: &str| -> rusqlite::Result<Vec<(String, i64)>> {
        let mut s = c.prepare(sql)?;
        let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    };
    let (online, offline) = c.query_row(
        "SELECT coalesce(sum(last_seen_ms >= ?1), 0), coalesce(sum(last_seen_ms < ?1), 0)
         FROM devices WHERE revoked_ms IS NULL",
        [now - ONLINE_MS],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(DbFigures {
        devices_online: online,
        devices_offline: offline,
        incidents_open: pairs(
            "SELECT severity, count(*) FROM incidents WHERE state != 'resolved' GROUP BY severity ORDER BY severity",
        )?,
        outbox: pairs(
            "SELECT status, count(*) FROM notify_outbox GROUP BY status ORDER BY status",
        )?,
        notify_attempts: pairs(
            "SELECT result, count(*) FROM notify_log GROUP BY result ORDER BY result",
        )?,
        sessions: c.query_row(
            "SELECT count(*) FROM sessions WHERE expires_ms > ?1",
            [now],
            |r| r.get(0),
        )?,
        feed_events: c.query_row("SELECT coalesce(max(id), 0) FROM feed_events", [], |r| {
            r.get(0)
        })?,
    })
}

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
pub(crate) fn may_scrape(
    c: &rusqlite::Connection,
    bearer: Option<&str>,
    session: Option<&str>,
    now: i64,
) -> Result<(), ApiError> {
    use rusqlite::OptionalExtension;
    let p = match (bearer, session) {
        (Some(token), _) => {
            let roleless: Option<Option<i64>> = c
                .query_row(
                    "SELECT revoked_ms FROM api_tokens WHERE sha256_hex = ?1 AND role IS NULL AND tenant_id IS NULL",
                    [crate::notify::link::token_hash(token)],
                    |r| r.get(0),
                )
                .optional()?;
            match roleless {
                Some(None) => return Ok(()),
                Some(Some(_)) => return Err(ApiError::unauthenticated("API token: revoked")),
                None => super::tokens::token_principal(c, token)?,
            }
        }
        (None, Some(cookie)) => super::auth::session_principal(c, cookie, now)?,
        (None, None) => {
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

pub(crate) async fn metrics(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let session = super::cookie(&headers, super::SESSION_COOKIE);
    let now = now_ms();
    db(&st, move |c| {
        may_scrape(c, bearer.as_deref(), session.as_deref(), now)
    })
    .await?;
    let f = db(&st, move |c| Ok(figures(c, now)?)).await?;
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
        let c = crate::store::open(&dir.path().join("t.db")).unwrap();
        c.execute_batch(
            "INSERT INTO tenants (id, name, created_ms) VALUES (1, 'acme', 0);
             INSERT INTO devices (id, tenant_id, first_seen_ms, last_seen_ms) VALUES ('a', 1, 0, 0);",
        )
        .unwrap();
        let counters = Counters::default();
        counters.logins_failed.store(3, Ordering::Relaxed);
        let text = render(&figures(&c, now_ms()).unwrap(), &counters);
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
