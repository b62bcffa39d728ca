//! The enrollment page's defaults and enrollment tokens.

use super::*;

#[test]
fn enrollment_defaults_prefer_an_operator_name_with_the_configured_ports() {
    use crate::console::{Listeners, enroll::defaults};
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
    let listeners = crate::console::Listeners {
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
