//! The backend-neutral store interface (issue 17 item 1): the traits callers
//! outside `store/` use, and the plain value types they exchange — no `rusqlite`
//! type, no SQL. [`super::Db`] implements them on SQLite; a second backend
//! (PostgreSQL) implements the same traits and is proved by the same conformance
//! suite (`store/conformance/`).
//!
//! The value types hold what is stored (states and severities as their stored
//! names), not the alert engine's own types: the store sits below `alerts` and
//! `notify` and must not use them. `alerts::persist` converts.
//!
//! Sides: [`AlertStore`] (the alert engine and `alerts …` commands),
//! [`NotifyStore`] (incidents, their workflow, the feed), [`AdminStore`] (what the
//! running collector needs of the admin tables: revocations, enrollment) and
//! [`Names`] (the CLI's "no such tenant" checks). Not yet behind a trait: the
//! outbox's delivery queue (`notify::outbox`), the admin CLI's commands
//! (`store::admin` on their connection) and the console (ARCHITECTURE.md lists
//! what is left).

use std::collections::HashMap;

use super::StoreError;

// ------------------------------------------------------------------ alert side

/// An alert instance as stored: everything its state machine needs to resume.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InstanceRow {
    pub(crate) rule: String,
    pub(crate) device_id: String,
    pub(crate) dimension: String,
    pub(crate) tenant: String,
    /// `ok`, `pending`, `firing` or `recovering`.
    pub(crate) state: String,
    /// `warning` or `critical` while not OK.
    pub(crate) severity: Option<String>,
    pub(crate) since_ms: i64,
    pub(crate) breach_start_ms: i64,
    pub(crate) breach_samples: u32,
    pub(crate) recover_start_ms: i64,
    pub(crate) last_sample_ms: i64,
    pub(crate) last_arrival_ms: i64,
    /// Stored finite: NaN as 0, infinities clamped to ±1e300.
    pub(crate) last_value: f64,
    pub(crate) stale: bool,
    pub(crate) flapping: bool,
    pub(crate) suppressed: bool,
    /// Times of recent state changes, oldest first.
    pub(crate) changes: Vec<i64>,
}

/// What a history record says happened; the incident side effects of a round
/// follow from it (a firing opens an incident, an OK resolves it, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordEvent {
    /// A state change, as stored state names.
    Transition {
        from: &'static str,
        to: &'static str,
    },
    /// A severity change to `to` (`warning`, `critical`).
    Severity { to: &'static str },
    /// Suppression began (`true`) or ended (`false`).
    Suppressed(bool),
    /// Another flag change (`stale`, `fresh`, `flapping`, `stable`): history only.
    Flag(&'static str),
}

impl RecordEvent {
    /// The `event` column of the history.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            RecordEvent::Transition { .. } => "transition",
            RecordEvent::Severity { .. } => "severity",
            RecordEvent::Suppressed(true) => "suppressed",
            RecordEvent::Suppressed(false) => "unsuppressed",
            RecordEvent::Flag(k) => k,
        }
    }
}

/// One history record of a round.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RecordRow {
    pub(crate) at_ms: i64,
    pub(crate) event: RecordEvent,
    /// The state after the record.
    pub(crate) state: &'static str,
    pub(crate) severity: Option<&'static str>,
    pub(crate) value: f64,
    pub(crate) suppressed: bool,
}

/// One instance changed in a round: its new row and what happened to it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InstanceChange {
    pub(crate) instance: InstanceRow,
    pub(crate) records: Vec<RecordRow>,
}

/// An incident opened or resolved by a saved round, for the log line written
/// once the round has committed.
#[derive(Debug, Clone)]
pub(crate) struct IncidentLogged {
    pub(crate) incident: i64,
    pub(crate) opened: bool,
    pub(crate) tenant: String,
    pub(crate) rule: String,
    pub(crate) device_id: String,
    pub(crate) severity: String,
    pub(crate) lasted_ms: i64,
}

/// A device's latest successful patch report, as the patch rules need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PatchRow {
    /// When the oldest still-pending security update was first seen.
    pub(crate) oldest_security_ms: Option<i64>,
    /// Since when a reboot has been required.
    pub(crate) reboot_since_ms: Option<i64>,
}

/// A device as the alert engine loads it at start.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AlertDeviceRow {
    pub(crate) id: String,
    pub(crate) tenant: String,
    pub(crate) site: Option<String>,
    pub(crate) os_family: String,
    pub(crate) os_version: String,
    pub(crate) last_seen_ms: i64,
    pub(crate) cert_not_after_ms: Option<i64>,
    pub(crate) patch: Option<PatchRow>,
}

/// An alert as `alerts list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct AlertRow {
    pub(crate) id: i64,
    pub(crate) rule: String,
    pub(crate) device_id: String,
    pub(crate) hostname: String,
    pub(crate) dimension: String,
    pub(crate) tenant: String,
    pub(crate) state: String,
    pub(crate) severity: Option<String>,
    pub(crate) since_ms: i64,
    pub(crate) last_value: f64,
    pub(crate) stale: bool,
    pub(crate) flapping: bool,
    pub(crate) suppressed: bool,
    pub(crate) acked_ms: Option<i64>,
    pub(crate) acked_by: Option<String>,
}

/// Filters of [`AlertStore::list_alerts`], as stored names.
#[derive(Debug, Clone, Default)]
pub(crate) struct AlertFilter<'a> {
    pub(crate) tenant: Option<&'a str>,
    pub(crate) state: Option<&'a str>,
    pub(crate) device: Option<&'a str>,
    /// Include instances that are back to OK.
    pub(crate) all: bool,
    /// `warning` (warning or critical) or `critical` (critical only).
    pub(crate) min_severity: Option<&'a str>,
}

/// One history entry as `alerts history` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct HistoryRow {
    pub(crate) instance_id: i64,
    pub(crate) rule: String,
    pub(crate) tenant: String,
    pub(crate) device_id: String,
    pub(crate) dimension: String,
    pub(crate) at_ms: i64,
    pub(crate) event: String,
    pub(crate) from_state: Option<String>,
    pub(crate) to_state: String,
    pub(crate) severity: Option<String>,
    pub(crate) value: Option<f64>,
    pub(crate) suppressed: bool,
}

/// What acknowledging an alert found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckOutcome {
    Acked,
    AlreadyAcked,
    NotActive,
    NoSuchAlert,
}

/// A silence to store, checked by `alerts::silence` (matchers, times, tag text,
/// RRULE); the store checks the names it refers to.
#[derive(Debug, Clone, Default)]
pub(crate) struct SilenceInsert {
    pub(crate) starts_ms: i64,
    pub(crate) ends_ms: i64,
    pub(crate) tenant: Option<String>,
    pub(crate) site: Option<String>,
    pub(crate) tag: Option<String>,
    pub(crate) device: Option<String>,
    pub(crate) rule: Option<String>,
    pub(crate) comment: String,
    pub(crate) by: String,
    pub(crate) rrule: Option<String>,
    pub(crate) tz: Option<String>,
    pub(crate) duration_ms: Option<i64>,
}

/// Why a silence's names were refused: a typo would otherwise silence nothing,
/// quietly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SilenceRefusal {
    NoTenant(String),
    /// The site, and ` in tenant "x"` when a tenant was given.
    NoSite(String, String),
    NoDevice(String),
    WrongTenant {
        device: String,
        actual: String,
        wanted: String,
    },
}

/// A silence as stored and listed.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct SilenceRow {
    pub(crate) id: i64,
    pub(crate) starts_ms: i64,
    pub(crate) ends_ms: i64,
    pub(crate) tenant: Option<String>,
    pub(crate) site: Option<String>,
    pub(crate) tag: Option<String>,
    pub(crate) device_id: Option<String>,
    pub(crate) rule: Option<String>,
    pub(crate) comment: String,
    pub(crate) created_by: String,
    pub(crate) created_ms: i64,
    pub(crate) removed_ms: Option<i64>,
    pub(crate) removed_by: Option<String>,
    pub(crate) rrule: Option<String>,
    pub(crate) tz: Option<String>,
    pub(crate) duration_ms: Option<i64>,
}

/// What lifting a silence found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RemoveOutcome {
    Removed,
    AlreadyRemoved,
    AlreadyEnded,
    NoSuchSilence,
}

/// A maintenance window made at run time (the API, the console), as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct MaintenanceRow {
    pub(crate) id: i64,
    pub(crate) tenant: String,
    pub(crate) site: Option<String>,
    pub(crate) device_id: Option<String>,
    pub(crate) starts_ms: i64,
    pub(crate) ends_ms: i64,
    pub(crate) note: String,
    pub(crate) created_by: String,
    pub(crate) created_ms: i64,
}

/// The alert side: the engine's rounds and startup loads, and what `alerts …`
/// commands read and write.
///
/// Invariant of every implementation: [`save_round`](Self::save_round) writes the
/// instance rows, their history and their incident and feed side effects in one
/// transaction — the stored state and history never disagree, and a transition is
/// durable before anything (a notification) could act on it.
pub(crate) trait AlertStore {
    /// Saves one round of the engine: upserts each instance (an instance back to
    /// `ok` loses its ack), appends its records to the history, and opens, updates
    /// or resolves its incident with feed events; all or nothing. Returns the
    /// incidents opened or resolved, to log after the commit.
    fn save_round(
        &mut self,
        changes: &[InstanceChange],
        now_ms: i64,
    ) -> Result<Vec<IncidentLogged>, StoreError>;
    /// Every stored instance, to resume the state machines after a restart.
    fn load_instances(&self) -> Result<Vec<InstanceRow>, StoreError>;
    /// Every device with its tenant, site, newest certificate expiry and latest
    /// successful patch report.
    fn load_devices(&self) -> Result<Vec<AlertDeviceRow>, StoreError>;
    /// Devices revoked (or removed): out of the fleet for alerting.
    fn load_revoked_devices(&self) -> Result<Vec<String>, StoreError>;
    /// Every device's tags, sorted.
    fn load_tags(&self) -> Result<HashMap<String, Vec<String>>, StoreError>;
    /// When each device's newest certificate expires.
    fn load_cert_expiries(&self) -> Result<Vec<(String, i64)>, StoreError>;
    /// The site a device enrolled into (`None` for none or no such device).
    fn site_of(&self, device_id: &str) -> Result<Option<String>, StoreError>;
    /// When the device's newest certificate expires (`None` if none is recorded).
    fn cert_expiry_of(&self, device_id: &str) -> Result<Option<i64>, StoreError>;
    /// Alerts, most recent state change first.
    fn list_alerts(&self, f: &AlertFilter<'_>) -> Result<Vec<AlertRow>, StoreError>;
    /// The history of one device's alerts (or one tenant's, or all), oldest first.
    fn alert_history(
        &self,
        device: Option<&str>,
        tenant: Option<&str>,
    ) -> Result<Vec<HistoryRow>, StoreError>;
    /// Acknowledges an active alert and its open incident, with a history row.
    fn ack_alert(&mut self, id: i64, by: &str, now_ms: i64) -> Result<AckOutcome, StoreError>;
    /// Stores a silence after checking the tenant, site and device it names, in
    /// one transaction; returns its id, or why a name was refused (nothing stored).
    fn create_silence(
        &mut self,
        s: &SilenceInsert,
        now_ms: i64,
    ) -> Result<Result<i64, SilenceRefusal>, StoreError>;
    /// Silences not removed and not ended at `now_ms` (with `all`: every one),
    /// soonest end first.
    fn silences(&self, now_ms: i64, all: bool) -> Result<Vec<SilenceRow>, StoreError>;
    /// Lifts a silence (keeps the row, records who and when).
    fn remove_silence(
        &mut self,
        id: i64,
        by: &str,
        now_ms: i64,
    ) -> Result<RemoveOutcome, StoreError>;
    /// Maintenance windows made at run time that have not ended at `now_ms`.
    fn maintenance_windows(&self, now_ms: i64) -> Result<Vec<MaintenanceRow>, StoreError>;
}

// ----------------------------------------------------------------- notify side

/// One incident as the CLI, the feed, mails and webhooks show it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct IncidentRow {
    pub(crate) id: i64,
    pub(crate) tenant: String,
    pub(crate) site: Option<String>,
    pub(crate) device_id: String,
    pub(crate) hostname: String,
    pub(crate) rule: String,
    pub(crate) dimension: String,
    pub(crate) severity: String,
    pub(crate) state: String,
    pub(crate) value: f64,
    pub(crate) suppressed: bool,
    pub(crate) opened_ms: i64,
    pub(crate) acked_ms: Option<i64>,
    pub(crate) acked_by: Option<String>,
    pub(crate) ack_note: Option<String>,
    pub(crate) snoozed_until_ms: Option<i64>,
    pub(crate) resolved_ms: Option<i64>,
    pub(crate) resolved_by: Option<String>,
    pub(crate) loop_no: i64,
    pub(crate) loop_start_ms: i64,
}

/// What a workflow command found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Done,
    /// Already in that state (acked twice, resolved twice).
    Already,
    Resolved,
    NoSuchIncident,
}

/// One event of the incident feed, as stored (its body is the versioned JSON
/// document the feed serves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FeedEventRow {
    pub(crate) id: i64,
    pub(crate) incident_id: i64,
    pub(crate) tenant: String,
    pub(crate) critical: bool,
    pub(crate) kind: String,
    pub(crate) body: String,
}

/// A pending delivery of the outbox, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutboxRow {
    pub(crate) id: i64,
    /// `<incident>:<transition>:<channel>:<recipient>`: a delivery is queued once.
    pub(crate) idem_key: String,
    pub(crate) incident_id: i64,
    pub(crate) tenant: String,
    pub(crate) transition: String,
    /// `email` or `webhook`.
    pub(crate) channel: String,
    pub(crate) recipient: String,
    pub(crate) created_ms: i64,
    pub(crate) attempts: i64,
    /// Not to be tried before this time (a retry's backoff).
    pub(crate) next_attempt_ms: i64,
}

/// How one attempt at a delivery ended, as the outbox decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeliveryResult {
    Sent {
        answer: String,
        message_id: Option<String>,
    },
    /// Failed; try again at `next_attempt_ms`.
    Retry {
        answer: String,
        next_attempt_ms: i64,
    },
    /// Failed for good: dead-lettered.
    Dead { answer: String },
}

/// One attempt to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeliveryAttempt {
    pub(crate) outbox_id: i64,
    /// The attempt's number (1 for the first).
    pub(crate) attempt: i64,
    /// When it ended (the remote's answer).
    pub(crate) at_ms: i64,
    pub(crate) result: DeliveryResult,
}

/// One line of `notify log`: a delivery with one of its attempts (or none yet).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct DeliveryLogRow {
    pub(crate) outbox_id: i64,
    pub(crate) incident_id: i64,
    pub(crate) tenant: String,
    pub(crate) transition: String,
    pub(crate) channel: String,
    pub(crate) recipient: String,
    pub(crate) status: String,
    pub(crate) at_ms: Option<i64>,
    pub(crate) attempt: Option<i64>,
    pub(crate) result: Option<String>,
    pub(crate) answer: Option<String>,
}

/// The notify side: incidents and their workflow, the feed, and the outbox's
/// delivery queue (queued once per idempotency key; sent / retry / dead letter).
pub(crate) trait NotifyStore {
    /// Incidents, newest first (at most 1,000); `all` includes resolved ones.
    fn incidents(&self, tenant: Option<&str>, all: bool) -> Result<Vec<IncidentRow>, StoreError>;
    /// One incident.
    fn incident(&self, id: i64) -> Result<Option<IncidentRow>, StoreError>;
    /// Acknowledges an incident (escalation and repeats stop) and its alert
    /// instance; a feed event and webhook notices, in one transaction.
    fn ack_incident(
        &mut self,
        id: i64,
        by: &str,
        note: Option<&str>,
        now_ms: i64,
    ) -> Result<Outcome, StoreError>;
    /// Snoozes an incident until `until_ms` (a timed ack: it reopens then).
    fn snooze_incident(
        &mut self,
        id: i64,
        by: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<Outcome, StoreError>;
    /// Resolves an incident by hand.
    fn resolve_incident(&mut self, id: i64, by: &str, now_ms: i64) -> Result<Outcome, StoreError>;
    /// The feed's newest event id (0 for none).
    fn feed_head(&self) -> Result<i64, StoreError>;
    /// Feed events after `after`, oldest first, at most `limit`.
    fn feed_after(&self, after: i64, limit: i64) -> Result<Vec<FeedEventRow>, StoreError>;
    // The dispatcher's outbox (`notify::dispatch`, `notify::outbox`, on a `Db`);
    // the escalation's own statements are `escalation_sql::EscalationStore`.
    /// Queues a delivery of `incident`'s `transition` (once: 0 if its idempotency
    /// key is already queued, else 1).
    #[cfg_attr(not(test), allow(dead_code))]
    fn queue_delivery(
        &mut self,
        incident: &IncidentRow,
        transition: &str,
        channel: &str,
        recipient: &str,
        now_ms: i64,
    ) -> Result<usize, StoreError>;
    /// Queues a test delivery (`notify test`: no incident, id 0; transition
    /// `test`; keyed by `now_ms`, so each test is a new row) and returns it.
    fn queue_test_delivery(
        &mut self,
        tenant: &str,
        channel: &str,
        recipient: &str,
        now_ms: i64,
    ) -> Result<OutboxRow, StoreError>;
    /// Every pending delivery, oldest first.
    fn pending_deliveries(&self) -> Result<Vec<OutboxRow>, StoreError>;
    /// Records attempts and their log lines, all or nothing.
    fn record_deliveries(&mut self, attempts: &[DeliveryAttempt]) -> Result<(), StoreError>;
    /// The Message-ID a problem mail to `recipient` went out with.
    fn problem_message_id(
        &self,
        incident: i64,
        recipient: &str,
    ) -> Result<Option<String>, StoreError>;
    /// Every delivery with every attempt (of one incident, or all).
    fn delivery_log(&self, incident: Option<i64>) -> Result<Vec<DeliveryLogRow>, StoreError>;
}

// ------------------------------------------------------------------ admin side

/// The name checks every command makes before it acts ("no such tenant"), on a
/// [`super::Db`] or (until the CLI holds only `Db`s) on the CLI's connection.
/// The rest of the admin side is `store::admin`.
pub(crate) trait Names {
    /// Whether a tenant with this name exists.
    fn tenant_exists(&self, name: &str) -> Result<bool, StoreError>;
    /// Whether a device with this id exists (removed ones included).
    fn device_exists(&self, id: &str) -> Result<bool, StoreError>;
}

/// What the running collector asks of the admin tables: the revocation poller
/// (append-only tables read by id) and the enrollment and renewal handlers (one
/// short `BEGIN IMMEDIATE` transaction each; a token is consumed in the
/// transaction that records the device and its certificate). The CLI's commands
/// still call `store::admin` on their connection (see ARCHITECTURE.md).
pub(crate) trait AdminStore {
    /// Revocations with an id above `after`, oldest first.
    fn revocations_since(
        &self,
        after: i64,
    ) -> Result<Vec<super::admin::Revocation>, super::admin::AdminError>;
    /// Renew requests `(id, device)` above `after`.
    fn renew_requests_since(
        &self,
        after: i64,
    ) -> Result<Vec<(i64, String)>, super::admin::AdminError>;
    /// Patch-check requests `(id, device)` above `after`.
    fn patch_check_requests_since(
        &self,
        after: i64,
    ) -> Result<Vec<(i64, String)>, super::admin::AdminError>;
    /// Whether this serial was recorded as issued to this device.
    fn certificate_issued(
        &self,
        device_id: &str,
        serial: &str,
    ) -> Result<bool, super::admin::AdminError>;
    /// Whether the device exists and is neither revoked nor removed.
    fn device_in_good_standing(&self, device_id: &str) -> Result<bool, super::admin::AdminError>;
    /// Records a certificate issued to a device (`how`: enroll, renew, manual).
    fn record_certificate(
        &self,
        device_id: &str,
        cert: &super::admin::IssuedCert,
        how: &str,
        now_ms: i64,
    ) -> Result<(), super::admin::AdminError>;
    // The administrative commands' (tenant, site, token, device, API token).
    /// Creates a tenant (a bad or taken name is refused).
    fn create_tenant(&self, name: &str, now_ms: i64) -> Result<(), super::admin::AdminError>;
    /// Every tenant, with its counts.
    fn list_tenants(&self) -> Result<Vec<super::admin::TenantRow>, super::admin::AdminError>;
    /// Creates a site in a tenant.
    fn create_site(
        &self,
        tenant: &str,
        site: &str,
        now_ms: i64,
    ) -> Result<(), super::admin::AdminError>;
    /// The sites (of one tenant, or all).
    fn list_sites(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<super::admin::SiteRow>, super::admin::AdminError>;
    /// Stores an enrollment token (its secret's hash).
    fn insert_token(
        &self,
        t: &super::admin::NewToken,
        now_ms: i64,
    ) -> Result<(), super::admin::AdminError>;
    /// Every enrollment token.
    fn list_tokens(&self) -> Result<Vec<super::admin::TokenRow>, super::admin::AdminError>;
    /// Revokes an enrollment token.
    fn revoke_token(&self, id: &str, now_ms: i64) -> Result<(), super::admin::AdminError>;
    /// The `device list` rows.
    fn list_devices(&self) -> Result<Vec<super::admin::DeviceListRow>, super::admin::AdminError>;
    /// Revokes a device and every certificate it holds (one transaction).
    fn revoke_device(
        &mut self,
        device_id: &str,
        now_ms: i64,
    ) -> Result<(), super::admin::AdminError>;
    /// Asks a device to renew its certificate.
    fn request_renew(&self, device_id: &str, now_ms: i64) -> Result<(), super::admin::AdminError>;
    /// Asks a device for a patch check now.
    fn request_patch_check(
        &self,
        device_id: &str,
        now_ms: i64,
    ) -> Result<(), super::admin::AdminError>;
    /// Adds tags to a device; returns those added.
    fn tag_device(
        &mut self,
        device_id: &str,
        tags: &[String],
        now_ms: i64,
    ) -> Result<Vec<String>, super::admin::AdminError>;
    /// Removes tags from a device; returns those it had.
    fn untag_device(
        &mut self,
        device_id: &str,
        tags: &[String],
    ) -> Result<Vec<String>, super::admin::AdminError>;
    /// What `device remove`'s confirmation names: (tenant, hostname, revoked, removed).
    fn describe_removal(
        &self,
        device_id: &str,
    ) -> Result<Option<(String, String, bool, bool)>, super::admin::AdminError>;
    /// Revokes and removes a device; with `purge`, deletes its data too.
    fn remove_device(
        &mut self,
        device_id: &str,
        purge: bool,
        now_ms: i64,
    ) -> Result<super::removal::Removed, super::admin::AdminError>;
    /// Stores an API token's hash (`token create-api`, `alerts tail`'s local token); returns its id.
    fn create_api_token(
        &self,
        name: &str,
        sha256_hex: &str,
        created_by: Option<&str>,
        now_ms: i64,
    ) -> Result<i64, super::admin::AdminError>;
    /// Revokes an API token.
    fn revoke_api_token(&self, id: i64, now_ms: i64) -> Result<(), super::admin::AdminError>;
    /// Enrolls a device with a token: checks and consumes the token, signs with
    /// `sign`, records device and certificate — all in one transaction.
    fn enroll(
        &mut self,
        token_id: &str,
        secret_sha256: &[u8; 32],
        hostname: &str,
        now_ms: i64,
        sign: impl FnOnce(&super::admin::Grant) -> Result<super::admin::IssuedCert, String>,
    ) -> Result<(super::admin::Grant, super::admin::IssuedCert), super::admin::EnrollFailure>;
}
