//! The walk over every documented route (issue 15): another tenant's user sees
//! nothing and changes nothing, a viewer changes nothing; the OpenAPI document is
//! 3.1 and every route in it answers.

use super::*;

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
    let doc = serde_json::to_value(crate::console::openapi()).unwrap();
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
    assert_eq!(
        doc,
        serde_json::to_value(crate::console::openapi()).unwrap()
    );
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
