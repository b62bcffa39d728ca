//! Devices after enrollment: revocation, renew and patch-check requests (append-only,
//! polled by the running collector by id), tags, and the `device list` rows.

use rusqlite::{Connection, TransactionBehavior, params};

use super::AdminError;
use super::enroll::device_in_good_standing;

/// Revokes a device: every certificate it holds stops working, at once on a running
/// collector (which polls `revocations`).
pub(crate) fn revoke_device(
    conn: &mut Connection,
    device_id: &str,
    now_ms: i64,
) -> Result<(), AdminError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n = tx.execute(
        "UPDATE devices SET revoked_ms = coalesce(revoked_ms, ?2) WHERE id = ?1",
        params![device_id, now_ms],
    )?;
    if n == 0 {
        return Err(AdminError::NoDevice(device_id.to_owned()));
    }
    tx.execute(
        "INSERT INTO revocations (device_id, serial, created_ms) VALUES (?1, NULL, ?2)",
        params![device_id, now_ms],
    )?;
    tx.commit()?;
    Ok(())
}

/// Asks a device to renew its certificate as soon as it is connected.
pub(crate) fn request_renew(
    conn: &Connection,
    device_id: &str,
    now_ms: i64,
) -> Result<(), AdminError> {
    device_in_good_standing(conn, device_id)?;
    conn.execute(
        "INSERT INTO renew_requests (device_id, created_ms) VALUES (?1, ?2)",
        params![device_id, now_ms],
    )?;
    Ok(())
}

/// Asks a device to check its patch status now (`device check-patches`).
pub(crate) fn request_patch_check(
    conn: &Connection,
    device_id: &str,
    now_ms: i64,
) -> Result<(), AdminError> {
    device_in_good_standing(conn, device_id)?;
    conn.execute(
        "INSERT INTO patch_check_requests (device_id, created_ms) VALUES (?1, ?2)",
        params![device_id, now_ms],
    )?;
    Ok(())
}

/// Patch-check requests above `after` that no patch report received since has
/// answered: `(id, device_id)`.
pub(crate) fn patch_check_requests_since(
    conn: &Connection,
    after: i64,
) -> Result<Vec<(i64, String)>, AdminError> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.id, r.device_id FROM patch_check_requests r WHERE r.id > ?1
           AND NOT EXISTS (SELECT 1 FROM patch_reports p
                           JOIN batches b ON b.device_id = p.device_id AND b.seq = p.seq
                           WHERE p.device_id = r.device_id AND b.received_ms >= r.created_ms)
         ORDER BY r.id",
    )?;
    let rows = stmt.query_map([after], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One revocation row: a whole device (`serial` None) or one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Revocation {
    pub(crate) id: i64,
    pub(crate) device_id: String,
    pub(crate) serial: Option<String>,
}

/// Revocations with an id above `after`, in order.
pub(crate) fn revocations_since(
    conn: &Connection,
    after: i64,
) -> Result<Vec<Revocation>, AdminError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, device_id, serial FROM revocations WHERE id > ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([after], |r| {
        Ok(Revocation {
            id: r.get(0)?,
            device_id: r.get(1)?,
            serial: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Renew requests above `after` that no certificate issued since has answered:
/// `(id, device_id)`.
pub(crate) fn renew_requests_since(
    conn: &Connection,
    after: i64,
) -> Result<Vec<(i64, String)>, AdminError> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.id, r.device_id FROM renew_requests r WHERE r.id > ?1
           AND NOT EXISTS (SELECT 1 FROM certificates c
                           WHERE c.device_id = r.device_id AND c.issued_ms >= r.created_ms)
         ORDER BY r.id",
    )?;
    let rows = stmt.query_map([after], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Adds tags to a device (tags it has already are kept). Every tag is checked
/// before anything is written; returns the tags that were new.
pub(crate) fn tag_device(
    conn: &mut Connection,
    device_id: &str,
    tags: &[String],
    now_ms: i64,
) -> Result<Vec<String>, AdminError> {
    for t in tags {
        crate::tags::check_tag(t).map_err(AdminError::BadTag)?;
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    device_in_good_standing(&tx, device_id)?;
    let mut added = Vec::new();
    for t in tags {
        let n = tx.execute(
            "INSERT INTO device_tags (device_id, tag, created_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
            params![device_id, t, now_ms],
        )?;
        if n > 0 {
            added.push(t.clone());
        }
    }
    tx.commit()?;
    Ok(added)
}

/// Removes tags from a device; returns those it had (the others are ignored).
pub(crate) fn untag_device(
    conn: &mut Connection,
    device_id: &str,
    tags: &[String],
) -> Result<Vec<String>, AdminError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    device_in_good_standing(&tx, device_id)?;
    let mut removed = Vec::new();
    for t in tags {
        let n = tx.execute(
            "DELETE FROM device_tags WHERE device_id = ?1 AND tag = ?2",
            params![device_id, t],
        )?;
        if n > 0 {
            removed.push(t.clone());
        }
    }
    tx.commit()?;
    Ok(removed)
}

/// A device for `device list`.
#[derive(Debug, serde::Serialize)]
pub(crate) struct DeviceListRow {
    pub(crate) id: String,
    pub(crate) tenant: String,
    pub(crate) site: Option<String>,
    pub(crate) hostname: String,
    pub(crate) os_family: String,
    pub(crate) os_version: String,
    pub(crate) agent_version: String,
    /// Expiry of the newest certificate the collector knows it issued.
    pub(crate) cert_not_after_ms: Option<i64>,
    /// When the newest certificate the collector knows it issued was issued.
    pub(crate) cert_issued_ms: Option<i64>,
    pub(crate) last_seen_ms: i64,
    pub(crate) revoked_ms: Option<i64>,
    /// The operator's tags, sorted.
    pub(crate) tags: Vec<String>,
}

pub(crate) fn list_devices(conn: &Connection) -> Result<Vec<DeviceListRow>, AdminError> {
    let mut stmt = conn.prepare(
        "SELECT d.id, t.name, s.name, d.hostname, d.os_family, d.os_version, d.agent_version,
                (SELECT max(c.not_after_ms) FROM certificates c WHERE c.device_id = d.id),
                d.last_seen_ms, d.revoked_ms,
                (SELECT max(c.issued_ms) FROM certificates c WHERE c.device_id = d.id),
                (SELECT group_concat(tag, ' ') FROM
                    (SELECT tag FROM device_tags g WHERE g.device_id = d.id ORDER BY tag))
         FROM devices d JOIN tenants t ON t.id = d.tenant_id LEFT JOIN sites s ON s.id = d.site_id
         ORDER BY t.name, d.hostname, d.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(DeviceListRow {
            id: r.get(0)?,
            tenant: r.get(1)?,
            site: r.get(2)?,
            hostname: r.get(3)?,
            os_family: r.get(4)?,
            os_version: r.get(5)?,
            agent_version: r.get(6)?,
            cert_not_after_ms: r.get(7)?,
            last_seen_ms: r.get(8)?,
            revoked_ms: r.get(9)?,
            cert_issued_ms: r.get(10)?,
            // Tags contain no spaces (check_tag), so a space joins them safely.
            tags: r
                .get::<_, Option<String>>(11)?
                .map(|s| s.split(' ').map(str::to_owned).collect())
                .unwrap_or_default(),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
