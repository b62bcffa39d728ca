//! The store conformance suite (issue 17 item 1): what callers rely on, written
//! against the traits of [`super::api`] only — never SQL — so a second backend
//! is proved by instantiating the same suite for it (one `#[test]` per behaviour
//! per backend; see [`sqlite`] for how).
//!
//! Every test gets a fresh store holding the **standard fixture**, which a backend
//! writes in its own way ([`sqlite_fixture`] for SQLite):
//! - tenants `acme` and `globex`; site `hq` in `acme`;
//! - device `d1` (acme, windows "Windows 11", last seen 500) with patch report 1
//!   (time 100, ok, reboot required, since unknown) whose pending security updates
//!   were first seen at 50 and "unknown" (0), and report 2 (time 200) that failed;
//! - device `d2` (acme, linux, last seen 600), no patch report, revoked at 700,
//!   tagged `prod` and `db`; a certificate of d1 expiring at 9,000 and one at 8,000
//!   (serials `01`, `02`);
//! - revocation 1 (d2, every certificate), renew request 1 (d1), patch-check
//!   request 1 (d1).

use super::StoreError;
use super::api::{
    AckOutcome, AlertFilter, AlertStore, InstanceChange, InstanceRow, Names, PatchRow, RecordEvent,
    RecordRow, RemoveOutcome, SilenceInsert, SilenceRefusal,
};
use super::api::{AdminStore, DeliveryAttempt, DeliveryResult, NotifyStore, Outcome};
use super::escalation_sql::EscalationStore;

// --- store7a ---
mod console_query;
// --- end store7a ---

fn instance(state: &str) -> InstanceRow {
    InstanceRow {
        rule: "cpu".into(),
        device_id: "d1".into(),
        dimension: String::new(),
        tenant: "acme".into(),
        state: state.into(),
        severity: (state != "ok").then(|| "warning".into()),
        since_ms: 5,
        breach_start_ms: 1,
        breach_samples: 3,
        recover_start_ms: 0,
        last_sample_ms: 5,
        last_arrival_ms: 6,
        last_value: 97.5,
        stale: false,
        flapping: true,
        suppressed: false,
        changes: vec![1, 5],
    }
}

fn transition(at_ms: i64, from: &'static str, to: &'static str) -> RecordRow {
    RecordRow {
        at_ms,
        event: RecordEvent::Transition { from, to },
        state: to,
        severity: Some("warning"),
        value: 95.0,
        suppressed: false,
    }
}

fn change(state: &str, records: Vec<RecordRow>) -> InstanceChange {
    InstanceChange {
        instance: instance(state),
        records,
    }
}

fn firing() -> InstanceChange {
    change(
        "firing",
        vec![
            transition(1, "ok", "pending"),
            transition(5, "pending", "firing"),
        ],
    )
}

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

fn silence(device: Option<&str>) -> SilenceInsert {
    SilenceInsert {
        starts_ms: 1000,
        ends_ms: 5000,
        device: device.map(Into::into),
        comment: "disk swap".into(),
        by: "alice".into(),
        ..SilenceInsert::default()
    }
}

/// A silence is listed while it has not ended, then not; lifting keeps the row.
pub(crate) fn a_silence_is_listed_until_it_ends_or_is_lifted<S: AlertStore>(mut s: S) {
    let id = s
        .create_silence(&silence(Some("d1")), 500)
        .unwrap()
        .unwrap();
    let later = SilenceInsert {
        starts_ms: 4000,
        ends_ms: 9000,
        rule: Some("cpu".into()),
        device: None,
        rrule: Some("FREQ=DAILY".into()),
        tz: Some("Europe/Berlin".into()),
        duration_ms: Some(60_000),
        ..silence(None)
    };
    let later = s.create_silence(&later, 500).unwrap().unwrap();
    let ids = |s: &S, now, all| {
        s.silences(now, all)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&s, 2000, false), vec![id, later], "soonest end first");
    let r = &s.silences(2000, false).unwrap()[1];
    assert_eq!(
        (
            r.rrule.as_deref(),
            r.tz.as_deref(),
            r.duration_ms,
            r.created_by.as_str()
        ),
        (
            Some("FREQ=DAILY"),
            Some("Europe/Berlin"),
            Some(60_000),
            "alice"
        )
    );
    assert_eq!(ids(&s, 6000, false), vec![later], "the first one ended");
    assert_eq!(
        s.remove_silence(later, "bob", 6000).unwrap(),
        RemoveOutcome::Removed
    );
    assert_eq!(
        s.remove_silence(later, "bob", 6001).unwrap(),
        RemoveOutcome::AlreadyRemoved
    );
    assert_eq!(
        s.remove_silence(id, "bob", 6001).unwrap(),
        RemoveOutcome::AlreadyEnded
    );
    assert_eq!(
        s.remove_silence(99, "bob", 6001).unwrap(),
        RemoveOutcome::NoSuchSilence
    );
    assert!(ids(&s, 6000, false).is_empty());
    let all = s.silences(6000, true).unwrap();
    assert_eq!(all.len(), 2, "lifted and ended silences stay on record");
    let lifted = all.iter().find(|r| r.id == later).unwrap();
    assert_eq!(
        (lifted.removed_ms, lifted.removed_by.as_deref()),
        (Some(6000), Some("bob"))
    );
}

/// A silence naming what does not exist is refused with the reason; nothing is
/// stored.
pub(crate) fn a_silence_of_unknown_names_is_refused<S: AlertStore>(mut s: S) {
    let refused = |s: &mut S, x: SilenceInsert| s.create_silence(&x, 500).unwrap().unwrap_err();
    assert_eq!(
        refused(
            &mut s,
            SilenceInsert {
                tenant: Some("nope".into()),
                ..silence(None)
            }
        ),
        SilenceRefusal::NoTenant("nope".into())
    );
    assert_eq!(
        refused(
            &mut s,
            SilenceInsert {
                tenant: Some("globex".into()),
                site: Some("hq".into()),
                ..silence(None)
            }
        ),
        SilenceRefusal::NoSite("hq".into(), " in tenant \"globex\"".into())
    );
    assert_eq!(
        refused(&mut s, silence(Some("d9"))),
        SilenceRefusal::NoDevice("d9".into())
    );
    assert_eq!(
        refused(
            &mut s,
            SilenceInsert {
                tenant: Some("globex".into()),
                ..silence(Some("d1"))
            }
        ),
        SilenceRefusal::WrongTenant {
            device: "d1".into(),
            actual: "acme".into(),
            wanted: "globex".into()
        }
    );
    assert!(s.silences(0, true).unwrap().is_empty(), "nothing stored");
    // Known names are accepted.
    let ok = SilenceInsert {
        tenant: Some("acme".into()),
        site: Some("hq".into()),
        ..silence(Some("d1"))
    };
    assert!(s.create_silence(&ok, 500).unwrap().is_ok());
}

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

/// No maintenance window made at run time in the fixture: none loads.
pub(crate) fn no_maintenance_windows_in_the_fixture<S: AlertStore>(s: S) {
    assert!(s.maintenance_windows(0).unwrap().is_empty());
}

fn fire(at_ms: i64, suppressed: bool) -> RecordRow {
    RecordRow {
        suppressed,
        ..transition(at_ms, "pending", "firing")
    }
}

fn episode(records: Vec<RecordRow>) -> InstanceChange {
    let state = records.last().map_or("ok", |r| r.state);
    change(state, records)
}

fn feed_kinds<S: NotifyStore>(s: &S) -> Vec<(i64, String)> {
    s.feed_after(0, 1000)
        .unwrap()
        .into_iter()
        .map(|e| (e.incident_id, e.kind))
        .collect()
}

/// (Moved from `notify::incident`.) A transition opens and resolves its incident
/// in the engine's round; the workflow acks it once, with who, when and a note;
/// every change is a feed event.
pub(crate) fn a_transition_opens_and_resolves_its_incident_in_the_engine_transaction<
    S: AlertStore + NotifyStore,
>(
    mut s: S,
) {
    s.save_round(&[episode(vec![fire(1000, false)])], 1000)
        .unwrap();
    let open = s.incidents(None, false).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].state, "open");
    // Firing again (a flap back from recovering) opens nothing new.
    s.save_round(&[episode(vec![fire(1500, false)])], 1500)
        .unwrap();
    assert_eq!(s.incidents(None, true).unwrap().len(), 1);
    let id = open[0].id;
    assert_eq!(
        s.ack_incident(id, "alice", Some("on it"), 2000).unwrap(),
        Outcome::Done
    );
    assert_eq!(
        s.ack_incident(id, "bob", None, 2100).unwrap(),
        Outcome::Already
    );
    let i = s.incident(id).unwrap().unwrap();
    assert_eq!(
        (i.acked_by.as_deref(), i.ack_note.as_deref(), i.acked_ms),
        (Some("alice"), Some("on it"), Some(2000))
    );
    s.save_round(&[episode(vec![transition(5000, "recovering", "ok")])], 5000)
        .unwrap();
    let i = s.incident(id).unwrap().unwrap();
    assert_eq!((i.state.as_str(), i.resolved_ms), ("resolved", Some(5000)));
    assert_eq!(
        feed_kinds(&s),
        vec![
            (id, "opened".into()),
            (id, "acked".into()),
            (id, "resolved".into())
        ]
    );
    assert_eq!(s.feed_head().unwrap(), 3);
    assert_eq!(
        s.ack_incident(id, "bob", None, 6000).unwrap(),
        Outcome::Resolved
    );
    assert_eq!(s.incident(999).unwrap().map(|i| i.id), None);
    assert_eq!(
        s.resolve_incident(999, "bob", 6000).unwrap(),
        Outcome::NoSuchIncident
    );
}

/// (Moved from `notify::incident`.) Born and healed inside a window: never shown;
/// still firing when the window ends: shown once, steps counted from the end.
pub(crate) fn suppressed_incidents_stay_off_the_feed_until_the_window_ends<
    S: AlertStore + NotifyStore,
>(
    mut s: S,
) {
    s.save_round(&[episode(vec![fire(1000, true)])], 1000)
        .unwrap();
    s.save_round(&[episode(vec![transition(2000, "recovering", "ok")])], 2000)
        .unwrap();
    assert!(feed_kinds(&s).is_empty());
    s.save_round(&[episode(vec![fire(3000, true)])], 3000)
        .unwrap();
    let unsup = RecordRow {
        event: RecordEvent::Suppressed(false),
        ..fire(9000, false)
    };
    s.save_round(&[episode(vec![unsup])], 9000).unwrap();
    let i = &s.incidents(None, false).unwrap()[0];
    assert_eq!((i.suppressed, i.loop_start_ms), (false, 9000));
    assert_eq!(feed_kinds(&s), vec![(i.id, "opened".into())]);
}

/// Snooze is a timed ack; a resolved incident cannot be snoozed or resolved again.
pub(crate) fn snooze_and_resolve_by_hand<S: AlertStore + NotifyStore>(mut s: S) {
    s.save_round(&[episode(vec![fire(1000, false)])], 1000)
        .unwrap();
    let id = s.incidents(None, false).unwrap()[0].id;
    assert_eq!(
        s.snooze_incident(id, "alice", 9000, 2000).unwrap(),
        Outcome::Done
    );
    let i = s.incident(id).unwrap().unwrap();
    assert_eq!(
        (i.state.as_str(), i.snoozed_until_ms, i.acked_by.as_deref()),
        ("snoozed", Some(9000), Some("alice"))
    );
    assert_eq!(s.resolve_incident(id, "bob", 3000).unwrap(), Outcome::Done);
    assert_eq!(
        s.resolve_incident(id, "bob", 3001).unwrap(),
        Outcome::Already
    );
    assert_eq!(
        s.snooze_incident(id, "bob", 9000, 3002).unwrap(),
        Outcome::Resolved
    );
    let i = s.incident(id).unwrap().unwrap();
    assert_eq!(
        (i.resolved_ms, i.resolved_by.as_deref()),
        (Some(3000), Some("bob"))
    );
    let kinds: Vec<String> = feed_kinds(&s).into_iter().map(|(_, k)| k).collect();
    assert_eq!(kinds, ["opened", "snoozed", "resolved"]);
    assert!(s.incidents(None, false).unwrap().is_empty());
    assert_eq!(s.incidents(Some("acme"), true).unwrap().len(), 1);
    assert!(s.incidents(Some("globex"), true).unwrap().is_empty());
}

/// The outbox: a delivery is queued once per idempotency key; a sent one leaves
/// the queue with its Message-ID; a retry waits with its attempt counted; a dead
/// letter leaves the queue; every attempt is a line of the log.
pub(crate) fn outbox_queues_once_then_sent_retry_and_dead_letter<S: AlertStore + NotifyStore>(
    mut s: S,
) {
    s.save_round(&[episode(vec![fire(1000, false)])], 1000)
        .unwrap();
    let i = s.incidents(None, false).unwrap().remove(0);
    assert_eq!(
        s.queue_delivery(&i, "step0.1", "email", "noc@msp.example", 1000)
            .unwrap(),
        1
    );
    assert_eq!(
        s.queue_delivery(&i, "step0.1", "webhook", "pager", 1000)
            .unwrap(),
        1
    );
    assert_eq!(
        s.queue_delivery(&i, "step0.1", "webhook", "pager", 1001)
            .unwrap(),
        0,
        "queued once"
    );
    let pending = s.pending_deliveries().unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(
        pending[0].idem_key,
        format!("{}:step0.1:email:noc@msp.example", i.id)
    );
    assert_eq!(
        (
            pending[1].channel.as_str(),
            pending[1].attempts,
            pending[1].next_attempt_ms
        ),
        ("webhook", 0, 1000)
    );
    let (mail, hook) = (pending[0].id, pending[1].id);
    s.record_deliveries(&[
        DeliveryAttempt {
            outbox_id: mail,
            attempt: 1,
            at_ms: 1100,
            result: DeliveryResult::Sent {
                answer: "250 ok".into(),
                message_id: Some("<m1@tandem>".into()),
            },
        },
        DeliveryAttempt {
            outbox_id: hook,
            attempt: 1,
            at_ms: 1100,
            result: DeliveryResult::Retry {
                answer: "500".into(),
                next_attempt_ms: 6100,
            },
        },
    ])
    .unwrap();
    let pending = s.pending_deliveries().unwrap();
    assert_eq!(pending.len(), 1, "the mail went out");
    assert_eq!(
        (
            pending[0].id,
            pending[0].attempts,
            pending[0].next_attempt_ms
        ),
        (hook, 1, 6100),
        "the retry waits its backoff"
    );
    assert_eq!(
        s.problem_message_id(i.id, "noc@msp.example")
            .unwrap()
            .as_deref(),
        Some("<m1@tandem>")
    );
    assert_eq!(s.problem_message_id(i.id, "pager").unwrap(), None);
    s.record_deliveries(&[DeliveryAttempt {
        outbox_id: hook,
        attempt: 2,
        at_ms: 6200,
        result: DeliveryResult::Dead {
            answer: "404".into(),
        },
    }])
    .unwrap();
    assert!(s.pending_deliveries().unwrap().is_empty(), "dead-lettered");
    let log: Vec<_> = s
        .delivery_log(Some(i.id))
        .unwrap()
        .into_iter()
        .map(|l| (l.outbox_id, l.status, l.attempt, l.result))
        .collect();
    assert_eq!(
        log,
        vec![
            (mail, "sent".into(), Some(1), Some("sent".into())),
            (hook, "dead".into(), Some(1), Some("retry".into())),
            (hook, "dead".into(), Some(2), Some("dead".into())),
        ]
    );
    assert!(s.delivery_log(Some(i.id + 1)).unwrap().is_empty());
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
            Err(super::admin::AdminError::NoDevice(d)) if d == "d9"
        ),
        "unknown: refused, naming it"
    );
    let cert = super::admin::IssuedCert {
        cert_pem: "PEM".into(),
        serial_hex: "03".into(),
        not_after_ms: 10_000,
    };
    s.record_certificate("d1", &cert, "renew", 900).unwrap();
    let again = s.record_certificate("d1", &cert, "renew", 901).unwrap_err();
    assert!(
        matches!(
            &again,
            super::admin::AdminError::Store(super::StoreError::Conflict { .. })
        ),
        "{again:?}"
    );
    let s = reopen(s);
    assert_eq!(s.revocations_since(0).unwrap().len(), 1, "after a reopen");
    assert!(s.certificate_issued("d1", "03").unwrap(), "after a reopen");
}

/// A fresh SQLite store (a real file in a temp dir) with the standard fixture.
/// The dir lives as long as the returned guard.
pub(crate) fn sqlite_fixture() -> (tempfile::TempDir, super::Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = super::Db::open(&dir.path().join("t.db")).unwrap();
    db.connection()
        .execute_batch(
            "INSERT INTO tenants (id, name, created_ms) VALUES (1, 'acme', 0), (2, 'globex', 0);
             INSERT INTO sites (id, tenant_id, name, created_ms) VALUES (1, 1, 'hq', 0);
             INSERT INTO devices (id, tenant_id, site_id, os_family, os_version, first_seen_ms, last_seen_ms)
                VALUES ('d1', 1, 1, 'windows', 'Windows 11', 0, 500);
             INSERT INTO devices (id, tenant_id, os_family, os_version, first_seen_ms, last_seen_ms, revoked_ms)
                VALUES ('d2', 1, 'linux', '', 0, 600, 700);
             INSERT INTO device_tags (device_id, tag, created_ms) VALUES ('d2', 'prod', 0), ('d2', 'db', 0);
             INSERT INTO certificates VALUES ('01', 'd1', 9000, 0, 'enroll'), ('02', 'd1', 8000, 0, 'enroll');
             INSERT INTO revocations (id, device_id, serial, created_ms) VALUES (1, 'd2', NULL, 700);
             INSERT INTO renew_requests (id, device_id, created_ms) VALUES (1, 'd1', 800);
             INSERT INTO patch_check_requests (id, device_id, created_ms) VALUES (1, 'd1', 800);
             INSERT INTO patch_reports VALUES ('d1', 1, 100, 'wu', '', 1, 0, 0);
             INSERT INTO patch_reports VALUES ('d1', 2, 200, 'wu', 'failed', 0, 0, 0);
             INSERT INTO pending_updates VALUES ('d1', 1, 'kb1', '', '', 'security', '', 50);
             INSERT INTO pending_updates VALUES ('d1', 1, 'kb2', '', '', 'security', '', 0);
             INSERT INTO pending_updates VALUES ('d1', 1, 'kb3', '', '', 'other', '', 10);",
        )
        .unwrap();
    (dir, db)
}

/// Appends `n` feed events of a tenant (for tests of feed readers; incidents
/// write them in production).
pub(crate) fn add_feed_events(db: &super::Db, tenant: &str, severity: &str, n: usize) {
    for _ in 0..n {
        db.connection()
            .execute(
                "INSERT INTO feed_events (incident_id, tenant, severity, kind, at_ms, body)
                 VALUES (0, ?1, ?2, 'opened', 0, '{}')",
                [tenant, severity],
            )
            .unwrap();
    }
}

/// `notify test`: each test delivery is a new pending row of incident 0, even
/// to the same recipient twice (keyed by its time), and is recorded like any.
pub(crate) fn a_test_delivery_is_queued_each_time<S: NotifyStore>(mut s: S) {
    let a = s
        .queue_test_delivery("acme", "email", "noc@msp.example", 1000)
        .unwrap();
    let b = s
        .queue_test_delivery("acme", "email", "noc@msp.example", 2000)
        .unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(
        (
            a.incident_id,
            a.transition.as_str(),
            a.attempts,
            a.next_attempt_ms
        ),
        (0, "test", 0, 1000)
    );
    assert_eq!(a.idem_key, "0:test-1000:email:noc@msp.example");
    assert_eq!(s.pending_deliveries().unwrap(), vec![a.clone(), b.clone()]);
    assert!(
        s.queue_test_delivery("acme", "email", "noc@msp.example", 1000)
            .is_err(),
        "the same test twice at the same time is refused"
    );
    s.record_deliveries(&[DeliveryAttempt {
        outbox_id: a.id,
        attempt: 1,
        at_ms: 1100,
        result: DeliveryResult::Dead {
            answer: "550".into(),
        },
    }])
    .unwrap();
    assert_eq!(s.pending_deliveries().unwrap(), vec![b]);
}

/// The escalation's statements: a step is recorded once per loop; its
/// deliveries queue once; a new loop reopens the incident and starts its own
/// steps; resolving cancels the pending problem notices, reads who was told,
/// and marks the resolved notices queued — and a failed transaction leaves
/// nothing behind.
pub(crate) fn escalation_steps_loops_and_resolution<
    S: AlertStore + NotifyStore + EscalationStore,
>(
    mut s: S,
) {
    s.save_round(&[episode(vec![fire(1000, false)])], 1000)
        .unwrap();
    let work = s.pending_work().unwrap();
    assert_eq!(work.len(), 1);
    let (i, resolve_sent) = work[0].clone();
    assert!(!resolve_sent);
    assert_eq!(
        s.incident_with_resolve_sent(i.id)
            .unwrap()
            .map(|(j, r)| (j.id, j.loop_no, r)),
        Some((i.id, 0, false))
    );
    assert!(s.incident_with_resolve_sent(i.id + 99).unwrap().is_none());
    let n = s
        .escalation_tx(|tx| {
            assert!(tx.record_step(i.id, 0, 0, 1000)?);
            assert!(!tx.record_step(i.id, 0, 0, 1001)?, "a step fires once");
            let n = tx.insert_delivery(&i, "step0.0", "email", "noc@msp.example", 1000)?
                + tx.insert_delivery(&i, "step0.0", "webhook", "pager", 1000)?
                + tx.insert_delivery(&i, "step0.0", "webhook", "pager", 1000)?;
            tx.feed_event(i.id, "escalated", 1000)?;
            Ok(n)
        })
        .unwrap();
    assert_eq!(n, 2, "queued once per key");
    assert_eq!(s.fired_steps(i.id, 0).unwrap(), vec![0]);
    assert!(s.fired_steps(i.id, 1).unwrap().is_empty());
    // A failed transaction writes nothing.
    let err = s.escalation_tx(|tx| {
        tx.record_step(i.id, 0, 1, 1500)?;
        Err::<(), _>(StoreError::Invalid {
            what: "test".into(),
        })
    });
    assert!(matches!(err, Err(StoreError::Invalid { .. })));
    assert_eq!(s.fired_steps(i.id, 0).unwrap(), vec![0], "rolled back");
    // The webhook was told; the next loop reopens and notifies it.
    let pending = s.pending_deliveries().unwrap();
    let hook = pending.iter().find(|d| d.channel == "webhook").unwrap().id;
    s.record_deliveries(&[DeliveryAttempt {
        outbox_id: hook,
        attempt: 1,
        at_ms: 1100,
        result: DeliveryResult::Sent {
            answer: "200".into(),
            message_id: None,
        },
    }])
    .unwrap();
    let n = s
        .escalation_tx(|tx| {
            tx.start_next_loop(i.id, 2000)?;
            tx.feed_event(i.id, "reopened", 2000)?;
            tx.workflow_notice(i.id, "reopened", 2000)
        })
        .unwrap();
    assert_eq!(n, 1, "the webhook told gets the reopening");
    let (j, _) = s.incident_with_resolve_sent(i.id).unwrap().unwrap();
    assert_eq!(
        (j.state.as_str(), j.loop_no, j.loop_start_ms),
        ("open", 1, 2000)
    );
    assert!(
        s.pending_deliveries()
            .unwrap()
            .iter()
            .any(|d| d.idem_key == format!("{}:reopened.1:webhook:pager", i.id))
    );
    // Resolved: pending step notices cancelled, those told listed, flag set.
    s.resolve_incident(i.id, "bob", 3000).unwrap();
    let told = s
        .escalation_tx(|tx| {
            tx.cancel_pending_steps(i.id)?;
            let told = tx.told(i.id)?;
            tx.mark_resolve_sent(i.id)?;
            Ok(told)
        })
        .unwrap();
    assert_eq!(told, vec![("webhook".to_owned(), "pager".to_owned())]);
    let left: Vec<String> = s
        .pending_deliveries()
        .unwrap()
        .into_iter()
        .map(|d| d.transition)
        .collect();
    assert_eq!(left, ["reopened.1"], "the mail's step notice is cancelled");
    assert!(s.pending_work().unwrap().is_empty(), "nothing left to do");
    assert_eq!(
        s.incident_with_resolve_sent(i.id).unwrap().map(|(_, r)| r),
        Some(true)
    );
    let kinds: Vec<String> = feed_kinds(&s).into_iter().map(|(_, k)| k).collect();
    assert_eq!(kinds, ["opened", "escalated", "reopened", "resolved"]);
}

/// The administrative commands (tenant, site, token, device, API token): what
/// they create is listed; a duplicate, a bad name or an unknown one is refused
/// with the error naming it; device changes land where the running collector
/// polls them; a removal is described, done once, and seen as done.
pub(crate) fn administrative_commands<S: AdminStore>(mut s: S) {
    use super::admin::{AdminError, NewToken};
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

/// The suite instantiated for SQLite: one `#[test]` per behaviour. A second
/// backend adds a module like this one with its own fixture.
mod sqlite {
    macro_rules! conformance {
        ($($name:ident),* $(,)?) => {$(
            #[test]
            fn $name() {
                let (_dir, db) = super::sqlite_fixture();
                super::$name(db);
            }
        )*};
    }
    conformance!(
        a_round_loads_back_identically,
        history_accumulates,
        ack_clears_on_ok,
        alerts_list_by_filter,
        an_incident_opens_once_per_firing_and_resolves,
        devices_load_with_their_latest_good_patch_report,
        revoked_devices_and_tags_are_read,
        a_silence_is_listed_until_it_ends_or_is_lifted,
        a_silence_of_unknown_names_is_refused,
        names_are_checked,
        no_maintenance_windows_in_the_fixture,
        a_transition_opens_and_resolves_its_incident_in_the_engine_transaction,
        suppressed_incidents_stay_off_the_feed_until_the_window_ends,
        snooze_and_resolve_by_hand,
        outbox_queues_once_then_sent_retry_and_dead_letter,
        a_test_delivery_is_queued_each_time,
        escalation_steps_loops_and_resolution,
        administrative_commands,
    );

    #[test]
    fn revocations_are_durable_and_a_duplicate_certificate_conflicts() {
        let (dir, db) = super::sqlite_fixture();
        super::revocations_are_durable_and_a_duplicate_certificate_conflicts(db, |db| {
            db.close().unwrap();
            crate::store::Db::open(&dir.path().join("t.db")).unwrap()
        });
    }
}

// --- store7b ---
mod console_admin;
// --- end store7b ---
