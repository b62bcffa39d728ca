//! [`Db`]: the opaque handle callers outside `store/` hold instead of a
//! `rusqlite::Connection` (issue 17 item 1). It is opened like every side
//! connection ([`super::open`]: pragmas, migrations, commits synced after the
//! lock) and implements the store's traits ([`super::api`]) on SQLite.
//!
//! One `Db` is one connection: not shared between threads at once (it is `Send`,
//! not `Sync`), each write method one short transaction.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::api::{
    AckOutcome, AlertDeviceRow, AlertFilter, AlertRow, AlertStore, HistoryRow, IncidentLogged,
    InstanceChange, InstanceRow, MaintenanceRow, RemoveOutcome, SilenceInsert, SilenceRefusal,
    SilenceRow,
};
use super::{StoreError, alert_sql};

/// A connection to the store, for one thread at a time.
pub struct Db {
    conn: Connection,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path()).finish()
    }
}

impl Db {
    /// Opens (creating and migrating if needed) the database at `path`, as
    /// [`super::open`] does.
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        Ok(Db {
            conn: super::open(path)?,
        })
    }

    /// Opens the database read-only (the CLI's reads), as
    /// [`super::open_read_only`] does: nothing is created or migrated.
    pub fn open_read_only(path: &Path) -> Result<Db, StoreError> {
        Ok(Db {
            conn: super::open_read_only(path)?,
        })
    }

    /// The database file (`None` in memory).
    pub fn path(&self) -> Option<PathBuf> {
        self.conn
            .path()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    }

    /// For the alert engine's connection: while the store writer holds the write
    /// lock, try again every 0.5 ms for up to 30 s. Under full ingest the writer is
    /// in a transaction almost all the time, and a busy handler that sleeps longer
    /// between tries misses the short gaps between its commits.
    pub(crate) fn retry_busy_often(&mut self) -> Result<(), StoreError> {
        fn retry_soon(attempt: i32) -> bool {
            std::thread::sleep(std::time::Duration::from_micros(500));
            attempt < 60_000
        }
        Ok(self.conn.busy_handler(Some(retry_soon))?)
    }

    /// For the dispatcher's connection: as [`Db::retry_busy_often`], for up to
    /// 5 s (10,000 tries 0.5 ms apart).
    pub(crate) fn retry_busy_briefly(&mut self) -> Result<(), StoreError> {
        fn retry_soon(attempt: i32) -> bool {
            std::thread::sleep(std::time::Duration::from_micros(500));
            attempt < 10_000
        }
        Ok(self.conn.busy_handler(Some(retry_soon))?)
    }

    /// The connection, for the store's own modules (never outside `store/`).
    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The connection, for the store's own modules (never outside `store/`).
    pub(super) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Closes the connection, reporting a failure to (the last WAL sync aside,
    /// which each commit did already).
    pub fn close(self) -> Result<(), StoreError> {
        self.conn.close().map_err(|(_, e)| StoreError::from(e))
    }

    /// The connection, for the store's own modules and tests.
    #[cfg(test)]
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// The SQLite implementation proper. On the bare connection too, so that the
/// console — which holds pool connections until its round of issue 17 — reads
/// through the same trait; everything else holds a [`Db`].
impl AlertStore for Connection {
    fn save_round(
        &mut self,
        changes: &[InstanceChange],
        now_ms: i64,
    ) -> Result<Vec<IncidentLogged>, StoreError> {
        alert_sql::save(self, changes, now_ms)
    }
    fn load_instances(&self) -> Result<Vec<InstanceRow>, StoreError> {
        alert_sql::load_instances(self)
    }
    fn load_devices(&self) -> Result<Vec<AlertDeviceRow>, StoreError> {
        alert_sql::load_devices(self)
    }
    fn load_revoked_devices(&self) -> Result<Vec<String>, StoreError> {
        alert_sql::load_revoked_devices(self)
    }
    fn load_tags(&self) -> Result<std::collections::HashMap<String, Vec<String>>, StoreError> {
        alert_sql::load_tags(self)
    }
    fn load_cert_expiries(&self) -> Result<Vec<(String, i64)>, StoreError> {
        alert_sql::load_cert_expiries(self)
    }
    fn site_of(&self, device_id: &str) -> Result<Option<String>, StoreError> {
        alert_sql::site_of(self, device_id)
    }
    fn cert_expiry_of(&self, device_id: &str) -> Result<Option<i64>, StoreError> {
        alert_sql::cert_expiry_of(self, device_id)
    }
    fn list_alerts(&self, f: &AlertFilter<'_>) -> Result<Vec<AlertRow>, StoreError> {
        alert_sql::list(self, f)
    }
    fn alert_history(
        &self,
        device: Option<&str>,
        tenant: Option<&str>,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        alert_sql::history(self, device, tenant)
    }
    fn ack_alert(&mut self, id: i64, by: &str, now_ms: i64) -> Result<AckOutcome, StoreError> {
        alert_sql::ack(self, id, by, now_ms)
    }
    fn create_silence(
        &mut self,
        s: &SilenceInsert,
        now_ms: i64,
    ) -> Result<Result<i64, SilenceRefusal>, StoreError> {
        alert_sql::create_silence(self, s, now_ms)
    }
    fn silences(&self, now_ms: i64, all: bool) -> Result<Vec<SilenceRow>, StoreError> {
        alert_sql::silences(self, now_ms, all)
    }
    fn remove_silence(
        &mut self,
        id: i64,
        by: &str,
        now_ms: i64,
    ) -> Result<RemoveOutcome, StoreError> {
        Ok(alert_sql::remove_silence(self, id, by, now_ms)?)
    }
    fn maintenance_windows(&self, now_ms: i64) -> Result<Vec<MaintenanceRow>, StoreError> {
        alert_sql::maintenance_windows(self, now_ms)
    }
}

impl AlertStore for Db {
    fn save_round(
        &mut self,
        changes: &[InstanceChange],
        now_ms: i64,
    ) -> Result<Vec<IncidentLogged>, StoreError> {
        self.conn.save_round(changes, now_ms)
    }
    fn load_instances(&self) -> Result<Vec<InstanceRow>, StoreError> {
        self.conn.load_instances()
    }
    fn load_devices(&self) -> Result<Vec<AlertDeviceRow>, StoreError> {
        self.conn.load_devices()
    }
    fn load_revoked_devices(&self) -> Result<Vec<String>, StoreError> {
        self.conn.load_revoked_devices()
    }
    fn load_tags(&self) -> Result<std::collections::HashMap<String, Vec<String>>, StoreError> {
        self.conn.load_tags()
    }
    fn load_cert_expiries(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.conn.load_cert_expiries()
    }
    fn site_of(&self, device_id: &str) -> Result<Option<String>, StoreError> {
        self.conn.site_of(device_id)
    }
    fn cert_expiry_of(&self, device_id: &str) -> Result<Option<i64>, StoreError> {
        self.conn.cert_expiry_of(device_id)
    }
    fn list_alerts(&self, f: &AlertFilter<'_>) -> Result<Vec<AlertRow>, StoreError> {
        self.conn.list_alerts(f)
    }
    fn alert_history(
        &self,
        device: Option<&str>,
        tenant: Option<&str>,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        self.conn.alert_history(device, tenant)
    }
    fn ack_alert(&mut self, id: i64, by: &str, now_ms: i64) -> Result<AckOutcome, StoreError> {
        self.conn.ack_alert(id, by, now_ms)
    }
    fn create_silence(
        &mut self,
        s: &SilenceInsert,
        now_ms: i64,
    ) -> Result<Result<i64, SilenceRefusal>, StoreError> {
        self.conn.create_silence(s, now_ms)
    }
    fn silences(&self, now_ms: i64, all: bool) -> Result<Vec<SilenceRow>, StoreError> {
        self.conn.silences(now_ms, all)
    }
    fn remove_silence(
        &mut self,
        id: i64,
        by: &str,
        now_ms: i64,
    ) -> Result<RemoveOutcome, StoreError> {
        self.conn.remove_silence(id, by, now_ms)
    }
    fn maintenance_windows(&self, now_ms: i64) -> Result<Vec<MaintenanceRow>, StoreError> {
        self.conn.maintenance_windows(now_ms)
    }
}

fn admin_error(e: super::admin::AdminError) -> StoreError {
    match e {
        super::admin::AdminError::Store(e) => e,
        other => StoreError::Invalid {
            what: other.to_string(),
        },
    }
}

impl super::api::Names for Connection {
    fn tenant_exists(&self, name: &str) -> Result<bool, StoreError> {
        super::admin::tenant_exists(self, name).map_err(admin_error)
    }
    fn device_exists(&self, id: &str) -> Result<bool, StoreError> {
        super::admin::device_exists(self, id).map_err(admin_error)
    }
}

impl super::api::Names for Db {
    fn tenant_exists(&self, name: &str) -> Result<bool, StoreError> {
        self.conn.tenant_exists(name)
    }
    fn device_exists(&self, id: &str) -> Result<bool, StoreError> {
        self.conn.device_exists(id)
    }
}

impl super::api::NotifyStore for Db {
    fn incidents(
        &self,
        tenant: Option<&str>,
        all: bool,
    ) -> Result<Vec<super::api::IncidentRow>, StoreError> {
        self.conn.incidents(tenant, all)
    }
    fn incident(&self, id: i64) -> Result<Option<super::api::IncidentRow>, StoreError> {
        self.conn.incident(id)
    }
    fn ack_incident(
        &mut self,
        id: i64,
        by: &str,
        note: Option<&str>,
        now_ms: i64,
    ) -> Result<super::api::Outcome, StoreError> {
        self.conn.ack_incident(id, by, note, now_ms)
    }
    fn snooze_incident(
        &mut self,
        id: i64,
        by: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<super::api::Outcome, StoreError> {
        self.conn.snooze_incident(id, by, until_ms, now_ms)
    }
    fn resolve_incident(
        &mut self,
        id: i64,
        by: &str,
        now_ms: i64,
    ) -> Result<super::api::Outcome, StoreError> {
        self.conn.resolve_incident(id, by, now_ms)
    }
    fn feed_head(&self) -> Result<i64, StoreError> {
        self.conn.feed_head()
    }
    fn feed_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<super::api::FeedEventRow>, StoreError> {
        self.conn.feed_after(after, limit)
    }
    fn queue_delivery(
        &mut self,
        incident: &super::api::IncidentRow,
        transition: &str,
        channel: &str,
        recipient: &str,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        self.conn
            .queue_delivery(incident, transition, channel, recipient, now_ms)
    }
    fn pending_deliveries(&self) -> Result<Vec<super::api::OutboxRow>, StoreError> {
        self.conn.pending_deliveries()
    }
    fn queue_test_delivery(
        &mut self,
        tenant: &str,
        channel: &str,
        recipient: &str,
        now_ms: i64,
    ) -> Result<super::api::OutboxRow, StoreError> {
        self.conn
            .queue_test_delivery(tenant, channel, recipient, now_ms)
    }
    fn record_deliveries(
        &mut self,
        attempts: &[super::api::DeliveryAttempt],
    ) -> Result<(), StoreError> {
        self.conn.record_deliveries(attempts)
    }
    fn problem_message_id(
        &self,
        incident: i64,
        recipient: &str,
    ) -> Result<Option<String>, StoreError> {
        self.conn.problem_message_id(incident, recipient)
    }
    fn delivery_log(
        &self,
        incident: Option<i64>,
    ) -> Result<Vec<super::api::DeliveryLogRow>, StoreError> {
        self.conn.delivery_log(incident)
    }
}

/// On the bare connection too: the server's startup read of the revocations runs
/// on the connection it opened for the integrity check.
impl super::api::AdminStore for Connection {
    fn create_tenant(&self, name: &str, now_ms: i64) -> Result<(), super::admin::AdminError> {
        super::admin::create_tenant(self, name, now_ms)
    }
    fn list_tenants(&self) -> Result<Vec<super::admin::TenantRow>, super::admin::AdminError> {
        super::admin::list_tenants(self)
    }
    fn create_site(
        &self,
        tenant: &str,
        site: &str,
        now_ms: i64,
    ) -> Result<(), super::admin::AdminError> {
        super::admin::create_site(self, tenant, site, now_ms)
    }
    fn list_sites(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<super::admin::SiteRow>, super::admin::AdminError> {
        super::admin::list_sites(self, tenant)
    }
    fn insert_token(
        &self,
        t: &super::admin::NewToken,
        now_ms: i64,
    ) -> Result<(), super::admin::AdminError> {
        super::admin::insert_token(self, t, now_ms)
    }
    fn list_tokens(&self) -> Result<Vec<super::admin::TokenRow>, super::admin::AdminError> {
        super::admin::list_tokens(self)
    }
    fn revoke_token(&self, id: &str, now_ms: i64) -> Result<(), super::admin::AdminError> {
        super::admin::revoke_token(self, id, now_ms)
    }
    fn list_devices(&self) -> Result<Vec<super::admin::DeviceListRow>, super::admin::AdminError> {
        super::admin::list_devices(self)
    }
    fn revoke_device(
        &mut self,
        device_id: &str,
        now_ms: i64,
    ) -> Result<(), super::admin::AdminError> {
        super::admin::revoke_device(self, device_id, now_ms)
    }
    fn request_renew(&self, device_id: &str, now_ms: i64) -> Result<(), super::admin::AdminError> {
        super::admin::request_renew(self, device_id, now_ms)
    }
    fn request_patch_check(
        &self,
        device_id: &str,
        now_ms: i64,
    ) -> Result<(), super::admin::AdminError> {
        super::admin::request_patch_check(self, device_id, now_ms)
    }
    fn tag_device(
        &mut self,
        device_id: &str,
        tags: &[String],
        now_ms: i64,
    ) -> Result<Vec<String>, super::admin::AdminError> {
        super::admin::tag_device(self, device_id, tags, now_ms)
    }
    fn untag_device(
        &mut self,
        device_id: &str,
        tags: &[String],
    ) -> Result<Vec<String>, super::admin::AdminError> {
        super::admin::untag_device(self, device_id, tags)
    }
    fn describe_removal(
        &self,
        device_id: &str,
    ) -> Result<Option<(String, String, bool, bool)>, super::admin::AdminError> {
        super::removal::describe(self, device_id)
    }
    fn remove_device(
        &mut self,
        device_id: &str,
        purge: bool,
        now_ms: i64,
    ) -> Result<super::removal::Removed, super::admin::AdminError> {
        super::removal::remove_device(self, device_id, purge, now_ms)
    }
    fn create_api_token(
        &self,
        name: &str,
        sha256_hex: &str,
        created_by: Option<&str>,
        now_ms: i64,
    ) -> Result<i64, super::admin::AdminError> {
        super::admin::create_api_token(self, name, sha256_hex, created_by, now_ms)
    }
    fn revoke_api_token(&self, id: i64, now_ms: i64) -> Result<(), super::admin::AdminError> {
        super::admin::revoke_api_token(self, id, now_ms)
    }
    fn revocations_since(
        &self,
        after: i64,
    ) -> Result<Vec<super::admin::Revocation>, super::admin::AdminError> {
        super::admin::revocations_since(self, after)
    }
    fn renew_requests_since(
        &self,
        after: i64,
    ) -> Result<Vec<(i64, String)>, super::admin::AdminError> {
        super::admin::renew_requests_since(self, after)
    }
    fn patch_check_requests_since(
        &self,
        after: i64,
    ) -> Result<Vec<(i64, String)>, super::admin::AdminError> {
        super::admin::patch_check_requests_since(self, after)
    }
    fn certificate_issued(
        &self,
        device_id: &str,
        serial: &str,
    ) -> Result<bool, super::admin::AdminError> {
        super::admin::certificate_issued(self, device_id, serial)
    }
    fn device_in_good_standing(&self, device_id: &str) -> Result<bool, super::admin::AdminError> {
        super::admin::device_in_good_standing(self, device_id)
    }
    fn record_certificate(
        &self,
        device_id: &str,
        cert: &super::admin::IssuedCert,
        how: &str,
        now_ms: i64,
    ) -> Result<(), super::admin::AdminError> {
        super::admin::record_certificate(self, device_id, cert, how, now_ms)
    }
    fn enroll(
        &mut self,
        token_id: &str,
        secret_sha256: &[u8; 32],
        hostname: &str,
        now_ms: i64,
        sign: impl FnOnce(&super::admin::Grant) -> Result<super::admin::IssuedCert, String>,
    ) -> Result<(super::admin::Grant, super::admin::IssuedCert), super::admin::EnrollFailure> {
        super::admin::enroll(self, token_id, secret_sha256, hostname, now_ms, sign)
    }
}

impl super::api::AdminStore for Db {
    fn create_tenant(&self, name: &str, now_ms: i64) -> Result<(), super::admin::AdminError> {
        super::admin::create_tenant(&self.conn, name, now_ms)
    }
    fn list_tenants(&self) -> Result<Vec<super::admin::TenantRow>, super::admin::AdminError> {
        super::admin::list_tenants(&self.conn)
    }
    fn create_site(
        &self,
        tenant: &str,
        site: &str,
        now_ms: i64,
    ) -> Result<(), super::admin::AdminError> {
        super::admin::create_site(&self.conn, tenant, site, now_ms)
    }
    fn list_sites(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<super::admin::SiteRow>, super::admin::AdminError> {
        super::admin::list_sites(&self.conn, tenant)
    }
    fn insert_token(
        &self,
        t: &super::admin::NewToken,
        now_ms: i64,
    ) -> Result<(), super::admin::AdminError> {
        super::admin::insert_token(&self.conn, t, now_ms)
    }
    fn list_tokens(&self) -> Result<Vec<super::admin::TokenRow>, super::admin::AdminError> {
        super::admin::list_tokens(&self.conn)
    }
    fn revoke_token(&self, id: &str, now_ms: i64) -> Result<(), super::admin::AdminError> {
        super::admin::revoke_token(&self.conn, id, now_ms)
    }
    fn list_devices(&self) -> Result<Vec<super::admin::DeviceListRow>, super::admin::AdminError> {
        super::admin::list_devices(&self.conn)
    }
    fn revoke_device(
        &mut self,
        device_id: &str,
        now_ms: i64,
    ) -> Result<(), super::admin::AdminError> {
        super::admin::revoke_device(&mut self.conn, device_id, now_ms)
    }
    fn request_renew(&self, device_id: &str, now_ms: i64) -> Result<(), super::admin::AdminError> {
        super::admin::request_renew(&self.conn, device_id, now_ms)
    }
    fn request_patch_check(
        &self,
        device_id: &str,
        now_ms: i64,
    ) -> Result<(), super::admin::AdminError> {
        super::admin::request_patch_check(&self.conn, device_id, now_ms)
    }
    fn tag_device(
        &mut self,
        device_id: &str,
        tags: &[String],
        now_ms: i64,
    ) -> Result<Vec<String>, super::admin::AdminError> {
        super::admin::tag_device(&mut self.conn, device_id, tags, now_ms)
    }
    fn untag_device(
        &mut self,
        device_id: &str,
        tags: &[String],
    ) -> Result<Vec<String>, super::admin::AdminError> {
        super::admin::untag_device(&mut self.conn, device_id, tags)
    }
    fn describe_removal(
        &self,
        device_id: &str,
    ) -> Result<Option<(String, String, bool, bool)>, super::admin::AdminError> {
        super::removal::describe(&self.conn, device_id)
    }
    fn remove_device(
        &mut self,
        device_id: &str,
        purge: bool,
        now_ms: i64,
    ) -> Result<super::removal::Removed, super::admin::AdminError> {
        super::removal::remove_device(&mut self.conn, device_id, purge, now_ms)
    }
    fn create_api_token(
        &self,
        name: &str,
        sha256_hex: &str,
        created_by: Option<&str>,
        now_ms: i64,
    ) -> Result<i64, super::admin::AdminError> {
        super::admin::create_api_token(&self.conn, name, sha256_hex, created_by, now_ms)
    }
    fn revoke_api_token(&self, id: i64, now_ms: i64) -> Result<(), super::admin::AdminError> {
        super::admin::revoke_api_token(&self.conn, id, now_ms)
    }
    fn revocations_since(
        &self,
        after: i64,
    ) -> Result<Vec<super::admin::Revocation>, super::admin::AdminError> {
        self.conn.revocations_since(after)
    }
    fn renew_requests_since(
        &self,
        after: i64,
    ) -> Result<Vec<(i64, String)>, super::admin::AdminError> {
        self.conn.renew_requests_since(after)
    }
    fn patch_check_requests_since(
        &self,
        after: i64,
    ) -> Result<Vec<(i64, String)>, super::admin::AdminError> {
        self.conn.patch_check_requests_since(after)
    }
    fn certificate_issued(
        &self,
        device_id: &str,
        serial: &str,
    ) -> Result<bool, super::admin::AdminError> {
        self.conn.certificate_issued(device_id, serial)
    }
    fn device_in_good_standing(&self, device_id: &str) -> Result<bool, super::admin::AdminError> {
        self.conn.device_in_good_standing(device_id)
    }
    fn record_certificate(
        &self,
        device_id: &str,
        cert: &super::admin::IssuedCert,
        how: &str,
        now_ms: i64,
    ) -> Result<(), super::admin::AdminError> {
        self.conn.record_certificate(device_id, cert, how, now_ms)
    }
    fn enroll(
        &mut self,
        token_id: &str,
        secret_sha256: &[u8; 32],
        hostname: &str,
        now_ms: i64,
        sign: impl FnOnce(&super::admin::Grant) -> Result<super::admin::IssuedCert, String>,
    ) -> Result<(super::admin::Grant, super::admin::IssuedCert), super::admin::EnrollFailure> {
        self.conn
            .enroll(token_id, secret_sha256, hostname, now_ms, sign)
    }
}
