//! The console API against a real SQLite file, request by request through the router.
//! The walk over every documented route ([`routes`]) is the isolation test (issue 15):
//! another tenant's user sees nothing of it and changes nothing; a viewer changes
//! nothing.
//!
//! A file per route group; the fixture (two tenants' users, devices, incidents,
//! tokens and windows) and the request helpers are here.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{ConsoleState, router};
use crate::store::Db;
use crate::store::api::AdminStore;
use crate::store::test_fixtures as fx_db;

mod alerts;
mod auth;
mod bad_input;
mod devices;
mod enroll;
mod fleet;
mod maintenance;
mod routes;
mod users;

const PW: &str = "a long enough password";

const FIXTURE_RULES: &str = r#"
[[rule]]
name = "disk-full"
summary = "Volume nearly full"
kind = "threshold"
metric = "fs.used.percent"
warning = { above = 90 }
critical = { above = 95 }
for_secs = 300

[[rule]]
name = "acme-db-disk"
summary = "acme's database volume"
kind = "threshold"
metric = "fs.used.percent"
critical = { above = 80 }
scope = { tenants = ["acme"] }

[[rule]]
name = "globex-only"
kind = "threshold"
metric = "cpu.usage.percent"
critical = { above = 99 }
scope = { tenants = ["globex", "acme"] }

[[maintenance]]
name = "acme patch night"
tz = "Europe/Berlin"
weekdays = ["tue"]
from = "22:00"
to = "02:00"
scope = { tenants = ["acme"] }

[[maintenance]]
name = "fleet migration"
start = "2026-03-29T01:00"
end = "2026-03-29T04:00"
"#;

struct Fx {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    app: axum::Router,
    /// acme's objects (the victim's): device, incident, token id.
    acme_device: String,
    acme_incident: i64,
    acme_token: i64,
    globex_incident: i64,
    acme_silence: i64,
    acme_enroll_token: String,
    acme_window: i64,
}

fn now() -> i64 {
    super::now_ms()
}

fn seed_incident(db: &Db, tenant: &str, device: &str, rule: &str) -> i64 {
    fx_db::seed_incident(db, tenant, device, rule, now())
}

fn fixture() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tandem.db");
    let mut c = Db::open(&db).unwrap();
    let t = now();
    for (tenant, dev, host) in [
        ("acme", "dev-acme-1", "acme-ws-01"),
        ("globex", "dev-globex-1", "globex-ws-01"),
    ] {
        c.create_tenant(tenant, t).unwrap();
        c.create_site(tenant, &format!("{tenant}-hq"), t).unwrap();
        fx_db::add_device(
            &c,
            &fx_db::TestDevice {
                id: dev,
                tenant,
                hostname: host,
                os_family: "linux",
                os_version: "12",
                seen_ms: t,
                site: Some(&format!("{tenant}-hq")),
                revoked_ms: None,
            },
        );
        let sid = fx_db::add_series(&c, dev, "cpu.usage", "");
        // 30 samples as the store writer keeps them: one head row (one batch).
        let values: Vec<[f64; 1]> = (0..30)
            .map(|i| [i as f64 + if tenant == "acme" { 0.7734 } else { 0.25 }])
            .collect();
        let samples: Vec<(i64, &[f64])> = (0..30)
            .map(|i| (t - (30 - i) * 10_000, &values[i as usize][..]))
            .collect();
        fx_db::add_head_batch(&c, dev, &[sid], &samples);
    }
    // acme's device page: a filesystem, services, a patch report with pending
    // updates, a software list (names that say acme, so the walk sees a leak).
    let extra = [
        ("fs.total.bytes", "/srv/acme"),
        ("fs.used.bytes", "/srv/acme"),
        ("fs.free.bytes", "/srv/acme"),
        ("fs.used.percent", "/srv/acme"),
        ("service.up", "acme-backup"),
        ("service.up", "sshd"),
        ("service.failed", "acme-sync.service"),
    ];
    let mut sids = Vec::new();
    for (name, dim) in extra {
        sids.push(fx_db::add_series(&c, "dev-acme-1", name, dim));
    }
    let vals = [500e9, 430e9, 70e9, 86.0, 0.0, 1.0, 1.0];
    fx_db::add_head_batch(&c, "dev-acme-1", &sids, &[(t - 5_000, &vals[..])]);
    fx_db::add_patch_report(&c, "dev-acme-1", 1, t, true, t);
    for (name, class, age_days) in [("acme-tools", "security", 12), ("libacme2", "other", 2)] {
        fx_db::add_pending_update(
            &c,
            &fx_db::TestPendingUpdate {
                device: "dev-acme-1",
                report_seq: 1,
                name,
                current_version: "1.0",
                new_version: "1.1",
                classification: class,
                advisory_id: "DSA-0001",
                first_seen_ms: t - age_days * 86_400_000,
            },
        );
    }
    for (name, publisher) in [
        ("acme-suite", "ACME Corp"),
        ("openssl", "Debian"),
        ("zsh", "Debian"),
    ] {
        fx_db::add_software(&c, "dev-acme-1", name, "3.0", publisher);
    }
    // An offline Windows device of acme, for the filters.
    fx_db::add_device(
        &c,
        &fx_db::TestDevice {
            id: "dev-acme-2",
            tenant: "acme",
            hostname: "acme-laptop-7",
            os_family: "windows",
            os_version: "",
            seen_ms: t - 3 * 86_400_000,
            site: None,
            revoked_ms: None,
        },
    );
    let acme_incident = seed_incident(&c, "acme", "dev-acme-1", "cpu_high");
    let globex_incident = seed_incident(&c, "globex", "dev-globex-1", "cpu_high");
    let acme = super::auth::tenant_id(&c, "acme").unwrap();
    let globex = super::auth::tenant_id(&c, "globex").unwrap();
    let hash = super::auth::hash_password(PW).unwrap();
    use super::auth::Role::*;
    for (u, r, tid) in [
        ("admin", MspAdmin, None),
        ("tech", MspTech, None),
        ("acme-admin", TenantAdmin, Some(acme)),
        ("acme-viewer", TenantViewer, Some(acme)),
        ("globex-admin", TenantAdmin, Some(globex)),
        ("globex-viewer", TenantViewer, Some(globex)),
    ] {
        super::auth::add_user(&mut c, "test", u, &hash, r, tid, t).unwrap();
    }
    let (acme_token, _) =
        super::tokens::create_token(&mut c, "test", "acme-script", TenantAdmin, Some(acme), t)
            .unwrap();
    let acme_silence = crate::alerts::silence::create(
        &mut c,
        &crate::alerts::silence::NewSilence {
            starts_ms: t,
            ends_ms: t + 3_600_000,
            tenant: Some("acme".into()),
            device: Some("dev-acme-1".into()),
            comment: "acme disk swap".into(),
            by: "test".into(),
            ..Default::default()
        },
        t,
    )
    .unwrap();
    c.insert_token(
        &crate::store::admin::NewToken {
            id_hex: "00acme00acme0001".into(),
            secret_sha256: [7; 32],
            tenant: "acme".into(),
            site: Some("acme-hq".into()),
            replace_device_id: None,
            expires_ms: t + 86_400_000,
            max_uses: 10,
        },
        t,
    )
    .unwrap();
    let acme_window = fx_db::add_device_window(
        &c,
        acme,
        "dev-acme-1",
        t,
        t + 3_600_000,
        "acme disk swap night",
        "test",
    );
    drop(c);
    // What a running engine of this collector would have loaded.
    let set = crate::alerts::rules::parse_file(std::path::Path::new("fixture.toml"), FIXTURE_RULES)
        .unwrap();
    crate::alerts::published::publish(db.to_str(), &set);
    let st = ConsoleState::new(
        db.clone(),
        tokio_util::sync::CancellationToken::new(),
        false,
    );
    Fx {
        _dir: dir,
        db,
        app: router(st),
        acme_device: "dev-acme-1".into(),
        acme_incident,
        acme_token,
        globex_incident,
        acme_silence,
        acme_enroll_token: "00acme00acme0001".into(),
        acme_window,
    }
}

#[derive(Clone, Default)]
struct Who {
    cookie: Option<String>,
    csrf: Option<String>,
    bearer: Option<String>,
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
}

async fn send(
    app: &axum::Router,
    method: Method,
    uri: &str,
    who: &Who,
    body: Option<Body>,
    ctype: &str,
) -> Answer {
    send_from(app, "127.0.0.1:5555", method, uri, who, body, ctype).await
}

async fn send_from(
    app: &axum::Router,
    peer: &str,
    method: Method,
    uri: &str,
    who: &Who,
    body: Option<Body>,
    ctype: &str,
) -> Answer {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(c) = &who.cookie {
        b = b.header("cookie", format!("tandem_session={c}"));
    }
    if let Some(c) = &who.csrf {
        b = b.header("x-csrf-token", c);
    }
    if let Some(t) = &who.bearer {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        b = b.header("content-type", ctype);
    }
    let mut req = b.body(body.unwrap_or_else(Body::empty)).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let sse = headers
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
    let text = if sse {
        // An event stream never ends: read what it sends within a second.
        let mut body = resp.into_body();
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(1200);
        while let Ok(Some(Ok(f))) = tokio::time::timeout_at(deadline, body.frame()).await {
            if let Some(d) = f.data_ref() {
                out.extend_from_slice(d);
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    } else {
        String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned()
    };
    Answer {
        status,
        headers,
        text,
    }
}

async fn call(
    app: &axum::Router,
    method: Method,
    uri: &str,
    who: &Who,
    body: Option<Value>,
) -> Answer {
    send(
        app,
        method,
        uri,
        who,
        body.map(|b| Body::from(b.to_string())),
        "application/json",
    )
    .await
}

async fn login(app: &axum::Router, user: &str) -> Who {
    let a = call(
        app,
        Method::POST,
        "/api/v1/auth/login",
        &Who::default(),
        Some(json!({"username": user, "password": PW})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{user}: {}", a.text);
    let set = a
        .headers
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let cookie = set
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("tandem_session=")
        .unwrap()
        .to_owned();
    Who {
        cookie: Some(cookie),
        csrf: a.json()["csrf_token"].as_str().map(str::to_owned),
        bearer: None,
    }
}

/// Every row of the tables a write could touch, as text.
fn snapshot(db: &std::path::Path) -> String {
    fx_db::table_rows(
        &Db::open(db).unwrap(),
        &[
            "users",
            "sessions",
            "api_tokens",
            "audit_log",
            "incidents",
            "alert_instances",
            "feed_events",
            "alert_history",
            "silences",
            "enroll_tokens",
            "maintenance_windows",
        ],
    )
}
