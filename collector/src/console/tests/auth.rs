//! Logins, sessions, API tokens and the credential `/metrics` needs.

use super::*;

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

/// The ids of a list answer's items.
fn ids_of(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
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
    let (_, msp) = crate::console::tokens::create_token(
        &mut c,
        "test",
        "prom",
        crate::console::auth::Role::MspTech,
        None,
        now(),
    )
    .unwrap();
    let acme = crate::console::auth::tenant_id(&c, "acme").unwrap();
    let (_, tenant) = crate::console::tokens::create_token(
        &mut c,
        "test",
        "t",
        crate::console::auth::Role::TenantAdmin,
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
