//! The SQLite side of the notification outbox's delivery queue (issue 17 item 1,
//! moved from `notify::outbox`, statements unchanged): the pending rows, the
//! outcome of each attempt (sent / retry at a time / dead letter) with its line in
//! the delivery log, in one `BEGIN IMMEDIATE` transaction, and the reads behind
//! `notify log` and mail threading. Deciding what to queue (escalation) and when
//! to retry (backoff) stays in `notify::outbox`.

use rusqlite::{Connection, OptionalExtension, params};

use super::api::{DeliveryAttempt, DeliveryLogRow, DeliveryResult, OutboxRow};

/// Every pending delivery, oldest first, with when it may next be tried.
pub(crate) fn pending(conn: &Connection) -> rusqlite::Result<Vec<OutboxRow>> {
    let mut s = conn.prepare_cached(
        "SELECT id, idem_key, incident_id, tenant, transition, channel, recipient, created_ms,
                attempts, next_attempt_ms
         FROM notify_outbox WHERE status = 'pending' ORDER BY id",
    )?;
    s.query_map([], |r| {
        Ok(OutboxRow {
            id: r.get(0)?,
            idem_key: r.get(1)?,
            incident_id: r.get(2)?,
            tenant: r.get(3)?,
            transition: r.get(4)?,
            channel: r.get(5)?,
            recipient: r.get(6)?,
            created_ms: r.get(7)?,
            attempts: r.get(8)?,
            next_attempt_ms: r.get(9)?,
        })
    })?
    .collect()
}

/// Records attempts (one transaction): the row's new status and attempt count,
/// and a line of the delivery log each.
pub(crate) fn record(conn: &mut Connection, attempts: &[DeliveryAttempt]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for a in attempts {
        let (result, answer) = match &a.result {
            DeliveryResult::Sent { answer, message_id } => {
                tx.execute(
                    "UPDATE notify_outbox SET status = 'sent', attempts = ?2, sent_ms = ?3, message_id = ?4 WHERE id = ?1",
                    params![a.outbox_id, a.attempt, a.at_ms, message_id],
                )?;
                ("sent", answer)
            }
            DeliveryResult::Retry {
                answer,
                next_attempt_ms,
            } => {
                tx.execute(
                    "UPDATE notify_outbox SET attempts = ?2, next_attempt_ms = ?3 WHERE id = ?1",
                    params![a.outbox_id, a.attempt, next_attempt_ms],
                )?;
                ("retry", answer)
            }
            DeliveryResult::Dead { answer } => {
                tx.execute(
                    "UPDATE notify_outbox SET status = 'dead', attempts = ?2 WHERE id = ?1",
                    params![a.outbox_id, a.attempt],
                )?;
                ("dead", answer)
            }
        };
        tx.execute(
            "INSERT INTO notify_log (outbox_id, at_ms, attempt, result, answer) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![a.outbox_id, a.at_ms, a.attempt, result, answer],
        )?;
    }
    tx.commit()
}

/// The Message-ID a problem notice to `recipient` went out with (for threading).
pub(crate) fn problem_message_id(
    conn: &Connection,
    incident: i64,
    recipient: &str,
) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT message_id FROM notify_outbox WHERE incident_id = ?1 AND recipient = ?2
            AND channel = 'email' AND status = 'sent' AND transition != 'resolved'
            AND message_id IS NOT NULL ORDER BY id LIMIT 1",
        params![incident, recipient],
        |r| r.get(0),
    )
    .optional()
}

/// Every delivery with every attempt (deliveries without one yet included).
pub(crate) fn log(
    conn: &Connection,
    incident: Option<i64>,
) -> rusqlite::Result<Vec<DeliveryLogRow>> {
    let mut s = conn.prepare(
        "SELECT o.id, o.incident_id, o.tenant, o.transition, o.channel, o.recipient, o.status,
                l.at_ms, l.attempt, l.result, l.answer
         FROM notify_outbox o LEFT JOIN notify_log l ON l.outbox_id = o.id
         WHERE ?1 IS NULL OR o.incident_id = ?1 ORDER BY o.id, l.id",
    )?;
    let rows = s.query_map([incident], |r| {
        Ok(DeliveryLogRow {
            outbox_id: r.get(0)?,
            incident_id: r.get(1)?,
            tenant: r.get(2)?,
            transition: r.get(3)?,
            channel: r.get(4)?,
            recipient: r.get(5)?,
            status: r.get(6)?,
            at_ms: r.get(7)?,
            attempt: r.get(8)?,
            result: r.get(9)?,
            answer: r.get(10)?,
        })
    })?;
    rows.collect()
}
