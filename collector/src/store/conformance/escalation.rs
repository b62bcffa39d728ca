//! Conformance of [`EscalationStore`]: steps once per loop, reopening, resolution
//! and a failed transaction leaving nothing behind.

use crate::store::StoreError;
use crate::store::api::{AlertStore, DeliveryAttempt, DeliveryResult, NotifyStore};
use crate::store::escalation_sql::EscalationStore;

use super::{episode, feed_kinds, fire};

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
