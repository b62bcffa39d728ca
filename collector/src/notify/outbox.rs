//! The transactional outbox: which deliveries an incident's steps and resolution
//! cause, with an idempotency key per (incident, transition, channel, recipient);
//! which are due; and the delivery log of every attempt.
//!
//! Invariants:
//! - a fired step, its deliveries and its feed event commit in one transaction
//!   (`incident_steps` row + `INSERT OR IGNORE` on the unique key), so a step fires
//!   once, even when the collector dies in between: after a restart the step is
//!   either recorded with its rows or not at all, and then fires again;
//! - a resolved notice goes only to recipients a problem notice reached;
//! - every attempt is a `notify_log` row, with the remote's answer.

use std::collections::BTreeMap;

use super::escalation::{self, IncidentState, Snapshot};
use super::policy::{Channel, PolicySet};
use crate::alerts::model::Severity;
use crate::store::StoreError;
use crate::store::api::{DeliveryAttempt, DeliveryResult, IncidentRow, NotifyStore, OutboxRow};
use crate::store::escalation_sql::{Escalation, EscalationStore};

/// A pending delivery, as the dispatcher sends it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Delivery {
    pub(crate) id: i64,
    pub(crate) idem_key: String,
    pub(crate) incident_id: i64,
    pub(crate) tenant: String,
    pub(crate) transition: String,
    pub(crate) channel: Channel,
    pub(crate) recipient: String,
    pub(crate) created_ms: i64,
    pub(crate) attempts: i64,
}

impl Delivery {
    /// The delivery of an outbox row (an unknown channel is taken for email, as
    /// the outbox only ever stores the two).
    pub(crate) fn from_row(r: OutboxRow) -> Delivery {
        Delivery {
            id: r.id,
            idem_key: r.idem_key,
            incident_id: r.incident_id,
            tenant: r.tenant,
            transition: r.transition,
            channel: Channel::parse(&r.channel).unwrap_or(Channel::Email),
            recipient: r.recipient,
            created_ms: r.created_ms,
            attempts: r.attempts,
        }
    }

    pub(crate) fn is_resolved(&self) -> bool {
        self.transition == "resolved"
    }
}

/// What one pass of [`escalate`] did.
#[derive(Debug, Default, Clone)]
pub(crate) struct Escalated {
    pub(crate) steps_fired: usize,
    pub(crate) deliveries: usize,
    /// The earliest time something may become due (None: nothing waits).
    pub(crate) wake_ms: Option<i64>,
    /// Per incident evaluated: when it next needs looking at (None: only when it
    /// changes). The dispatcher keeps these in its timer heap.
    pub(crate) wakes: Vec<(i64, Option<i64>)>,
    /// Incidents evaluated.
    pub(crate) evaluated: usize,
}

fn insert(
    conn: &dyn Escalation,
    i: &IncidentRow,
    transition: &str,
    channel: Channel,
    recipient: &str,
    now_ms: i64,
) -> Result<usize, StoreError> {
    conn.insert_delivery(i, transition, channel.as_str(), recipient, now_ms)
}

/// What [`decide_one`] found an incident needs.
enum Work {
    /// Nothing to write; look again at this time (None: only when it changes).
    Idle(Option<i64>),
    /// Something to commit.
    Write,
}

fn snapshot(
    conn: &(impl Escalation + ?Sized),
    i: &IncidentRow,
) -> Result<(IncidentState, Snapshot), StoreError> {
    let state = IncidentState::parse(&i.state).unwrap_or(IncidentState::Open);
    Ok((
        state,
        Snapshot {
            state,
            severity: Severity::parse(&i.severity).unwrap_or(Severity::Warning),
            suppressed: i.suppressed,
            loop_no: i.loop_no as u32,
            loop_start_ms: i.loop_start_ms,
            acked_ms: i.acked_ms,
            snoozed_until_ms: i.snoozed_until_ms,
            fired: conn.fired_steps(i.id, i.loop_no)?,
        },
    ))
}

fn decide_one(
    conn: &(impl Escalation + ?Sized),
    set: &PolicySet,
    i: &IncidentRow,
    resolve_sent: bool,
    now_ms: i64,
) -> Result<Work, StoreError> {
    if i.state == "resolved" {
        return Ok(if resolve_sent {
            Work::Idle(None)
        } else {
            Work::Write
        });
    }
    let Some(policy) = set.policy_for(&i.tenant) else {
        return Ok(Work::Idle(None));
    };
    let (_, snap) = snapshot(conn, i)?;
    let d = escalation::decide(policy, set.tenant(&i.tenant), &snap, now_ms);
    Ok(if d.fire.is_empty() && !d.reopen && !d.next_loop {
        Work::Idle(d.wake_ms)
    } else {
        Work::Write
    })
}

/// Evaluates every incident with work left (see [`escalate_some`]; the tests).
#[cfg(test)]
pub(crate) fn escalate(
    conn: &mut impl EscalationStore,
    set: &PolicySet,
    now_ms: i64,
) -> Result<Escalated, StoreError> {
    escalate_some(conn, set, now_ms, None)
}

/// Evaluates the incidents named (`None`: every incident with work left) and
/// commits what fires. Deciding reads only (no lock held); the incidents with
/// something to write are decided again and written in **one** short `IMMEDIATE`
/// transaction, so the store writer waits for at most one commit per pass.
pub(crate) fn escalate_some(
    conn: &mut impl EscalationStore,
    set: &PolicySet,
    now_ms: i64,
    ids: Option<&[i64]>,
) -> Result<Escalated, StoreError> {
    let mut out = Escalated::default();
    let candidates: Vec<(IncidentRow, bool)> = match ids {
        None => conn.pending_work()?,
        Some(ids) => {
            let mut v = Vec::with_capacity(ids.len());
            for &id in ids {
                if let Some(r) = conn.incident_with_resolve_sent(id)? {
                    v.push(r);
                }
            }
            v
        }
    };
    let mut writes = Vec::new();
    for (i, resolve_sent) in &candidates {
        out.evaluated += 1;
        match decide_one(conn, set, i, *resolve_sent, now_ms)? {
            Work::Idle(w) => {
                soonest(&mut out.wake_ms, w);
                out.wakes.push((i.id, w));
            }
            Work::Write => writes.push(i.id),
        }
    }
    if writes.is_empty() {
        return Ok(out);
    }
    conn.escalation_tx(|tx| {
        for id in writes {
            // Again under the write lock: an ack may have come in since the read.
            let Some((i, resolve_sent)) = tx.incident_with_resolve_sent(id)? else {
                continue;
            };
            let w = apply_one(tx, set, &i, resolve_sent, now_ms, &mut out)?;
            soonest(&mut out.wake_ms, w);
            out.wakes.push((i.id, w));
        }
        Ok(())
    })?;
    Ok(out)
}

fn soonest(wake: &mut Option<i64>, w: Option<i64>) {
    if let Some(w) = w {
        *wake = Some(wake.map_or(w, |x| x.min(w)));
    }
}

/// Writes what one incident's decision causes (inside the pass's transaction);
/// returns when to look at it again.
fn apply_one(
    tx: &dyn Escalation,
    set: &PolicySet,
    i: &IncidentRow,
    resolve_sent: bool,
    now_ms: i64,
    out: &mut Escalated,
) -> Result<Option<i64>, StoreError> {
    let state = IncidentState::parse(&i.state).unwrap_or(IncidentState::Open);
    if state == IncidentState::Resolved {
        if resolve_sent {
            return Ok(None);
        }
        // Deliveries of problem notices not yet made will never be: the
        // problem is over. Those told get the resolved notice.
        tx.cancel_pending_steps(i.id)?;
        let told = tx.told(i.id)?;
        for (ch, rcpt) in told {
            if let Some(ch) = Channel::parse(&ch) {
                out.deliveries += insert(tx, i, "resolved", ch, &rcpt, now_ms)?;
            }
        }
        tx.mark_resolve_sent(i.id)?;
        return Ok(None);
    }
    let Some(policy) = set.policy_for(&i.tenant) else {
        return Ok(None);
    };
    let (_, snap) = snapshot(tx, i)?;
    let d = escalation::decide(policy, set.tenant(&i.tenant), &snap, now_ms);
    if d.reopen || d.next_loop {
        tx.start_next_loop(i.id, now_ms)?;
        if d.reopen {
            tx.feed_event(i.id, "reopened", now_ms)?;
            out.deliveries += tx.workflow_notice(i.id, "reopened", now_ms)?;
            tracing::info!(
                incident = i.id,
                "incident reopened (ack timed out or snooze ended)"
            );
        }
        // Evaluated again at once, from the new loop.
        return Ok(Some(now_ms));
    }
    for step in &d.fire {
        if !tx.record_step(i.id, i.loop_no, *step, now_ms)? {
            continue;
        }
        out.steps_fired += 1;
        let transition = format!("step{step}.{}", i.loop_no);
        let mut seen = std::collections::BTreeSet::new();
        for t in &policy.steps[*step].targets {
            for (ch, rcpt) in set.expand(&i.tenant, t) {
                if seen.insert((ch, rcpt.clone())) {
                    out.deliveries += insert(tx, i, &transition, ch, &rcpt, now_ms)?;
                }
            }
        }
        if *step > 0 || i.loop_no > 0 {
            tx.feed_event(i.id, "escalated", now_ms)?;
        }
        tracing::info!(
            incident = i.id,
            step,
            loop_no = i.loop_no,
            "escalation step fired"
        );
    }
    // Looked at again at once: with these steps recorded, the next decision knows
    // the next step's time or the repeat (which a firing decision leaves out).
    Ok(Some(now_ms))
}

/// Pending deliveries due at `now_ms`, emails grouped by (tenant, recipient,
/// problem/resolved): a group is due once its oldest row is `group_wait_ms` old,
/// and then goes out whole. Returns the groups and when the next one is due.
pub(crate) fn due(
    conn: &(impl NotifyStore + ?Sized),
    now_ms: i64,
    group_wait_ms: i64,
) -> Result<(Vec<Vec<Delivery>>, Option<i64>), StoreError> {
    let rows: Vec<(Delivery, i64)> = conn
        .pending_deliveries()?
        .into_iter()
        .map(|r| {
            let next = r.next_attempt_ms;
            (Delivery::from_row(r), next)
        })
        .collect();
    // (tenant, recipient, problem/resolved/test, test id) → rows with their next attempt.
    type GroupKey = (String, String, u8, i64);
    let mut groups: BTreeMap<GroupKey, Vec<(Delivery, i64)>> = BTreeMap::new();
    let mut singles = Vec::new();
    let mut wake: Option<i64> = None;
    let mut soonest = |t: i64| wake = Some(wake.map_or(t, |w: i64| w.min(t)));
    for (d, next) in rows {
        match d.channel {
            Channel::Email => {
                let kind = match d.transition.as_str() {
                    "resolved" => 1,
                    "test" => 2,
                    _ => 0,
                };
                // A test mail is never grouped with anything.
                let solo = if kind == 2 { d.id } else { 0 };
                groups
                    .entry((d.tenant.clone(), d.recipient.clone(), kind, solo))
                    .or_default()
                    .push((d, next));
            }
            Channel::Webhook => {
                if next <= now_ms {
                    singles.push(vec![d]);
                } else {
                    soonest(next);
                }
            }
        }
    }
    for ((_, _, kind, _), g) in groups {
        let oldest = g.iter().map(|(d, _)| d.created_ms).min().unwrap_or(now_ms);
        let retry_at = g.iter().map(|(_, n)| *n).max().unwrap_or(now_ms);
        let wait = if kind == 2 { 0 } else { group_wait_ms };
        let at = (oldest + wait).max(retry_at);
        if at <= now_ms {
            singles.push(g.into_iter().map(|(d, _)| d).collect());
        } else {
            soonest(at);
        }
    }
    Ok((singles, wake))
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Attempt {
    Sent {
        answer: String,
        message_id: Option<String>,
    },
    /// Failed; try again later.
    Retry { answer: String },
    /// Failed for good (4xx from a webhook, attempts exhausted): dead-lettered.
    Dead { answer: String },
}

/// The wait before retry number `attempt` (1-based): exponential from `base_ms`,
/// capped at `max_ms`, with "equal jitter" (half fixed, half random; `rand01` in
/// [0, 1)) so that many failed deliveries do not retry in lockstep.
pub(crate) fn backoff_ms(attempt: i64, base_ms: i64, max_ms: i64, rand01: f64) -> i64 {
    let exp = base_ms.saturating_mul(1i64 << attempt.clamp(1, 30).saturating_sub(1));
    let d = exp.min(max_ms).max(1);
    d / 2 + ((d / 2) as f64 * rand01.clamp(0.0, 1.0)) as i64
}

/// Records the outcome of one attempt at each delivery (one transaction).
pub(crate) fn record(
    conn: &mut (impl NotifyStore + ?Sized),
    results: &[(Delivery, Attempt)],
    now_ms: i64,
    retry: &dyn Fn(i64) -> i64,
    max_attempts: u32,
) -> Result<(), StoreError> {
    let timed: Vec<_> = results
        .iter()
        .map(|(d, a)| (d.clone(), a.clone(), now_ms))
        .collect();
    record_at(conn, &timed, retry, max_attempts)
}

/// As [`record`], each attempt with the time it ended (the remote's answer), so
/// that `sent_ms` is when the server accepted, not when the pass finished.
pub(crate) fn record_at(
    conn: &mut (impl NotifyStore + ?Sized),
    results: &[(Delivery, Attempt, i64)],
    retry: &dyn Fn(i64) -> i64,
    max_attempts: u32,
) -> Result<(), StoreError> {
    // The backoff and the dead letter are decided here; the store records them.
    let attempts: Vec<DeliveryAttempt> = results
        .iter()
        .map(|(d, a, now_ms)| {
            let attempt = d.attempts + 1;
            let result = match a.clone() {
                Attempt::Sent { answer, message_id } => DeliveryResult::Sent { answer, message_id },
                Attempt::Retry { answer } if attempt < i64::from(max_attempts) => {
                    DeliveryResult::Retry {
                        answer,
                        next_attempt_ms: now_ms + retry(attempt),
                    }
                }
                Attempt::Retry { answer } | Attempt::Dead { answer } => {
                    DeliveryResult::Dead { answer }
                }
            };
            DeliveryAttempt {
                outbox_id: d.id,
                attempt,
                at_ms: *now_ms,
                result,
            }
        })
        .collect();
    conn.record_deliveries(&attempts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Db;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        assert_eq!(backoff_ms(1, 1000, 60_000, 0.0), 500);
        assert_eq!(backoff_ms(1, 1000, 60_000, 0.999), 999);
        assert_eq!(backoff_ms(3, 1000, 60_000, 0.0), 2000);
        assert_eq!(backoff_ms(30, 1000, 60_000, 0.0), 30_000);
        assert!(backoff_ms(99, 1000, 60_000, 0.5) <= 60_000);
    }

    const POLICY: &str = r#"
[[tenant]]
name = "acme"
contacts = ["it@acme.example"]
[[tenant]]
name = "globex"
contacts = ["it@globex.example"]
[[policy]]
name = "p"
default = true
  [[policy.step]]
  after_secs = 0
  targets = ["email:noc@msp.example"]
  [[policy.step]]
  after_secs = 60
  targets = ["contacts"]
"#;

    fn open_incident(db: &mut Db, tenant: &str, device: &str, at: i64) -> i64 {
        let conn = db.connection();
        conn.execute(
            "INSERT INTO alert_instances (rule, device_id, dimension, tenant, state, severity, since_ms,
                breach_start_ms, breach_samples, recover_start_ms, last_sample_ms, last_value, stale,
                flapping, suppressed, changes, updated_ms, last_arrival_ms)
             VALUES ('cpu', ?1, '', ?2, 'firing', 'warning', 0, 0, 0, 0, 0, 0, 0, 0, 0, '[]', 0, 0)",
            (device, tenant),
        )
        .unwrap();
        let inst = conn.last_insert_rowid();
        conn.execute(
            "INSERT INTO incidents (instance_id, tenant, rule, device_id, dimension, severity, value,
                state, opened_ms, suppressed, loop_start_ms)
             VALUES (?1, ?2, 'cpu', ?3, '', 'warning', 99, 'open', ?4, 0, ?4)",
            (inst, tenant, device, at),
        )
        .unwrap();
        conn.last_insert_rowid()
    }

    fn recipients(db: &Db) -> Vec<(i64, String, String)> {
        let mut s = db
            .connection()
            .prepare("SELECT incident_id, transition, recipient FROM notify_outbox ORDER BY id")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn steps_become_outbox_rows_once_per_tenant_and_resolved_goes_to_those_told() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Db::open(&dir.path().join("t.db")).unwrap();
        let set = super::super::policy::parse_file(std::path::Path::new("p.toml"), POLICY).unwrap();
        let a = open_incident(&mut conn, "acme", "d1", 0);
        let g = open_incident(&mut conn, "globex", "d2", 0);
        let e = escalate(&mut conn, &set, 0).unwrap();
        // Fired: looked at again at once (the decision that fires does not know
        // the next step's time yet).
        assert_eq!((e.steps_fired, e.deliveries, e.wake_ms), (2, 2, Some(0)));
        // Again: nothing new (the step is recorded), and each waits for step 1.
        let e = escalate_some(&mut conn, &set, 1, Some(&[a])).unwrap();
        assert_eq!(
            (e.deliveries, e.wakes.clone()),
            (0, vec![(a, Some(60_000))])
        );
        assert_eq!(escalate(&mut conn, &set, 1).unwrap().wake_ms, Some(60_000));
        escalate(&mut conn, &set, 60_000).unwrap();
        assert_eq!(
            recipients(&conn),
            vec![
                (a, "step0.0".into(), "noc@msp.example".into()),
                (g, "step0.0".into(), "noc@msp.example".into()),
                (a, "step1.0".into(), "it@acme.example".into()),
                (g, "step1.0".into(), "it@globex.example".into()),
            ],
            "each tenant's contact gets its own tenant's incident only"
        );
        // The NOC mails are grouped per recipient and tenant: two groups, each
        // due once group_wait passed.
        let (groups, wake) = due(&conn, 60_000, 30_000).unwrap();
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert_eq!(wake, Some(90_000));
        let sent: Vec<_> = groups
            .into_iter()
            .flatten()
            .map(|d| {
                (
                    d,
                    Attempt::Sent {
                        answer: "250 ok".into(),
                        message_id: Some("<m1@t>".into()),
                    },
                )
            })
            .collect();
        record(&mut conn, &sent, 60_001, &|_| 1000, 5).unwrap();
        crate::store::api::NotifyStore::resolve_incident(&mut conn, a, "bob", 70_000).unwrap();
        escalate(&mut conn, &set, 70_000).unwrap();
        let rows = recipients(&conn);
        assert_eq!(
            rows.iter()
                .filter(|r| r.1 == "resolved")
                .collect::<Vec<_>>(),
            vec![&(a, "resolved".to_string(), "noc@msp.example".to_string())],
            "acme's contact was never told (its step was pending): no resolved mail"
        );
        let cancelled: i64 = conn
            .connection()
            .query_row(
                "SELECT count(*) FROM notify_outbox WHERE status = 'cancelled'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(cancelled, 1);
        assert_eq!(
            NotifyStore::problem_message_id(&conn, a, "noc@msp.example")
                .unwrap()
                .as_deref(),
            Some("<m1@t>")
        );
    }

    #[test]
    fn acks_snoozes_and_reopenings_reach_the_webhooks_that_were_told() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Db::open(&dir.path().join("t.db")).unwrap();
        let set = super::super::policy::parse_file(
            std::path::Path::new("p.toml"),
            r#"
[[webhook]]
name = "hook"
url = "http://127.0.0.1:9/"
[[policy]]
name = "p"
default = true
ack_timeout_secs = 60
  [[policy.step]]
  after_secs = 0
  targets = ["webhook:hook", "email:noc@msp.example"]
"#,
        )
        .unwrap();
        let a = open_incident(&mut conn, "acme", "d1", 0);
        escalate(&mut conn, &set, 0).unwrap();
        NotifyStore::ack_incident(&mut conn, a, "bob", Some("on it"), 1000).unwrap();
        // Ack timeout: reopened at 61 s, a new loop.
        escalate(&mut conn, &set, 61_000).unwrap();
        crate::store::api::NotifyStore::snooze_incident(&mut conn, a, "bob", 200_000, 62_000)
            .unwrap();
        let rows = recipients(&conn);
        assert_eq!(
            rows.iter()
                .filter(|r| r.2 == "hook")
                .map(|r| r.1.as_str())
                .collect::<Vec<_>>(),
            vec!["step0.0", "acked.0", "reopened.1", "snoozed.1"],
            "{rows:?}"
        );
        assert!(
            !rows
                .iter()
                .any(|r| r.2 == "noc@msp.example" && r.1 != "step0.0"),
            "mail recipients get no workflow notices: {rows:?}"
        );
    }

    #[test]
    fn failed_attempts_back_off_and_are_dead_lettered_after_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Db::open(&dir.path().join("t.db")).unwrap();
        let set = super::super::policy::parse_file(std::path::Path::new("p.toml"), POLICY).unwrap();
        open_incident(&mut conn, "acme", "d1", 0);
        escalate(&mut conn, &set, 0).unwrap();
        let (g, _) = due(&conn, 0, 0).unwrap();
        let fail: Vec<_> = g[0]
            .iter()
            .map(|d| {
                (
                    d.clone(),
                    Attempt::Retry {
                        answer: "421 busy".into(),
                    },
                )
            })
            .collect();
        record(&mut conn, &fail, 0, &|_| 5000, 2).unwrap();
        let (g, wake) = due(&conn, 1000, 0).unwrap();
        assert!(g.is_empty());
        assert_eq!(wake, Some(5000));
        let (g, _) = due(&conn, 5000, 0).unwrap();
        let fail: Vec<_> = g[0]
            .iter()
            .map(|d| {
                (
                    d.clone(),
                    Attempt::Retry {
                        answer: "421 busy".into(),
                    },
                )
            })
            .collect();
        record(&mut conn, &fail, 5000, &|_| 5000, 2).unwrap();
        let l = conn.delivery_log(None).unwrap();
        let got: Vec<_> = l
            .iter()
            .map(|r| (r.status.as_str(), r.result.as_deref()))
            .collect();
        assert_eq!(got, vec![("dead", Some("retry")), ("dead", Some("dead"))]);
    }
}
