//! The fleet page's counts per tenant.

use super::*;

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
