//! The audit log's one write: every console write (ack, silence, token, user
//! change) appends a row in the same transaction as the change (issue 15), so a
//! change without its audit row, or an audit row without its change, cannot be
//! committed.

use rusqlite::{Connection, params};

/// Who did what to what, as the audit log records it. The tenant (the scope the
/// change falls in) and the time are given where the row is written, because the
/// store often learns the tenant only inside the transaction (an incident's).
#[derive(Debug, Clone)]
pub(crate) struct AuditEntry {
    /// The principal's name (`user:alice`, `token:ci`, `cli:root`).
    pub(crate) actor: String,
    /// A stable verb (`alert.ack`, `silence.create`, `user.add`).
    pub(crate) action: &'static str,
    /// What it acted on, for people (`alert 12`, `user bob`).
    pub(crate) target: String,
    /// The request's details (a note, a duration), as JSON.
    pub(crate) detail: serde_json::Value,
}

impl AuditEntry {
    pub(crate) fn new(
        actor: impl Into<String>,
        action: &'static str,
        target: impl Into<String>,
        detail: serde_json::Value,
    ) -> AuditEntry {
        AuditEntry {
            actor: actor.into(),
            action,
            target: target.into(),
            detail,
        }
    }
}

/// Appends one audit row inside the caller's transaction (`tx` is a connection
/// in a transaction the caller commits).
pub(crate) fn append(
    tx: &Connection,
    tenant_id: Option<i64>,
    e: &AuditEntry,
    now_ms: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO audit_log (at_ms, actor, tenant_id, action, target, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        now_ms,
        e.actor,
        tenant_id,
        e.action,
        e.target,
        e.detail.to_string()
    ])?;
    Ok(())
}
