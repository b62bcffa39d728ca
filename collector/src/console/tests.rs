//! The console API against a real SQLite file, request by request through the router.
//! The walk over every documented route is the isolation test (issue 15): another
//! tenant's user sees nothing of it and changes nothing; a viewer changes nothing.

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

/// A valid body for each write route; a new write route must be added here.
fn write_body(method: &str, path: &str) -> Value {
    match (method, path) {
        ("post", "/alerts/{incident_id}/ack") | ("post", "/alerts/{incident_id}/unack") => {
            json!({"note": "walk"})
        }
        ("post", "/alerts/{incident_id}/snooze") => json!({"minutes": 30, "note": "walk"}),
        ("post", "/silences") => {
            json!({"tenant": "acme", "device": "dev-acme-1", "minutes": 30, "comment": "walk"})
        }
        ("post", "/maintenance") => {
            json!({"tenant": "acme", "device": "dev-acme-1", "minutes": 60, "note": "walk"})
        }
        ("post", "/enrollment-tokens") => {
            json!({"tenant": "acme", "address": "collector.example.net:4444", "expires_hours": 24, "uses": 5})
        }
        ("post", "/users") => {
            json!({"username": "intruder", "password": PW, "role": "tenant-admin", "tenant": "acme"})
        }
        ("put", "/users/{username}/password") => json!({"password": "another long password"}),
        ("put", "/users/{username}/role") => json!({"role": "tenant-viewer", "tenant": "acme"}),
        ("post", "/tokens") => {
            json!({"name": "intruder", "role": "tenant-admin", "tenant": "acme"})
        }
        ("delete", _) => json!(null),
        _ => panic!("no test body for {method} {path}: add one to write_body"),
    }
}

fn routes_of_doc() -> Vec<(String, String)> {
    let doc = serde_json::to_value(super::openapi()).unwrap();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in ["get", "post", "put", "delete", "patch"] {
            if item.get(m).is_some() {
                out.push((m.to_owned(), path.clone()));
            }
        }
    }
    out
}

fn fill(path: &str, fx: &Fx) -> String {
    let mut p = path.to_owned();
    for (k, v) in [
        ("{device_id}", fx.acme_device.clone()),
        ("{incident_id}", fx.acme_incident.to_string()),
        ("{username}", "acme-admin".to_owned()),
        ("{token_id}", fx.acme_token.to_string()),
        ("{silence_id}", fx.acme_silence.to_string()),
        ("{enroll_token_id}", fx.acme_enroll_token.clone()),
        ("{window_id}", fx.acme_window.to_string()),
    ] {
        p = p.replace(k, &v);
    }
    assert!(
        !p.contains('{'),
        "{path}: a path parameter the walk does not know; add it to fill()"
    );
    // Required query parameters.
    if p == "/events" {
        p.push_str("?since=0");
    }
    if p.ends_with("/series") {
        p.push_str("?metric=cpu.usage");
    }
    format!("/api/v1{p}")
}

fn method(m: &str) -> Method {
    Method::from_bytes(m.to_uppercase().as_bytes()).unwrap()
}

/// Routes that act on the caller's own session, not on tenant data.
const SESSION_ROUTES: &[&str] = &["/auth/login", "/auth/logout"];
/// GET routes about the collector itself (its listeners and certificate), no
/// tenant's data: every caller allowed them gets the very same answer.
const COLLECTOR_ROUTES: &[&str] = &["/enrollment/defaults"];

#[tokio::test]
async fn every_route_leaks_nothing_to_another_tenant_and_a_viewer_writes_nothing() {
    let fx = fixture();
    let routes = routes_of_doc();
    assert!(routes.len() >= 20, "{routes:?}");
    let owner = login(&fx.app, "acme-admin").await;
    let msp = login(&fx.app, "admin").await;
    let outsiders = [
        ("globex-admin", login(&fx.app, "globex-admin").await),
        ("globex-viewer", login(&fx.app, "globex-viewer").await),
    ];
    let acme_viewer = login(&fx.app, "acme-viewer").await;
    // acme's names, and the fraction of its sample values.
    let secrets = ["acme", "dev-acme", ".7734"];
    let mut walked = 0;
    for (m, path) in &routes {
        if SESSION_ROUTES.contains(&path.as_str()) {
            continue;
        }
        let uri = fill(path, &fx);
        if m == "get" && COLLECTOR_ROUTES.contains(&path.as_str()) {
            let same = call(&fx.app, Method::GET, &uri, &msp, None).await;
            assert_eq!(same.status, StatusCode::OK, "GET {uri}: {}", same.text);
            for (name, who) in [("acme-admin", &owner)]
                .into_iter()
                .chain(outsiders.iter().map(|(n, w)| (*n, w)))
            {
                let a = call(&fx.app, Method::GET, &uri, who, None).await;
                assert!(
                    a.status == StatusCode::FORBIDDEN
                        || (a.status == StatusCode::OK && a.text == same.text),
                    "GET {uri} as {name} differs from the MSP's answer: {} {}",
                    a.status,
                    a.text
                );
            }
        } else if m == "get" {
            // Positive controls: the owner and the MSP see it (so the route exists and the check can see a leak).
            for who in [&owner, &msp] {
                if path.starts_with("/auth/") && who.cookie == msp.cookie {
                    continue; // the MSP admin's own identity names no tenant
                }
                let a = call(&fx.app, Method::GET, &uri, who, None).await;
                assert_eq!(a.status, StatusCode::OK, "GET {uri}: {}", a.text);
                assert!(
                    secrets.iter().any(|s| a.text.contains(s)),
                    "GET {uri} as owner shows no acme data, so the walk could not see a leak: {}",
                    a.text
                );
            }
            for (name, who) in &outsiders {
                let a = call(&fx.app, Method::GET, &uri, who, None).await;
                assert!(
                    a.status == StatusCode::OK
                        || a.status == StatusCode::NOT_FOUND
                        || a.status == StatusCode::FORBIDDEN,
                    "GET {uri} as {name}: {} {}",
                    a.status,
                    a.text
                );
                // A 404 may echo what was asked for; nothing else.
                let text = a.text.replace(&fx.acme_device, "<asked>");
                for s in &secrets {
                    assert!(
                        !text.contains(s),
                        "GET {uri} as {name} leaks {s:?}: {}",
                        a.text
                    );
                }
            }
        } else {
            let body = write_body(m, path);
            let body = (!body.is_null()).then_some(body);
            let before = snapshot(&fx.db);
            for (name, who) in outsiders
                .iter()
                .map(|(n, w)| (*n, w))
                .chain([("acme-viewer", &acme_viewer)])
            {
                let a = call(&fx.app, method(m), &uri, who, body.clone()).await;
                assert!(
                    a.status == StatusCode::NOT_FOUND || a.status == StatusCode::FORBIDDEN,
                    "{m} {uri} as {name}: {} {}",
                    a.status,
                    a.text
                );
                assert!(a.json()["code"].is_string(), "{}", a.text);
                assert_eq!(
                    snapshot(&fx.db),
                    before,
                    "{m} {uri} as {name} changed the database"
                );
            }
        }
        walked += 1;
    }
    assert_eq!(walked + SESSION_ROUTES.len(), routes.len());
}

#[tokio::test]
async fn openapi_is_3_1_and_every_documented_route_answers() {
    let fx = fixture();
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/openapi.json",
        &Who::default(),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let doc = a.json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    // The document served is the one the walk uses.
    assert_eq!(doc, serde_json::to_value(super::openapi()).unwrap());
    let admin = login(&fx.app, "admin").await;
    for (m, path) in routes_of_doc() {
        let uri = fill(&path, &fx);
        let a = call(&fx.app, method(&m), &uri, &Who::default(), None).await;
        // Unauthenticated: every route but login exists and refuses (never 404/405).
        if path == "/auth/login" {
            assert!(
                a.status.is_client_error() && a.status != StatusCode::NOT_FOUND,
                "{}",
                a.text
            );
        } else {
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{m} {uri}: {}", a.text);
        }
    }
    // A path that is not documented is not routed either.
    let a = call(&fx.app, Method::GET, "/api/v1/nothing", &admin, None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn login_cookie_is_strict_and_a_wrong_password_is_refused_then_rate_limited() {
    let fx = fixture();
    let a = call(
        &fx.app,
        Method::POST,
        "/api/v1/auth/login",
        &Who::default(),
        Some(json!({"username": "admin", "password": PW})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let cookie = a.headers.get("set-cookie").unwrap().to_str().unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "loopback plain HTTP: no Secure ({cookie})"
    );
    for i in 0..5 {
        let a = call(
            &fx.app,
            Method::POST,
            "/api/v1/auth/login",
            &Who::default(),
            Some(json!({"username": "tech", "password": "wrong password!"})),
        )
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "attempt {i}");
        assert_eq!(a.json()["code"], "bad_credentials");
        assert!(a.headers.get("set-cookie").is_none());
    }
    // Locked now, even with the right password.
    let a = call(
        &fx.app,
        Method::POST,
        "/api/v1/auth/login",
        &Who::default(),
        Some(json!({"username": "tech", "password": PW})),
    )
    .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.text);
    assert!(a.headers.get("retry-after").is_some());
    // An unknown user is refused like a wrong password.
    let a = call(
        &fx.app,
        Method::POST,
        "/api/v1/auth/login",
        &Who::default(),
        Some(json!({"username": "nobody", "password": PW})),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // Every login landed in the audit log; failures did not.
    let c = Db::open(&fx.db).unwrap();
    let n: i64 = fx_db::count_audit(&c, "session.login");
    assert_eq!(n, 1);
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_changes_nothing() {
    let fx = fixture();
    let who = login(&fx.app, "acme-admin").await;
    let ack = format!("/api/v1/alerts/{}/ack", fx.acme_incident);
    let before = snapshot(&fx.db);
    // Malformed JSON.
    let a = send(
        &fx.app,
        Method::POST,
        &ack,
        &who,
        Some(Body::from("{\"note\": ")),
        "application/json",
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert_eq!(a.json()["code"], "bad_json");
    assert!(
        a.json()["message"].as_str().unwrap().contains("line 1"),
        "{}",
        a.text
    );
    // Unknown field: named.
    let a = call(
        &fx.app,
        Method::POST,
        &ack,
        &who,
        Some(json!({"note": "x", "nite": "y"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.json()["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `nite`"),
        "{}",
        a.text
    );
    // Oversized body.
    let big = json!({"note": "x".repeat(super::MAX_BODY_BYTES + 10)});
    let a = call(&fx.app, Method::POST, &ack, &who, Some(big)).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text);
    assert_eq!(a.json()["code"], "body_too_large");
    // Note too long (but within the body limit).
    let a = call(
        &fx.app,
        Method::POST,
        &ack,
        &who,
        Some(json!({"note": "n".repeat(501)})),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // CSRF token missing, then wrong.
    let mut no_csrf = who.clone();
    no_csrf.csrf = None;
    let a = call(&fx.app, Method::POST, &ack, &no_csrf, Some(json!({}))).await;
    assert_eq!(
        (a.status, a.json()["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("csrf")),
        "{}",
        a.text
    );
    no_csrf.csrf = Some("tdm_wrong".into());
    let a = call(&fx.app, Method::POST, &ack, &no_csrf, Some(json!({}))).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // Bad query values and ranges.
    for q in [
        "/api/v1/devices?per_page=0",
        "/api/v1/devices?page=0",
        "/api/v1/devices?online=maybe",
        "/api/v1/devices?colour=red",
        "/api/v1/alerts?state=sleeping",
        "/api/v1/devices/dev-acme-1/series?metric=cpu.usage&from_ms=10&to_ms=5",
        "/api/v1/devices/dev-acme-1/series?metric=cpu.usage&step_ms=10",
        "/api/v1/devices/dev-acme-1/series?metric=cpu.usage&from_ms=0&to_ms=4000000000000",
        "/api/v1/devices/dev-acme-1/charts?from_ms=10&to_ms=5",
        "/api/v1/devices/dev-acme-1/charts?metrics=cpu.usage,,mem.used&step_ms=100000",
    ] {
        let a = call(&fx.app, Method::GET, q, &who, None).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{q}: {}", a.text);
        assert!(
            a.json()["message"].as_str().unwrap().starts_with("query"),
            "{q}: {}",
            a.text
        );
    }
    assert_eq!(
        snapshot(&fx.db),
        before,
        "a refused request changed the database"
    );
    // An expired session.
    fx_db::expire_all_sessions(&Db::open(&fx.db).unwrap());
    let a = call(&fx.app, Method::GET, "/api/v1/auth/me", &who, None).await;
    assert_eq!(
        (a.status, a.json()["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("session_expired"))
    );
    let a = call(&fx.app, Method::POST, &ack, &who, Some(json!({}))).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // Path traversal in asset paths: only the embedded table answers.
    for p in [
        "/console/../Cargo.toml",
        "/console/..%2F..%2FCargo.toml",
        "/console/vendor/../../src/main.rs",
        "/console/%2e%2e/%2e%2e/Cargo.toml",
        "/console//etc/passwd",
    ] {
        let a = call(&fx.app, Method::GET, p, &Who::default(), None).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{p}: {}", a.text);
    }
    let a = call(
        &fx.app,
        Method::GET,
        "/console/app.js",
        &Who::default(),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn ack_with_a_note_is_audited_and_unack_reopens() {
    let fx = fixture();
    let who = login(&fx.app, "acme-admin").await;
    let a = call(
        &fx.app,
        Method::POST,
        &format!("/api/v1/alerts/{}/ack", fx.acme_incident),
        &who,
        Some(json!({"note": "on it"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json()["state"], "acked");
    assert_eq!(a.json()["acked_by"], "acme-admin");
    assert_eq!(a.json()["ack_note"], "on it");
    let a = call(
        &fx.app,
        Method::POST,
        &format!("/api/v1/alerts/{}/ack", fx.acme_incident),
        &who,
        Some(json!({})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let a = call(
        &fx.app,
        Method::POST,
        &format!("/api/v1/alerts/{}/unack", fx.acme_incident),
        &who,
        Some(json!({"note": "not fixed"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json()["state"], "open");
    let a = call(&fx.app, Method::GET, "/api/v1/audit", &who, None).await;
    let rows = a.json()["items"].as_array().unwrap().clone();
    let actions: Vec<_> = rows
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        actions.starts_with(&["alert.unack".to_owned(), "alert.ack".to_owned()]),
        "{actions:?}"
    );
    assert_eq!(rows[1]["detail"]["note"], "on it");
    assert_eq!(rows[1]["actor"], "acme-admin");
    // The tenant admin's audit view holds no MSP-wide or other-tenant rows.
    assert!(rows.iter().all(|r| r["tenant"] == "acme"), "{rows:?}");
    let a = call(
        &fx.app,
        Method::GET,
        &format!("/api/v1/alerts/{}", fx.acme_incident),
        &who,
        None,
    )
    .await;
    let kinds: Vec<_> = a.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["opened", "acked", "reopened"]);
    // The other tenant's alert does not exist for this admin.
    let a = call(
        &fx.app,
        Method::POST,
        &format!("/api/v1/alerts/{}/ack", fx.globex_incident),
        &who,
        Some(json!({})),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn devices_filter_and_paginate_and_series_roll_up() {
    let fx = fixture();
    let who = login(&fx.app, "tech").await;
    let ids = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let a = call(&fx.app, Method::GET, "/api/v1/devices", &who, None).await;
    assert_eq!(a.json()["total"], 3);
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/devices?tenant=acme&online=false",
        &who,
        None,
    )
    .await;
    assert_eq!(ids(&a.json()), ["dev-acme-2"]);
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/devices?os=linux&hostname=WS",
        &who,
        None,
    )
    .await;
    assert_eq!(a.json()["total"], 2);
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/devices?site=acme-hq",
        &who,
        None,
    )
    .await;
    assert_eq!(ids(&a.json()), ["dev-acme-1"]);
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/devices?hostname=%25",
        &who,
        None,
    )
    .await;
    assert_eq!(a.json()["total"], 0, "a % in the filter is literal");
    let p1 = call(
        &fx.app,
        Method::GET,
        "/api/v1/devices?per_page=2&page=1",
        &who,
        None,
    )
    .await
    .json();
    let p2 = call(
        &fx.app,
        Method::GET,
        "/api/v1/devices?per_page=2&page=2",
        &who,
        None,
    )
    .await
    .json();
    assert_eq!(
        (ids(&p1).len(), ids(&p2).len(), p2["total"].as_i64()),
        (2, 1, Some(3))
    );
    assert!(!ids(&p1).contains(&ids(&p2)[0]));
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/devices/dev-acme-1/series?metric=cpu.usage",
        &who,
        None,
    )
    .await;
    assert_eq!(a.json()["points"].as_array().unwrap().len(), 30);
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/devices/dev-acme-1/series?metric=cpu.usage&step_ms=100000",
        &who,
        None,
    )
    .await;
    let n = a.json()["points"].as_array().unwrap().len();
    assert!((3..=5).contains(&n), "{n}: {}", a.text);
    // The charts route answers the same series in one request.
    let one = a.json()["points"].clone();
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/devices/dev-acme-1/charts?metrics=cpu.usage&step_ms=100000",
        &who,
        None,
    )
    .await;
    let series = a.json()["series"].as_array().unwrap().clone();
    assert_eq!(series.len(), 1, "{}", a.text);
    assert_eq!(
        (&series[0]["metric"], &series[0]["points"]),
        (&json!("cpu.usage"), &one)
    );
    let all = call(
        &fx.app,
        Method::GET,
        "/api/v1/devices/dev-acme-1/charts",
        &who,
        None,
    )
    .await
    .json();
    let latest = call(
        &fx.app,
        Method::GET,
        "/api/v1/devices/dev-acme-1/latest",
        &who,
        None,
    )
    .await
    .json();
    assert_eq!(
        all["series"].as_array().unwrap().len(),
        latest.as_array().unwrap().len(),
        "without metrics, every series of the device: {all}"
    );
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/devices/dev-acme-1/latest",
        &who,
        None,
    )
    .await;
    assert_eq!(a.json()[0]["value"], 29.7734);
    // A tenant user asking for the other tenant by name gets 404, not an empty list.
    let v = login(&fx.app, "globex-viewer").await;
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/devices?tenant=acme",
        &v,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_fleet_counts_each_tenants_devices_alerts_and_latest_patch_reports() {
    let fx = fixture();
    let c = Db::open(&fx.db).unwrap();
    let t = now();
    // Not counted anywhere: a revoked device (with an old report that needs a reboot)
    // and a resolved incident.
    fx_db::add_device(
        &c,
        &fx_db::TestDevice {
            id: "dev-acme-3",
            tenant: "acme",
            hostname: "gone",
            os_family: "",
            os_version: "",
            seen_ms: t,
            site: None,
            revoked_ms: Some(t),
        },
    );
    let report = |dev: &str, seq: i64, reboot: bool| {
        fx_db::add_patch_report(&c, dev, seq, t, reboot, 0);
    };
    report("dev-acme-3", 1, true);
    let gone = seed_incident(&c, "acme", "dev-acme-1", "disk_full");
    fx_db::set_incident_state(&c, gone, "resolved", "warning");
    // globex: an older report needed a reboot and had a security update; the latest
    // needs neither. And an acknowledged warning.
    report("dev-globex-1", 1, true);
    fx_db::add_pending_update(
        &c,
        &fx_db::TestPendingUpdate {
            device: "dev-globex-1",
            report_seq: 1,
            name: "openssl",
            current_version: "1",
            new_version: "2",
            classification: "security",
            advisory_id: "",
            first_seen_ms: t,
        },
    );
    report("dev-globex-1", 2, false);
    let warn = seed_incident(&c, "globex", "dev-globex-1", "mem_high");
    fx_db::set_incident_state(&c, warn, "acked", "warning");
    let row = |v: &Value| {
        [
            "devices",
            "online",
            "offline",
            "stale_24h",
            "alerts_warning",
            "alerts_critical",
            "reboot_pending",
            "security_pending",
        ]
        .map(|k| v[k].as_i64().unwrap())
    };
    let admin = login(&fx.app, "admin").await;
    let all = call(&fx.app, Method::GET, "/api/v1/fleet", &admin, None)
        .await
        .json();
    let all = all.as_array().unwrap();
    assert_eq!(
        all.iter()
            .map(|v| v["tenant"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["acme", "globex"]
    );
    // acme: dev-acme-1 online (report 1: reboot, a security update), dev-acme-2 seen
    // three days ago; one open critical.
    assert_eq!(row(&all[0]), [2, 1, 1, 1, 0, 1, 1, 1], "{:?}", all[0]);
    assert_eq!(row(&all[1]), [1, 1, 0, 0, 1, 1, 0, 0], "{:?}", all[1]);
    // Patch compliance: acme's security update has waited 12 days, overdue after the
    // default 7 and not after 30; globex's was in an older report.
    let overdue = |v: &Value| (v["security_overdue"].as_i64(), v["overdue_days"].as_i64());
    assert_eq!(
        (overdue(&all[0]), overdue(&all[1])),
        ((Some(1), Some(7)), (Some(0), Some(7)))
    );
    let month = call(
        &fx.app,
        Method::GET,
        "/api/v1/fleet?overdue_days=30",
        &admin,
        None,
    )
    .await
    .json();
    assert_eq!(overdue(&month[0]), (Some(0), Some(30)), "{month}");
    for bad in [
        "/api/v1/fleet?overdue_days=0",
        "/api/v1/fleet?overdue_days=9999",
        "/api/v1/fleet?days=3",
    ] {
        let a = call(&fx.app, Method::GET, bad, &admin, None).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}: {}", a.text);
    }
    let v = login(&fx.app, "acme-viewer").await;
    let mine = call(&fx.app, Method::GET, "/api/v1/fleet", &v, None)
        .await
        .json();
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(row(&mine[0]), row(&all[0]));
    // The device list filters by tag, within the caller's tenant.
    for (dev, tag) in [("dev-acme-2", "laptops"), ("dev-globex-1", "laptops")] {
        fx_db::add_device_tag(&c, dev, tag);
    }
    let ids = |v: Value| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let tagged = call(
        &fx.app,
        Method::GET,
        "/api/v1/devices?tag=laptops",
        &admin,
        None,
    )
    .await;
    assert_eq!(
        ids(tagged.json()),
        ["dev-globex-1", "dev-acme-2"],
        "{}",
        tagged.text
    );
    let tagged = call(
        &fx.app,
        Method::GET,
        "/api/v1/devices?tag=laptops",
        &v,
        None,
    )
    .await;
    assert_eq!(ids(tagged.json()), ["dev-acme-2"], "{}", tagged.text);
    let none = call(
        &fx.app,
        Method::GET,
        "/api/v1/devices?tag=servers",
        &admin,
        None,
    )
    .await;
    assert_eq!(ids(none.json()), Vec::<String>::new());
}

#[tokio::test]
async fn tokens_are_shown_once_scoped_and_revocable() {
    let fx = fixture();
    let who = login(&fx.app, "globex-admin").await;
    let a = call(
        &fx.app,
        Method::POST,
        "/api/v1/tokens",
        &who,
        Some(json!({"name": "script", "role": "msp-admin"})),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "a tenant admin cannot mint an MSP token: {}",
        a.text
    );
    let a = call(
        &fx.app,
        Method::POST,
        "/api/v1/tokens",
        &who,
        Some(json!({"name": "script", "role": "tenant-viewer", "tenant": "globex"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let token = a.json()["token"].as_str().unwrap().to_owned();
    let id = a.json()["id"].as_i64().unwrap();
    let c = Db::open(&fx.db).unwrap();
    let stored: i64 =
        fx_db::count_api_tokens_with_hash(&c, &crate::notify::link::token_hash(&token));
    let plain: i64 = fx_db::count_api_tokens_with_hash_or_name(&c, &token);
    assert_eq!((stored, plain), (1, 0));
    let bearer = Who {
        bearer: Some(token),
        ..Who::default()
    };
    let a = call(&fx.app, Method::GET, "/api/v1/devices", &bearer, None).await;
    assert_eq!(ids_of(&a.json()), ["dev-globex-1"]);
    let a = call(
        &fx.app,
        Method::POST,
        &format!("/api/v1/alerts/{}/ack", fx.globex_incident),
        &bearer,
        Some(json!({})),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "a viewer token writes nothing"
    );
    let a = call(&fx.app, Method::GET, "/api/v1/tokens", &who, None).await;
    assert!(!a.text.contains("acme-script"), "{}", a.text);
    let a = call(
        &fx.app,
        Method::DELETE,
        &format!("/api/v1/tokens/{id}"),
        &who,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = call(&fx.app, Method::GET, "/api/v1/devices", &bearer, None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

fn ids_of(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_event_stream_carries_only_the_callers_tenant() {
    let fx = fixture();
    let g = login(&fx.app, "globex-viewer").await;
    let a = call(&fx.app, Method::GET, "/api/v1/events?since=0", &g, None).await;
    assert!(a.text.contains("globex-ws-01"), "{}", a.text);
    assert!(!a.text.contains("acme"), "{}", a.text);
    let m = login(&fx.app, "tech").await;
    let a = call(&fx.app, Method::GET, "/api/v1/events?since=0", &m, None).await;
    assert!(
        a.text.contains("acme-ws-01") && a.text.contains("globex-ws-01"),
        "{}",
        a.text
    );
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/events?since=0&tenant=acme",
        &g,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn users_are_managed_within_scope() {
    let fx = fixture();
    let ga = login(&fx.app, "globex-admin").await;
    let a = call(
        &fx.app,
        Method::POST,
        "/api/v1/users",
        &ga,
        Some(json!({"username": "g2", "password": PW, "role": "msp-tech"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    let a = call(
        &fx.app,
        Method::POST,
        "/api/v1/users",
        &ga,
        Some(
            json!({"username": "g2", "password": PW, "role": "tenant-viewer", "tenant": "globex"}),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let a = call(&fx.app, Method::GET, "/api/v1/users", &ga, None).await;
    let names: Vec<_> = a
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["g2", "globex-admin", "globex-viewer"]);
    assert!(!a.text.contains("argon2"), "no hashes in answers");
    let a = call(
        &fx.app,
        Method::DELETE,
        "/api/v1/users/acme-viewer",
        &ga,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let admin = login(&fx.app, "admin").await;
    let a = call(&fx.app, Method::DELETE, "/api/v1/users/admin", &admin, None).await;
    assert_eq!(
        a.status,
        StatusCode::CONFLICT,
        "the last msp-admin stays: {}",
        a.text
    );
    // A password change ends the user's sessions.
    let g2 = login(&fx.app, "g2").await;
    let a = call(
        &fx.app,
        Method::PUT,
        "/api/v1/users/g2/password",
        &ga,
        Some(json!({"password": "a brand new password"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);
    let a = call(&fx.app, Method::GET, "/api/v1/auth/me", &g2, None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn metrics_need_a_credential_from_every_address_and_name_no_tenant() {
    let fx = fixture();
    let remote = "192.0.2.7:4000";
    let scrape = |peer: &'static str, who: Who| {
        let app = fx.app.clone();
        async move { send_from(&app, peer, Method::GET, "/metrics", &who, None, "").await }
    };
    let bearer = |t: &str| Who {
        bearer: Some(t.to_owned()),
        ..Who::default()
    };
    // No credential: refused from loopback exactly as from elsewhere.
    for peer in ["127.0.0.1:5555", "[::1]:5555", remote] {
        let a = scrape(peer, Who::default()).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{peer}: {}", a.text);
        assert!(a.text.contains("token create-api"), "says how: {}", a.text);
        assert!(!a.text.contains("tandem_"), "no figures: {}", a.text);
    }
    let a = scrape("127.0.0.1:5555", bearer("not-a-token")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text);

    let mut c = Db::open(&fx.db).unwrap();
    let (_, msp) = super::tokens::create_token(
        &mut c,
        "test",
        "prom",
        super::auth::Role::MspTech,
        None,
        now(),
    )
    .unwrap();
    let acme = super::auth::tenant_id(&c, "acme").unwrap();
    let (_, tenant) = super::tokens::create_token(
        &mut c,
        "test",
        "t",
        super::auth::Role::TenantAdmin,
        Some(acme),
        now(),
    )
    .unwrap();
    // A token as `token create-api` makes it: no role, no tenant.
    let (roleless, hash) = crate::notify::link::new_api_token().unwrap();
    fx_db::add_roleless_api_token(&c, "prometheus", &hash, now(), None);
    let (revoked, hash) = crate::notify::link::new_api_token().unwrap();
    let at = now();
    fx_db::add_roleless_api_token(&c, "old", &hash, at, Some(at));
    drop(c);

    // A tenant's token or session: 403, from loopback too.
    for peer in ["127.0.0.1:5555", remote] {
        let a = scrape(peer, bearer(&tenant)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{peer}: {}", a.text);
    }
    let a = scrape("127.0.0.1:5555", login(&fx.app, "acme-admin").await).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    let a = scrape(remote, bearer(&revoked)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text);

    // The MSP's token, the feed token of `token create-api`, an MSP session.
    let admin = login(&fx.app, "admin").await;
    for (what, who) in [
        ("msp-tech token", bearer(&msp)),
        ("token create-api", bearer(&roleless)),
        ("msp-admin session", admin),
    ] {
        for peer in ["127.0.0.1:5555", remote] {
            let a = scrape(peer, who.clone()).await;
            assert_eq!(a.status, StatusCode::OK, "{what} from {peer}: {}", a.text);
            assert!(
                a.text
                    .contains("tandem_incidents_open{severity=\"critical\"} 2"),
                "{}",
                a.text
            );
            assert!(
                !a.text.contains("acme") && !a.text.contains("globex"),
                "{}",
                a.text
            );
        }
    }
}

#[tokio::test]
async fn snooze_and_silences_are_scoped_validated_and_audited() {
    let fx = fixture();
    let who = login(&fx.app, "acme-admin").await;
    let snooze = format!("/api/v1/alerts/{}/snooze", fx.acme_incident);
    // Bad input: neither or both ends, the past, too far, unknown field.
    for (b, needle) in [
        (json!({"note": "x"}), "until or minutes"),
        (
            json!({"minutes": 5, "until": "2030-01-01T00:00:00Z"}),
            "not both",
        ),
        (json!({"until": "2001-01-01T00:00:00Z"}), "in the past"),
        (json!({"until": "tomorrow"}), "RFC 3339"),
        (json!({"minutes": 100000}), "31 days"),
        (json!({"minutes": 5, "colour": "red"}), "unknown field"),
    ] {
        let before = snapshot(&fx.db);
        let a = call(&fx.app, Method::POST, &snooze, &who, Some(b.clone())).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{b}: {}", a.text);
        assert!(a.text.contains(needle), "{b}: {}", a.text);
        assert_eq!(snapshot(&fx.db), before);
    }
    let a = call(
        &fx.app,
        Method::POST,
        &snooze,
        &who,
        Some(json!({"minutes": 90, "note": "after the backup"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json()["state"], "snoozed");
    assert_eq!(a.json()["ack_note"], "after the backup");
    let c = Db::open(&fx.db).unwrap();
    let until: i64 = fx_db::incident_snoozed_until(&c, fx.acme_incident);
    assert!((until - now() - 90 * 60_000).abs() < 60_000, "{until}");
    let (action, detail): (String, String) = fx_db::last_audit(&c);
    assert_eq!(action, "alert.snooze");
    assert!(detail.contains("after the backup"), "{detail}");
    // Silences: no matcher and no comment are refused; a tenant's silence is its own.
    let a = call(
        &fx.app,
        Method::POST,
        "/api/v1/silences",
        &who,
        Some(json!({"minutes": 10, "comment": "x"})),
    )
    .await;
    // A tenant user always has its tenant as a matcher, so that is fine for it ...
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(a.json()["tenant"], "acme");
    assert_eq!(a.json()["status"], "active");
    let made = a.json()["id"].as_i64().unwrap();
    // ... but not for the MSP.
    let msp = login(&fx.app, "admin").await;
    let a = call(
        &fx.app,
        Method::POST,
        "/api/v1/silences",
        &msp,
        Some(json!({"minutes": 10, "comment": "x"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert!(a.text.contains("at least one"), "{}", a.text);
    let a = call(
        &fx.app,
        Method::POST,
        "/api/v1/silences",
        &msp,
        Some(json!({"device": "dev-acme-1", "minutes": 10, "comment": "  "})),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    assert!(a.text.contains("comment"), "{}", a.text);
    // An MSP silence of a device belongs to the device's tenant.
    let a = call(
        &fx.app,
        Method::POST,
        "/api/v1/silences",
        &msp,
        Some(json!({"device": "dev-globex-1", "rule": "cpu_high", "minutes": 10, "comment": "globex reboot"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(a.json()["tenant"], "globex");
    let globex_silence = a.json()["id"].as_i64().unwrap();
    // acme lists its own two, not globex's; it cannot expire globex's.
    let a = call(&fx.app, Method::GET, "/api/v1/silences", &who, None).await;
    let ids: Vec<i64> = a
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    assert!(
        ids.contains(&made) && ids.contains(&fx.acme_silence),
        "{ids:?}"
    );
    assert!(!ids.contains(&globex_silence), "{ids:?}");
    let a = call(
        &fx.app,
        Method::DELETE,
        &format!("/api/v1/silences/{globex_silence}"),
        &who,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);
    // Expire: gone from the active list, kept with who lifted it, audited; twice is a conflict.
    let del = format!("/api/v1/silences/{made}");
    let a = call(&fx.app, Method::DELETE, &del, &who, None).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);
    let a = call(&fx.app, Method::DELETE, &del, &who, None).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/silences?all=true",
        &who,
        None,
    )
    .await;
    let row = a
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == made)
        .unwrap()
        .clone();
    assert_eq!(row["status"], "removed");
    assert_eq!(row["removed_by"], "acme-admin");
    let n: i64 = fx_db::count_audit_of_target(
        &c,
        &["silence.create", "silence.expire"],
        &format!("silence {made}"),
    );
    assert_eq!(n, 2);
    // The feed filters by site.
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/alerts?site=acme-hq",
        &msp,
        None,
    )
    .await;
    let items = a.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["tenant"], "acme");
}

#[tokio::test]
async fn the_device_page_shows_filesystems_services_updates_and_searchable_software() {
    let fx = fixture();
    let who = login(&fx.app, "acme-viewer").await;
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/devices/dev-acme-1/filesystems",
        &who,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let fs = a.json();
    assert_eq!(fs[0]["mount"], "/srv/acme");
    assert_eq!(fs[0]["used_percent"], 86.0);
    assert_eq!(fs[0]["free_bytes"], 70e9);
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/devices/dev-acme-1/services",
        &who,
        None,
    )
    .await;
    let sv: Vec<(String, String, bool)> = a
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().into(),
                s["kind"].as_str().unwrap().into(),
                s["running"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sv,
        [
            ("acme-backup".to_string(), "configured".to_string(), false),
            ("acme-sync.service".into(), "failed-unit".into(), false),
            ("sshd".into(), "configured".into(), true),
        ]
    );
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/devices/dev-acme-1/updates",
        &who,
        None,
    )
    .await;
    let up = a.json();
    assert_eq!(up[0]["name"], "acme-tools");
    assert_eq!(up[0]["age_days"], 12);
    assert_eq!(up[1]["classification"], "other");
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/devices/dev-acme-1/software?q=DEBIAN&per_page=1",
        &who,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json()["total"], 2);
    assert_eq!(a.json()["items"][0]["name"], "openssl");
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/devices/dev-acme-1/software?q=50%25",
        &who,
        None,
    )
    .await;
    assert_eq!(a.json()["total"], 0, "a % is a literal, not a wildcard");
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/devices/dev-acme-1/software?per_page=0",
        &who,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    // Another tenant's device does not exist for this viewer.
    for r in ["filesystems", "services", "updates", "software"] {
        let a = call(
            &fx.app,
            Method::GET,
            &format!("/api/v1/devices/dev-globex-1/{r}"),
            &who,
            None,
        )
        .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{r}: {}", a.text);
    }
}

#[test]
fn enrollment_defaults_prefer_an_operator_name_with_the_configured_ports() {
    use super::{Listeners, enroll::defaults};
    let l = |e: &str, t: &str| Listeners {
        enrollment: e.parse().unwrap(),
        telemetry: t.parse().unwrap(),
    };
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // As `pki init --name collector.example.net` writes them: localhost, loopback,
    // this host's name, then the operator's.
    let cert = names(&[
        "localhost",
        "127.0.0.1",
        "::1",
        "box7",
        "collector.example.net",
        "203.0.113.9",
    ]);
    let d = defaults(&cert, l("0.0.0.0:5544", "0.0.0.0:5543"), Some("box7"));
    assert_eq!(d.address.as_deref(), Some("collector.example.net:5544"));
    assert_eq!(d.server.as_deref(), Some("collector.example.net:5543"));
    assert_eq!(
        (d.enrollment_port, d.telemetry_port, d.source.as_str()),
        (5544, 5543, "certificate")
    );
    // An operator's IP only: that one.
    let ip_only = names(&["localhost", "127.0.0.1", "::1", "box7", "2001:db8::7"]);
    let d = defaults(&ip_only, l("0.0.0.0:4444", "0.0.0.0:4443"), Some("box7"));
    assert_eq!(d.address.as_deref(), Some("[2001:db8::7]:4444"));
    // The listener's own IP, when the certificate names it, before another IP.
    let two = names(&["localhost", "box7", "198.51.100.1", "198.51.100.2"]);
    let d = defaults(&two, l("198.51.100.2:4444", "0.0.0.0:4443"), Some("box7"));
    assert_eq!(
        (d.address.as_deref(), d.source.as_str()),
        (Some("198.51.100.2:4444"), "listen")
    );
    // No operator name: this host's name.
    let plain = names(&["localhost", "127.0.0.1", "::1", "box7"]);
    let d = defaults(&plain, l("0.0.0.0:4444", "0.0.0.0:4443"), Some("box7"));
    assert_eq!(
        (d.address.as_deref(), d.source.as_str()),
        (Some("box7:4444"), "hostname")
    );
    // A loopback listener: only this machine reaches it.
    let d = defaults(&cert, l("127.0.0.1:4444", "127.0.0.1:4443"), Some("box7"));
    assert_eq!(
        (d.address.as_deref(), d.source.as_str()),
        (Some("127.0.0.1:4444"), "listen")
    );
    // No certificate, or one naming only localhost, off loopback: nothing to offer.
    for none in [names(&[]), names(&["localhost", "127.0.0.1"])] {
        let d = defaults(&none, l("0.0.0.0:4444", "0.0.0.0:4443"), Some("box7"));
        assert_eq!(
            (d.address, d.server, d.source.as_str()),
            (None, None, "none")
        );
        assert_eq!(
            d.enrollment_port, 4444,
            "the page still has the configured port"
        );
    }
}

#[tokio::test]
async fn enrollment_page_defaults_come_from_collector_toml_and_the_certificate() {
    let fx = fixture();
    let dir = fx.db.parent().unwrap().to_owned();
    let listeners = super::Listeners {
        enrollment: "0.0.0.0:14444".parse().unwrap(),
        telemetry: "0.0.0.0:14443".parse().unwrap(),
    };
    let app = router(
        ConsoleState::new(
            fx.db.clone(),
            tokio_util::sync::CancellationToken::new(),
            false,
        )
        .with_listeners(listeners),
    );
    let admin = login(&app, "admin").await;
    let a = call(
        &app,
        Method::GET,
        "/api/v1/enrollment/defaults",
        &admin,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(
        a.json()["address"],
        Value::Null,
        "no certificate yet: {}",
        a.text
    );
    assert_eq!(a.json()["enrollment_port"], 14444, "{}", a.text);
    crate::pki::init(&dir, &["collector.example.net".to_owned()]).unwrap();
    let a = call(
        &app,
        Method::GET,
        "/api/v1/enrollment/defaults",
        &admin,
        None,
    )
    .await;
    assert_eq!(
        a.json(),
        json!({"address": "collector.example.net:14444", "server": "collector.example.net:14443",
               "enrollment_port": 14444, "telemetry_port": 14443, "source": "certificate"}),
        "{}",
        a.text
    );
    // A tenant admin gets the same; a viewer makes no tokens, so gets no defaults.
    let t = call(
        &app,
        Method::GET,
        "/api/v1/enrollment/defaults",
        &login(&app, "acme-admin").await,
        None,
    )
    .await;
    assert_eq!(t.text, a.text);
    let v = call(
        &app,
        Method::GET,
        "/api/v1/enrollment/defaults",
        &login(&app, "acme-viewer").await,
        None,
    )
    .await;
    assert_eq!(v.status, StatusCode::FORBIDDEN, "{}", v.text);
    // The default makes a token whose address is that listener.
    let address = a.json()["address"].as_str().unwrap().to_owned();
    let made = call(
        &app,
        Method::POST,
        "/api/v1/enrollment-tokens",
        &admin,
        Some(json!({"tenant": "acme", "address": address, "expires_hours": 1, "uses": 1})),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let token =
        tandem_proto::token::EnrollToken::parse(made.json()["token"].as_str().unwrap()).unwrap();
    assert_eq!(token.address, "collector.example.net:14444");
    // The page asks for them and fills them in.
    let js = send(
        &app,
        Method::GET,
        "/console/app.js",
        &Who::default(),
        None,
        "",
    )
    .await;
    assert!(
        js.text.contains("\"/enrollment/defaults\""),
        "the enrollment page reads the defaults"
    );
    assert!(
        !js.text.contains("\":4444\""),
        "no port hard-coded in the page"
    );
}

#[tokio::test]
async fn enrollment_tokens_are_made_with_install_lines_scoped_and_revocable() {
    let fx = fixture();
    let dir = fx.db.parent().unwrap().to_owned();
    let who = login(&fx.app, "acme-admin").await;
    let good = json!({"address": "collector.example.net:4444", "server": "collector.example.net:4443",
                      "site": "acme-hq", "expires_hours": 168, "uses": 50});
    // Without a CA the collector cannot make a token, and says so.
    let a = call(
        &fx.app,
        Method::POST,
        "/api/v1/enrollment-tokens",
        &who,
        Some(good.clone()),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    assert!(a.text.contains("pki init"), "{}", a.text);
    crate::pki::init(&dir, &["collector.example.net".to_owned()]).unwrap();
    for (patch, needle) in [
        (json!({"address": "nope"}), "not host:port"),
        (json!({"address": "a.b:4444; rm -rf /"}), "not host:port"),
        (json!({"server": "x y:1"}), "server"),
        (json!({"expires_hours": 0}), "expires_hours"),
        (json!({"uses": 0}), "uses"),
        (json!({"site": "nowhere"}), "nowhere"),
        (json!({"tenant": "globex"}), "not_found"),
    ] {
        let mut b = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        let before = snapshot(&fx.db);
        let a = call(
            &fx.app,
            Method::POST,
            "/api/v1/enrollment-tokens",
            &who,
            Some(b.clone()),
        )
        .await;
        assert!(a.status.is_client_error(), "{b}: {} {}", a.status, a.text);
        assert!(a.text.contains(needle), "{b}: {}", a.text);
        assert_eq!(snapshot(&fx.db), before, "{b}");
    }
    let a = call(
        &fx.app,
        Method::POST,
        "/api/v1/enrollment-tokens",
        &who,
        Some(good),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let made = a.json();
    let token = made["token"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(made["tenant"], "acme");
    let parsed = tandem_proto::token::EnrollToken::parse(&token).unwrap();
    assert_eq!(parsed.address, "collector.example.net:4444");
    assert_eq!(
        parsed.ca_fingerprint,
        crate::pki::serving_fingerprint(&dir).unwrap()
    );
    assert_eq!(
        made["install"]["deb"].as_str().unwrap(),
        format!(
            "sudo TANDEM_TOKEN={token} apt install ./tandem-agent_{}-1_amd64.deb",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert!(
        made["install"]["rpm"]
            .as_str()
            .unwrap()
            .contains(&format!("TANDEM_TOKEN={token} dnf install"))
    );
    assert!(
        made["install"]["msi"].as_str().unwrap().ends_with(&format!(
            "/qn TOKEN={token} SERVER=collector.example.net:4443"
        )),
        "{}",
        made["install"]["msi"]
    );
    // Stored hashed: the secret is not in the database; enrollment accepts it.
    let c = Db::open(&fx.db).unwrap();
    let fx_db::StoredEnrollToken {
        secret_sha256: hash,
        site,
        max_uses: max,
    } = fx_db::enroll_token(&c, &id);
    assert_eq!(hash, parsed.secret_hash().to_vec());
    assert_eq!((site.as_deref(), max), (Some("acme-hq"), 50));
    let audited: i64 = fx_db::count_audit_of_target_ending(&c, "enroll_token.create", &id);
    assert_eq!(audited, 1);
    // Listed for acme, not for globex (which cannot revoke it either).
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/enrollment-tokens",
        &who,
        None,
    )
    .await;
    assert!(
        a.json()
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id.as_str() && t["state"] == "usable"),
        "{}",
        a.text
    );
    assert!(!a.text.contains(&token), "a listing never shows the token");
    let globex = login(&fx.app, "globex-admin").await;
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/enrollment-tokens",
        &globex,
        None,
    )
    .await;
    assert_eq!(a.json(), json!([]));
    let del = format!("/api/v1/enrollment-tokens/{id}");
    let a = call(&fx.app, Method::DELETE, &del, &globex, None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = call(&fx.app, Method::DELETE, &del, &who, None).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);
    let a = call(&fx.app, Method::DELETE, &del, &who, None).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/enrollment-tokens",
        &who,
        None,
    )
    .await;
    assert!(
        a.json()
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id.as_str() && t["state"] == "revoked"),
        "{}",
        a.text
    );
    // A revoked token no longer enrolls.
    let mut conn = crate::store::open(&fx.db).unwrap();
    let r = crate::store::admin::enroll(
        &mut conn,
        &id,
        &parsed.secret_hash(),
        "h",
        1,
        |_| unreachable!(),
    );
    assert!(r.is_err());
}

#[tokio::test]
async fn rules_and_windows_are_the_engines_set_scoped_to_the_tenant() {
    let fx = fixture();
    let msp = login(&fx.app, "admin").await;
    let a = call(&fx.app, Method::GET, "/api/v1/rules", &msp, None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let names = |v: &Value, k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = a.json();
    assert_eq!(
        names(&all, "rules"),
        ["disk-full", "acme-db-disk", "globex-only"]
    );
    assert_eq!(
        names(&all, "windows"),
        ["acme patch night", "fleet migration"]
    );
    assert_eq!(all["rules"][0]["warning"], "> 90");
    assert_eq!(all["rules"][0]["for_secs"], 300);
    assert_eq!(all["windows"][0]["schedule"], "weekly Tue 22:00–02:00");
    assert_eq!(all["windows"][0]["tz"], "Europe/Berlin");
    // globex sees the global rule and its own, with acme's name taken out of the scope.
    let g = login(&fx.app, "globex-viewer").await;
    let a = call(&fx.app, Method::GET, "/api/v1/rules", &g, None).await;
    let mine = a.json();
    assert_eq!(names(&mine, "rules"), ["disk-full", "globex-only"]);
    assert_eq!(mine["rules"][1]["scope"]["tenants"], json!(["globex"]));
    assert_eq!(names(&mine, "windows"), ["fleet migration"]);
    assert!(!a.text.contains("acme"), "{}", a.text);
    // A collector whose engine has not published answers 503, not someone else's set.
    let other = tempfile::tempdir().unwrap();
    let db = other.path().join("tandem.db");
    drop(crate::store::open(&db).unwrap());
    let app = router(ConsoleState::new(
        db,
        tokio_util::sync::CancellationToken::new(),
        false,
    ));
    let mut c = Db::open(&other.path().join("tandem.db")).unwrap();
    let hash = super::auth::hash_password(PW).unwrap();
    super::auth::add_user(
        &mut c,
        "test",
        "admin",
        &hash,
        super::auth::Role::MspAdmin,
        None,
        now(),
    )
    .unwrap();
    drop(c);
    let w = login(&app, "admin").await;
    let a = call(&app, Method::GET, "/api/v1/rules", &w, None).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text);
}

#[tokio::test]
async fn maintenance_windows_are_scoped_validated_audited_and_loaded_for_the_engine() {
    let fx = fixture();
    let acme_admin = login(&fx.app, "acme-admin").await;
    let globex_admin = login(&fx.app, "globex-admin").await;
    let msp = login(&fx.app, "tech").await;
    let uri = "/api/v1/maintenance";
    // acme's own window: made, listed to acme and the MSP, never to globex.
    let a = call(
        &fx.app,
        Method::POST,
        uri,
        &acme_admin,
        Some(json!({"site": "acme-hq", "minutes": 90, "note": "switch swap"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let made = a.json();
    assert_eq!(
        (
            &made["tenant"],
            &made["site"],
            &made["status"],
            &made["created_by"]
        ),
        (
            &json!("acme"),
            &json!("acme-hq"),
            &json!("active"),
            &json!("acme-admin")
        )
    );
    let id = made["id"].as_i64().unwrap();
    for (who, sees) in [(&acme_admin, true), (&msp, true), (&globex_admin, false)] {
        let a = call(&fx.app, Method::GET, uri, who, None).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        assert_eq!(a.text.contains("switch swap"), sees, "{}", a.text);
    }
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/maintenance?tenant=acme",
        &globex_admin,
        None,
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::NOT_FOUND,
        "naming another tenant: {}",
        a.text
    );
    // An MSP window of a device is its tenant's.
    let a = call(
        &fx.app,
        Method::POST,
        uri,
        &msp,
        Some(json!({"device": "dev-globex-1", "note": "n",
            "start": jiff::Timestamp::from_millisecond(now() + 2 * 86_400_000).unwrap().to_string(),
            "end": jiff::Timestamp::from_millisecond(now() + 2 * 86_400_000 + 4 * 3_600_000).unwrap().to_string()})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert_eq!(
        (&a.json()["tenant"], &a.json()["status"]),
        (&json!("globex"), &json!("upcoming"))
    );
    // Refusals, each changing nothing.
    let viewer = login(&fx.app, "acme-viewer").await;
    let before = snapshot(&fx.db);
    for (who, b, status, needle) in [
        (
            &msp,
            json!({"minutes": 30, "note": "n"}),
            StatusCode::BAD_REQUEST,
            "tenant: required",
        ),
        (
            &acme_admin,
            json!({"note": "n"}),
            StatusCode::BAD_REQUEST,
            "end or minutes",
        ),
        (
            &acme_admin,
            json!({"minutes": 30, "end": "2030-01-01T00:00:00Z", "note": "n"}),
            StatusCode::BAD_REQUEST,
            "not both",
        ),
        (
            &acme_admin,
            json!({"end": "2020-01-01T00:00:00Z", "note": "n"}),
            StatusCode::BAD_REQUEST,
            "end",
        ),
        (
            &acme_admin,
            json!({"start": "2030-01-02T00:00:00Z", "end": "2030-01-01T00:00:00Z", "note": "n"}),
            StatusCode::BAD_REQUEST,
            "not after start",
        ),
        (
            &acme_admin,
            json!({"minutes": 50000, "note": "n"}),
            StatusCode::BAD_REQUEST,
            "31 days",
        ),
        (
            &acme_admin,
            json!({"start": "tomorrow", "minutes": 5, "note": "n"}),
            StatusCode::BAD_REQUEST,
            "RFC 3339",
        ),
        (
            &acme_admin,
            json!({"minutes": 30, "note": "  "}),
            StatusCode::BAD_REQUEST,
            "note",
        ),
        (
            &acme_admin,
            json!({"minutes": 30, "note": "n", "rule": "x"}),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            &acme_admin,
            json!({"device": "dev-globex-1", "minutes": 30, "note": "n"}),
            StatusCode::NOT_FOUND,
            "device",
        ),
        (
            &acme_admin,
            json!({"tenant": "globex", "minutes": 30, "note": "n"}),
            StatusCode::NOT_FOUND,
            "tenant",
        ),
        (
            &acme_admin,
            json!({"site": "globex-hq", "minutes": 30, "note": "n"}),
            StatusCode::NOT_FOUND,
            "site",
        ),
        (
            &viewer,
            json!({"minutes": 30, "note": "n"}),
            StatusCode::FORBIDDEN,
            "read-only",
        ),
    ] {
        let a = call(&fx.app, Method::POST, uri, who, Some(b.clone())).await;
        assert_eq!(a.status, status, "{b}: {}", a.text);
        assert!(a.text.contains(needle), "{b}: {needle:?} not in {}", a.text);
    }
    let a = call(
        &fx.app,
        Method::DELETE,
        &format!("{uri}/{id}"),
        &globex_admin,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);
    let after = snapshot(&fx.db);
    let changed: Vec<&str> = after
        .lines()
        .filter(|l| !before.lines().any(|b| b == *l))
        .collect();
    assert!(
        changed.is_empty(),
        "refusals change nothing: {}",
        changed.join("\n").chars().take(600).collect::<String>()
    );
    // What the engine loads: the windows not ended, as windows it matches.
    let c = Db::open(&fx.db).unwrap();
    let loaded = crate::alerts::maintenance::load_db(&c, now()).unwrap();
    let target = crate::alerts::model::Target {
        site: Some("acme-hq"),
        ..crate::alerts::model::Target::device("acme", "dev-acme-2", "windows", "cpu_high")
    };
    assert!(
        loaded
            .iter()
            .any(|w| w.scope.matches(&target) && w.active_at(now()))
    );
    // Deleted by its tenant's admin: gone for the engine, audited with what it was.
    let a = call(
        &fx.app,
        Method::DELETE,
        &format!("{uri}/{id}"),
        &acme_admin,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);
    let a = call(
        &fx.app,
        Method::DELETE,
        &format!("{uri}/{id}"),
        &acme_admin,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "twice: {}", a.text);
    let loaded = crate::alerts::maintenance::load_db(&c, now()).unwrap();
    assert!(
        !loaded
            .iter()
            .any(|w| w.scope.matches(&target) && w.active_at(now()))
    );
    let audit: Vec<(String, String)> = fx_db::audit_of_actions_starting(&c, "maintenance.");
    assert_eq!(audit.len(), 3, "{audit:?}");
    assert_eq!(audit[2].0, "maintenance.delete");
    assert!(audit[2].1.contains("switch swap"), "{audit:?}");
}

#[tokio::test]
async fn role_changes_are_for_admins_within_their_scope_and_audited() {
    let fx = fixture();
    let admin = login(&fx.app, "admin").await;
    let acme_admin = login(&fx.app, "acme-admin").await;
    let tech = login(&fx.app, "tech").await;
    let put = |user: &str| format!("/api/v1/users/{user}/role");
    // Refusals first; none changes anything.
    let viewer_session = login(&fx.app, "acme-viewer").await;
    let before = snapshot(&fx.db);
    for (who, user, b, status, needle) in [
        // A tenant admin never grants an MSP role, nor reaches another tenant.
        (
            &acme_admin,
            "acme-viewer",
            json!({"role": "msp-admin"}),
            StatusCode::FORBIDDEN,
            "tenant roles of its own tenant",
        ),
        (
            &acme_admin,
            "acme-viewer",
            json!({"role": "msp-tech"}),
            StatusCode::FORBIDDEN,
            "tenant roles of its own tenant",
        ),
        (
            &acme_admin,
            "acme-viewer",
            json!({"role": "tenant-admin", "tenant": "globex"}),
            StatusCode::NOT_FOUND,
            "tenant",
        ),
        (
            &acme_admin,
            "globex-viewer",
            json!({"role": "tenant-admin"}),
            StatusCode::NOT_FOUND,
            "user",
        ),
        (
            &acme_admin,
            "tech",
            json!({"role": "tenant-viewer"}),
            StatusCode::NOT_FOUND,
            "user",
        ),
        (
            &acme_admin,
            "admin",
            json!({"role": "tenant-viewer"}),
            StatusCode::NOT_FOUND,
            "user",
        ),
        // Not an admin.
        (
            &tech,
            "acme-viewer",
            json!({"role": "tenant-admin", "tenant": "acme"}),
            StatusCode::FORBIDDEN,
            "cannot manage users",
        ),
        (
            &viewer_session,
            "acme-viewer",
            json!({"role": "tenant-admin"}),
            StatusCode::FORBIDDEN,
            "cannot manage users",
        ),
        // Shape of the change.
        (
            &admin,
            "acme-viewer",
            json!({"role": "tenant-admin"}),
            StatusCode::BAD_REQUEST,
            "needs a tenant",
        ),
        (
            &admin,
            "tech",
            json!({"role": "msp-admin", "tenant": "acme"}),
            StatusCode::BAD_REQUEST,
            "takes no tenant",
        ),
        (
            &admin,
            "acme-viewer",
            json!({"role": "owner", "tenant": "acme"}),
            StatusCode::BAD_REQUEST,
            "role",
        ),
        (
            &admin,
            "acme-viewer",
            json!({"role": "tenant-admin", "tenant": "acme", "x": 1}),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            &admin,
            "acme-viewer",
            json!({"role": "tenant-viewer", "tenant": "acme"}),
            StatusCode::CONFLICT,
            "already",
        ),
        (
            &admin,
            "nobody",
            json!({"role": "msp-tech"}),
            StatusCode::NOT_FOUND,
            "user",
        ),
        // The last msp-admin stays one.
        (
            &admin,
            "admin",
            json!({"role": "msp-tech"}),
            StatusCode::CONFLICT,
            "last msp-admin",
        ),
    ] {
        let a = call(&fx.app, Method::PUT, &put(user), who, Some(b.clone())).await;
        assert_eq!(a.status, status, "{user} {b}: {}", a.text);
        assert!(
            a.text.contains(needle),
            "{user} {b}: {needle:?} not in {}",
            a.text
        );
    }
    assert!(
        snapshot(&fx.db) == before,
        "the refusals changed the database"
    );

    // A tenant admin promotes a viewer of its tenant (its tenant implied).
    let a = call(
        &fx.app,
        Method::PUT,
        &put("acme-viewer"),
        &acme_admin,
        Some(json!({"role": "tenant-admin"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json()[0]["role"], "tenant-admin", "{}", a.text);
    // Its sessions ended: it logs in again with the new role.
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/auth/me",
        &viewer_session,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text);
    let a = call(
        &fx.app,
        Method::GET,
        "/api/v1/auth/me",
        &login(&fx.app, "acme-viewer").await,
        None,
    )
    .await;
    assert_eq!(a.json()["role"], "tenant-admin", "{}", a.text);

    // The MSP admin moves a user to another tenant; each tenant's audit names only itself.
    let a = call(
        &fx.app,
        Method::PUT,
        &put("acme-viewer"),
        &admin,
        Some(json!({"role": "tenant-viewer", "tenant": "globex"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(
        (&a.json()[0]["role"], &a.json()[0]["tenant"]),
        (&json!("tenant-viewer"), &json!("globex"))
    );
    let a = call(
        &fx.app,
        Method::PUT,
        &put("tech"),
        &admin,
        Some(json!({"role": "msp-admin"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    // With a second msp-admin, the first may step down.
    let a = call(
        &fx.app,
        Method::PUT,
        &put("admin"),
        &admin,
        Some(json!({"role": "msp-tech"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let c = Db::open(&fx.db).unwrap();
    let rows: Vec<(String, Option<String>, String)> = fx_db::audit_with_tenant(&c, "user.role");
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_deref()),
        ("acme-admin", Some("acme"))
    );
    let moved: Vec<_> = rows[1..3]
        .iter()
        .map(|r| (r.1.as_deref(), r.2.as_str()))
        .collect();
    for (tenant, detail) in &moved {
        let other = if *tenant == Some("acme") {
            "globex"
        } else {
            "acme"
        };
        assert!(
            !detail.contains(other),
            "{tenant:?}'s audit row names {other}: {detail}"
        );
    }
    assert!(
        moved.iter().any(|(t, _)| *t == Some("acme"))
            && moved.iter().any(|(t, _)| *t == Some("globex")),
        "{moved:?}"
    );
    // globex's admin sees the move in, acme's admin does not see globex.
    let a = call(&fx.app, Method::GET, "/api/v1/audit", &acme_admin, None).await;
    assert!(!a.text.contains("globex"), "{}", a.text);
}
