//! Alerts: ack and unack, the event stream, snooze and silences.

use super::*;

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
