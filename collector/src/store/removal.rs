//! `device remove`: a device leaves the fleet for good (issue 16, item 8).
//!
//! Removal revokes the device (its certificates stop working at once on a running
//! collector, which polls the revocations, and after every restart) and marks it
//! removed. The device row stays as a tombstone: revocation needs it across
//! restarts, and an id is never handed out twice. With `purge`, everything the
//! device sent is deleted as well (samples, series, batches, gaps, patch reports,
//! inventory, alert instances and their history, tags, pending requests); without,
//! its history stays for `inspect --device` and `alerts history`.
//!
//! Invariant: one immediate transaction, so a removal is all or nothing. The alert
//! engine of a running collector closes the device's alerts on its next tick
//! (`alerts::service`); with `purge`, closing records it writes after the purge
//! leave at most one closed (OK) instance row per alert.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::admin::AdminError;

/// What `remove_device` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Removed {
    pub(crate) tenant: String,
    pub(crate) hostname: String,
    /// Rows deleted by `purge` (0 without it).
    pub(crate) rows_deleted: usize,
    /// It had been removed before (nothing changed but, with `purge`, the data).
    pub(crate) already: bool,
}

/// What the confirmation names: (tenant, hostname, revoked, removed).
pub(crate) fn describe(
    conn: &Connection,
    device_id: &str,
) -> Result<Option<(String, String, bool, bool)>, AdminError> {
    Ok(conn
        .query_row(
            "SELECT t.name, d.hostname, d.revoked_ms IS NOT NULL, d.removed_ms IS NOT NULL
             FROM devices d JOIN tenants t ON t.id = d.tenant_id WHERE d.id = ?1",
            [device_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?)
}

/// Revokes and removes `device_id`; with `purge`, deletes its data too.
pub(crate) fn remove_device(
    conn: &mut Connection,
    device_id: &str,
    purge: bool,
    now_ms: i64,
) -> Result<Removed, AdminError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (tenant, hostname, revoked, already) =
        describe(&tx, device_id)?.ok_or_else(|| AdminError::NoDevice(device_id.to_owned()))?;
    if !revoked {
        tx.execute(
            "UPDATE devices SET revoked_ms = ?2 WHERE id = ?1",
            params![device_id, now_ms],
        )?;
        tx.execute(
            "INSERT INTO revocations (device_id, serial, created_ms) VALUES (?1, NULL, ?2)",
            params![device_id, now_ms],
        )?;
    }
    tx.execute(
        "UPDATE devices SET removed_ms = coalesce(removed_ms, ?2) WHERE id = ?1",
        params![device_id, now_ms],
    )?;
    let mut rows_deleted = 0;
    if purge {
        for sql in [
            "DELETE FROM samples_old WHERE series_id IN (SELECT id FROM series WHERE device_id = ?1)",
            "DELETE FROM head WHERE device_id = ?1",
            "DELETE FROM chunks WHERE device_id = ?1",
            "DELETE FROM rollups WHERE device_id = ?1",
            "DELETE FROM series WHERE device_id = ?1",
            "DELETE FROM batches WHERE device_id = ?1",
            "DELETE FROM gaps WHERE device_id = ?1",
            "DELETE FROM pending_updates WHERE device_id = ?1",
            "DELETE FROM patch_reports WHERE device_id = ?1",
            "DELETE FROM inventory_software WHERE device_id = ?1",
            "DELETE FROM inventory_changes WHERE device_id = ?1",
            "DELETE FROM inventories WHERE device_id = ?1",
            "DELETE FROM alert_history WHERE instance_id IN (SELECT id FROM alert_instances WHERE device_id = ?1)",
            "DELETE FROM alert_instances WHERE device_id = ?1",
            "DELETE FROM device_tags WHERE device_id = ?1",
            "DELETE FROM renew_requests WHERE device_id = ?1",
            "DELETE FROM patch_check_requests WHERE device_id = ?1",
        ] {
            rows_deleted += tx.execute(sql, [device_id])?;
        }
    }
    tx.commit()?;
    Ok(Removed {
        tenant,
        hostname,
        rows_deleted,
        already,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db_with_device() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        conn.execute_batch(
            "INSERT INTO tenants (name, created_ms) VALUES ('acme', 0);
             INSERT INTO devices (id, tenant_id, os_family, os_version, first_seen_ms, last_seen_ms)
                VALUES ('d1', 1, 'linux', '12', 0, 0);
             INSERT INTO series (id, device_id, name, dimension) VALUES (1, 'd1', 'load.1m', '');
             INSERT INTO samples_old (series_id, ts_ms, value) VALUES (1, 1, 0.5), (1, 2, 0.7);
             INSERT INTO batches (device_id, seq, received_ms, n_values) VALUES ('d1', 1, 0, 2);",
        )
        .unwrap();
        (dir, conn)
    }

    fn n(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn remove_keeps_the_data_and_revokes() {
        let (_d, mut conn) = db_with_device();
        let r = remove_device(&mut conn, "d1", false, 5).unwrap();
        assert_eq!((r.rows_deleted, r.already), (0, false));
        assert_eq!(n(&conn, "SELECT count(*) FROM samples"), 2);
        assert_eq!(
            n(
                &conn,
                "SELECT count(*) FROM revocations WHERE device_id = 'd1'"
            ),
            1
        );
        assert_eq!(
            n(&conn, "SELECT removed_ms FROM devices WHERE id = 'd1'"),
            5
        );
        let again = remove_device(&mut conn, "d1", true, 9).unwrap();
        assert!(again.already);
        assert_eq!(
            n(
                &conn,
                "SELECT count(*) FROM revocations WHERE device_id = 'd1'"
            ),
            1
        );
        assert_eq!(n(&conn, "SELECT count(*) FROM samples"), 0, "purged now");
    }

    #[test]
    fn purge_deletes_what_it_sent_and_keeps_the_tombstone() {
        let (_d, mut conn) = db_with_device();
        let r = remove_device(&mut conn, "d1", true, 5).unwrap();
        assert_eq!(r.rows_deleted, 4);
        assert_eq!(n(&conn, "SELECT count(*) FROM samples"), 0);
        assert_eq!(n(&conn, "SELECT count(*) FROM series"), 0);
        assert_eq!(
            n(
                &conn,
                "SELECT count(*) FROM devices WHERE id = 'd1' AND revoked_ms = 5"
            ),
            1
        );
        assert!(matches!(
            remove_device(&mut conn, "nope", false, 5),
            Err(AdminError::NoDevice(_))
        ));
    }
}
