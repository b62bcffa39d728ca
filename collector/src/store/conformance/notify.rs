//! Conformance of [`NotifyStore`]: incidents and the feed written in the engine's
//! transaction, suppression, snooze and resolve by hand, the outbox's retries and
//! dead letters, test deliveries.

use crate::store::api::{
    AlertStore, DeliveryAttempt, DeliveryResult, NotifyStore, Outcome, RecordEvent, RecordRow,
};

use super::{episode, feed_kinds, fire, transition};

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
