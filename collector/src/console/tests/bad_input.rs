//! Bad input to any route is a clear 4xx and changes nothing.

use super::*;

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
    let big = json!({"note": "x".repeat(crate::console::MAX_BODY_BYTES + 10)});
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
