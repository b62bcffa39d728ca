//! The escalation's statements (issue 17 item 1): what `notify::outbox` reads to
//! decide an incident's next step, and writes when one fires — behind
//! [`Escalation`] / [`EscalationStore`], on SQLite. The deciding stays in
//! `notify` (policy logic); the statements are the ones it ran itself before.

use rusqlite::{Connection, params};

use super::api::IncidentRow;
use super::{Db, StoreError, incident_sql};

/// What one escalation pass reads and writes. The reads may run outside a
/// transaction (deciding holds no lock); the writes run inside
/// [`EscalationStore::escalation_tx`], so that a fired step, its deliveries and
/// its feed event commit together.
pub(crate) trait Escalation {
    /// Incidents with work left: not resolved, or resolved and the resolved
    /// notices not yet queued; each with its `resolve_sent` flag.
    fn pending_work(&self) -> Result<Vec<(IncidentRow, bool)>, StoreError>;
    /// One incident with its `resolve_sent` flag.
    fn incident_with_resolve_sent(
        &self,
        id: i64,
    ) -> Result<Option<(IncidentRow, bool)>, StoreError>;
    /// The steps of loop `loop_no` already fired for the incident.
    fn fired_steps(&self, incident: i64, loop_no: i64) -> Result<Vec<usize>, StoreError>;
    /// Records step `step` of loop `loop_no` as fired; false if it was already.
    fn record_step(
        &self,
        incident: i64,
        loop_no: i64,
        step: usize,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Queues a delivery (once per idempotency key: returns 0 or 1).
    fn insert_delivery(
        &self,
        i: &IncidentRow,
        transition: &str,
        channel: &str,
        recipient: &str,
        now_ms: i64,
    ) -> Result<usize, StoreError>;
    /// Cancels the incident's pending problem (step) deliveries.
    fn cancel_pending_steps(&self, incident: i64) -> Result<(), StoreError>;
    /// The (channel, recipient) pairs a problem notice of the incident reached.
    fn told(&self, incident: i64) -> Result<Vec<(String, String)>, StoreError>;
    /// Marks the incident's resolved notices as queued.
    fn mark_resolve_sent(&self, incident: i64) -> Result<(), StoreError>;
    /// Reopens the incident into its next loop (an ack timed out, a snooze
    /// ended, or the policy repeats).
    fn start_next_loop(&self, incident: i64, now_ms: i64) -> Result<(), StoreError>;
    /// Writes a feed event for the incident as it is now.
    fn feed_event(&self, incident: i64, kind: &str, now_ms: i64) -> Result<(), StoreError>;
    /// Workflow notices (`reopened`, …) to the webhooks told; returns how many.
    fn workflow_notice(&self, incident: i64, kind: &str, now_ms: i64) -> Result<usize, StoreError>;
}

/// A store the escalation runs on: its reads, and one write transaction.
pub(crate) trait EscalationStore: Escalation {
    /// Runs `f` in one `IMMEDIATE` transaction (the write lock taken first, so
    /// what `f` reads again is what it writes on), committed if `f` returns `Ok`
    /// and rolled back otherwise.
    fn escalation_tx<T>(
        &mut self,
        f: impl FnOnce(&dyn Escalation) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>;
}

impl Escalation for Connection {
    fn pending_work(&self) -> Result<Vec<(IncidentRow, bool)>, StoreError> {
        Ok(incident_sql::pending_work(self)?)
    }
    fn incident_with_resolve_sent(
        &self,
        id: i64,
    ) -> Result<Option<(IncidentRow, bool)>, StoreError> {
        Ok(incident_sql::get_with_resolve_sent(self, id)?)
    }
    fn fired_steps(&self, incident: i64, loop_no: i64) -> Result<Vec<usize>, StoreError> {
        let mut s = self.prepare_cached(
            "SELECT step FROM incident_steps WHERE incident_id = ?1 AND loop_no = ?2",
        )?;
        let rows = s.query_map(params![incident, loop_no], |r| r.get::<_, i64>(0))?;
        Ok(rows
            .map(|r| r.map(|v| v as usize))
            .collect::<rusqlite::Result<_>>()?)
    }
    fn record_step(
        &self,
        incident: i64,
        loop_no: i64,
        step: usize,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = self.execute(
            "INSERT OR IGNORE INTO incident_steps (incident_id, loop_no, step, fired_ms) VALUES (?1, ?2, ?3, ?4)",
            params![incident, loop_no, step as i64, now_ms],
        )?;
        Ok(n > 0)
    }
    fn insert_delivery(
        &self,
        i: &IncidentRow,
        transition: &str,
        channel: &str,
        recipient: &str,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        Ok(incident_sql::insert_delivery(
            self, i, transition, channel, recipient, now_ms,
        )?)
    }
    fn cancel_pending_steps(&self, incident: i64) -> Result<(), StoreError> {
        self.execute(
            "UPDATE notify_outbox SET status = 'cancelled' WHERE incident_id = ?1
                AND status = 'pending' AND transition LIKE 'step%'",
            [incident],
        )?;
        Ok(())
    }
    fn told(&self, incident: i64) -> Result<Vec<(String, String)>, StoreError> {
        let mut s = self.prepare_cached(
            "SELECT DISTINCT channel, recipient FROM notify_outbox
             WHERE incident_id = ?1 AND status = 'sent' AND transition LIKE 'step%'",
        )?;
        Ok(s.query_map([incident], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?)
    }
    fn mark_resolve_sent(&self, incident: i64) -> Result<(), StoreError> {
        self.execute(
            "UPDATE incidents SET resolve_sent = 1 WHERE id = ?1",
            [incident],
        )?;
        Ok(())
    }
    fn start_next_loop(&self, incident: i64, now_ms: i64) -> Result<(), StoreError> {
        self.execute(
            "UPDATE incidents SET state = 'open', loop_no = loop_no + 1, loop_start_ms = ?2,
                snoozed_until_ms = NULL WHERE id = ?1",
            params![incident, now_ms],
        )?;
        Ok(())
    }
    fn feed_event(&self, incident: i64, kind: &str, now_ms: i64) -> Result<(), StoreError> {
        Ok(incident_sql::feed_event(self, incident, kind, now_ms)?)
    }
    fn workflow_notice(&self, incident: i64, kind: &str, now_ms: i64) -> Result<usize, StoreError> {
        Ok(incident_sql::workflow_notice(self, incident, kind, now_ms)?)
    }
}

impl EscalationStore for Connection {
    fn escalation_tx<T>(
        &mut self,
        f: impl FnOnce(&dyn Escalation) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&*tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// On a [`Db`]: the same statements on its connection.
impl Escalation for Db {
    fn pending_work(&self) -> Result<Vec<(IncidentRow, bool)>, StoreError> {
        self.conn().pending_work()
    }
    fn incident_with_resolve_sent(
        &self,
        id: i64,
    ) -> Result<Option<(IncidentRow, bool)>, StoreError> {
        self.conn().incident_with_resolve_sent(id)
    }
    fn fired_steps(&self, incident: i64, loop_no: i64) -> Result<Vec<usize>, StoreError> {
        self.conn().fired_steps(incident, loop_no)
    }
    fn record_step(
        &self,
        incident: i64,
        loop_no: i64,
        step: usize,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.conn().record_step(incident, loop_no, step, now_ms)
    }
    fn insert_delivery(
        &self,
        i: &IncidentRow,
        transition: &str,
        channel: &str,
        recipient: &str,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        self.conn()
            .insert_delivery(i, transition, channel, recipient, now_ms)
    }
    fn cancel_pending_steps(&self, incident: i64) -> Result<(), StoreError> {
        self.conn().cancel_pending_steps(incident)
    }
    fn told(&self, incident: i64) -> Result<Vec<(String, String)>, StoreError> {
        self.conn().told(incident)
    }
    fn mark_resolve_sent(&self, incident: i64) -> Result<(), StoreError> {
        self.conn().mark_resolve_sent(incident)
    }
    fn start_next_loop(&self, incident: i64, now_ms: i64) -> Result<(), StoreError> {
        self.conn().start_next_loop(incident, now_ms)
    }
    fn feed_event(&self, incident: i64, kind: &str, now_ms: i64) -> Result<(), StoreError> {
        Escalation::feed_event(self.conn(), incident, kind, now_ms)
    }
    fn workflow_notice(&self, incident: i64, kind: &str, now_ms: i64) -> Result<usize, StoreError> {
        Escalation::workflow_notice(self.conn(), incident, kind, now_ms)
    }
}

impl EscalationStore for Db {
    fn escalation_tx<T>(
        &mut self,
        f: impl FnOnce(&dyn Escalation) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn_mut().escalation_tx(f)
    }
}
