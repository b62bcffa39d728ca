//! Users and their roles, managed within the caller's scope.

use super::*;

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
