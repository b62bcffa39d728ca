//! Read-side queries over the store for the CLI (and later the HTTP API).
//!
//! This file: devices, patch status, inventory and software rows. `metrics`: metric
//! values through the backend-neutral [`MetricQuery`] trait and its SQLite
//! implementation, re-exported here (`store::query::…` as before).

use rusqlite::Connection;

mod metrics;
pub use metrics::*;

/// A device as the store knows it.
#[derive(Debug, serde::Serialize)]
pub(crate) struct DeviceRow {
    pub id: String,
    pub tenant: String,
    pub hostname: String,
    pub os_family: String,
    pub os_version: String,
    pub agent_version: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub acked_seq: i64,
}

/// All devices, most recently seen first.
pub(crate) fn devices(conn: &Connection) -> rusqlite::Result<Vec<DeviceRow>> {
    let mut stmt = conn.prepare(
        "SELECT d.id, t.name, d.hostname, d.os_family, d.os_version, d.agent_version,
                d.first_seen_ms, d.last_seen_ms, d.acked_seq
         FROM devices d JOIN tenants t ON t.id = d.tenant_id ORDER BY d.last_seen_ms DESC",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(DeviceRow {
            id: r.get(0)?,
            tenant: r.get(1)?,
            hostname: r.get(2)?,
            os_family: r.get(3)?,
            os_version: r.get(4)?,
            agent_version: r.get(5)?,
            first_seen_ms: r.get(6)?,
            last_seen_ms: r.get(7)?,
            acked_seq: r.get(8)?,
        })
    })?;
    rows.collect()
}

/// The latest patch report of a device, summarised for `inspect`.
#[derive(Debug, serde::Serialize)]
pub(crate) struct PatchStatus {
    pub seq: i64,
    pub time_ms: i64,
    pub source: String,
    /// Non-empty when the source could not be read; the counts then mean nothing.
    pub error: String,
    pub pending: i64,
    pub security: i64,
    /// When the oldest pending security update was first seen (agent clock).
    pub oldest_security_first_seen_ms: Option<i64>,
    pub reboot_required: bool,
    /// 0 when unknown.
    pub reboot_required_since_ms: i64,
    /// 0 when unknown.
    pub last_install_ms: i64,
}

/// The device's latest patch status, if it ever sent a report.
pub(crate) fn patch_status(
    conn: &Connection,
    device_id: &str,
) -> rusqlite::Result<Option<PatchStatus>> {
    use rusqlite::OptionalExtension;
    conn.query_row(
        "SELECT p.seq, p.time_ms, p.source, p.error, p.reboot_required, p.reboot_since_ms,
                p.last_install_ms,
                (SELECT count(*) FROM pending_updates u
                  WHERE u.device_id = p.device_id AND u.report_seq = p.seq),
                (SELECT count(*) FROM pending_updates u
                  WHERE u.device_id = p.device_id AND u.report_seq = p.seq
                    AND u.classification = 'security'),
                (SELECT min(first_seen_ms) FROM pending_updates u
                  WHERE u.device_id = p.device_id AND u.report_seq = p.seq
                    AND u.classification = 'security')
         FROM patch_reports p WHERE p.device_id = ?1 ORDER BY p.seq DESC LIMIT 1",
        [device_id],
        |r| {
            Ok(PatchStatus {
                seq: r.get(0)?,
                time_ms: r.get(1)?,
                source: r.get(2)?,
                error: r.get(3)?,
                reboot_required: r.get(4)?,
                reboot_required_since_ms: r.get(5)?,
                last_install_ms: r.get(6)?,
                pending: r.get(7)?,
                security: r.get(8)?,
                oldest_security_first_seen_ms: r.get(9)?,
            })
        },
    )
    .optional()
}

/// A device's latest inventory (without its software list).
#[derive(Debug, serde::Serialize)]
pub(crate) struct InventoryRow {
    pub seq: i64,
    pub time_ms: i64,
    pub received_ms: i64,
    pub os_name: String,
    pub os_version: String,
    pub os_build: String,
    pub kernel: String,
    pub arch: String,
    pub hw_vendor: String,
    pub hw_model: String,
    pub hw_serial: String,
    pub cpu_model: String,
    pub cpu_cores: i64,
    pub memory_bytes: i64,
    pub software_source: String,
    pub software_error: String,
    pub software_count: i64,
}

/// The device's latest inventory, if it ever sent one.
pub(crate) fn inventory(
    conn: &Connection,
    device_id: &str,
) -> rusqlite::Result<Option<InventoryRow>> {
    use rusqlite::OptionalExtension;
    conn.query_row(
        "SELECT seq, time_ms, received_ms, os_name, os_version, os_build, kernel, arch,
                hw_vendor, hw_model, hw_serial, cpu_model, cpu_cores, memory_bytes,
                software_source, software_error, software_count
         FROM inventories WHERE device_id = ?1",
        [device_id],
        |r| {
            Ok(InventoryRow {
                seq: r.get(0)?,
                time_ms: r.get(1)?,
                received_ms: r.get(2)?,
                os_name: r.get(3)?,
                os_version: r.get(4)?,
                os_build: r.get(5)?,
                kernel: r.get(6)?,
                arch: r.get(7)?,
                hw_vendor: r.get(8)?,
                hw_model: r.get(9)?,
                hw_serial: r.get(10)?,
                cpu_model: r.get(11)?,
                cpu_cores: r.get(12)?,
                memory_bytes: r.get(13)?,
                software_source: r.get(14)?,
                software_error: r.get(15)?,
                software_count: r.get(16)?,
            })
        },
    )
    .optional()
}

/// One program of a device's stored software list.
#[derive(Debug, serde::Serialize)]
pub(crate) struct SoftwareRow {
    pub name: String,
    pub version: String,
    pub publisher: String,
}

/// The device's stored software list, by name.
pub(crate) fn software(conn: &Connection, device_id: &str) -> rusqlite::Result<Vec<SoftwareRow>> {
    let mut stmt = conn.prepare(
        "SELECT name, version, publisher FROM inventory_software WHERE device_id = ?1
         ORDER BY name, version",
    )?;
    let rows = stmt.query_map([device_id], |r| {
        Ok(SoftwareRow {
            name: r.get(0)?,
            version: r.get(1)?,
            publisher: r.get(2)?,
        })
    })?;
    rows.collect()
}
