//! Conformance of [`AdminStore`] and [`Names`]: the running collector's admin
//! needs (revocations, renew and patch-check requests, certificates) and the
//! administrative commands.

use crate::store::api::{AdminStore, Names};

/// Names the CLI checks before it acts.
pub(crate) fn names_are_checked<S: Names>(s: S) {
    assert!(s.tenant_exists("acme").unwrap());
    assert!(!s.tenant_exists("nope").unwrap());
    assert!(
        s.device_exists("d2").unwrap(),
        "revoked devices still exist"
    );
    assert!(!s.device_exists("d9").unwrap());
}

/// The running collector's admin needs: revocations, renew and patch-check
/// requests read by id (and still there after a reopen: durable), certificate
/// checks; a certificate recorded twice is refused as a `Conflict`.
pub(crate) fn revocations_are_durable_and_a_duplicate_certificate_conflicts<S: AdminStore>(
    s: S,
    reopen: impl FnOnce(S) -> S,
) {
    let revs = s.revocations_since(0).unwrap();
    assert_eq!(
        revs.iter()
            .map(|r| (r.id, r.device_id.as_str(), r.serial.as_deref()))
            .collect::<Vec<_>>(),
        vec![(1, "d2", None)]
    );
    assert!(s.revocations_since(1).unwrap().is_empty(), "read by id");
    assert_eq!(s.renew_requests_since(0).unwrap(), vec![(1, "d1".into())]);
    assert_eq!(
        s.patch_check_requests_since(0).unwrap(),
        vec![(1, "d1".into())]
    );
    assert!(s.certificate_issued("d1", "01").unwrap());
    assert!(
        !s.certificate_issued("d2", "01").unwrap(),
        "another device's"
    );
    assert!(s.device_in_good_standing("d1").unwrap());
    assert!(!s.device_in_good_standing("d2").unwrap(), "revoked");
    assert!(
        matches!(
            s.device_in_good_standing("d9"),
            Err(crate::store::admin::AdminError::NoDevice(d)) if d == "d9"
        ),
        "unknown: refused, naming it"
    );
    let cert = crate::store::admin::IssuedCert {
        cert_pem: "PEM".into(),
        serial_hex: "03".into(),
        not_after_ms: 10_000,
    };
    s.record_certificate("d1", &cert, "renew", 900).unwrap();
    let again = s.record_certificate("d1", &cert, "renew", 901).unwrap_err();
    assert!(
        matches!(
            &again,
            crate::store::admin::AdminError::Store(crate::store::StoreError::Conflict { .. })
        ),
        "{again:?}"
    );
    let s = reopen(s);
    assert_eq!(s.revocations_since(0).unwrap().len(), 1, "after a reopen");
    assert!(s.certificate_issued("d1", "03").unwrap(), "after a reopen");
}

/// The administrative commands (tenant, site, token, device, API token): what
/// they create is listed; a duplicate, a bad name or an unknown one is refused
/// with the error naming it; device changes land where the running collector
/// polls them; a removal is described, done once, and seen as done.
pub(crate) fn administrative_commands<S: AdminStore>(mut s: S) {
    use crate::store::admin::{AdminError, NewToken};
    s.create_tenant("initech", 10).unwrap();
    assert!(matches!(
        s.create_tenant("initech", 11),
        Err(AdminError::TenantExists(t)) if t == "initech"
    ));
    assert!(matches!(
        s.create_tenant("Bad Name", 11),
        Err(AdminError::BadName { .. })
    ));
    let tenants: Vec<(String, i64, i64)> = s
        .list_tenants()
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.sites, t.devices))
        .collect();
    assert!(tenants.contains(&("acme".into(), 1, 2)), "{tenants:?}");
    assert!(tenants.contains(&("initech".into(), 0, 0)), "{tenants:?}");
    s.create_site("initech", "lab", 12).unwrap();
    assert!(matches!(
        s.create_site("initech", "lab", 13),
        Err(AdminError::SiteExists { .. })
    ));
    assert!(matches!(
        s.create_site("nope", "lab", 13),
        Err(AdminError::NoTenant(t)) if t == "nope"
    ));
    let sites: Vec<(String, String)> = s
        .list_sites(Some("initech"))
        .unwrap()
        .into_iter()
        .map(|x| (x.tenant, x.name))
        .collect();
    assert_eq!(sites, vec![("initech".into(), "lab".into())]);
    s.insert_token(
        &NewToken {
            id_hex: "ab12".into(),
            secret_sha256: [7; 32],
            tenant: "initech".into(),
            site: Some("lab".into()),
            replace_device_id: None,
            expires_ms: 1_000_000,
            max_uses: 3,
        },
        20,
    )
    .unwrap();
    s.revoke_token("ab12", 30).unwrap();
    let t = s
        .list_tokens()
        .unwrap()
        .into_iter()
        .find(|t| t.id == "ab12")
        .unwrap();
    assert_eq!(
        (
            t.tenant.as_str(),
            t.site.as_deref(),
            t.max_uses,
            t.revoked_ms
        ),
        ("initech", Some("lab"), 3, Some(30))
    );
    assert!(matches!(
        s.revoke_token("ffff", 31),
        Err(AdminError::NoToken(t)) if t == "ffff"
    ));
    let mut ids: Vec<String> = s
        .list_devices()
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["d1", "d2"]);
    s.request_renew("d1", 40).unwrap();
    s.request_patch_check("d1", 40).unwrap();
    assert_eq!(s.renew_requests_since(1).unwrap(), vec![(2, "d1".into())]);
    assert_eq!(
        s.patch_check_requests_since(1).unwrap(),
        vec![(2, "d1".into())]
    );
    assert!(matches!(
        s.request_renew("d9", 40),
        Err(AdminError::NoDevice(d)) if d == "d9"
    ));
    let web = vec!["web".to_owned()];
    assert_eq!(s.tag_device("d1", &web, 41).unwrap(), web);
    assert!(
        s.tag_device("d1", &web, 42).unwrap().is_empty(),
        "kept once"
    );
    assert!(matches!(
        s.tag_device("d1", &["Not A Tag".to_owned()], 42),
        Err(AdminError::BadTag(_))
    ));
    assert_eq!(
        s.untag_device("d1", &["web".to_owned(), "nope".to_owned()])
            .unwrap(),
        web
    );
    s.revoke_device("d1", 50).unwrap();
    assert!(
        s.revocations_since(1)
            .unwrap()
            .iter()
            .any(|r| r.device_id == "d1")
    );
    assert!(matches!(
        s.describe_removal("d1").unwrap(),
        Some((t, _, true, false)) if t == "acme"
    ));
    assert_eq!(s.describe_removal("d9").unwrap(), None);
    let r = s.remove_device("d1", false, 60).unwrap();
    assert_eq!((r.tenant.as_str(), r.already), ("acme", false));
    assert!(matches!(
        s.describe_removal("d1").unwrap(),
        Some((_, _, true, true))
    ));
    assert!(s.remove_device("d1", false, 61).unwrap().already);
    assert!(matches!(
        s.remove_device("d9", false, 61),
        Err(AdminError::NoDevice(_))
    ));
    let a = s.create_api_token("ci", "aa", None, 70).unwrap();
    let b = s
        .create_api_token("tail", "bb", Some("alerts tail"), 71)
        .unwrap();
    assert!(a > 0 && b > a, "{a} {b}");
    s.revoke_api_token(a, 72).unwrap();
}
