//! Conformance of [`ConsoleQuery`] and [`ScopeLookup`] (issue 17 item 1): what the
//! console relies on, against the traits only, on the standard fixture (see
//! [`super`]). Tenant scoping first: another tenant's device, site, counts and
//! incidents are absent, as if they did not exist.

use super::super::AuditEntry;
use super::super::api::{AdminStore, AlertStore};
use super::super::console_query::{
    AckResult, ConsoleQuery, DeviceFilter, FleetWindow, IncidentFilter, PageAt, RolelessToken,
    ScopeLookup, SiteCounts, TenantCounts, UnackResult,
};

const ALL: PageAt = PageAt {
    page: 1,
    per_page: 50,
};

fn ids<S: ScopeLookup>(s: &S) -> (i64, i64) {
    let acme = s.tenant_id("acme").unwrap().expect("acme exists");
    let globex = s.tenant_id("globex").unwrap().expect("globex exists");
    (acme, globex)
}

fn audit(action: &'static str) -> AuditEntry {
    AuditEntry::new("user:alice", action, "alert", serde_json::json!({}))
}

/// Tenants, sites, devices and fleet counts answer within the scope only; a
/// revoked device is in no count and no list, but can still be looked up.
pub(crate) fn console_reads_are_scoped_to_the_tenant<S: ConsoleQuery + ScopeLookup>(s: S) {
    let (acme, globex) = ids(&s);
    assert_eq!(s.tenant_id("initech").unwrap(), None);
    assert_eq!(s.tenant_name(acme).unwrap().as_deref(), Some("acme"));
    let t = |name: &str, devices, sites| TenantCounts {
        name: name.into(),
        devices,
        sites,
    };
    assert_eq!(
        s.tenants(None).unwrap(),
        vec![t("acme", 1, 1), t("globex", 0, 0)],
        "d2 is revoked"
    );
    assert_eq!(s.tenants(Some(globex)).unwrap(), vec![t("globex", 0, 0)]);
    let hq = SiteCounts {
        tenant: "acme".into(),
        name: "hq".into(),
        devices: 1,
    };
    assert_eq!(s.sites(None).unwrap(), vec![hq.clone()]);
    assert_eq!(s.sites(Some(acme)).unwrap(), vec![hq]);
    assert!(s.sites(Some(globex)).unwrap().is_empty());

    let d1 = s.device("d1", Some(acme)).unwrap().expect("d1 is acme's");
    assert_eq!(
        (d1.tenant.as_str(), d1.site.as_deref(), d1.last_seen_ms),
        ("acme", Some("hq"), 500)
    );
    assert_eq!(s.device("d1", None).unwrap(), Some(d1.clone()));
    assert_eq!(
        s.device("d1", Some(globex)).unwrap(),
        None,
        "another tenant's"
    );
    assert!(
        s.device("d2", Some(acme)).unwrap().is_some(),
        "revoked: still found"
    );
    assert_eq!(s.device("d9", None).unwrap(), None);

    let list = |f: DeviceFilter<'_>| {
        let p = s.devices(&f, ALL).unwrap();
        assert_eq!(p.total, p.items.len() as i64, "{f:?}");
        p.items.into_iter().map(|d| d.id).collect::<Vec<_>>()
    };
    let of = |scope| DeviceFilter {
        scope,
        online_since_ms: 400,
        ..Default::default()
    };
    assert_eq!(list(of(None)), ["d1"], "revoked devices are not listed");
    assert_eq!(list(of(Some(acme))), ["d1"]);
    assert!(list(of(Some(globex))).is_empty());
    assert_eq!(
        list(DeviceFilter {
            site: Some("hq"),
            os_family: Some("windows"),
            online: Some(true),
            ..of(Some(acme))
        }),
        ["d1"]
    );
    assert!(
        list(DeviceFilter {
            online: Some(false),
            ..of(None)
        })
        .is_empty()
    );
    assert!(
        list(DeviceFilter {
            tag: Some("prod"),
            ..of(None)
        })
        .is_empty(),
        "only d2 (revoked) is tagged"
    );
    assert!(
        list(DeviceFilter {
            site: Some("hq"),
            ..of(Some(globex))
        })
        .is_empty()
    );
    assert!(
        list(DeviceFilter {
            hostname: Some("%"),
            ..of(None)
        })
        .is_empty(),
        "a search is a substring, not a pattern"
    );

    let window = FleetWindow {
        online_since_ms: 400,
        stale_before_ms: 450,
        overdue_before_ms: 60,
    };
    let fleet = s.fleet(None, &window).unwrap();
    let tenants: Vec<_> = fleet.iter().map(|f| f.tenant.as_str()).collect();
    assert_eq!(tenants, ["acme", "globex"]);
    let a = &fleet[0];
    assert_eq!(
        (a.devices, a.online, a.stale),
        (1, 1, 0),
        "d1 counted, revoked d2 not"
    );
    // d1's latest patch report (2) failed: no reboot, nothing pending from it.
    assert_eq!(
        (a.reboot_pending, a.security_pending, a.security_overdue),
        (0, 0, 0)
    );
    assert_eq!(s.pending_updates("d1").unwrap(), vec![]);
    assert_eq!(s.patch_status("d1").unwrap().map(|p| p.seq), Some(2));
    let g = s.fleet(Some(globex), &window).unwrap();
    assert_eq!(g.len(), 1);
    assert_eq!((g[0].tenant.as_str(), g[0].devices), ("globex", 0));
    let offline = s
        .fleet(
            Some(acme),
            &FleetWindow {
                online_since_ms: 501,
                stale_before_ms: 501,
                ..window
            },
        )
        .unwrap();
    assert_eq!((offline[0].online, offline[0].stale), (0, 1));
}

/// A page holds at most `per_page` rows from its offset; `total` counts the whole
/// list, whichever page is asked for.
pub(crate) fn console_lists_are_paged<S: ConsoleQuery + AlertStore + ScopeLookup>(mut s: S) {
    let (acme, globex) = ids(&s);
    let mut other = super::firing();
    other.instance.dimension = "C:".into();
    let opened = s.save_round(&[super::firing(), other], 10).unwrap();
    assert_eq!(opened.len(), 2);
    let newest = opened.iter().map(|o| o.incident).max().unwrap();
    let oldest = opened.iter().map(|o| o.incident).min().unwrap();
    let active = |scope| IncidentFilter {
        scope,
        state: "active",
        severity: None,
        device: None,
        site: None,
    };
    let page = |f: IncidentFilter<'_>, page| {
        let p = s.incidents(&f, PageAt { page, per_page: 1 }).unwrap();
        (p.items.iter().map(|i| i.id).collect::<Vec<_>>(), p.total)
    };
    assert_eq!(page(active(None), 1), (vec![newest], 2), "newest first");
    assert_eq!(page(active(Some(acme)), 2), (vec![oldest], 2));
    assert_eq!(page(active(None), 3), (vec![], 2));
    assert_eq!(
        page(active(Some(globex)), 1),
        (vec![], 0),
        "another tenant's"
    );
    let count = |f: IncidentFilter<'_>| s.incidents(&f, ALL).unwrap().total;
    assert_eq!(
        count(IncidentFilter {
            state: "resolved",
            ..active(None)
        }),
        0
    );
    assert_eq!(
        count(IncidentFilter {
            state: "open",
            severity: Some("warning"),
            device: Some("d1"),
            site: Some("hq"),
            ..active(Some(acme))
        }),
        2
    );
    assert_eq!(
        count(IncidentFilter {
            severity: Some("critical"),
            ..active(None)
        }),
        0
    );
    assert_eq!(
        count(IncidentFilter {
            state: "all",
            site: Some("hq"),
            ..active(Some(globex))
        }),
        0
    );

    let devices = s
        .devices(
            &DeviceFilter {
                scope: Some(acme),
                ..Default::default()
            },
            PageAt {
                page: 2,
                per_page: 1,
            },
        )
        .unwrap();
    assert_eq!((devices.items.len(), devices.total), (0, 1));
    let d1 = s.device("d1", None).unwrap().unwrap();
    assert_eq!(d1.open_alerts, 2);
    let sw = s.software_page("d1", None, ALL).unwrap();
    assert_eq!((sw.items.len(), sw.total), (0, 0));
}

/// Ack then ack again is "already" and writes nothing more; an open incident
/// cannot be un-acknowledged; another tenant's incident is not found and left as
/// it was. Each change writes its feed event.
pub(crate) fn an_incident_is_acked_once_and_unacked_only_when_acked<
    S: ConsoleQuery + AlertStore + ScopeLookup,
>(
    mut s: S,
) {
    let (acme, globex) = ids(&s);
    let id = s.save_round(&[super::firing()], 10).unwrap()[0].incident;

    let ack = audit("alert.ack");
    let unack = audit("alert.unack");
    let got = s.unack_incident(id, Some(acme), &unack, 20).unwrap();
    assert!(
        matches!(&got, UnackResult::NotAcked { state } if state == "open"),
        "{got:?}"
    );
    let got = s
        .ack_incident(id, Some(globex), Some("x"), &ack, 20)
        .unwrap();
    assert!(matches!(got, AckResult::NotFound), "{got:?}");
    let got = s.ack_incident(id + 100, None, None, &ack, 20).unwrap();
    assert!(matches!(got, AckResult::NotFound), "{got:?}");
    let open = s.incident_detail(id, None).unwrap().unwrap();
    assert_eq!(open.incident.state, "open", "refusals changed nothing");

    let AckResult::Done(acked) = s
        .ack_incident(id, Some(acme), Some("on it"), &ack, 30)
        .unwrap()
    else {
        panic!("the first ack is done");
    };
    assert_eq!(
        (
            acked.state.as_str(),
            acked.acked_ms,
            acked.acked_by.as_deref(),
            acked.ack_note.as_deref()
        ),
        ("acked", Some(30), Some("user:alice"), Some("on it"))
    );
    let got = s.ack_incident(id, Some(acme), None, &ack, 31).unwrap();
    assert!(matches!(got, AckResult::Already), "{got:?}");
    assert!(s.incident_detail(id, Some(globex)).unwrap().is_none());
    let got = s.unack_incident(id, Some(globex), &unack, 40).unwrap();
    assert!(matches!(got, UnackResult::NotFound), "{got:?}");

    let UnackResult::Done(reopened) = s.unack_incident(id, Some(acme), &unack, 40).unwrap() else {
        panic!("an acked incident can be unacked");
    };
    assert_eq!(
        (
            reopened.state.as_str(),
            reopened.acked_by.as_deref(),
            reopened.loop_start_ms,
            reopened.loop_no
        ),
        ("open", None, 40, acked.loop_no + 1)
    );
    let got = s.unack_incident(id, None, &unack, 41).unwrap();
    assert!(
        matches!(&got, UnackResult::NotAcked { state } if state == "open"),
        "{got:?}"
    );

    let detail = s.incident_detail(id, Some(acme)).unwrap().unwrap();
    let kinds: Vec<_> = detail.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["opened", "acked", "reopened"]);
    assert!(!detail.history.is_empty(), "the alert's transitions");
    let feed = s.feed_page(0, Some("acme"), false, 100).unwrap();
    let kinds: Vec<_> = feed.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["opened", "acked", "reopened"]);
    assert!(feed.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    assert_eq!(s.feed_page(feed[0].id, None, false, 1).unwrap(), feed[1..2]);
    assert!(
        s.feed_page(0, Some("globex"), false, 100)
            .unwrap()
            .is_empty()
    );
    assert!(
        s.feed_page(0, None, true, 100).unwrap().is_empty(),
        "warnings"
    );
}

/// The `/metrics` figures count what is not revoked, resolved or expired; a
/// role-less token is found valid until revoked.
pub(crate) fn scrape_figures_and_role_less_tokens<S: ConsoleQuery + AdminStore + AlertStore>(
    mut s: S,
) {
    let f = s.scrape_figures(400, 0).unwrap();
    assert_eq!(
        (
            f.devices_online,
            f.devices_offline,
            f.sessions,
            f.feed_events
        ),
        (1, 0, 0, 0)
    );
    assert!(f.incidents_open.is_empty() && f.outbox.is_empty() && f.notify_attempts.is_empty());
    s.save_round(&[super::firing()], 10).unwrap();
    let f = s.scrape_figures(501, 0).unwrap();
    assert_eq!((f.devices_online, f.devices_offline), (0, 1));
    assert_eq!(f.incidents_open, vec![("warning".to_string(), 1)]);
    assert!(f.feed_events > 0);

    assert_eq!(s.roleless_token("aa").unwrap(), None);
    let id = s.create_api_token("prom", "aa", None, 70).unwrap();
    assert_eq!(s.roleless_token("aa").unwrap(), Some(RolelessToken::Valid));
    s.revoke_api_token(id, 72).unwrap();
    assert_eq!(
        s.roleless_token("aa").unwrap(),
        Some(RolelessToken::Revoked)
    );
}

/// The suite instantiated for SQLite, on the standard fixture.
mod sqlite {
    macro_rules! conformance {
        ($($name:ident),* $(,)?) => {$(
            #[test]
            fn $name() {
                let (_dir, db) = super::super::sqlite_fixture();
                super::$name(db);
            }
        )*};
    }
    conformance!(
        console_reads_are_scoped_to_the_tenant,
        console_lists_are_paged,
        an_incident_is_acked_once_and_unacked_only_when_acked,
        scrape_figures_and_role_less_tokens,
    );
}
