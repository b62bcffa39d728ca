//! Read-side queries over the store for the CLI (and later the HTTP API).

use rusqlite::Connection;

/// A device as the store knows it.
#[derive(Debug, serde::Serialize)]
pub struct DeviceRow {
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
pub fn devices(conn: &Connection) -> rusqlite::Result<Vec<DeviceRow>> {
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

/// The latest value of every series of a device: (name, dimension, ts_ms, value).
pub fn latest_values(
    conn: &Connection,
    device_id: &str,
) -> rusqlite::Result<Vec<(String, String, i64, f64)>> {
    let mut stmt = conn.prepare(
        "SELECT s.name, s.dimension, v.ts_ms, v.value
         FROM series s
         JOIN samples v ON v.series_id = s.id
          AND v.ts_ms = (SELECT max(ts_ms) FROM samples WHERE series_id = s.id)
         WHERE s.device_id = ?1 ORDER BY s.name, s.dimension",
    )?;
    let rows = stmt.query_map([device_id], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })?;
    rows.collect()
}
