//! Incidents (machine B of shared/ALERTING.md): one per firing episode of an alert
//! instance, `open → acked → resolved`, `snoozed(until)` as a timed ack; who acted,
//! when and their note; and the feed events every change writes.
//!
//! Invariants:
//! - an incident opens and resolves in the alert engine's own transaction
//!   ([`on_change`], called from `alerts::persist::save`), with its feed event: a
//!   transition and what it causes are committed together or not at all;
//! - an instance has at most one incident that is not resolved;
//! - an incident opened while suppressed (maintenance, silence, inhibition) shows
//!   nowhere until the suppression ends while it still fires; its steps count
//!   from then (sent once). One that heals while suppressed was never notified.

// The statements live in the store (issue 17: `store::incident_sql`); re-exported
// here because callers (the console, `http`, the outbox) think of them as the
// incident's. The CLI goes through `NotifyStore` on a `Db` (below).
pub(crate) use crate::store::api::IncidentLogged as Logged;
pub(crate) use crate::store::incident_sql::{IncidentRow, Outcome, SCHEMA, incident_json};

/// Logs what [`on_change`] recorded (after the transaction committed): one info
/// line per incident opening and resolution.
pub(crate) fn log_committed(events: &[Logged]) {
    for e in events {
        if e.opened {
            tracing::info!(incident = e.incident, tenant = %e.tenant, rule = %e.rule, device = %e.device_id, severity = %e.severity, "incident opened");
        } else {
            tracing::info!(incident = e.incident, tenant = %e.tenant, rule = %e.rule, device = %e.device_id, lasted_secs = e.lasted_ms / 1000, "incident resolved");
        }
    }
}

// The tests of the incident side effects and workflow moved with their SQL to
// `store::conformance` (`a_transition_opens_and_resolves_its_incident_…`,
// `suppressed_incidents_stay_off_the_feed_…`), written against the traits.
