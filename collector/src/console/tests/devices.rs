//! The device list (filters, pages, series) and the device page.

use super::*;

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
