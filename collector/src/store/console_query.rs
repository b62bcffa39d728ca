//! What the console reads (issue 17 item 1): [`ConsoleQuery`], over backend-neutral
//! rows, for the fleet, tenant and site pages, the device list and a device's page,
//! the incident list and one incident, the alert ack / unack (each one transaction
//! with its audit row), the `/metrics` figures and the feed pages; and the reads the
//! CLI's `inspect` and `storage stats` share with it. [`ScopeLookup`] is the scope
//! check every handler starts from. The SQLite implementation is in
//! `console_query_sql.rs`.
//!
//! Invariants:
//! - tenant scoping is done by the store: a `scope` of `Some(tenant_id)` is a bound
//!   parameter of the query, and another tenant's object is absent (`None`, not in a
//!   list, not counted), exactly as one that does not exist;
//! - an ack or unack that is refused (out of scope, already acked, resolved, not
//!   acknowledged) writes nothing: no state change, no feed event, no audit row;
//! - substrings to search for are passed as typed (no SQL patterns): the store
//!   escapes them.

pub(crate) use super::api::IncidentRow;
use super::compact::StorageConfig;
use super::posture::{DevicePosture, TenantSummary};
use super::query::MetricQuery;
pub(crate) use super::query::{DeviceRow, InventoryRow, PatchStatus, SoftwareRow};
use super::stats::StorageStats;
use super::{AuditEntry, StoreError};

/// The scope check every console handler starts from: a tenant's id by name.
/// Implemented for [`super::Db`].
pub(crate) trait ScopeLookup {
    /// The id of the tenant named `name`, if there is one.
    fn tenant_id(&self, name: &str) -> Result<Option<i64>, StoreError>;
}

/// Which page of a list: `page` counts from 1, `per_page` rows each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageAt {
    pub(crate) page: i64,
    pub(crate) per_page: i64,
}

impl PageAt {
    /// Rows before the page.
    pub(super) fn offset(self) -> i64 {
        (self.page - 1) * self.per_page
    }
}

/// One page of a list and the number of rows of the whole list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Paged<T> {
    pub(crate) items: Vec<T>,
    pub(crate) total: i64,
}

/// A tenant with its counts (devices not revoked, sites).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TenantCounts {
    pub(crate) name: String,
    pub(crate) devices: i64,
    pub(crate) sites: i64,
}

/// The instants the fleet counts are taken against (Unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FleetWindow {
    /// Seen at or after this: online.
    pub(crate) online_since_ms: i64,
    /// Last seen before this: stale.
    pub(crate) stale_before_ms: i64,
    /// A security update first seen before this is overdue.
    pub(crate) overdue_before_ms: i64,
}

/// One tenant's fleet counts (devices not revoked; incidents not resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FleetCounts {
    pub(crate) tenant: String,
    pub(crate) devices: i64,
    pub(crate) online: i64,
    pub(crate) stale: i64,
    pub(crate) alerts_warning: i64,
    pub(crate) alerts_critical: i64,
    /// Devices whose latest patch report needs a reboot.
    pub(crate) reboot_pending: i64,
    /// Devices with a pending security update in their latest report.
    pub(crate) security_pending: i64,
    /// Devices with one pending since before [`FleetWindow::overdue_before_ms`].
    pub(crate) security_overdue: i64,
}

/// A site with its tenant and number of devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SiteCounts {
    pub(crate) tenant: String,
    pub(crate) name: String,
    pub(crate) devices: i64,
}

/// A device as the console lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsoleDevice {
    pub(crate) id: String,
    pub(crate) tenant: String,
    pub(crate) site: Option<String>,
    pub(crate) hostname: String,
    pub(crate) os_family: String,
    pub(crate) os_version: String,
    pub(crate) agent_version: String,
    pub(crate) first_seen_ms: i64,
    pub(crate) last_seen_ms: i64,
    /// Its incidents not resolved.
    pub(crate) open_alerts: i64,
}

/// Which devices to list (revoked ones never are); `None` is no filter.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DeviceFilter<'a> {
    /// The tenant (all: `None`).
    pub(crate) scope: Option<i64>,
    /// Site name.
    pub(crate) site: Option<&'a str>,
    /// Seen at or after [`DeviceFilter::online_since_ms`] (true) or not (false).
    pub(crate) online: Option<bool>,
    pub(crate) online_since_ms: i64,
    pub(crate) os_family: Option<&'a str>,
    /// Part of the host name (case-insensitive).
    pub(crate) hostname: Option<&'a str>,
    /// Has this tag.
    pub(crate) tag: Option<&'a str>,
}

/// One pending update of a device's latest patch report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingUpdate {
    pub(crate) name: String,
    pub(crate) current_version: String,
    pub(crate) new_version: String,
    pub(crate) classification: String,
    pub(crate) advisory_id: String,
    /// When the agent first saw it pending (its clock).
    pub(crate) first_seen_ms: i64,
}

/// Which incidents to list; `None` is no filter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IncidentFilter<'a> {
    /// The tenant (all: `None`).
    pub(crate) scope: Option<i64>,
    /// `active` (not resolved), `all`, or one state (`open`, `acked`, `snoozed`,
    /// `resolved`).
    pub(crate) state: &'a str,
    pub(crate) severity: Option<&'a str>,
    pub(crate) device: Option<&'a str>,
    /// Site name (of the incident's device).
    pub(crate) site: Option<&'a str>,
}

/// One feed event of an incident (the workflow's events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IncidentEvent {
    pub(crate) kind: String,
    pub(crate) at_ms: i64,
}

/// One step of the alert instance's history behind an incident.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistoryStep {
    pub(crate) at_ms: i64,
    pub(crate) event: String,
    pub(crate) from_state: Option<String>,
    pub(crate) to_state: String,
    pub(crate) severity: Option<String>,
    pub(crate) value: Option<f64>,
}

/// An incident with its feed events (oldest first) and its alert's history (at
/// most 1,000 steps, oldest first).
#[derive(Debug, Clone)]
pub(crate) struct IncidentDetail {
    pub(crate) incident: IncidentRow,
    pub(crate) events: Vec<IncidentEvent>,
    pub(crate) history: Vec<HistoryStep>,
}

/// What an ack from the console did.
#[derive(Debug, Clone)]
pub(crate) enum AckResult {
    /// Acknowledged (and audited); the incident as it is now.
    Done(Box<IncidentRow>),
    /// It was acknowledged already: nothing written.
    Already,
    /// It is resolved: nothing written.
    Resolved,
    /// No such incident within the scope: nothing written.
    NotFound,
}

/// What an unack from the console did.
#[derive(Debug, Clone)]
pub(crate) enum UnackResult {
    /// Open again (and audited); the incident as it is now.
    Done(Box<IncidentRow>),
    /// It is in `state`, neither acked nor snoozed: nothing written.
    NotAcked { state: String },
    /// No such incident within the scope: nothing written.
    NotFound,
}

/// The figures `/metrics` reads from the store (no tenant names).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ScrapeFigures {
    pub(crate) devices_online: i64,
    pub(crate) devices_offline: i64,
    /// Incidents not resolved, by severity.
    pub(crate) incidents_open: Vec<(String, i64)>,
    /// Outbox rows by status.
    pub(crate) outbox: Vec<(String, i64)>,
    /// Delivery attempts by result.
    pub(crate) notify_attempts: Vec<(String, i64)>,
    /// Sessions not expired.
    pub(crate) sessions: i64,
    /// The feed's latest event id (0: none).
    pub(crate) feed_events: i64,
}

/// A token of `token create-api` (no role, no tenant: it reads the whole feed and
/// `/metrics`), as found by its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RolelessToken {
    Valid,
    Revoked,
}

/// One event of the feed as served: id, kind and its JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FeedPageRow {
    pub(crate) id: i64,
    pub(crate) kind: String,
    pub(crate) body: String,
}

/// The console's reads, and its ack / unack (issue 17 item 1). Every method taking
/// a `scope` answers only within that tenant (any tenant: `None`).
pub(crate) trait ConsoleQuery {
    /// The name of tenant `id`, if it exists.
    fn tenant_name(&self, id: i64) -> Result<Option<String>, StoreError>;
    /// Tenants within the scope, by name, with their counts.
    fn tenants(&self, scope: Option<i64>) -> Result<Vec<TenantCounts>, StoreError>;
    /// Each tenant's fleet counts within the scope, by tenant name.
    fn fleet(&self, scope: Option<i64>, at: &FleetWindow) -> Result<Vec<FleetCounts>, StoreError>;
    /// Sites within the scope, by tenant then site name.
    fn sites(&self, scope: Option<i64>) -> Result<Vec<SiteCounts>, StoreError>;

    /// Devices matching `f`, most recently seen first (then by id).
    fn devices(&self, f: &DeviceFilter<'_>, at: PageAt)
    -> Result<Paged<ConsoleDevice>, StoreError>;
    /// Device `id` if it is within the scope (revoked ones too).
    fn device(&self, id: &str, scope: Option<i64>) -> Result<Option<ConsoleDevice>, StoreError>;
    /// The device's latest patch status, if it ever sent a report.
    fn patch_status(&self, device_id: &str) -> Result<Option<PatchStatus>, StoreError>;
    /// The device's latest inventory, if it ever sent one.
    fn inventory(&self, device_id: &str) -> Result<Option<InventoryRow>, StoreError>;
    /// The pending updates of the device's latest patch report: security ones
    /// first, then oldest first, then by name; at most 5,000.
    fn pending_updates(&self, device_id: &str) -> Result<Vec<PendingUpdate>, StoreError>;
    /// The device's software (its latest inventory) by name (case-insensitive) then
    /// version; `search`: part of the name or publisher (case-insensitive).
    fn software_page(
        &self,
        device_id: &str,
        search: Option<&str>,
        at: PageAt,
    ) -> Result<Paged<SoftwareRow>, StoreError>;
    /// Metric values (raw or rolled up, tiers chosen with `retention`).
    fn metric_query(&self, retention: StorageConfig) -> impl MetricQuery + '_;

    /// Incidents matching `f`, newest first.
    fn incidents(
        &self,
        f: &IncidentFilter<'_>,
        at: PageAt,
    ) -> Result<Paged<IncidentRow>, StoreError>;
    /// Incident `id` with its events and history, if it is within the scope.
    fn incident_detail(
        &self,
        id: i64,
        scope: Option<i64>,
    ) -> Result<Option<IncidentDetail>, StoreError>;
    /// Acknowledges incident `id` (within the scope) as `audit.actor` with `note`,
    /// and appends `audit` (under the incident's tenant), in one transaction.
    fn ack_incident(
        &mut self,
        id: i64,
        scope: Option<i64>,
        note: Option<&str>,
        audit: &AuditEntry,
        now_ms: i64,
    ) -> Result<AckResult, StoreError>;
    /// Takes back the acknowledgement (or snooze) of incident `id` (within the
    /// scope): open again, a new escalation loop from `now_ms`, the alert instance
    /// no longer acked, a `reopened` feed event and `audit`, in one transaction.
    fn unack_incident(
        &mut self,
        id: i64,
        scope: Option<i64>,
        audit: &AuditEntry,
        now_ms: i64,
    ) -> Result<UnackResult, StoreError>;

    /// The `/metrics` figures: devices seen since `online_since_ms` are online;
    /// sessions expiring after `now_ms` count.
    fn scrape_figures(
        &self,
        online_since_ms: i64,
        now_ms: i64,
    ) -> Result<ScrapeFigures, StoreError>;
    /// The role-less token with this SHA-256 (hex), if there is one.
    fn roleless_token(&self, sha256_hex: &str) -> Result<Option<RolelessToken>, StoreError>;
    /// Up to `limit` feed events after id `after`, oldest first: of one tenant (or
    /// all), and only critical ones when `critical_only`.
    fn feed_page(
        &self,
        after: i64,
        tenant: Option<&str>,
        critical_only: bool,
        limit: i64,
    ) -> Result<Vec<FeedPageRow>, StoreError>;

    /// Every device (revoked ones too), most recently seen first (`inspect`).
    fn all_devices(&self) -> Result<Vec<DeviceRow>, StoreError>;
    /// The device's whole software list, by name then version (`inspect`).
    fn software(&self, device_id: &str) -> Result<Vec<SoftwareRow>, StoreError>;
    /// The device's latest posture report, if any, aged at `now_ms` (`inspect`).
    fn device_posture(
        &self,
        device_id: &str,
        now_ms: i64,
    ) -> Result<Option<DevicePosture>, StoreError>;
    /// Every tenant's posture summary (or only `tenant`'s), by name (`posture`).
    fn tenant_posture(
        &self,
        tenant: Option<&str>,
        now_ms: i64,
    ) -> Result<Vec<TenantSummary>, StoreError>;
    /// Sizes per table and tier, the oldest data, the compaction backlog
    /// (`storage stats`).
    fn storage_stats(&self) -> Result<StorageStats, StoreError>;
}
