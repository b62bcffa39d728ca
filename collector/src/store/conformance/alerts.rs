//! Conformance of [`AlertStore`]'s rounds (issue 17 item 1): what a round saves
//! loads back, history, acks, the alert list's filters, incidents opened once per
//! firing, and the devices, tags and revocations the engine loads.

use crate::store::api::{AckOutcome, AlertFilter, AlertStore, PatchRow, RecordEvent, RecordRow};

use super::{change, firing, transition};

fn alert_id<S: AlertStore>(s: &S) -> i64 {
    s.list_alerts(&AlertFilter {
        all: true,
        ..Default::default()
    })
    .unwrap()[0]
        .id
}

/// A saved round loads back as it was saved (NaN and infinities stored finite).
pub(crate) fn a_round_loads_back_identically<S: AlertStore>(mut s: S) {
    let mut c = firing();
    c.instance.last_value = f64::INFINITY;
    let logged = s.save_round(std::slice::from_ref(&c), 10).unwrap();
    assert_eq!(logged.len(), 1, "the firing opened one incident");
    assert!(logged[0].opened);
    let loaded = s.load_instances().unwrap();
    let mut want = c.instance.clone();
    want.last_value = 1e300;
    assert_eq!(loaded, vec![want]);
    assert!(s.save_round(&[], 11).unwrap().is_empty(), "an empty round");
}

/// History accumulates across rounds, in time order, filtered by device/tenant.
pub(crate) fn history_accumulates<S: AlertStore>(mut s: S) {
    s.save_round(&[firing()], 10).unwrap();
    let mut flag = change("firing", vec![]);
    flag.records.push(RecordRow {
        event: RecordEvent::Flag("stale"),
        ..transition(7, "firing", "firing")
    });
    s.save_round(&[flag], 11).unwrap();
    s.save_round(
        &[change("ok", vec![transition(40, "recovering", "ok")])],
        40,
    )
    .unwrap();
    let h = s.alert_history(Some("d1"), None).unwrap();
    let got: Vec<_> = h
        .iter()
        .map(|r| {
            (
                r.at_ms,
                r.event.as_str(),
                r.from_state.as_deref(),
                r.to_state.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "transition", Some("ok"), "pending"),
            (5, "transition", Some("pending"), "firing"),
            (7, "stale", None, "firing"),
            (40, "transition", Some("recovering"), "ok"),
        ]
    );
    assert_eq!(s.alert_history(None, Some("acme")).unwrap().len(), 4);
    assert!(s.alert_history(None, Some("globex")).unwrap().is_empty());
    assert!(s.alert_history(Some("d2"), None).unwrap().is_empty());
}

/// An ack holds while the alert fires, is refused twice, and clears once it is OK.
pub(crate) fn ack_clears_on_ok<S: AlertStore>(mut s: S) {
    s.save_round(&[firing()], 10).unwrap();
    let id = alert_id(&s);
    assert_eq!(s.ack_alert(id, "alice", 20).unwrap(), AckOutcome::Acked);
    assert_eq!(
        s.ack_alert(id, "bob", 21).unwrap(),
        AckOutcome::AlreadyAcked
    );
    assert_eq!(
        s.ack_alert(999, "bob", 21).unwrap(),
        AckOutcome::NoSuchAlert
    );
    s.save_round(&[change("firing", vec![])], 30).unwrap();
    let rows = s.list_alerts(&AlertFilter::default()).unwrap();
    assert_eq!(
        rows[0].acked_by.as_deref(),
        Some("alice"),
        "still firing: kept"
    );
    s.save_round(
        &[change("ok", vec![transition(40, "recovering", "ok")])],
        40,
    )
    .unwrap();
    assert!(
        s.list_alerts(&AlertFilter::default()).unwrap().is_empty(),
        "ok is not listed"
    );
    let all = s
        .list_alerts(&AlertFilter {
            all: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!((all[0].acked_ms, all[0].acked_by.as_deref()), (None, None));
    assert_eq!(s.ack_alert(id, "bob", 50).unwrap(), AckOutcome::NotActive);
    let h = s.alert_history(Some("d1"), None).unwrap();
    assert!(h.iter().any(|r| (r.at_ms, r.event.as_str()) == (20, "ack")));
}

/// The list filters: state, severity at least, tenant, device.
pub(crate) fn alerts_list_by_filter<S: AlertStore>(mut s: S) {
    s.save_round(&[firing()], 10).unwrap();
    let n = |f: AlertFilter<'_>| s.list_alerts(&f).unwrap().len();
    assert_eq!(
        n(AlertFilter {
            state: Some("firing"),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        n(AlertFilter {
            state: Some("pending"),
            ..Default::default()
        }),
        0
    );
    let sev = |min| AlertFilter {
        min_severity: Some(min),
        ..Default::default()
    };
    assert_eq!(n(sev("warning")), 1, "a warning is at least a warning");
    assert_eq!(n(sev("critical")), 0, "a warning is not critical");
    assert_eq!(
        n(AlertFilter {
            tenant: Some("globex"),
            ..Default::default()
        }),
        0
    );
    assert_eq!(
        n(AlertFilter {
            device: Some("d1"),
            ..Default::default()
        }),
        1
    );
}

/// One incident per firing episode: a flap back to firing opens no second one;
/// OK resolves it; the next firing opens a new one.
pub(crate) fn an_incident_opens_once_per_firing_and_resolves<S: AlertStore>(mut s: S) {
    let opened = s.save_round(&[firing()], 10).unwrap();
    assert_eq!(opened.len(), 1);
    let first = opened[0].incident;
    let again = s
        .save_round(
            &[change(
                "firing",
                vec![transition(8, "recovering", "firing")],
            )],
            12,
        )
        .unwrap();
    assert!(again.is_empty(), "a flap back opens nothing: {again:?}");
    let resolved = s
        .save_round(
            &[change("ok", vec![transition(40, "recovering", "ok")])],
            40,
        )
        .unwrap();
    assert_eq!(resolved.len(), 1);
    assert_eq!(
        (
            resolved[0].incident,
            resolved[0].opened,
            resolved[0].lasted_ms
        ),
        (first, false, 35)
    );
    let next = s
        .save_round(
            &[change("firing", vec![transition(50, "pending", "firing")])],
            50,
        )
        .unwrap();
    assert_eq!(next.len(), 1);
    assert!(next[0].opened && next[0].incident != first, "{next:?}");
}

/// Devices load with their latest *good* patch report, tenant, site, certificate.
pub(crate) fn devices_load_with_their_latest_good_patch_report<S: AlertStore>(s: S) {
    let mut devs = s.load_devices().unwrap();
    devs.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(devs.len(), 2);
    assert_eq!(devs[0].tenant, "acme");
    assert_eq!(devs[0].site.as_deref(), Some("hq"));
    assert_eq!(devs[0].cert_not_after_ms, Some(9_000));
    assert_eq!(
        devs[0].patch,
        Some(PatchRow {
            oldest_security_ms: Some(50),
            reboot_since_ms: Some(100)
        }),
        "the failed report 2 is skipped; reboot since unknown = report time"
    );
    assert_eq!(devs[1].patch, None);
    assert_eq!(devs[1].last_seen_ms, 600);
    assert_eq!(s.site_of("d1").unwrap().as_deref(), Some("hq"));
    assert_eq!(s.site_of("d2").unwrap(), None);
    assert_eq!(s.site_of("nope").unwrap(), None);
    assert_eq!(s.cert_expiry_of("d1").unwrap(), Some(9_000));
    assert_eq!(s.cert_expiry_of("d2").unwrap(), None);
    assert_eq!(s.load_cert_expiries().unwrap(), vec![("d1".into(), 9_000)]);
}

/// Revocations (made by `device revoke` in another process) are seen, and tags.
pub(crate) fn revoked_devices_and_tags_are_read<S: AlertStore>(s: S) {
    assert_eq!(s.load_revoked_devices().unwrap(), vec!["d2".to_string()]);
    let tags = s.load_tags().unwrap();
    assert_eq!(tags.get("d2"), Some(&vec!["db".to_string(), "prod".into()]));
    assert_eq!(tags.get("d1"), None);
}
