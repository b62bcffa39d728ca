//! Rules and maintenance windows: the engine's set, scoped to the tenant.

use super::*;

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
    let hash = crate::console::auth::hash_password(PW).unwrap();
    crate::console::auth::add_user(
        &mut c,
        "test",
        "admin",
        &hash,
        crate::console::auth::Role::MspAdmin,
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
